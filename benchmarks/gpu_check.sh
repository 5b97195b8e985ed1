#!/usr/bin/env bash
# One-command GPU verification for the vst GPU path. Run from the repository root on a CUDA host:
#
#     bash benchmarks/gpu_check.sh            # results in $OUT (device tool) or artifacts/gpu_check/
#
# It (1) reports the machine, (2) makes `vst` importable without network (editable install with
# --no-deps, else a symlink tree on PYTHONPATH), (3) runs tests/gpu plus the export/backend unit
# tests, (4) runs benchmarks/fps.py for ResNet-9 and compact at 720p and 1080p with torch-cuda fp16
# (and tensorrt / onnxruntime CUDA EP where installed), (5) runs generators.py with cuda-fp16.
# The GPU image has no pytest and no network: put wheels in ./.whl (git-ignored; e.g.
# `pip download pytest -d .whl` on a networked machine) and carry that folder; it is installed from there.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT_DIR="${OUT:-artifacts/gpu_check}"
mkdir -p "$OUT_DIR"
PY="${PYTHON:-python3}"
FRAMES="${FRAMES:-300}"
log() { echo "== $*" | tee -a "$OUT_DIR/gpu_check.log"; }

log "machine"
{ nvidia-smi -L; nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv; } 2>&1 | tee -a "$OUT_DIR/gpu_check.log"
"$PY" - <<'EOF' 2>&1 | tee -a "$OUT_DIR/gpu_check.log"
import importlib.util, platform, torch
print("python", platform.python_version(), "torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())
for m in ("cupy", "tensorrt", "torch_tensorrt", "onnxruntime", "av", "pytest", "matplotlib"):
    print(f"{m:15}", "yes" if importlib.util.find_spec(m) else "no")
EOF

log "make vst importable"
. benchmarks/importable.sh
"$PY" -c "import vst.stream.cuda_processor, vst.export.trt_build; print('vst importable')" 2>&1 | tee -a "$OUT_DIR/gpu_check.log"

if ! "$PY" -c "import pytest" 2>/dev/null && [ -d .whl ]; then
  "$PY" -m pip install -q --no-index --find-links .whl pytest 2>&1 | tail -2
fi

log "tests"
if "$PY" -c "import pytest" 2>/dev/null; then
  "$PY" -m pytest -q -p no:cacheprovider -o addopts="" -ra tests/gpu tests/unit/test_export.py tests/unit/test_backends.py \
    2>&1 | tee "$OUT_DIR/pytest.txt" | tail -40
else
  log "pytest is not installed and there is no ./.whl to install it from: tests NOT run"
fi

backends=(torch-cuda)
"$PY" -c "import tensorrt" 2>/dev/null && backends+=(tensorrt)
"$PY" -c "import onnxruntime as o, sys; sys.exit('CUDAExecutionProvider' not in o.get_available_providers())" 2>/dev/null && backends+=(onnxruntime)

log "fps.py: ${backends[*]} x resnet9, compact x 1280x720, 1920x1080 (end to end, encode default)"
"$PY" benchmarks/fps.py --backend "${backends[@]}" --model resnet9 compact --size 1280x720 1920x1080 \
  --frames "$FRAMES" --warmup 20 --json "$OUT_DIR/fps_e2e.json" 2>&1 | tee "$OUT_DIR/fps_e2e.txt" | tail -12

log "fps.py: same, encode none (the GPU pipeline alone, for the 90%-of-inference target)"
"$PY" benchmarks/fps.py --backend "${backends[@]}" --model resnet9 compact --size 1280x720 1920x1080 \
  --frames "$FRAMES" --warmup 20 --encode none --json "$OUT_DIR/fps_noencode.json" 2>&1 | tee "$OUT_DIR/fps_noencode.txt" | tail -12

log "fps.py: with the temporal blend (host DIS flow + fused CuPy blend), 720p"
"$PY" -c "import cupy" 2>/dev/null && "$PY" benchmarks/fps.py --backend torch-cuda --model resnet9 compact --size 1280x720 \
  --frames "$FRAMES" --warmup 20 --blend 0.5 --json "$OUT_DIR/fps_blend.json" 2>&1 | tee "$OUT_DIR/fps_blend.txt" | tail -6

log "channels-last / CUDA-graph ablation (resnet9 720p, encode none)"
for knobs in "VST_CHANNELS_LAST=0" "VST_CUDA_GRAPHS=0"; do
  env "$knobs" "$PY" benchmarks/fps.py --backend torch-cuda --model resnet9 --size 1280x720 --frames "$FRAMES" \
    --warmup 20 --encode none --json "$OUT_DIR/fps_${knobs%%=*}_off.json" 2>&1 | tail -2 | sed "s/^/$knobs  /" | tee -a "$OUT_DIR/gpu_check.log"
done

log "generators.py (cuda fp16 ms/frame, MACs)"
"$PY" benchmarks/generators.py --runtimes cuda-fp16 --sizes 1280x720 1920x1080 --json "$OUT_DIR/generators_gpu.json" \
  2>&1 | tee "$OUT_DIR/generators_gpu.txt"

log "done: results in $OUT_DIR"
