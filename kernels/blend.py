"""The runtime blend step on the GPU: warp x_{t−1} and out_{t−1}, photometric mask, blend.

``lowpass_blend`` is the runtime default (``BlendStage`` mode 'lowpass'), beside its torch reference
(a composition of ``vst.warp`` functions):
out = G + S_b(α·m·blur_σ(warp_bicubic(out_{t−1}) − G)). The blur needs neighbours, so it is four
kernels: warp + mask + difference, a horizontal blur pass, a vertical pass fused with the mask,
then the soft threshold and add. Between the last two, b is raised to meet the |out − G| budget
(``vst.warp.budget_threshold``: a sort of a quarter of the pixels, on the device; b stays a device
scalar, so the host never waits for it). A scene cut (fewer than ``cut_fraction`` of the pixels pass
the mask) sets b to infinity on the device: the output is G and the history restarts from it, as
``BlendStage`` does.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from vst.kernels._cuda import ctype, cupy, kernel, launch
from vst.kernels.warp import BILINEAR_DEVICE_SRC
from vst.warp import backward_warp, blend_lowpass, blur_radius, photometric_mask

_MASK_DEVICE_SRC = BILINEAR_DEVICE_SRC + r"""
// alpha where mean_k |cur − bilinear(prev_in) at (fx, fy)| <= threshold (the pixel is not occluded), else 0.
__device__ __forceinline__ float masked_alpha(const T* cur, const T* prev_in, int i, int c, int h, int w,
                                              float fx, float fy, float alpha, float threshold) {
    int hw = h * w;
    float err = 0.f;
    for (int k = 0; k < c; ++k) err += fabsf(LD(cur[k * hw + i]) - bilinear(prev_in + k * hw, w, h, fx, fy));
    return err / c <= threshold ? alpha : 0.f;
}
"""

_LOWPASS_SRC = _MASK_DEVICE_SRC + r"""
// d = clamp(warp_bicubic(prev_out)) − styl (all pixels: the blur reads neighbours), am = α·photometric
// mask. With rc > 0 the warped history is clamped to styl's min..max over the (2rc+1)² window that
// stops at the border (the neighbourhood clamp).
extern "C" __global__ void lowpass_prep(const T* cur, const T* prev_in, const T* prev_out, const T* styl,
                                        const T* flow, float* d, float* am, int c, int h, int w,
                                        float alpha, float threshold, int rc) {
    int i = blockDim.x * blockIdx.x + threadIdx.x;
    int hw = h * w;
    if (i >= hw) return;
    float fx, fy;
    flow_target(flow, i, w, hw, &fx, &fy);
    am[i] = masked_alpha(cur, prev_in, i, c, h, w, fx, fy, alpha, threshold);
    int x = i % w, y = i / w;
    int y0 = max(y - rc, 0), y1 = min(y + rc, h - 1), x0 = max(x - rc, 0), x1 = min(x + rc, w - 1);
    for (int k = 0; k < c; ++k) {
        const T* plane = styl + k * hw;
        float g = LD(plane[i]), v = bicubic(prev_out + k * hw, w, h, fx, fy);
        if (rc > 0) {
            float lo = g, hi = g;
            for (int yy = y0; yy <= y1; ++yy)
                for (int xx = x0; xx <= x1; ++xx) {
                    float s = LD(plane[yy * w + xx]);
                    lo = fminf(lo, s);
                    hi = fmaxf(hi, s);
                }
            v = fminf(fmaxf(v, lo), hi);
        }
        d[k * hw + i] = v - g;
    }
}
// Horizontal Gaussian pass over (C, H, W), replicate border; taps = 2r+1 weights.
extern "C" __global__ void blur_h(const float* src, float* dst, const float* taps, int r, int c, int h, int w) {
    int i = blockDim.x * blockIdx.x + threadIdx.x;
    if (i >= c * h * w) return;
    int x = i % w, row = i - x;
    float acc = 0.f;
    for (int j = -r; j <= r; ++j) acc += taps[j + r] * src[row + min(max(x + j, 0), w - 1)];
    dst[i] = acc;
}
// Vertical pass times the mask: the deviation v = am·blur(d).
extern "C" __global__ void blur_v_mask(const float* src, const float* am, float* dev,
                                       const float* taps, int r, int c, int h, int w) {
    int i = blockDim.x * blockIdx.x + threadIdx.x;
    int hw = h * w;
    if (i >= c * hw) return;
    int p = i % hw, x = p % w, y = p / w, plane = i - p;
    float acc = 0.f;
    for (int j = -r; j <= r; ++j) acc += taps[j + r] * src[plane + min(max(y + j, 0), h - 1) * w + x];
    dev[i] = am[p] * acc;
}
// out = styl + S_b(v), S_b(v) = v − clamp(v, −b, b); b is a device scalar.
extern "C" __global__ void shrink_add(const float* dev, const float* b, const T* styl, T* out, int n) {
    int i = blockDim.x * blockIdx.x + threadIdx.x;
    if (i >= n) return;
    float v = dev[i], t = *b;
    ST(&out[i], LD(styl[i]) + (v - fminf(fmaxf(v, -t), t)));  // parenthesized: b = inf gives styl exactly
}
"""


def gaussian_taps(sigma: float) -> list[float]:
    """The normalized 1-D Gaussian of ``vst.warp.gaussian_blur`` (radius ``blur_radius(σ)``), as floats."""
    import math

    radius = blur_radius(sigma)
    k = [math.exp(-0.5 * (x / sigma) ** 2) for x in range(-radius, radius + 1)]
    total = sum(k)
    return [v / total for v in k]


def lowpass_blend_reference(cur: Tensor, prev_in: Tensor, prev_out: Tensor, stylized: Tensor, flow: Tensor,
                            alpha: float, threshold: float, sigma: float, shrink: float,
                            budget: float | None = None, *, clamp: int = 0) -> Tensor:  # fmt: skip
    """Torch reference of ``BlendStage`` mode 'lowpass'. Images (N, C, H, W) in one value range, flow t -> t-1."""
    mask = photometric_mask(cur, backward_warp(prev_in, flow), threshold)
    warped = backward_warp(prev_out, flow, mode="bicubic")
    return blend_lowpass(stylized, warped, mask, alpha, sigma, shrink, budget, clamp)


def budget_threshold_cupy(dev: Any, budget: float, shrink: float, stride: int = 2) -> Any:
    """``vst.warp.budget_threshold`` of a (C, H, W) float32 array, at least ``shrink``, as a device scalar."""
    cp = cupy()
    v = cp.abs(dev[:, ::stride, ::stride]).ravel().astype(cp.float64)
    top = cp.cumsum(cp.sort(v)[::-1])  # sums of the k largest
    k = cp.arange(1, v.size + 1, dtype=cp.float64)
    return cp.maximum(((top - v.size * budget) / k).max(), shrink).astype(cp.float32)


def lowpass_blend_cupy(cur: Any, prev_in: Any, prev_out: Any, stylized: Any, flow: Any,
                       alpha: float, threshold: float, sigma: float, shrink: float,
                       budget: float | None = None, cut_fraction: float = 0.0, *, clamp: int = 0) -> Any:  # fmt: skip
    """CuPy kernels with the reference's arguments; arrays (1, C, H, W) / (1, 2, H, W), one float dtype.

    ``cut_fraction`` > 0 adds ``BlendStage``'s scene cut: below that fraction of unoccluded pixels the
    output is ``stylized`` itself (decided on the device; the reference has no cut, hence 0 by default).
    ``clamp`` is the neighbourhood clamp's radius (``BlendConfig.clamp``; 0 = off).

    Intermediates are float32 whatever the storage dtype, so fp16 rounds only inputs and output.
    """
    cp = cupy()
    dt = cur.dtype
    arrs = [cp.ascontiguousarray(a, dtype=dt) for a in (cur, prev_in, prev_out, stylized, flow)]
    _, c, h, w = arrs[0].shape
    t = ctype(dt)
    d = cp.empty((c, h, w), cp.float32)
    rows = cp.empty_like(d)
    am = cp.empty((h, w), cp.float32)
    taps = cp.asarray(gaussian_taps(sigma), dtype=cp.float32)
    r = cp.int32((taps.size - 1) // 2)
    ci, hi, wi = cp.int32(c), cp.int32(h), cp.int32(w)
    out = cp.empty_like(arrs[0])
    launch(kernel(_LOWPASS_SRC, "lowpass_prep", t), h * w, (*arrs, d, am, ci, hi, wi, cp.float32(alpha), cp.float32(threshold), cp.int32(clamp)))
    launch(kernel(_LOWPASS_SRC, "blur_h", t), c * h * w, (d, rows, taps, r, ci, hi, wi))
    launch(kernel(_LOWPASS_SRC, "blur_v_mask", t), c * h * w, (rows, am, d, taps, r, ci, hi, wi))  # d is free again
    b = cp.full((), shrink, cp.float32) if budget is None else budget_threshold_cupy(d, budget, shrink)
    if cut_fraction > 0:  # alpha > 0 here, so am > 0 exactly where the mask passes; b = inf makes out = G
        b = cp.where(cp.count_nonzero(am) < cut_fraction * h * w, cp.float32(cp.inf), b).astype(cp.float32)
    launch(kernel(_LOWPASS_SRC, "shrink_add", t), c * h * w, (d, b, arrs[3], out, cp.int32(c * h * w)))
    return out
