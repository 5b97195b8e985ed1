"""vst.warp against exact shifts and MPI-Sintel ground truth."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sintel_pairs import load_pair, nchw

from vst.flow import make_flow
from vst.warp import backward_warp, blend, blend_lowpass, consistency_mask, photometric_mask, soft_threshold

# Max abs error vs exact integer shifts, per dtype (grid_sample computes coordinates in that dtype).
TOLERANCES = {torch.float32: 1e-4, torch.float64: 1e-9}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_integer_shift_is_exact(dtype: torch.dtype) -> None:
    img = torch.rand(2, 3, 12, 17, dtype=dtype)
    flow = torch.zeros(2, 2, 12, 17, dtype=dtype)
    flow[:, 0], flow[:, 1] = 3.0, -2.0
    out = backward_warp(img, flow)
    assert out.dtype == dtype
    torch.testing.assert_close(out[..., 2:, :-3], img[..., :-2, 3:], atol=TOLERANCES[dtype], rtol=0)
    # border clamp: samples beyond the right edge repeat the last column
    torch.testing.assert_close(out[..., 2:, -1], img[..., :-2, -1], atol=TOLERANCES[dtype], rtol=0)


def test_half_pixel_is_bilinear_and_differentiable() -> None:
    img = torch.rand(1, 1, 5, 6, requires_grad=True)
    flow = torch.zeros(1, 2, 5, 6)
    flow[:, 0] = 0.5
    out = backward_warp(img, flow)
    torch.testing.assert_close(out[..., :-1], (img[..., :-1] + img[..., 1:]) / 2)
    out.sum().backward()
    assert img.grad is not None


def test_shape_mismatch_raises() -> None:
    with pytest.raises(ValueError):
        backward_warp(torch.rand(1, 3, 4, 4), torch.rand(1, 2, 4, 5))


# README: warping frame 3 by the GT flow lowers the MAE against frame 2 from 10.4/13.9/17.5 to 2.8/3.8/7.8.
@pytest.mark.parametrize(("level", "before", "after"), [("easy", 10.4, 2.8), ("medium", 13.9, 3.8), ("hard", 17.5, 7.8)])
def test_gt_flow_warp_matches_known_error(data, level: str, before: float, after: float) -> None:
    f2, f3, gt, _ = load_pair(data, level)
    warped = backward_warp(nchw(f3), nchw(gt))
    assert np.abs(f2.astype(np.float64) - f3).mean() == pytest.approx(before, abs=0.1)
    assert float((nchw(f2) - warped).abs().mean()) == pytest.approx(after, abs=0.1)


# Measured IoU of occluded pixels (GT flow forward, DIS-medium backward): 0.17 / 0.38 / 0.20, recall 0.69 / 0.76 / 0.81.
# IoU is modest because the mask also flags motion boundaries, which the GT occlusion map does not contain.
@pytest.mark.parametrize(("level", "min_iou", "min_recall"), [("easy", 0.12, 0.6), ("medium", 0.3, 0.65), ("hard", 0.15, 0.7)])
def test_consistency_mask_agrees_with_gt_occlusions(data, level: str, min_iou: float, min_recall: float) -> None:
    f2, f3, gt, occ = load_pair(data, level)
    bw = make_flow("dis-medium", scale=1.0)(f3, f2)
    occluded = consistency_mask(nchw(gt), nchw(bw))[0, 0].numpy() < 0.5
    iou = (occluded & occ).sum() / (occluded | occ).sum()
    recall = (occluded & occ).sum() / occ.sum()
    assert iou >= min_iou and recall >= min_recall, f"IoU {iou:.3f} recall {recall:.3f}"


def test_consistency_mask_consistent_and_inconsistent() -> None:
    fw = torch.zeros(1, 2, 8, 8)
    fw[:, 0] = 2.0
    assert consistency_mask(fw, -fw).min() == 1.0  # exact inverse: all valid
    assert consistency_mask(fw, fw).max() == 0.0  # same direction: all occluded
    step = fw.clone()
    step[..., 4:] = -2.0  # a motion discontinuity
    assert consistency_mask(step, -step)[..., 3:5].min() == 0.0


def test_photometric_mask_and_blend() -> None:
    a = torch.zeros(1, 3, 4, 4)
    b = a.clone()
    b[..., 0, 0] = 1.0
    m = photometric_mask(a, b, 0.1)
    assert m.shape == (1, 1, 4, 4) and m[0, 0, 0, 0] == 0 and m.sum() == 15
    g, w = torch.full_like(a, 0.2), torch.full_like(a, 0.6)
    out = blend(g, w, m, 0.5)
    assert torch.allclose(out[..., 1, 1], torch.tensor(0.4)) and torch.allclose(out[..., 0, 0], torch.tensor(0.2))
    assert torch.allclose(blend(g, w, m, 0.0), g)
    # the low-pass blend of flat images equals the full blend
    torch.testing.assert_close(blend_lowpass(g, w, torch.ones_like(m), 0.5, 1.0), blend(g, w, torch.ones_like(m), 0.5))


def test_soft_threshold_and_shrinking_lowpass_blend() -> None:
    x = torch.tensor([-3.0, -1.0, 0.0, 0.5, 2.5])
    torch.testing.assert_close(soft_threshold(x, 1.0), torch.tensor([-2.0, 0.0, 0.0, 0.0, 1.5]))
    assert soft_threshold(x, 0.0) is x
    g, w, m = torch.full((1, 3, 5, 5), 0.2), torch.full((1, 3, 5, 5), 0.6), torch.ones(1, 1, 5, 5)
    # deviation α·(W − G) = 0.2, shrunk by 0.05 -> 0.15
    torch.testing.assert_close(blend_lowpass(g, w, m, 0.5, 1.0, 0.05), torch.full_like(g, 0.35))
    torch.testing.assert_close(blend_lowpass(g, w, m, 0.5, 1.0, 0.5), g)  # below the threshold: G itself


def test_bicubic_warp_is_sharper_under_recursion() -> None:
    """Ten half-pixel round trips: bilinear loses most of a texture's energy, bicubic much less."""
    img = torch.rand(1, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    shift = torch.zeros(1, 2, 32, 32)
    shift[:, 0] = 0.5
    energy = {}
    for mode in ("bilinear", "bicubic"):
        x = img
        for _ in range(10):
            x = backward_warp(backward_warp(x, shift, mode), -shift, mode)
        energy[mode] = float((x - x.mean())[..., 4:-4, 4:-4].var() / img[..., 4:-4, 4:-4].var())
    assert energy["bilinear"] < 0.2 and energy["bicubic"] > 1.5 * energy["bilinear"], energy
