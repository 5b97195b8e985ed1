#!/usr/bin/env bash
# The full-size GPU recipe in one lease (about 8 minutes): the thesis generator (ResNet-9, 256 px,
# bf16) trained with the fast recipe's fixes (train/configs/gpu_resnet.toml), then distilled into
# the compact CPU net (distill_gpu.toml); both are kept, and the student is scored beside the
# CPU-trained bundled style on the held-out clips (SWD ratio, E ratio, artefact index).
#
# Here, once (this machine has PyAV and ../shared; the GPU machine has neither):
#   python benchmarks/prepare_train_data.py --out .gpu_data        # ~46 MiB, git-ignored
#   pip download safetensors tqdm -d .whl --python-version 3.12 --only-binary=:all:
# On the GPU machine (device tool: carry .gpu_data and .whl; results come back from $OUT):
#   bash benchmarks/gpu_train.sh
# A CPU dry run with tiny sizes (what tests/unit/test_gpu_train_script.py does):
#   TINY=1 DATA=/tmp/gpu_data OUT=/tmp/out bash benchmarks/gpu_train.sh
set -euo pipefail
cd "$(dirname "$0")/.."
OUT_DIR="${OUT:-artifacts/gpu_train}"
DATA="${DATA:-.gpu_data}"
PAINTER="${PAINTER:-monet}"
RUNS="${RUNS:-$OUT_DIR/runs}"
PY="${PYTHON:-python3}"
mkdir -p "$RUNS"
. benchmarks/gpu_common.sh

teacher=(--b "$DATA/paintings/$PAINTER" --set "run.style_name='${PAINTER}_resnet'")
student=(--set "run.style_name='${PAINTER}_distilled'")
score=(--style "$PAINTER=$DATA/paintings/$PAINTER")  # the bundled, CPU-trained style, for comparison
if [ "${TINY:-0}" = 1 ]; then  # seconds on a CPU: the same commands with toy sizes
  tiny=(--set run.device=cpu --set run.amp=off --set data.frame_size=[64,48] --set data.max_frames=6
        --set optim.steps=3 --set optim.batch=1 --set model.width=8 --set model.n_blocks=1)
  teacher+=("${tiny[@]}" --set data.b_load=72 --set data.b_crop=64 --set model.d_ndf=8)
  student+=("${tiny[@]}")
  score=(--frames 4 --painting-limit 12)
fi

log "teacher: ResNet-9 CycleGAN + temporal losses (run.max_seconds in gpu_resnet.toml)"
"$PY" -m vst.train.cli --config gpu_resnet "${common[@]}" "${teacher[@]}" --run "$RUNS/teacher" 2>&1 | tee -a "$OUT_DIR/gpu_train.log"
log "student: distilled into the compact net"
"$PY" -m vst.train.cli --config distill_gpu --distill "$RUNS/teacher/style/${PAINTER}_resnet.safetensors" \
  "${common[@]}" "${student[@]}" --run "$RUNS/student" 2>&1 | tee -a "$OUT_DIR/gpu_train.log"

log "scores on the held-out clips"
"$PY" benchmarks/style_strength.py --size 320x180 \
  "${heldout[@]}" \
  --style "$RUNS/teacher/style/${PAINTER}_resnet.safetensors=$DATA/paintings/$PAINTER" \
  --style "$RUNS/student/style/${PAINTER}_distilled.safetensors=$DATA/paintings/$PAINTER" \
  "${score[@]}" --json "$OUT_DIR/scores.json" 2>&1 | tee -a "$OUT_DIR/gpu_train.log"

# What comes back (the device returns at most 8 files of 16 MiB): the student style, the scores,
# metrics and the last sample grids. The fp16 teacher (23 MB) stays on the machine.
cp "$RUNS/student/style/${PAINTER}_distilled".{safetensors,json} "$OUT_DIR/"
cp "$RUNS/teacher/metrics.csv" "$OUT_DIR/teacher_metrics.csv"
last() { ls "$1"/samples/*.png | tail -1; }
cp "$(last "$RUNS/teacher")" "$OUT_DIR/teacher_samples.png"
cp "$(last "$RUNS/student")" "$OUT_DIR/student_samples.png"
[ -n "${OUT:-}" ] && rm -rf "$RUNS"  # runs/ under $OUT would count against the returned files
log "done: $(ls "$OUT_DIR" | tr '\n' ' ')"
