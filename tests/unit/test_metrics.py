"""E(V), E_warp, sharpness and |Δ| on real frames (MPI-Sintel market, 10 consecutive frames)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from vst.metrics import laplacian_variance, mean_abs_delta, sharpness_retained, temporal_error, video_geometry


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
