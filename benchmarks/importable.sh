# Sourced by the GPU scripts: make `vst` importable on a machine with no network (the device
# lease). Needs $PY, $OUT_DIR and a `log` function. Tries an editable install without
# dependencies, else mirrors pyproject's package-dir mapping (vst.stream -> stream/, ...) with a
# symlink tree on PYTHONPATH.
if ! "$PY" -c "import vst.stream, vst.export" 2>/dev/null; then
  if ! "$PY" -m pip install -q --no-deps --no-build-isolation -e . 2>>"$OUT_DIR/setup.log"; then
    # Fallback: mirror the pyproject package-dir mapping (vst.stream -> stream/, ...) with symlinks.
    SHIM="$(mktemp -d)/vst"
    mkdir -p "$SHIM"
    for f in vst/*; do ln -s "$PWD/$f" "$SHIM/$(basename "$f")"; done
    for pkg in stream kernels export train; do ln -s "$PWD/$pkg" "$SHIM/$pkg"; done
    export PYTHONPATH="$(dirname "$SHIM")${PYTHONPATH:+:$PYTHONPATH}"
    log "editable install failed (see log); using a symlink tree on PYTHONPATH: $SHIM"
  fi
fi
