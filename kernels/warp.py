"""Backward warp with border clamp, bilinear and bicubic: CuPy kernels and their torch reference.

out[c, y, x] = img[c] sampled at (x + flow[0, y, x], y + flow[1, y, x]). Bilinear clamps the position
to the image; bicubic (Keys, A = −0.75, the kernel of torch's grid_sample and OpenCV's INTER_CUBIC)
clamps each of its 4x4 taps, which is what ``grid_sample(..., padding_mode='border',
align_corners=True)`` does for each mode.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from vst.kernels._cuda import ctype, cupy, kernel, launch
from vst.warp import backward_warp

_SRC = r"""
// Where pixel i of an (h, w) grid lands under a (2, h, w) flow: (x + flow_x, y + flow_y).
__device__ __forceinline__ void flow_target(const T* flow, int i, int w, int hw, float* fx, float* fy) {
    *fx = (float)(i % w) + LD(flow[i]);
    *fy = (float)(i / w) + LD(flow[hw + i]);
}
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
__device__ __forceinline__ void cubic_weights(float t, float* k) {
    const float A = -0.75f;  // torch grid_sample / OpenCV INTER_CUBIC
    float t1 = t + 1.f, s = 1.f - t, s1 = s + 1.f;
    k[0] = ((A * t1 - 5.f * A) * t1 + 8.f * A) * t1 - 4.f * A;
    k[1] = ((A + 2.f) * t - (A + 3.f)) * t * t + 1.f;
    k[2] = ((A + 2.f) * s - (A + 3.f)) * s * s + 1.f;
    k[3] = ((A * s1 - 5.f * A) * s1 + 8.f * A) * s1 - 4.f * A;
}
__device__ __forceinline__ float bicubic(const T* img, int w, int h, float fx, float fy) {
    float x0f = floorf(fx), y0f = floorf(fy);
    float kx[4], ky[4];
    cubic_weights(fx - x0f, kx);
    cubic_weights(fy - y0f, ky);
    int x0 = (int)x0f, y0 = (int)y0f;
    float acc = 0.f;
    for (int j = 0; j < 4; ++j) {
        int yy = min(max(y0 - 1 + j, 0), h - 1);  // per-tap clamp = padding_mode 'border'
        float row = 0.f;
        for (int i = 0; i < 4; ++i) row += kx[i] * LD(img[yy * w + min(max(x0 - 1 + i, 0), w - 1)]);
        acc += ky[j] * row;
    }
    return acc;
}
extern "C" __global__ void warp(const T* img, const T* flow, T* out, int c, int h, int w) {
    int i = blockDim.x * blockIdx.x + threadIdx.x;
    int hw = h * w;
    if (i >= hw) return;
    float fx, fy;
    flow_target(flow, i, w, hw, &fx, &fy);
    for (int k = 0; k < c; ++k) ST(&out[k * hw + i], bilinear(img + k * hw, w, h, fx, fy));
}
extern "C" __global__ void warp_bicubic(const T* img, const T* flow, T* out, int c, int h, int w) {
    int i = blockDim.x * blockIdx.x + threadIdx.x;
    int hw = h * w;
    if (i >= hw) return;
    float fx, fy;
    flow_target(flow, i, w, hw, &fx, &fy);
    for (int k = 0; k < c; ++k) ST(&out[k * hw + i], bicubic(img + k * hw, w, h, fx, fy));
}
"""

BILINEAR_DEVICE_SRC = _SRC.split('extern "C"')[0]
"""The flow target and the bilinear and bicubic samplers, shared with the blend and occlusion kernels."""

_KERNEL_NAMES = {"bilinear": "warp", "bicubic": "warp_bicubic"}


def warp_reference(img: Tensor, flow: Tensor, mode: str = "bilinear") -> Tensor:
    """Torch reference: (N, C, H, W), (N, 2, H, W) -> (N, C, H, W); mode 'bilinear' or 'bicubic'."""
    return backward_warp(img, flow, mode=mode)


def warp_cupy(img: Any, flow: Any, mode: str = "bilinear") -> Any:
    """CuPy kernel: img (1, C, H, W), flow (1, 2, H, W), same float dtype -> (1, C, H, W)."""
    if mode not in _KERNEL_NAMES:
        raise ValueError(f"warp mode must be one of {sorted(_KERNEL_NAMES)}, got {mode!r}")
    cp = cupy()
    img, flow = cp.ascontiguousarray(img), cp.ascontiguousarray(flow, dtype=img.dtype)
    _, c, h, w = img.shape
    if flow.shape != (1, 2, h, w) or img.shape[0] != 1:
        raise ValueError(f"img {img.shape} and flow {flow.shape} must be (1, C, H, W) and (1, 2, H, W)")
    out = cp.empty_like(img)
    launch(kernel(_SRC, _KERNEL_NAMES[mode], ctype(img.dtype)), h * w, (img, flow, out, cp.int32(c), cp.int32(h), cp.int32(w)))
    return out
