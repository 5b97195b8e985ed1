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

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 RGB -> (H, W, 3) uint8 RGB, stylized."""
        h, w = frame.shape[:2]
        img = frame if not self.fixed_hw else cv2.resize(frame, (self.fixed_hw[1], self.fixed_hw[0]), interpolation=cv2.INTER_AREA)
        if self.bgr:
            img = img[..., ::-1]
        x = np.ascontiguousarray(img.transpose(2, 0, 1)[None], dtype=np.float32)
        if self.value_range < 0:
            x = x / 127.5 - 1.0
        else:
            x *= self.value_range / 255.0
        # Pad to multiples of 4 (two stride-2 downsamplings) and to at least MIN_SIDE.
        hp = max(MIN_SIDE, x.shape[2] + (-x.shape[2]) % 4) - x.shape[2]
        wp = max(MIN_SIDE, x.shape[3] + (-x.shape[3]) % 4) - x.shape[3]
        if hp or wp:
            x = np.pad(x, ((0, 0), (0, 0), (0, hp), (0, wp)), mode="reflect" if hp < x.shape[2] and wp < x.shape[3] else "edge")
        y = self.infer(np.ascontiguousarray(x))[0, :, : img.shape[0], : img.shape[1]]
        y = (y + 1.0) * 127.5 if self.value_range < 0 else y * (255.0 / self.value_range)
        out = np.clip(y.transpose(1, 2, 0) + 0.5, 0, 255).astype(np.uint8)
        if self.bgr:
            out = np.ascontiguousarray(out[..., ::-1])
        if self.fixed_hw:
            out = cv2.resize(out, (w, h), interpolation=cv2.INTER_LINEAR)
        return out
