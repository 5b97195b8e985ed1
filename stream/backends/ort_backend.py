"""onnxruntime engine: imported ONNX styles as they are, or our torch styles exported to ONNX."""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np

from vst.errors import BackendUnavailable, VstError
from vst.stream.engine import EngineOptions, engine_options
from vst.stream.backends.onnx_io import OnnxFrameEngine, style_onnx
from vst.styles import Style

log = logging.getLogger("vst.engine.ort")


class OrtEngine(OnnxFrameEngine):
    """Runs an ONNX style model on the CPU, or on onnxruntime's CUDA EP where it is installed."""

    backend = "onnxruntime"

    device = "cpu"  # the CUDA EP, where installed, still takes and returns host arrays through the frame API

    def __init__(self, style: Style, options: EngineOptions | str | None = None) -> None:
        opts = engine_options(options)
        precision = opts.precision
        try:
            import onnxruntime as ort
        except ImportError:
            raise BackendUnavailable("backend onnxruntime is not installed: pip install onnxruntime") from None
        if precision not in ("auto", "fp32"):
            raise VstError(f"onnxruntime runs the model in its own precision (fp32), not {precision!r}")
        self.precision = "fp32"
        path, meta = style_onnx(style)
        self._setup_io(style, meta)
        from vst.onnx_styles import load_session

        providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in ort.get_available_providers()]
        self.threads = opts.threads or (os.cpu_count() or 1)
        self.session: Any = load_session(path, providers, self.threads)
        log.info("onnxruntime providers: %s", self.session.get_providers())
        self.input = self.input or self.session.get_inputs()[0].name

    def infer(self, x: np.ndarray) -> np.ndarray:
        """Tensor-level API: (1, 3, H, W) float32 in the model's own range -> its (1, 3, H, W) output.

        onnxruntime releases the GIL while it runs, so a pipeline can decode/encode on other threads.
        """
        return self.session.run(None, {self.input: x, **self.feeds})[0]
