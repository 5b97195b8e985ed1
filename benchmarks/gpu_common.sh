# Sourced by the GPU training scripts (gpu_train.sh, gpu_finetune.sh): output folder, log, the
# prepared data check, offline wheels, `vst` importable, the GPU's name. Needs $OUT_DIR, $DATA and
# $PY set; defines `log`.
mkdir -p "$OUT_DIR"
log() { echo "== $*" | tee -a "$OUT_DIR/$(basename "$0" .sh).log"; }

[ -d "$DATA/frames" ] || { echo "$(basename "$0"): no prepared data in $DATA (run benchmarks/prepare_train_data.py)" >&2; exit 2; }
log "make vst importable"
for m in safetensors tqdm; do
  "$PY" -c "import $m" 2>/dev/null || { [ -d .whl ] && "$PY" -m pip install -q --no-index --find-links .whl "$m"; }
done
. benchmarks/importable.sh
command -v nvidia-smi >/dev/null && nvidia-smi -L | tee -a "$OUT_DIR/$(basename "$0" .sh).log"
# Domain A on the far side: the decoded training clips and the photos.
common=(--a "$DATA/frames/bikes" --a "$DATA/frames/bigbuckbunny" --a "$DATA/frames/corridor_neuflow"
        --set "data.a_stills=['$DATA/photos/landscapes']" --no-progress)
heldout=(--clip "carphone=$DATA/heldout/carphone_pristine" --clip "market=$DATA/heldout/sintel_market")
