#!/usr/bin/env bash
# A short GPU fine-tune of the bundled compact styles with the temporal losses, with and without the
# flow-cycle loss (issue 14): for each style, two runs of $SECONDS_PER_RUN s from the bundled weights
# (`--init`), the same seed and data, one with loss.flow_cycle and one without, then both and the
# bundled style are scored on the held-out clips (SWD ratio, E ratio, artefact index). About 8
# minutes with the defaults (2 styles x 2 runs x 95 s + scoring).
#
# Here, once (this machine has PyAV and ../shared; the GPU machine has neither):
#   python benchmarks/prepare_train_data.py --out .gpu_data
#   pip download safetensors tqdm -d .whl --python-version 3.12 --only-binary=:all:
# On the GPU machine (device tool: carry .gpu_data and .whl):
#   bash benchmarks/gpu_finetune.sh
# A CPU dry run with tiny sizes (tests/unit/test_gpu_train_script.py):
#   TINY=1 DATA=/tmp/gpu_data OUT=/tmp/out bash benchmarks/gpu_finetune.sh
set -euo pipefail
cd "$(dirname "$0")/.."
OUT_DIR="${OUT:-artifacts/gpu_finetune}"
DATA="${DATA:-.gpu_data}"
STYLES="${STYLES:-monet vangogh}"
SECONDS_PER_RUN="${SECONDS_PER_RUN:-95}"
FLOW_CYCLE="${FLOW_CYCLE:-2.0}"
RUNS="${RUNS:-$OUT_DIR/runs}"
PY="${PYTHON:-python3}"
mkdir -p "$RUNS"
. benchmarks/gpu_common.sh

# The fast CPU recipe's losses and data scale (the style keeps its stroke size), a GPU batch.
recipe=(--config fast_cpu "${common[@]}" --set optim.batch=8 --set optim.steps=100000 --set run.seed=11
        --set "run.max_seconds=$SECONDS_PER_RUN" --set run.checkpoint_every=0 --set run.sample_every=1000)
score=()
if [ "${TINY:-0}" = 1 ]; then  # seconds on a CPU: the same commands with toy sizes
  recipe+=(--set run.device=cpu --set run.amp=off --set data.frame_size=[64,48] --set data.max_frames=6
           --set optim.batch=1 --set data.b_load=72 --set data.b_crop=64 --set model.d_ndf=8 --set run.max_seconds=0 --set run.log_every=1
           --stop-after 2)
  score=(--frames 4 --painting-limit 12)
fi

styles=()
for s in $STYLES; do
  for variant in temporal flowcycle; do
    extra=(--set "run.style_name='${s}_${variant}'")
    [ "$variant" = flowcycle ] && extra+=(--set "loss.flow_cycle=$FLOW_CYCLE")
    log "$s: fine-tune, $variant"
    "$PY" -m vst.train.cli "${recipe[@]}" "${extra[@]}" --init "vst/assets/styles/$s.safetensors" \
      --b "$DATA/paintings/$s" --run "$RUNS/${s}_$variant" 2>&1 | tee -a "$OUT_DIR/gpu_finetune.log"
    cp "$RUNS/${s}_$variant/style/${s}_$variant".{safetensors,json} "$OUT_DIR/"
    cp "$RUNS/${s}_$variant/metrics.csv" "$OUT_DIR/${s}_${variant}_metrics.csv"
    styles+=(--style "$OUT_DIR/${s}_$variant.safetensors=$DATA/paintings/$s")
  done
  styles+=(--style "$s=$DATA/paintings/$s")  # the bundled style, for comparison
done

log "scores on the held-out clips"
"$PY" benchmarks/style_strength.py --size 320x180 "${heldout[@]}" "${styles[@]}" "${score[@]}" \
  --json "$OUT_DIR/scores.json" 2>&1 | tee -a "$OUT_DIR/gpu_finetune.log"
[ -n "${OUT:-}" ] && rm -rf "$RUNS"  # run folders (optimiser states) do not come back
# The device returns at most 8 files: the styles and their metrics travel as one archive.
(cd "$OUT_DIR" && tar czf styles.tar.gz ./*_temporal.* ./*_flowcycle.* ./*_metrics.csv && rm -f ./*_temporal.* ./*_flowcycle.* ./*_metrics.csv)
log "done: $(ls "$OUT_DIR" | tr '\n' ' ')"
