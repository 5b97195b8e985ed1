"""Frame <-> tensor conversion and size arithmetic: the one reference for pre/post-processing.

Frames are ``np.ndarray`` of shape (H, W, 3), dtype uint8, RGB. Our generators' tensors are float
(N, 3, H, W) in [-1, 1]. ``InputSpec`` says how a frame becomes a model input and how the output
becomes a frame again; its methods here are the reference (torch, CPU, float32) that every device
implementation is tested against (tests/unit/test_preprocessing_parity.py):

- torch-cpu / torch-cuda / tensorrt frame API: these functions themselves;
- onnxruntime / openvino (``vst.stream.backends.onnx_io``): one OpenCV pass each way;
- the CUDA processor (``vst.stream.cuda_processor.frame_to_input_``): in-place torch ops on the device;
- the CuPy layout kernels (``vst.kernels.layout``), checked through their CPU emulation;
- train/evaluate.py's ``stylize``: ``pad_to_multiple`` / ``to_tensor`` / ``to_frame`` below.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

# The generators downsample twice by 2, so H and W must be multiples of 4 to come back unchanged.
SIZE_MULTIPLE = 4

PadMode = Literal["reflect", "replicate"]


@dataclass(frozen=True)
class InputSpec:
    """How a frame is fed to a style model and read back; validated on construction (``ValueError``).

    The padding rule, and why: pad on the bottom and right only, and only up to the smallest size
    the model accepts - the next multiple of ``size_multiple``, and at least ``min_side`` - never
    further. The generators use instance norm, whose mean and variance are taken over the whole
    padded image, so every padded row or column changes every output pixel: before this rule the
    ONNX path padded a 36x52 frame up to 64x64 while torch left it as it was, and the two differed
    by up to 232 levels. Padding by mirroring without repeating the edge ('reflect', OpenCV's
    BORDER_REFLECT_101) makes the pad look like the image near the border, so the statistics move
    least; where a side is too small to mirror (the pad is not shorter than the side) both axes
    repeat the edge pixel instead ('replicate'). The output is cropped back to the frame's size.

    Rounding: output values are scaled to 0..255, rounded half to even (torch ``round``, OpenCV's
    ``saturate_cast``, CUDA ``rintf`` all do) and clamped to 0..255.
    """

    value_range: float = -1.0
    """-1: the model takes and returns [-1, 1] (our generators); 1 or 255: 0..1 or 0..255 (third-party models)."""
    channel_order: Literal["rgb", "bgr"] = "rgb"
    """Channel order of the model's input and output tensors."""
    pad_mode: PadMode = "reflect"
    """How padded rows/columns are filled where the side allows it (see the class docstring)."""
    size_multiple: int = SIZE_MULTIPLE
    """Padded H and W are multiples of this (our generators downsample twice by 2)."""
    min_side: int = 8
    """Smallest padded H or W the model runs on. Our generators: 8 (two stride-2 downsamplings leave
    2 px, which their 1-px reflection pads need)."""
    rounding: Literal["half_even"] = "half_even"
    """How float outputs become uint8 levels (the only one every runtime here does natively)."""

    def __post_init__(self) -> None:
        if self.value_range not in (-1.0, 1.0, 255.0):
            raise ValueError(f"value_range must be -1 ([-1, 1]), 1 or 255, got {self.value_range}")
        if self.channel_order not in ("rgb", "bgr"):
            raise ValueError(f"channel_order must be 'rgb' or 'bgr', got {self.channel_order!r}")
        if self.pad_mode not in ("reflect", "replicate"):
            raise ValueError(f"pad_mode must be 'reflect' or 'replicate', got {self.pad_mode!r}")
        if self.size_multiple < 1 or self.min_side < 1:
            raise ValueError(f"size_multiple and min_side must be >= 1, got {self.size_multiple}, {self.min_side}")
        if self.rounding != "half_even":
            raise ValueError(f"rounding must be 'half_even', got {self.rounding!r}")

    # ---------------------------------------------------------------- sizes

    def padded_hw(self, h: int, w: int) -> tuple[int, int]:
        """The (H, W) a frame of ``h`` x ``w`` is padded to: the smallest the model accepts."""
        m = self.size_multiple
        return max(_ceil_to(self.min_side, m), h + (-h) % m), max(_ceil_to(self.min_side, m), w + (-w) % m)

    def border(self, h: int, w: int) -> PadMode:
        """The fill for a frame of ``h`` x ``w``: ``pad_mode``, or 'replicate' where a side is too small to mirror."""
        hp, wp = self.padded_hw(h, w)
        return self.pad_mode if hp - h < h and wp - w < w else "replicate"

    # ---------------------------------------------------------------- value scale

    @property
    def input_scale(self) -> tuple[float, float]:
        """(a, b): model input = level * a + b, for levels 0..255."""
        return (1 / 127.5, -1.0) if self.value_range < 0 else (self.value_range / 255.0, 0.0)

    @property
    def output_scale(self) -> tuple[float, float]:
        """(c, d): level = model output * c + d, before rounding and clamping."""
        return (127.5, 127.5) if self.value_range < 0 else (255.0 / self.value_range, 0.0)

    # ---------------------------------------------------------------- the reference

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> (N, C, Hp, Wp) padded on the bottom/right by the rule above."""
        h, w = x.shape[-2:]
        hp, wp = self.padded_hw(h, w)
        if (hp, wp) == (h, w):
            return x
        return F.pad(x, (0, wp - w, 0, hp - h), mode=self.border(h, w))

    def scale(self, frame: np.ndarray, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """(H, W, 3) uint8 RGB -> (1, 3, H, W) ``dtype`` in the model's range and channel order, unpadded."""
        t = torch.from_numpy(np.ascontiguousarray(frame)).to(device).permute(2, 0, 1).unsqueeze(0).to(dtype)
        if self.value_range < 0:
            t = t.div_(127.5).sub_(1.0)  # these two ops in this order: the CUDA processor's are bit-identical in fp32
        elif self.value_range != 255.0:
            t = t.mul_(self.value_range / 255.0)
        return t.flip(1) if self.channel_order == "bgr" else t

    def to_input(self, frame: np.ndarray, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """(H, W, 3) uint8 RGB -> the model input (1, 3, Hp, Wp) ``dtype``: scaled, channel-ordered and padded."""
        return self.pad(self.scale(frame, device, dtype))

    def to_frame(self, y: torch.Tensor, h: int | None = None, w: int | None = None) -> np.ndarray:
        """The model output (1, 3, Hp, Wp) -> (H, W, 3) uint8 RGB, cropped to ``h`` x ``w`` (default: all of it)."""
        y = y[0, :, :h, :w].float()
        if self.channel_order == "bgr":
            y = y.flip(0)
        # (y + 1) * 127.5, not y * 127.5 + 127.5: the two differ in the last bit, and so in a tie's rounding.
        x = y.add(1.0).mul_(127.5) if self.value_range < 0 else y.mul(self.output_scale[0])
        return x.round_().clamp_(0, 255).to(torch.uint8).permute(1, 2, 0).contiguous().cpu().numpy()


def _ceil_to(n: int, m: int) -> int:
    return n + (-n) % m


GENERATOR_SPEC = InputSpec()
"""Our own generators (torch styles and their ONNX exports): [-1, 1], RGB, reflect, multiples of 4, >= 8 px."""


def fit_size(src_w: int, src_h: int, box: tuple[int, int] | None) -> tuple[int, int]:
    """The largest even (w, h) inside ``box`` with the source's aspect ratio (the source's own even size without a box)."""
    if src_w <= 0 or src_h <= 0:
        raise ValueError(f"invalid source size {src_w}x{src_h}")
    if box is None:
        w, h = src_w, src_h
    else:
        scale = min(box[0] / src_w, box[1] / src_h)
        w, h = round(src_w * scale), round(src_h * scale)
    return max(2, w - w % 2), max(2, h - h % 2)


# ---------------------------------------------------------------------- GENERATOR_SPEC, piecewise
# The generators' frame API in three steps (the CUDA engines and train/evaluate.py call them so).


def to_tensor(frame: np.ndarray, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(H, W, 3) uint8 -> (1, 3, H, W) in [-1, 1], unpadded (``GENERATOR_SPEC``'s scaling)."""
    return GENERATOR_SPEC.scale(frame, device, dtype)


def to_frame(t: torch.Tensor) -> np.ndarray:
    """(1, 3, H, W) in [-1, 1] -> (H, W, 3) uint8 (``GENERATOR_SPEC.to_frame``)."""
    return GENERATOR_SPEC.to_frame(t)


def pad_to_multiple(x: torch.Tensor, multiple: int = SIZE_MULTIPLE) -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad (N, C, H, W) as ``GENERATOR_SPEC`` does (``multiple`` overrides its size multiple); returns the original (H, W)."""
    h, w = x.shape[-2:]
    spec = GENERATOR_SPEC if multiple == GENERATOR_SPEC.size_multiple else InputSpec(size_multiple=multiple)
    return spec.pad(x), (h, w)
