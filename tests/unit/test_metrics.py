"""E(V), E_warp, sharpness and |Δ| on real frames (MPI-Sintel market, 10 consecutive frames)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from vst.metrics import (
    laplacian_variance,
    mean_abs_delta,
    pan_consistency,
    pan_crop,
    pan_frames,
    sharpness_retained,
    temporal_error,
    video_geometry,
)


@pytest.fixture
def market(data) -> list[np.ndarray]:
    folder = data("frames", "sintel_market")
    frames = [cv2.imread(str(p)) for p in sorted(folder.glob("*.png"))]
    return [cv2.cvtColor(cv2.resize(f, (256, 108), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB) for f in frames]


def test_static_video_is_about_zero(market: list[np.ndarray]) -> None:
    still = [market[0]] * 5
    err = temporal_error(still, video_geometry(still))
    assert err.e_v < 1e-6 and err.e_warp < 1e-5 and err.valid > 0.99


def test_real_video_is_consistent_and_shuffled_is_not(market: list[np.ndarray]) -> None:
    geometry = video_geometry(market)
    ordered = temporal_error(market, geometry)
    rng = np.random.default_rng(0)
    shuffled = temporal_error([market[i] for i in rng.permutation(len(market))], geometry)
    assert 0.0 <= ordered.e_v <= 1.0 and 0.0 <= shuffled.e_v <= 1.0
    assert shuffled.e_v > 5 * ordered.e_v, (ordered, shuffled)
    assert ordered.e_warp >= ordered.e_v  # per valid pixel (channel sum) >= per pixel and channel


def test_pair_count_checked(market: list[np.ndarray]) -> None:
    with pytest.raises(ValueError):
        temporal_error(market[:3], video_geometry(market[:2]))


def test_sharpness_and_delta(market: list[np.ndarray]) -> None:
    blurred = [cv2.GaussianBlur(f, (0, 0), 1.5) for f in market]
    assert sharpness_retained(market, market) == pytest.approx(1.0)
    assert sharpness_retained(blurred, market) < 0.5
    assert mean_abs_delta(market, market) == 0.0
    assert mean_abs_delta([255 - f for f in market], market) > 0.1
    assert laplacian_variance(np.full((8, 8, 3), 7, np.uint8)) == 0.0


def test_pan_frames_move_by_the_step() -> None:
    frame = np.zeros((40, 60, 3), np.uint8)
    frame[18:22, 28:32] = 255
    a, b = pan_frames(frame, 2, (2.0, 1.0), (40, 30))
    assert a.shape == (30, 40, 3)
    ya, xa = np.argwhere(a[..., 0] > 127).mean(axis=0)
    yb, xb = np.argwhere(b[..., 0] > 127).mean(axis=0)
    assert (xb - xa, yb - ya) == pytest.approx((2.0, 1.0), abs=0.05)  # content moves with the camera's step
    with pytest.raises(ValueError):
        pan_frames(frame, 2, (1.0, 1.0), (80, 30))


def _sharpen(frames: list[np.ndarray]) -> list[np.ndarray]:
    return [cv2.addWeighted(f, 3.0, cv2.GaussianBlur(f, (0, 0), 1.0), -2.0, 0) for f in frames]


def test_pan_floor_charges_texture_and_excess_charges_flicker(market: list[np.ndarray]) -> None:
    """A shift-invariant style has excess about 1 whatever its texture costs; per-frame noise does not."""
    frames = market[:2]

    def tinted(fs: list[np.ndarray]) -> list[np.ndarray]:
        return [(f * 0.6 + 50).astype(np.uint8) for f in fs]

    rng = np.random.default_rng(0)

    def flicker(fs: list[np.ndarray]) -> list[np.ndarray]:  # fresh noise on every frame
        return [np.clip(f + rng.normal(0, 6, f.shape), 0, 255).astype(np.uint8) for f in tinted(fs)]

    tint, sharp = pan_consistency(tinted, frames), pan_consistency(_sharpen, frames)

    noisy = pan_consistency(flicker, frames)
    assert 0.3 < tint.floor < 0.45 and 0.9 < tint.excess < 1.15, tint  # 0.6 contrast: 0.36 of the input's E
    assert sharp.floor > 2.0 and 0.85 < sharp.excess < 1.3, sharp  # texture raises the floor, not the excess
    assert noisy.excess > 2.0, noisy


def test_pan_skips_flat_frames_and_keeps_its_crops_inside_the_frame(market: list[np.ndarray]) -> None:
    def tinted(fs: list[np.ndarray]) -> list[np.ndarray]:
        return [(f * 0.6 + 50).astype(np.uint8) for f in fs]

    black = np.zeros_like(market[0])
    with pytest.raises(ValueError, match="no frame has texture"):
        pan_consistency(tinted, [black])
    assert pan_consistency(tinted, [black, market[0]]) == pan_consistency(tinted, [market[0]])
    # the pan travels 7 x 0.6 px: at least 6 px stay off every side, even where 1/8 of the side is less
    assert pan_crop(40, 60) == (48, 28) and pan_crop(200, 300) == (268, 168)
    with pytest.raises(ValueError, match="too small for a pan"):
        pan_crop(27, 60)
