"""Layout conversion: uint8 HWC RGB <-> float NCHW normalized to [-1, 1] (fp16 for the GPU engines).

The references are ``vst.imaging.GENERATOR_SPEC``'s scaling and output rounding (half to even, as
``rintf``), without the padding: these kernels convert layout only, at the frame's own size.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from vst.imaging import GENERATOR_SPEC
from vst.kernels._cuda import ctype, cupy, kernel, launch

_SRC = r"""
extern "C" __global__ void hwc_to_nchw(const unsigned char* src, T* dst, int hw) {
    int i = blockDim.x * blockIdx.x + threadIdx.x;
    if (i >= hw) return;
    for (int k = 0; k < 3; ++k) ST(&dst[k * hw + i], (float)src[i * 3 + k] / 127.5f - 1.f);
}
extern "C" __global__ void nchw_to_hwc(const T* src, unsigned char* dst, int hw) {
    int i = blockDim.x * blockIdx.x + threadIdx.x;
    if (i >= hw) return;
    for (int k = 0; k < 3; ++k) {
        float v = rintf((LD(src[k * hw + i]) + 1.f) * 127.5f);
        dst[i * 3 + k] = (unsigned char)fminf(fmaxf(v, 0.f), 255.f);
    }
}
"""


def hwc_to_nchw_reference(frame: np.ndarray, dtype: torch.dtype = torch.float16) -> Tensor:
    """(H, W, 3) uint8 -> (1, 3, H, W) ``dtype`` in [-1, 1] (scaled in float32, then cast)."""
    return GENERATOR_SPEC.scale(frame).to(dtype)


def nchw_to_hwc_reference(t: Tensor) -> np.ndarray:
    """(1, 3, H, W) in [-1, 1] -> (H, W, 3) uint8."""
    return GENERATOR_SPEC.to_frame(t)


def hwc_to_nchw_cupy(frame: Any, dtype: str = "float16") -> Any:
    """CuPy kernel: (H, W, 3) uint8 (host or device) -> (1, 3, H, W) ``dtype`` on the device."""
    cp = cupy()
    src = cp.ascontiguousarray(cp.asarray(frame, dtype=cp.uint8))
    h, w, c = src.shape
    if c != 3:
        raise ValueError(f"expected (H, W, 3) uint8, got {src.shape}")
    dst = cp.empty((1, 3, h, w), dtype)
    launch(kernel(_SRC, "hwc_to_nchw", ctype(dst.dtype)), h * w, (src, dst, cp.int32(h * w)))
    return dst


def nchw_to_hwc_cupy(t: Any) -> Any:
    """CuPy kernel: (1, 3, H, W) float16/float32 -> (H, W, 3) uint8 on the device."""
    cp = cupy()
    src = cp.ascontiguousarray(t)
    _, c, h, w = src.shape
    if c != 3:
        raise ValueError(f"expected (1, 3, H, W), got {src.shape}")
    dst = cp.empty((h, w, 3), cp.uint8)
    launch(kernel(_SRC, "nchw_to_hwc", ctype(src.dtype)), h * w, (src, dst, cp.int32(h * w)))
    return dst
