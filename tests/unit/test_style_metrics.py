"""Style strength (Laplacian-pyramid patch SWD, Karras et al. 2018) and the periodic-artefact index,
on real paintings and real video frames."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from vst.metrics import (
    PaintingSet,
    laplacian_pyramid,
    load_paintings,
    periodic_artefact_index,
    sliced_wasserstein,
)

# Module-scoped fixtures (the painting set takes seconds to describe) cannot use the function-scoped
# ``data`` fixture, so the same skip-when-absent lookup is done here.
DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def data(*parts: str) -> Path:
    path = DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not available: {path} (needs ../shared/data beside the checkout)")
    return path


@pytest.fixture(scope="module")
def monet() -> PaintingSet:
    return PaintingSet(load_paintings(data("paintings", "monet", "testA"), limit=96), total=4096)


@pytest.fixture(scope="module")
def bikes() -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(data("videos", "bikes.mp4")))
    frames = []
    while len(frames) < 24:
        ok, bgr = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    cap.release()
    return frames[::3]


def test_pyramid_levels_and_reconstruction() -> None:
    img = np.random.default_rng(0).integers(0, 256, (144, 256, 3), np.uint8)
    bands = laplacian_pyramid(img)
    assert [b.shape[0] for b in bands] == [256, 128, 64, 32, 16]  # short side 256 -> 16
    g = bands[-1]
    for band in reversed(bands[:-1]):  # a Laplacian pyramid reconstructs its image exactly
        g = cv2.pyrUp(g, dstsize=(band.shape[1], band.shape[0])) + band
    ref = cv2.resize(img, (g.shape[1], g.shape[0]), interpolation=cv2.INTER_CUBIC).astype(np.float32) / 255
    assert np.abs(g - ref).max() < 1e-4


def test_swd_of_identical_sets_is_zero_and_grows_with_shift() -> None:
    a = np.random.default_rng(1).standard_normal((2000, 147)).astype(np.float32)
    assert sliced_wasserstein(a, a) == 0.0
    assert sliced_wasserstein(a, a + 0.5) > sliced_wasserstein(a, a + 0.1) > 0.0
    assert sliced_wasserstein(a, a[:700]) < 0.1  # unequal sizes are compared at common quantiles


def test_input_against_itself_is_one(monet: PaintingSet, bikes: list[np.ndarray]) -> None:
    d = monet.compare(bikes, bikes)
    assert d.ratio == pytest.approx(1.0)
    assert all(r == pytest.approx(1.0) for r in d.level_ratios)


def test_paintings_against_themselves_are_at_the_floor(monet: PaintingSet, bikes: list[np.ndarray]) -> None:
    others = load_paintings(data("paintings", "monet", "trainA"), limit=48, seed=5)  # other Monets
    d = monet.compare(others, bikes)
    assert d.ratio < 0.3, d
    # Every level of another Monet sample sits within a small factor of the set's own split-half floor.
    assert all(o < 3 * f for o, f in zip(d.output, d.floor, strict=True)), d


def test_colour_transfer_moves_towards_the_paintings_and_blur_does_not(monet: PaintingSet, bikes: list[np.ndarray]) -> None:
    paintings = load_paintings(data("paintings", "monet", "testA"), limit=96)
    lab = np.concatenate([cv2.cvtColor(p, cv2.COLOR_RGB2LAB).reshape(-1, 3) for p in paintings]).astype(np.float32)
    pm, ps = lab.mean(0), lab.std(0)

    def reinhard(f: np.ndarray) -> np.ndarray:  # global colour transfer (Reinhard et al. 2001)
        x = cv2.cvtColor(f, cv2.COLOR_RGB2LAB).astype(np.float32).reshape(-1, 3)
        y = (x - x.mean(0)) / x.std(0) * ps + pm
        return cv2.cvtColor(np.clip(y, 0, 255).astype(np.uint8).reshape(f.shape), cv2.COLOR_LAB2RGB)

    assert monet.compare([reinhard(f) for f in bikes], bikes).ratio < 0.95
    assert monet.compare([cv2.GaussianBlur(f, (0, 0), 2.0) for f in bikes], bikes).ratio > 1.0


def test_periodic_index_sees_a_checkerboard(bikes: list[np.ndarray]) -> None:
    assert periodic_artefact_index(bikes, bikes) == pytest.approx(1.0)
    yy, xx = np.indices(bikes[0].shape[:2])
    checker = (((yy // 2 + xx // 2) % 2) * 2 - 1)[..., None] * 6  # period-4 checkerboard, ±6 levels
    marked = [np.clip(f.astype(np.int16) + checker, 0, 255).astype(np.uint8) for f in bikes]
    assert periodic_artefact_index(marked, bikes) > 5.0
    textured = [cv2.addWeighted(f, 0.8, cv2.GaussianBlur(f, (0, 0), 0.7), 0.2, 0) for f in bikes]
    assert periodic_artefact_index(textured, bikes) < 1.5  # a mild filter is not an artefact


@pytest.mark.parametrize("name,folder", [("monet", "testA"), ("vangogh", "trainA")])
def test_bundled_styles_move_a_held_out_clip_towards_their_painter(name: str, folder: str) -> None:
    """The issue's style targets on 8 frames of carphone (held out from training) at 320x180: SWD ratio
    well below 1 (≤ 0.68 here; 0.63 / 0.61 measured, the pre-session-12 vangogh 0.76) and no
    checkerboard (artefact index ≤ 1.5; the pre-session-12 monet 1.93). A sidecar that lost its
    layout (e.g. ``antialias``) scores about 0.88."""
    from vst.stream.eval_cli import load_frames
    from vst.styles import load_generator, resolve_style
    from vst.train.evaluate import stylize

    paintings = PaintingSet(load_paintings(data("paintings", name, folder), limit=96), total=4096)
    frames = load_frames(str(data("videos", "carphone_pristine.mp4")), (320, 180), 24)[::3]
    out = stylize(load_generator(resolve_style(name)), frames)
    d = paintings.compare(out, frames)
    assert d.ratio <= 0.68, (d.ratio, d.level_ratios)
    assert periodic_artefact_index(out, frames) <= 1.5
