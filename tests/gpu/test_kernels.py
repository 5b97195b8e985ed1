"""Each CuPy kernel against its torch reference on random inputs, per dtype (skipped without CUDA)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

cp = pytest.importorskip("cupy", reason="CuPy kernels need cupy (pip install 'vst[gpu]')")

from vst.kernels.blend import fused_blend_cupy, fused_blend_reference, lowpass_blend_cupy, lowpass_blend_reference  # noqa: E402
from vst.kernels.layout import hwc_to_nchw_cupy, hwc_to_nchw_reference, nchw_to_hwc_cupy, nchw_to_hwc_reference  # noqa: E402
from vst.kernels.occlusion import consistency_cupy, consistency_reference, photometric_cupy, photometric_reference  # noqa: E402
from vst.kernels.warp import warp_cupy, warp_reference  # noqa: E402

# Max abs error of a kernel vs its fp32 reference; fp16 storage rounds inputs and outputs.
TOL = {torch.float32: 1e-4, torch.float16: 2e-2}
# Masks are thresholds: a pixel within rounding of the threshold may flip; allow this fraction.
MASK_FLIP = {torch.float32: 1e-3, torch.float16: 2e-2}
DTYPES = [torch.float32, torch.float16]
H, W = 67, 131  # odd sizes catch indexing bugs


def _cp(t: torch.Tensor):  # noqa: ANN202
    return cp.asarray(t.contiguous())


def _t(a) -> torch.Tensor:  # noqa: ANN001
    return torch.as_tensor(a, device="cuda")


def _rand_flow(g: torch.Generator, scale: float = 6.0) -> torch.Tensor:
    return (torch.randn(1, 2, H, W, device="cuda", generator=g) * scale).float()


@pytest.mark.parametrize("mode", ["bilinear", "bicubic"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_warp(cuda: torch.device, dtype: torch.dtype, mode: str) -> None:
    g = torch.Generator(cuda).manual_seed(0)
    img = torch.rand(1, 3, H, W, device=cuda, generator=g).to(dtype)
    flow = _rand_flow(g).to(dtype)  # up to ~20 px: many samples fall off the border
    ref = warp_reference(img.float(), flow.float(), mode)
    out = _t(warp_cupy(_cp(img), _cp(flow), mode)).float()
    assert (out - ref).abs().max() <= TOL[dtype] * (2 if mode == "bicubic" else 1)  # 16 taps, overshoot


@pytest.mark.parametrize("dtype", DTYPES)
def test_consistency(cuda: torch.device, dtype: torch.dtype) -> None:
    g = torch.Generator(cuda).manual_seed(1)
    fw = torch.nn.functional.avg_pool2d(_rand_flow(g, 4.0), 9, 1, 4).to(dtype)  # smooth-ish flows
    bw = (-fw.float() + 0.3 * torch.randn(1, 2, H, W, device=cuda, generator=g)).to(dtype)
    ref = consistency_reference(fw.float(), bw.float())
    out = _t(consistency_cupy(_cp(fw), _cp(bw))).float()
    assert out.shape == ref.shape
    assert (out != ref).float().mean() <= MASK_FLIP[dtype]


@pytest.mark.parametrize("dtype", DTYPES)
def test_photometric(cuda: torch.device, dtype: torch.dtype) -> None:
    g = torch.Generator(cuda).manual_seed(2)
    a = torch.rand(1, 3, H, W, device=cuda, generator=g).to(dtype)
    b = torch.rand(1, 3, H, W, device=cuda, generator=g).to(dtype)
    ref = photometric_reference(a.float(), b.float(), 0.3)
    out = _t(photometric_cupy(_cp(a), _cp(b), 0.3)).float()
    assert (out != ref).float().mean() <= MASK_FLIP[dtype]


@pytest.mark.parametrize("dtype", DTYPES)
def test_fused_blend(cuda: torch.device, dtype: torch.dtype) -> None:
    g = torch.Generator(cuda).manual_seed(3)
    cur, prev_in, prev_out, styl = (torch.rand(1, 3, H, W, device=cuda, generator=g).to(dtype) for _ in range(4))
    prev_in = (0.7 * cur.float() + 0.3 * prev_in.float()).to(dtype)  # part matches, part occluded
    flow = (0.3 * _rand_flow(g)).to(dtype)
    ref = fused_blend_reference(cur.float(), prev_in.float(), prev_out.float(), styl.float(), flow.float(), 0.6, 0.12)
    out = _t(fused_blend_cupy(*(_cp(x) for x in (cur, prev_in, prev_out, styl, flow)), 0.6, 0.12)).float()
    bad = (out - ref).abs().amax(dim=1) > TOL[dtype]
    assert bad.float().mean() <= MASK_FLIP[dtype]  # only mask flips may differ


@pytest.mark.parametrize("dtype", DTYPES)
def test_lowpass_blend(cuda: torch.device, dtype: torch.dtype) -> None:
    """The runtime default (BlendStage 'lowpass'): bicubic warp, mask, σ 0.95 blur, budgeted soft threshold."""
    g = torch.Generator(cuda).manual_seed(5)
    cur, prev_in, prev_out, styl = (torch.rand(1, 3, H, W, device=cuda, generator=g).to(dtype) for _ in range(4))
    prev_in = (0.7 * cur.float() + 0.3 * prev_in.float()).to(dtype)
    flow = (0.3 * _rand_flow(g)).to(dtype)
    # alpha, threshold, sigma, shrink, budget (on the [0, 1] scale). Here mean |v| is ~0.007, so a
    # budget of 0.002 binds: the device-side threshold and the shrink kernel are really exercised.
    args = (0.9, 0.12, 0.95, 0.0, 0.002)
    ref = lowpass_blend_reference(cur.float(), prev_in.float(), prev_out.float(), styl.float(), flow.float(), *args)
    free = lowpass_blend_reference(cur.float(), prev_in.float(), prev_out.float(), styl.float(), flow.float(), *args[:4])
    assert float((ref - styl.float()).abs().mean()) < 0.5 * float((free - styl.float()).abs().mean())
    out = _t(lowpass_blend_cupy(*(_cp(x) for x in (cur, prev_in, prev_out, styl, flow)), *args)).float()
    assert out.shape == ref.shape
    bad = (out - ref).abs().amax(dim=1) > TOL[dtype]
    # a mask flip changes its pixel and, through the blur, up to 3 px around it
    assert bad.float().mean() <= 49 * MASK_FLIP[dtype]


@pytest.mark.parametrize("dtype", DTYPES)
def test_layout_roundtrip(cuda: torch.device, dtype: torch.dtype) -> None:
    frame = np.random.default_rng(4).integers(0, 256, (H, W, 3), dtype=np.uint8)
    name = "float16" if dtype == torch.float16 else "float32"
    ref = hwc_to_nchw_reference(frame, dtype)
    out = _t(hwc_to_nchw_cupy(frame, name)).cpu()
    assert out.dtype == dtype and (out.float() - ref.float()).abs().max() <= TOL[dtype]
    back = cp.asnumpy(nchw_to_hwc_cupy(hwc_to_nchw_cupy(frame, name)))
    np.testing.assert_array_equal(back, nchw_to_hwc_reference(ref.float()))
    np.testing.assert_array_equal(back, frame)
