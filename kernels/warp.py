"""Backward-warp samplers with border clamp, bilinear and bicubic, as CUDA device functions.

They are not kernels of their own: the blend kernels (``vst.kernels.blend``) sample through them, and
the blend's tests check them against ``vst.warp.backward_warp``.

out[c, y, x] = img[c] sampled at (x + flow[0, y, x], y + flow[1, y, x]). Bilinear clamps the position
to the image; bicubic (Keys, A = −0.75, the kernel of torch's grid_sample and OpenCV's INTER_CUBIC)
clamps each of its 4x4 taps, which is what ``grid_sample(..., padding_mode='border',
align_corners=True)`` does for each mode.
"""

from __future__ import annotations

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
"""

BILINEAR_DEVICE_SRC = _SRC
"""The flow target and the bilinear and bicubic samplers, shared by the blend kernels."""
