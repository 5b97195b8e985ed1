"""The runtime blend step fused into one kernel: warp x_{t−1} and out_{t−1}, photometric mask, blend.

Fusing pays here: the unfused chain reads and writes four full-frame intermediates (two warps,
the mask, the blend); the fused kernel reads each input once and writes the output once.
The torch reference is the composition of ``vst.warp`` functions.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from vst.kernels._cuda import ctype, cupy, kernel, launch
from vst.kernels.warp import BILINEAR_DEVICE_SRC
from vst.warp import backward_warp, blend, photometric_mask

_SRC = BILINEAR_DEVICE_SRC + r"""
extern "C" __global__ void fused_blend(const T* cur, const T* prev_in, const T* prev_out, const T* styl,
                                       const T* flow, T* out, int c, int h, int w, float alpha, float threshold) {
    int i = blockDim.x * blockIdx.x + threadIdx.x;
    int hw = h * w;
    if (i >= hw) return;
    float fx = (float)(i % w) + LD(flow[i]);
    float fy = (float)(i / w) + LD(flow[hw + i]);
    float err = 0.f;
    for (int k = 0; k < c; ++k) err += fabsf(LD(cur[k * hw + i]) - bilinear(prev_in + k * hw, w, h, fx, fy));
    float am = err / c <= threshold ? alpha : 0.f;
    for (int k = 0; k < c; ++k) {
        float g = LD(styl[k * hw + i]);
        float wp = am > 0.f ? bilinear(prev_out + k * hw, w, h, fx, fy) : g;  // occluded: skip the fetch
        ST(&out[k * hw + i], g + am * (wp - g));
    }
}
"""


def fused_blend_reference(cur: Tensor, prev_in: Tensor, prev_out: Tensor, stylized: Tensor, flow: Tensor,
                          alpha: float, threshold: float) -> Tensor:  # fmt: skip
    """Torch reference. All images (N, C, H, W) in one value range, flow (N, 2, H, W) t -> t-1."""
    mask = photometric_mask(cur, backward_warp(prev_in, flow), threshold)
    return blend(stylized, backward_warp(prev_out, flow), mask, alpha)


def fused_blend_cupy(cur: Any, prev_in: Any, prev_out: Any, stylized: Any, flow: Any, alpha: float, threshold: float) -> Any:
    """CuPy kernel with the reference's arguments; arrays (1, C, H, W) / (1, 2, H, W), one float dtype."""
    cp = cupy()
    dt = cur.dtype
    arrs = [cp.ascontiguousarray(a, dtype=dt) for a in (cur, prev_in, prev_out, stylized, flow)]
    _, c, h, w = arrs[0].shape
    out = cp.empty_like(arrs[0])
    launch(kernel(_SRC, "fused_blend", ctype(dt)), h * w,
           (*arrs, out, cp.int32(c), cp.int32(h), cp.int32(w), cp.float32(alpha), cp.float32(threshold)))  # fmt: skip
    return out
