"""onnxruntime engine: imported ONNX styles as they are, or our torch styles exported to ONNX."""

from __future__ import annotations

import logging
import os
from typing import Any

import cv2
import numpy as np

from vst.errors import BackendUnavailable, VstError
from vst.hardware import env_threads
from vst.styles import Style

log = logging.getLogger("vst.engine.ort")

MIN_SIDE = 64


class OrtEngine:
    """Runs an ONNX style model on the CPU, or on onnxruntime's CUDA EP where it is installed."""

    backend = "onnxruntime"

    def __init__(self, style: Style, precision: str = "auto") -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise BackendUnavailable("backend onnxruntime is not installed: pip install onnxruntime") from None
        if precision not in ("auto", "fp32"):
            raise VstError(f"onnxruntime runs the model in its own precision (fp32), not {precision!r}")
        self.precision = "fp32"
        if style.kind == "onnx":
            path, self.meta = style.weights, style.meta
        else:
            from vst.export.onnx_export import cached_onnx  # torch styles go through export

            path = cached_onnx(style)
            self.meta = {"onnx_input": "input", "onnx_value_range": -1.0}
        from vst.onnx_styles import extra_inputs, load_session

        providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in ort.get_available_providers()]
        self.session: Any = load_session(path, providers, env_threads() or (os.cpu_count() or 1))
        log.info("onnxruntime providers: %s", self.session.get_providers())

        self.feeds = extra_inputs(self.meta)
        self.input = self.meta.get("onnx_input") or self.session.get_inputs()[0].name
        self.fixed_hw = self.meta.get("onnx_fixed_hw")
        self.bgr = self.meta.get("onnx_channel_order") == "bgr"
        # -1 marks our own [-1, 1] models; 1 or 255 are third-party 0..1 / 0..255 models.
        self.value_range = float(self.meta.get("onnx_value_range", 255.0))

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        h, w = frame.shape[:2]
        img = frame if not self.fixed_hw else cv2.resize(frame, (self.fixed_hw[1], self.fixed_hw[0]), interpolation=cv2.INTER_AREA)
        if self.bgr:
            img = img[..., ::-1]
        x = img.transpose(2, 0, 1)[None].astype(np.float32)
        if self.value_range < 0:
            x = x / 127.5 - 1.0
        else:
            x *= self.value_range / 255.0
        # Pad to multiples of 4 and to at least MIN_SIDE: fast-neural-style reflect-pads 40 px inside.
        hp = max(MIN_SIDE, x.shape[2] + (-x.shape[2]) % 4) - x.shape[2]
        wp = max(MIN_SIDE, x.shape[3] + (-x.shape[3]) % 4) - x.shape[3]
        if hp or wp:
            x = np.pad(x, ((0, 0), (0, 0), (0, hp), (0, wp)), mode="reflect" if hp < x.shape[2] and wp < x.shape[3] else "edge")
        y = self.infer(x)[0, :, : img.shape[0], : img.shape[1]]
        y = (y + 1.0) * 127.5 if self.value_range < 0 else y * (255.0 / self.value_range)
        out = np.clip(y.transpose(1, 2, 0) + 0.5, 0, 255).astype(np.uint8)
        if self.bgr:
            out = np.ascontiguousarray(out[..., ::-1])
        if self.fixed_hw:
            out = cv2.resize(out, (w, h), interpolation=cv2.INTER_LINEAR)
        return out

    def infer(self, x: np.ndarray) -> np.ndarray:
        """Tensor-level API: (1, 3, H, W) float32 in the model's own range -> its (1, 3, H, W) output.

        onnxruntime releases the GIL while it runs, so a pipeline can decode/encode on other threads.
        """
        return self.session.run(None, {self.input: x, **self.feeds})[0]
