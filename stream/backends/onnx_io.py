"""What the ONNX-running engines share: which ONNX file a style runs as, and frame <-> tensor.

onnxruntime and OpenVINO run the same file with the same conventions, so a frame goes in and
comes out identically on both; only ``infer`` differs. The conversions implement the style's
``vst.imaging.InputSpec`` (the reference) in OpenCV, and are tested against it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from vst.imaging import GENERATOR_SPEC, InputSpec
from vst.stream.engine import EngineBase
from vst.styles import Style

log = logging.getLogger("vst.engine.onnx")

THIRD_PARTY_MIN_SIDE = 44
"""Smallest padded side of an imported model whose sidecar does not say (``onnx_min_side``):
fast-neural-style graphs (candy) reflect-pad 40 px inside, so a side must exceed 40, and 44 is the
smallest multiple of 4 that does. Padding further would change the picture (see ``InputSpec``)."""

CHECK_HW = (64, 64)
"""A size every model accepts, used to compile or probe a model once at start-up."""


def onnx_input_spec(style: Style, meta: dict[str, Any]) -> InputSpec:
    """The ``InputSpec`` of the ONNX file ``style`` runs as: our generators' own for our exports, else
    what the imported model's sidecar recorded (value range, channel order, minimum side)."""
    if style.kind != "onnx":
        return GENERATOR_SPEC
    return InputSpec(value_range=float(meta.get("onnx_value_range", 255.0)),
                     channel_order="bgr" if meta.get("onnx_channel_order") == "bgr" else "rgb",
                     min_side=int(meta.get("onnx_min_side", THIRD_PARTY_MIN_SIDE)))  # fmt: skip


def style_onnx(style: Style) -> tuple[Path, dict[str, Any]]:
    """The ONNX file ``style`` runs as and its I/O conventions (the sidecar keys ``onnx_*``).

    Imported ONNX styles run as they are; our torch styles go through ``vst.export`` (cached).
    """
    if style.kind == "onnx":
        return style.weights, style.meta
    from vst.export.onnx_export import INPUT_NAME, cached_onnx

    return cached_onnx(style), {"onnx_input": INPUT_NAME, "onnx_value_range": -1.0}


class OnnxFrameEngine(EngineBase):
    """Frame API over an ``infer`` on (1, 3, H, W) float32 tensors in the model's own range.

    Subclasses call ``_setup_io(style, meta)`` and implement ``infer``.
    """

    input: str | None
    """The image input's name (None: the model's first input, resolved by the subclass)."""
    feeds: dict[str, np.ndarray]
    """Constant non-image inputs (e.g. a one-hot style vector)."""
    fixed_hw: tuple[int, int] | None
    """(H, W) the model only accepts; frames are resized to it and back."""
    spec: InputSpec
    """Value range, channel order and padding (the reference lives in ``vst.imaging``)."""

    def _setup_io(self, style: Style, meta: dict[str, Any]) -> None:
        from vst.onnx_styles import extra_inputs

        self.meta = meta
        self.spec = onnx_input_spec(style, meta)
        self.feeds = extra_inputs(meta)
        self.input = meta.get("onnx_input")
        fixed = meta.get("onnx_fixed_hw")
        self.fixed_hw = (int(fixed[0]), int(fixed[1])) if fixed else None

    @property
    def value_range(self) -> float:
        """-1 marks our own [-1, 1] models; 1 or 255 are third-party 0..1 / 0..255 models (``spec``'s)."""
        return self.spec.value_range

    @property
    def bgr(self) -> bool:
        """The model wants BGR channel order (``spec``'s)."""
        return self.spec.channel_order == "bgr"

    def infer(self, x: np.ndarray) -> np.ndarray:
        """(1, 3, H, W) float32 in the model's range -> its (1, 3, H, W) float32 output."""
        raise NotImplementedError

    def input_hw(self, height: int, width: int) -> tuple[int, int]:
        """The (H, W) tensor ``infer`` gets for a frame of ``height`` x ``width``."""
        h, w = self.fixed_hw or (height, width)
        return self.spec.padded_hw(h, w)

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 RGB -> (H, W, 3) uint8 RGB, stylized.

        ``self.spec`` in OpenCV, one C++ pass each way, rounding half to even as the reference
        (``InputSpec.to_frame``) does: at 640x360 the numpy version took 4-7 ms, a tenth of bf16 inference.
        """
        h, w = frame.shape[:2]
        img = frame if not self.fixed_hw else cv2.resize(frame, (self.fixed_hw[1], self.fixed_hw[0]), interpolation=cv2.INTER_AREA)
        ih, iw = img.shape[:2]
        spec = self.spec
        ph, pw = spec.padded_hw(ih, iw)
        if (ph, pw) != (ih, iw):
            border = cv2.BORDER_REFLECT_101 if spec.border(ih, iw) == "reflect" else cv2.BORDER_REPLICATE
            img = cv2.copyMakeBorder(img, 0, ph - ih, 0, pw - iw, border)
        (a, b), (c, d) = spec.input_scale, spec.output_scale
        bgr = spec.channel_order == "bgr"
        # (1, 3, H, W) float32 = (img - mean) * scale, channels swapped for BGR models.
        x = cv2.dnn.blobFromImage(img, scalefactor=a, mean=(-b / a,) * 3, swapRB=bgr)
        y = self.infer(x)[0]
        planes = [y[k, :ih, :iw] for k in ((2, 1, 0) if bgr else (0, 1, 2))]
        hwc = cv2.merge(planes)
        out = cv2.addWeighted(hwc, c, hwc, 0.0, d, dtype=cv2.CV_8U)  # y * c + d, rounded half to even, saturated
        if self.fixed_hw:
            out = cv2.resize(out, (w, h), interpolation=cv2.INTER_LINEAR)
        return out
