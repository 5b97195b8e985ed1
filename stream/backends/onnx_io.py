"""What the ONNX-running engines share: which ONNX file a style runs as, and frame <-> tensor.

onnxruntime and OpenVINO run the same file with the same conventions, so a frame goes in and
comes out identically on both; only ``infer`` differs.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from vst.styles import Style

log = logging.getLogger("vst.engine.onnx")

MIN_SIDE = 64
"""Smallest padded side: fast-neural-style models reflect-pad 40 px inside, which needs room."""


def style_onnx(style: Style) -> tuple[Path, dict[str, Any]]:
    """The ONNX file ``style`` runs as and its I/O conventions (the sidecar keys ``onnx_*``).

    Imported ONNX styles run as they are; our torch styles go through ``vst.export`` (cached).
    """
    if style.kind == "onnx":
        return style.weights, style.meta
    from vst.export.onnx_export import INPUT_NAME, cached_onnx

    return cached_onnx(style), {"onnx_input": INPUT_NAME, "onnx_value_range": -1.0}


class OnnxFrameEngine:
    """Frame API over an ``infer`` on (1, 3, H, W) float32 tensors in the model's own range.

    Subclasses call ``_setup_io(meta)`` and implement ``infer``.
    """

    input: str | None
    """The image input's name (None: the model's first input, resolved by the subclass)."""
    feeds: dict[str, np.ndarray]
    """Constant non-image inputs (e.g. a one-hot style vector)."""
    fixed_hw: tuple[int, int] | None
    """(H, W) the model only accepts; frames are resized to it and back."""
    bgr: bool
    """The model wants BGR channel order."""
    value_range: float
    """-1 marks our own [-1, 1] models; 1 or 255 are third-party 0..1 / 0..255 models."""

    def _setup_io(self, meta: dict[str, Any]) -> None:
        from vst.onnx_styles import extra_inputs

        self.meta = meta
        self.feeds = extra_inputs(meta)
        self.input = meta.get("onnx_input")
        fixed = meta.get("onnx_fixed_hw")
        self.fixed_hw = (int(fixed[0]), int(fixed[1])) if fixed else None
        self.bgr = meta.get("onnx_channel_order") == "bgr"
        self.value_range = float(meta.get("onnx_value_range", 255.0))

    def infer(self, x: np.ndarray) -> np.ndarray:
        """(1, 3, H, W) float32 in the model's range -> its (1, 3, H, W) float32 output."""
        raise NotImplementedError

    def input_hw(self, height: int, width: int) -> tuple[int, int]:
        """The (H, W) tensor ``infer`` gets for a frame of ``height`` x ``width``."""
        h, w = self.fixed_hw or (height, width)
        return max(MIN_SIDE, h + (-h) % 4), max(MIN_SIDE, w + (-w) % 4)

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 RGB -> (H, W, 3) uint8 RGB, stylized.

        OpenCV does the conversions, one C++ pass each way, rounding half to even as torch's
        ``to_frame`` does: at 640x360 the numpy version took 4-7 ms, a tenth of bf16 inference.
        """
        h, w = frame.shape[:2]
        img = frame if not self.fixed_hw else cv2.resize(frame, (self.fixed_hw[1], self.fixed_hw[0]), interpolation=cv2.INTER_AREA)
        ih, iw = img.shape[:2]
        ph, pw = self.input_hw(ih, iw)
        if (ph, pw) != (ih, iw):
            # Reflect without repeating the edge (as torch's pad_to_multiple) where the image is big
            # enough; tiny images pad up to MIN_SIDE by replicating the edge.
            border = cv2.BORDER_REFLECT_101 if ph - ih < ih and pw - iw < iw else cv2.BORDER_REPLICATE
            img = cv2.copyMakeBorder(img, 0, ph - ih, 0, pw - iw, border)
        if self.value_range < 0:
            mean, scale, out_scale, out_offset = 127.5, 1 / 127.5, 127.5, 127.5
        else:
            mean, scale, out_scale, out_offset = 0.0, self.value_range / 255.0, 255.0 / self.value_range, 0.0
        # (1, 3, H, W) float32 = (img - mean) * scale, channels swapped for BGR models.
        x = cv2.dnn.blobFromImage(img, scalefactor=scale, mean=(mean, mean, mean), swapRB=self.bgr)
        y = self.infer(x)[0]
        planes = [y[c, :ih, :iw] for c in ((2, 1, 0) if self.bgr else (0, 1, 2))]
        hwc = cv2.merge(planes)
        out = cv2.addWeighted(hwc, out_scale, hwc, 0.0, out_offset, dtype=cv2.CV_8U)  # saturating cast
        if self.fixed_hw:
            out = cv2.resize(out, (w, h), interpolation=cv2.INTER_LINEAR)
        return out
