"""Backward bilinear warp with border clamp: CuPy kernel and its torch reference.

out[c, y, x] = img[c] sampled at (x + flow[0, y, x], y + flow[1, y, x]), the position clamped to the
image, which is what ``grid_sample(..., padding_mode='border', align_corners=True)`` does.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from vst.kernels._cuda import ctype, cupy, kernel, launch
from vst.warp import backward_warp

_SRC = r"""
__device__ __forceinline__ float bilinear(const T* img, int w, int h, float fx, float fy) {
    fx = fminf(fmaxf(fx, 0.f), (float)(w - 1));
    fy = fminf(fmaxf(fy, 0.f), (float)(h - 1));
    int x0 = (int)floorf(fx), y0 = (int)floorf(fy);
    int x1 = min(x0 + 1, w - 1), y1 = min(y0 + 1, h - 1);
    float ax = fx - x0, ay = fy - y0;
    float top = LD(img[y0 * w + x0]) * (1.f - ax) + LD(img[y0 * w + x1]) * ax;
    float bot = LD(img[y1 * w + x0]) * (1.f - ax) + LD(img[y1 * w + x1]) * ax;
    return top * (1.f - ay) + bot * ay;
}
extern "C" __global__ void warp(const T* img, const T* flow, T* out, int c, int h, int w) {
    int i = blockDim.x * blockIdx.x + threadIdx.x;
    int hw = h * w;
    if (i >= hw) return;
    float fx = (float)(i % w) + LD(flow[i]);
    float fy = (float)(i / w) + LD(flow[hw + i]);
    for (int k = 0; k < c; ++k) ST(&out[k * hw + i], bilinear(img + k * hw, w, h, fx, fy));
}
"""

BILINEAR_DEVICE_SRC = _SRC.split('extern "C"')[0]
"""The bilinear sampler, shared with the fused blend kernel."""


def warp_reference(img: Tensor, flow: Tensor) -> Tensor:
    """Torch reference: (N, C, H, W), (N, 2, H, W) -> (N, C, H, W)."""
    return backward_warp(img, flow)


def warp_cupy(img: Any, flow: Any) -> Any:
    """CuPy kernel: img (1, C, H, W), flow (1, 2, H, W), same float dtype -> (1, C, H, W)."""
    cp = cupy()
    img, flow = cp.ascontiguousarray(img), cp.ascontiguousarray(flow, dtype=img.dtype)
    _, c, h, w = img.shape
    if flow.shape != (1, 2, h, w) or img.shape[0] != 1:
        raise ValueError(f"img {img.shape} and flow {flow.shape} must be (1, C, H, W) and (1, 2, H, W)")
    out = cp.empty_like(img)
    launch(kernel(_SRC, "warp", ctype(img.dtype)), h * w, (img, flow, out, cp.int32(c), cp.int32(h), cp.int32(w)))
    return out
