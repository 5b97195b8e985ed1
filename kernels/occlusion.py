"""Occlusion masks: the forward-backward consistency check and the photometric runtime check.

CuPy kernels beside their torch references (``vst.warp.consistency_mask`` / ``photometric_mask``).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from vst.kernels._cuda import ctype, cupy, kernel, launch
from vst.kernels.warp import BILINEAR_DEVICE_SRC
from vst.warp import BOUNDARY_ABS, BOUNDARY_REL, CONSISTENCY_ABS, CONSISTENCY_REL, consistency_mask, photometric_mask

_CONSISTENCY_SRC = BILINEAR_DEVICE_SRC + rf"""
extern "C" __global__ void consistency(const T* fw, const T* bw, T* mask, int h, int w) {{
    int i = blockDim.x * blockIdx.x + threadIdx.x;
    int hw = h * w;
    if (i >= hw) return;
    int x = i % w, y = i / w;
    float u = LD(fw[i]), v = LD(fw[hw + i]);
    float up = bilinear(bw, w, h, x + u, y + v), vp = bilinear(bw + hw, w, h, x + u, y + v);
    float du = u + up, dv = v + vp;
    float mag = u * u + v * v;
    bool occluded = du * du + dv * dv > {CONSISTENCY_REL}f * (mag + up * up + vp * vp) + {CONSISTENCY_ABS}f;
    int xl = max(x - 1, 0), xr = min(x + 1, w - 1), yu = max(y - 1, 0), yd = min(y + 1, h - 1);
    float grad = 0.f;
    for (int k = 0; k < 2; ++k) {{
        const T* f = fw + k * hw;
        float gx = 0.5f * (LD(f[y * w + xr]) - LD(f[y * w + xl]));
        float gy = 0.5f * (LD(f[yd * w + x]) - LD(f[yu * w + x]));
        grad += gx * gx + gy * gy;
    }}
    bool boundary = grad > {BOUNDARY_REL}f * mag + {BOUNDARY_ABS}f;
    ST(&mask[i], (occluded || boundary) ? 0.f : 1.f);
}}
"""

_PHOTOMETRIC_SRC = r"""
extern "C" __global__ void photometric(const T* a, const T* b, T* mask, int c, int hw, float threshold) {
    int i = blockDim.x * blockIdx.x + threadIdx.x;
    if (i >= hw) return;
    float err = 0.f;
    for (int k = 0; k < c; ++k) err += fabsf(LD(a[k * hw + i]) - LD(b[k * hw + i]));
    ST(&mask[i], err / c <= threshold ? 1.f : 0.f);
}
"""


def consistency_reference(flow_fw: Tensor, flow_bw: Tensor) -> Tensor:
    """Torch reference: (N, 2, H, W) x2 -> (N, 1, H, W)."""
    return consistency_mask(flow_fw, flow_bw)


def consistency_cupy(flow_fw: Any, flow_bw: Any) -> Any:
    """CuPy kernel: (1, 2, H, W) x2, same float dtype -> (1, 1, H, W) in {0, 1}."""
    cp = cupy()
    fw, bw = cp.ascontiguousarray(flow_fw), cp.ascontiguousarray(flow_bw, dtype=flow_fw.dtype)
    _, _, h, w = fw.shape
    mask = cp.empty((1, 1, h, w), fw.dtype)
    launch(kernel(_CONSISTENCY_SRC, "consistency", ctype(fw.dtype)), h * w, (fw, bw, mask, cp.int32(h), cp.int32(w)))
    return mask


def photometric_reference(frame: Tensor, warped_prev_frame: Tensor, threshold: float) -> Tensor:
    return photometric_mask(frame, warped_prev_frame, threshold)


def photometric_cupy(frame: Any, warped_prev_frame: Any, threshold: float) -> Any:
    """CuPy kernel: (1, C, H, W) x2 -> (1, 1, H, W); mean |a − b| over C <= threshold."""
    cp = cupy()
    a, b = cp.ascontiguousarray(frame), cp.ascontiguousarray(warped_prev_frame, dtype=frame.dtype)
    _, c, h, w = a.shape
    mask = cp.empty((1, 1, h, w), a.dtype)
    launch(kernel(_PHOTOMETRIC_SRC, "photometric", ctype(a.dtype)), h * w,
           (a, b, mask, cp.int32(c), cp.int32(h * w), cp.float32(threshold)))  # fmt: skip
    return mask
