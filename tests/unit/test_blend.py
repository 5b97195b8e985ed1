"""BlendStage: pass-through, live alpha, scene cuts, resolution changes, parity with vst.warp,
and flicker reduction on real frames with a synthetic flickering 'generator'."""

from __future__ import annotations

import threading

import cv2
import numpy as np
import pytest
import torch

from vst.flow import make_flow
from vst.metrics import mean_abs_delta, temporal_error, video_geometry
from vst.stream.blend import BlendStage
from vst.warp import backward_warp, blend, photometric_mask


@pytest.fixture
def market(data) -> list[np.ndarray]:
    folder = data("frames", "sintel_market")
    frames = [cv2.imread(str(p)) for p in sorted(folder.glob("*.png"))]
    return [cv2.cvtColor(cv2.resize(f, (256, 108), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB) for f in frames]


def flicker(frames: list[np.ndarray], amount: float = 25.0) -> list[np.ndarray]:
    """A per-frame 'stylization' whose low-frequency colour field changes randomly every frame."""
    rng = np.random.default_rng(0)
    h, w = frames[0].shape[:2]
    out = []
    for f in frames:
        field = cv2.resize(rng.normal(0, amount, (4, 6, 3)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
        out.append(np.clip(f.astype(np.float32) + field, 0, 255).astype(np.uint8))
    return out


def test_alpha_zero_is_passthrough() -> None:
    stage = BlendStage()
    x = np.zeros((16, 16, 3), np.uint8)
    g = np.full((16, 16, 3), 9, np.uint8)
    assert stage(x, g) is g


def test_alpha_validation_and_live_update() -> None:
    stage = BlendStage(0.3)
    with pytest.raises(ValueError):
        stage.alpha = 1.0
    t = threading.Thread(target=setattr, args=(stage, "alpha", 0.6))
    t.start()
    t.join()
    assert stage.alpha == 0.6


def test_first_frame_scene_cut_and_resolution_change(market: list[np.ndarray]) -> None:
    stage = BlendStage(0.5)
    g = flicker(market)
    assert np.array_equal(stage(market[0], g[0]), g[0])  # no history yet
    assert not np.array_equal(stage(market[1], g[1]), g[1])  # blended
    noise = np.random.default_rng(1).integers(0, 256, market[0].shape, dtype=np.uint8)
    assert np.array_equal(stage(noise, g[2]), g[2]) and stage.cuts == 1  # unrelated frame: cut, pass through
    small = cv2.resize(market[3], (128, 54))
    assert np.array_equal(stage(small, small), small)  # new size: new history, no error
    assert stage(cv2.resize(market[4], (128, 54)), small).shape == small.shape


def test_cpu_path_matches_torch_reference(market: list[np.ndarray]) -> None:
    """mode 'full' with the linear kernel is vst.warp's blend with the photometric mask."""
    flow = make_flow("dis")
    stage = BlendStage(0.5, flow, mode="full", mask_threshold=20.0)
    g = flicker(market[:2])
    stage(market[0], g[0])
    out = stage(market[1], g[1])
    back = torch.from_numpy(flow(market[1], market[0])).permute(2, 0, 1)[None]  # DIS is deterministic

    def t(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(a).float().permute(2, 0, 1)[None]

    mask = photometric_mask(t(market[1]), backward_warp(t(market[0]), back), 20.0)
    ref = blend(t(g[1]), backward_warp(t(g[0]), back), mask, 0.5)
    ref_u8 = ref.add(0.5).clamp(0, 255).to(torch.uint8)[0].permute(1, 2, 0).numpy()
    # 1 level of rounding, and mask flips on pixels within float error of the threshold
    assert np.mean(np.abs(ref_u8.astype(int) - out) > 1) < 0.002


@pytest.mark.parametrize("mode", ["full", "lowpass", "restore"])
def test_blend_reduces_flicker(market: list[np.ndarray], mode: str) -> None:
    g = flicker(market)
    stage = BlendStage(0.6, mode=mode)  # type: ignore[arg-type]
    out = [stage(x, s) for x, s in zip(market, g, strict=True)]
    geometry = video_geometry(market)
    before, after = temporal_error(g, geometry).e_v, temporal_error(out, geometry).e_v
    assert after < 0.7 * before, (before, after)
    assert mean_abs_delta(out, g) < 0.1
