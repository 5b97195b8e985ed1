"""Each vst.kernels wrapper against its torch reference on random inputs: the cases, run by two rigs.

tests/gpu/test_kernels.py runs them with CuPy on a CUDA device; tests/unit/test_kernels_cpu_emulation.py
runs the same CUDA sources on the CPU (tests/unit/cuda_emulation.py). A rig says where the inputs live,
how tensors cross to the kernels' arrays and back, and the tolerances it is held to. (tests/ is on
sys.path as the rootdir of tests/conftest.py under pytest's default prepend import mode.)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import torch
from torch import Tensor

from vst.kernels.blend import lowpass_blend_cupy, lowpass_blend_reference
from vst.kernels.layout import hwc_to_nchw_cupy, hwc_to_nchw_reference, nchw_to_hwc_cupy, nchw_to_hwc_reference
from vst.warp import backward_warp, photometric_mask

DTYPES = [torch.float32, torch.float16]
H, W = 67, 131  # odd sizes catch indexing bugs
# A pixel whose photometric error is this close to the threshold may fall either way: the reference's
# grid_sample loses ~1e-5 px in its round trip through [-1, 1] coordinates.
MASK_MARGIN = 1e-4
BLUR_RADIUS = 3  # of the σ 0.95 blur: a mask flip reaches the 7x7 pixels around it
LOWPASS_ARGS = (0.9, 0.12, 0.95, 0.0)  # alpha, threshold, sigma, shrink (on the [0, 1] scale)
# Here mean |v| is ~0.007, so this budget binds: the device-side threshold and the shrink really act.
BINDING_BUDGET = 0.002


@dataclass(frozen=True)
class KernelRig:
    """Where a kernel case makes its inputs, how tensors cross to the kernels and back, what it must meet."""

    device: torch.device
    """The torch device of the inputs and references."""
    to_array: Callable[[Tensor], Any]
    """A contiguous tensor -> the array the kernel wrappers take (cupy or numpy)."""
    to_tensor: Callable[[Any], Tensor]
    """A kernel wrapper's output array -> a tensor on ``device``."""
    atol: Mapping[torch.dtype, float]
    """Absolute tolerance per dtype (see ``rtol``)."""
    rtol: Mapping[torch.dtype, float]
    """A kernel output may differ from its fp32 reference (on inputs already rounded to the dtype) by
    atol + rtol·|reference|, per dtype; rtol covers fp16's rounding of the output (half an ulp)."""
    mask_flip: Mapping[torch.dtype, float]
    """Masks are thresholds: the fraction of a mask's pixels allowed to fall the other way (rounding), per dtype."""


def _run(rig: KernelRig, fn: Callable[..., Any], tensors: tuple[Tensor, ...], *args: Any, **kwargs: Any) -> Tensor:
    """``fn`` on the tensors as kernel arrays, then ``args`` and ``kwargs``; its output as a float32 tensor."""
    return rig.to_tensor(fn(*(rig.to_array(t.contiguous()) for t in tensors), *args, **kwargs)).float()


def _beyond(rig: KernelRig, dtype: torch.dtype, out: Tensor, ref: Tensor, scale: float = 1.0) -> Tensor:
    """Where |out − ref| > scale·atol + rtol·|ref|."""
    return (out - ref).abs() > scale * rig.atol[dtype] + rig.rtol[dtype] * ref.abs()


def _rand(g: torch.Generator, rig: KernelRig, dtype: torch.dtype, channels: int = 3) -> Tensor:
    return torch.rand(1, channels, H, W, device=rig.device, generator=g).to(dtype)


def _rand_flow(g: torch.Generator, rig: KernelRig, scale: float = 6.0) -> Tensor:
    return (torch.randn(1, 2, H, W, device=rig.device, generator=g) * scale).float()


def _blend_inputs(rig: KernelRig, dtype: torch.dtype, seed: int) -> tuple[Tensor, ...]:
    """cur, prev_in, prev_out, stylized, flow in ``dtype``: part of prev_in matches cur, part is occluded."""
    g = torch.Generator(rig.device).manual_seed(seed)
    cur, prev_in, prev_out, styl = (_rand(g, rig, dtype) for _ in range(4))
    prev_in = (0.7 * cur.float() + 0.3 * prev_in.float()).to(dtype)
    return cur, prev_in, prev_out, styl, (0.3 * _rand_flow(g, rig)).to(dtype)


def _blend_error(rig: KernelRig, dtype: torch.dtype, inputs: tuple[Tensor, ...], threshold: float,
                 out: Tensor, ref: Tensor, radius: int) -> float:  # fmt: skip
    """Max abs error. A pixel may be off by more than the tolerance only within ``radius`` of a pixel whose
    photometric mask may flip (its reference error within MASK_MARGIN of the threshold)."""
    assert out.shape == ref.shape
    cur, prev_in, flow = (inputs[i].float() for i in (0, 1, 4))
    photo = (cur - backward_warp(prev_in, flow)).abs().mean(dim=1, keepdim=True)
    assert 0.02 < float((photo <= threshold).float().mean()) < 0.98  # blended and occluded pixels both (~8%)
    near = ((photo - threshold).abs() <= MASK_MARGIN).float()
    may_flip = torch.nn.functional.max_pool2d(near, 2 * radius + 1, 1, radius) > 0
    bad = _beyond(rig, dtype, out, ref).any(dim=1, keepdim=True) & ~may_flip
    err = float((out - ref).abs().max())
    assert not bad.any(), (int(bad.sum()), err)
    return err


def check_lowpass_blend(rig: KernelRig, dtype: torch.dtype, budget: float | None, clamp: int = 0) -> float:
    """The runtime default (BlendStage 'lowpass'): bicubic warp, neighbourhood clamp, mask, blur, soft
    threshold; max abs error."""
    inputs = _blend_inputs(rig, dtype, 5)
    floats = tuple(x.float() for x in inputs)
    # The reference in full fp32: cuDNN would otherwise run the blur's convolutions in TF32 (~1e-3 relative).
    with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
        ref = lowpass_blend_reference(*floats, *LOWPASS_ARGS, budget, clamp=clamp)
        if clamp:  # the clamp must act, or its code is not tested
            loose = lowpass_blend_reference(*floats, *LOWPASS_ARGS, budget)
            assert float((ref - loose).abs().max()) > 0.01
        if budget is not None:  # the budget must bind, or the threshold code is not tested
            free = lowpass_blend_reference(*floats, *LOWPASS_ARGS, clamp=clamp)
            styl = floats[3]
            assert float((ref - styl).abs().mean()) < 0.5 * float((free - styl).abs().mean())
    out = _run(rig, lowpass_blend_cupy, inputs, *LOWPASS_ARGS, budget, clamp=clamp)
    return _blend_error(rig, dtype, inputs, LOWPASS_ARGS[1], out, ref, BLUR_RADIUS)


def check_lowpass_scene_cut(rig: KernelRig, dtype: torch.dtype) -> float:
    """With ``cut_fraction`` above the share of unoccluded pixels the output is ``stylized`` exactly (the
    device-side scene cut); below it the blend is the reference's. Returns the max abs error of the cut."""
    inputs = _blend_inputs(rig, dtype, 5)
    cur, prev_in, flow = (inputs[i].float() for i in (0, 1, 4))
    matched = float((photometric_mask(cur, backward_warp(prev_in, flow), LOWPASS_ARGS[1])).mean())
    cut = _run(rig, lowpass_blend_cupy, inputs, *LOWPASS_ARGS, None, min(1.0, matched + 0.05))
    err = float((cut - inputs[3].float()).abs().max())
    assert err == 0.0, err
    kept = _run(rig, lowpass_blend_cupy, inputs, *LOWPASS_ARGS, None, max(0.0, matched - 0.05))
    assert torch.equal(kept, _run(rig, lowpass_blend_cupy, inputs, *LOWPASS_ARGS, None))
    return err


def check_layout(rig: KernelRig, dtype: torch.dtype) -> float:
    """uint8 HWC -> NCHW in ``dtype`` -> uint8 HWC; returns the max abs error of the NCHW tensor."""
    frame = np.random.default_rng(4).integers(0, 256, (H, W, 3), dtype=np.uint8)
    name = str(dtype).removeprefix("torch.")
    ref = hwc_to_nchw_reference(frame, dtype)
    nchw = hwc_to_nchw_cupy(frame, name)
    out = rig.to_tensor(nchw).cpu()
    err = float((out.float() - ref.float()).abs().max())
    assert out.dtype == dtype and not _beyond(rig, dtype, out.float(), ref.float()).any(), err
    back = rig.to_tensor(nchw_to_hwc_cupy(nchw)).cpu().numpy()
    np.testing.assert_array_equal(back, nchw_to_hwc_reference(ref.float()))
    np.testing.assert_array_equal(back, frame)
    # Floats off the uint8 grid too: out of range, and ties at k + 0.5 (rintf and torch.round: half to even).
    off = torch.rand(1, 3, H, W, device=rig.device, generator=torch.Generator(rig.device).manual_seed(4)) * 2.4 - 1.2
    off.view(-1)[:255] = (2 * torch.arange(255, device=rig.device) + 1) / 255 - 1
    off = off.to(dtype)
    hwc = rig.to_tensor(nchw_to_hwc_cupy(rig.to_array(off))).cpu().numpy()
    np.testing.assert_array_equal(hwc, nchw_to_hwc_reference(off.float()))
    return err


def _dtype_cases(name: str, check: Callable[..., float], **kwargs: Any) -> dict[str, Callable[[KernelRig], float]]:
    return {f"{name}-{str(dt).removeprefix('torch.')}": partial(check, dtype=dt, **kwargs) for dt in DTYPES}


CASES: dict[str, Callable[[KernelRig], float]] = {
    **_dtype_cases("lowpass-blend", check_lowpass_blend, budget=BINDING_BUDGET),
    **_dtype_cases("lowpass-blend-no-budget", check_lowpass_blend, budget=None),
    **_dtype_cases("lowpass-blend-clamp", check_lowpass_blend, budget=BINDING_BUDGET, clamp=2),
    **_dtype_cases("lowpass-blend-scene-cut", check_lowpass_scene_cut),
    **_dtype_cases("layout", check_layout),
}
"""Case id (kernel-dtype) -> check(rig), which asserts and returns its measured error for the log."""
