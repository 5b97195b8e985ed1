"""RGB -> I420 (planar YUV 4:2:0) for the encoders, beside its numpy reference.

The reference is what the host path has always published (``cv2.cvtColor(rgb, COLOR_RGB2YUV_I420)``
in vst.stream.pipeline), bit for bit: BT.601 limited range (Y 16..235, U/V 16..240 around 128) in
OpenCV's 20-bit fixed point, rounded half up, and each chroma sample taken from the top-left pixel of
its 2x2 block (OpenCV does not average). Matching it exactly means a frame converted on the GPU
encodes to the same bytes as one converted on the host. Averaging the block would alias less, but
would change every served picture; it is left as is.

Layout, as ``av.VideoFrame.from_ndarray(yuv, format="yuv420p")`` reads it: one (H*3/2, W) uint8 array,
flat Y (H*W), then U (H/2 * W/2), then V (H/2 * W/2). H and W must be even (so does OpenCV).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vst.kernels._cuda import cupy, kernel, launch

# OpenCV's ITU-R BT.601 coefficients scaled by 2^20 (modules/imgproc/src/color_yuv: ITUR_BT_601_*).
_SHIFT = 20
_CRY, _CGY, _CBY = 269484, 528482, 102760
_CRU, _CGU, _CBU = -155188, -305135, 460324
_CGV, _CBV = -385875, -74448  # V's R coefficient is _CBU (0.439 both)

_SRC = rf"""
// One thread per 2x2 block: four Y, one U and one V (from the block's top-left pixel).
// All sums stay in 0 .. 2^28 for uint8 input: int arithmetic, and >> of a non-negative value.
extern "C" __global__ void rgb_to_i420(const unsigned char* rgb, unsigned char* yuv, int h, int w) {{
    int i = blockDim.x * blockIdx.x + threadIdx.x;
    int cw = w / 2;
    if (i >= (h / 2) * cw) return;
    int bx = i % cw, by = i / cw;
    const int half = 1 << ({_SHIFT} - 1);
    for (int dy = 0; dy < 2; ++dy)
        for (int dx = 0; dx < 2; ++dx) {{
            int p = (2 * by + dy) * w + 2 * bx + dx;
            int r = rgb[p * 3], g = rgb[p * 3 + 1], b = rgb[p * 3 + 2];
            yuv[p] = (unsigned char)(({_CRY} * r + {_CGY} * g + {_CBY} * b + half + (16 << {_SHIFT})) >> {_SHIFT});
        }}
    int p = 2 * by * w + 2 * bx;
    int r = rgb[p * 3], g = rgb[p * 3 + 1], b = rgb[p * 3 + 2];
    int n = h * w;
    yuv[n + i] = (unsigned char)(({_CRU} * r + {_CGU} * g + {_CBU} * b + half + (128 << {_SHIFT})) >> {_SHIFT});
    yuv[n + n / 4 + i] = (unsigned char)(({_CBU} * r + {_CGV} * g + {_CBV} * b + half + (128 << {_SHIFT})) >> {_SHIFT});
}}
"""


def i420_shape(h: int, w: int) -> tuple[int, int]:
    """The (H*3/2, W) shape of an I420 picture of an (H, W) frame; a one-line ValueError for odd sizes."""
    if h < 2 or w < 2 or h % 2 or w % 2:
        raise ValueError(f"I420 needs an even width and height of at least 2, got {w}x{h}")
    return h * 3 // 2, w


def rgb_to_i420_reference(rgb: np.ndarray) -> np.ndarray:
    """numpy: (H, W, 3) uint8 RGB -> (H*3/2, W) uint8 I420, equal to OpenCV's ``COLOR_RGB2YUV_I420``."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected (H, W, 3) uint8 RGB, got {rgb.shape} {rgb.dtype}")
    h, w = rgb.shape[:2]
    out = np.empty(i420_shape(h, w), np.uint8)
    flat = out.reshape(-1)
    r, g, b = (rgb[..., k].astype(np.int64) for k in range(3))
    half, n = 1 << (_SHIFT - 1), h * w
    flat[:n] = ((_CRY * r + _CGY * g + _CBY * b + half + (16 << _SHIFT)) >> _SHIFT).ravel()
    r0, g0, b0 = r[::2, ::2], g[::2, ::2], b[::2, ::2]
    flat[n : n + n // 4] = ((_CRU * r0 + _CGU * g0 + _CBU * b0 + half + (128 << _SHIFT)) >> _SHIFT).ravel()
    flat[n + n // 4 :] = ((_CBU * r0 + _CGV * g0 + _CBV * b0 + half + (128 << _SHIFT)) >> _SHIFT).ravel()
    return out


def rgb_to_i420_cupy(rgb: Any, out: Any = None, cp: Any = None) -> Any:
    """CuPy kernel: (H, W, 3) uint8 on the device -> (H*3/2, W) uint8 I420 on the device.

    ``out``: a preallocated C-contiguous (H*3/2, W) uint8 array to write (no allocation per frame).
    ``cp``: the cupy module to use (the CUDA processor passes its device's); None: ``cupy()``.
    Launches on CuPy's current stream.
    """
    cp = cp if cp is not None else cupy()
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected (H, W, 3) uint8 RGB, got {rgb.shape} {rgb.dtype}")
    h, w = rgb.shape[:2]
    shape = i420_shape(h, w)
    if out is None:
        out = cp.empty(shape, cp.uint8)
    elif out.shape != shape or out.dtype != np.uint8:
        raise ValueError(f"out must be {shape} uint8, got {out.shape} {out.dtype}")
    src = cp.ascontiguousarray(rgb)
    launch(kernel(_SRC, "rgb_to_i420", "float", cp), (h // 2) * (w // 2), (src, out, cp.int32(h), cp.int32(w)))
    return out
