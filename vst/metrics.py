"""Temporal-consistency metrics for stylized video.

E(V), the seed's metric: for each pair (t-1, t), warp the previous styled frame onto frame t
with the flow t -> t-1 of the *input* video, mask out occlusions and motion boundaries
(forward-backward check), and take the squared error normalized by W·H·C, values in [0, 1]
(frames scaled to [0, 1]); average over pairs.

E_warp (Lai et al. 2018): the same masked squared error (summed over channels) divided by the
number of valid pixels instead of all pixels, so heavy occlusion does not flatter a video.

Consistency alone rewards blur and freezing, so two guards go with it:
- sharpness retained: Laplacian variance of the output / that of the per-frame output;
- mean |Δ|: mean absolute difference to the per-frame output, in [0, 1].

It also charges texture: warping resamples, resampling loses the finest detail, so a sharply
textured output scores a higher E(V) than a soft one even when it moves exactly with the scene.
``pan_consistency`` measures that floor for a given style on a synthetic pan, and the style's
flicker beyond it.

Flows come from a different estimator than the runtime blend's (Farnebäck by default, the blend
uses DIS) so that the metric does not share the blend's flow errors.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from vst.flow import FlowEstimator, make_flow
from vst.warp import backward_warp, consistency_mask

log = logging.getLogger("vst.metrics")


@dataclass(frozen=True)
class PairGeometry:
    """What the metric needs for one pair (t-1, t), computed once from the input frames."""

    flow: torch.Tensor
    """(1, 2, H, W) float32 flow t -> t-1 (warps frame t-1 onto t)."""
    mask: torch.Tensor
    """(1, 1, H, W) float32, 1 = valid (non-occluded, off motion boundaries)."""


def _t(img: np.ndarray) -> torch.Tensor:
    """(H, W, C) uint8 or float -> (1, C, H, W) float32 (uint8 scaled to [0, 1])."""
    x = torch.from_numpy(np.ascontiguousarray(img))
    x = x.float().div_(255.0) if img.dtype == np.uint8 else x.float()
    return x.permute(2, 0, 1).unsqueeze(0)


def video_geometry(frames: Sequence[np.ndarray], flow: FlowEstimator | None = None) -> list[PairGeometry]:
    """Flows and occlusion masks of every consecutive pair of input frames ((H, W, 3) uint8 RGB)."""
    est = flow or make_flow("farneback")
    pairs: list[PairGeometry] = []
    for prev, cur in zip(frames[:-1], frames[1:], strict=False):
        back = torch.from_numpy(est(cur, prev)).permute(2, 0, 1).unsqueeze(0)  # t -> t-1
        fwd = torch.from_numpy(est(prev, cur)).permute(2, 0, 1).unsqueeze(0)  # t-1 -> t
        pairs.append(PairGeometry(back, consistency_mask(back, fwd)))
    return pairs


@dataclass(frozen=True)
class TemporalError:
    e_v: float
    """The seed's E(V): masked squared error / (W·H·C), mean over pairs, in [0, 1]."""
    e_warp: float
    """Lai et al. E_warp: masked squared error (channel sum) / valid pixels, mean over pairs."""
    valid: float
    """Mean fraction of pixels the mask keeps."""


def temporal_error(outputs: Sequence[np.ndarray], geometry: Sequence[PairGeometry]) -> TemporalError:
    """E(V) and E_warp of styled frames ``outputs`` ((H, W, 3) uint8) given the input's geometry."""
    if len(outputs) != len(geometry) + 1:
        raise ValueError(f"{len(outputs)} outputs need {len(outputs) - 1} pairs, got {len(geometry)}")
    if not geometry:
        raise ValueError("temporal error needs at least two frames")
    e_v, e_warp, valid = [], [], []
    for prev, cur, g in zip(outputs[:-1], outputs[1:], geometry, strict=True):
        warped = backward_warp(_t(prev), g.flow)
        sq = (_t(cur) - warped).square().mul_(g.mask)
        n_valid = float(g.mask.sum())
        e_v.append(float(sq.mean()))
        e_warp.append(float(sq.sum()) / max(n_valid, 1.0))
        valid.append(n_valid / g.mask.numel())
    return TemporalError(float(np.mean(e_v)), float(np.mean(e_warp)), float(np.mean(valid)))


def pan_frames(frame: np.ndarray, count: int, step: tuple[float, float], size: tuple[int, int]) -> list[np.ndarray]:
    """``count`` crops of ``size`` (w, h) from the middle of ``frame``, each moved ``step`` (dx, dy)
    px further than the last by bicubic resampling: a camera pan whose motion is known exactly."""
    w, h = size
    x0, y0 = (frame.shape[1] - w) // 2, (frame.shape[0] - h) // 2
    if x0 < 0 or y0 < 0:
        raise ValueError(f"frame {frame.shape[1]}x{frame.shape[0]} is smaller than the pan's crop {w}x{h}")
    out = []
    for t in range(count):
        m = np.float32([[1, 0, step[0] * t - x0], [0, 1, step[1] * t - y0]])
        out.append(cv2.warpAffine(frame, m, (w, h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT))
    return out


@dataclass(frozen=True)
class PanConsistency:
    """E ratios on a synthetic pan (``pan_consistency``); each is E(V) over the input pan's own."""

    floor: float
    """A perfectly consistent output: the stylized first frame, panned exactly like the input."""
    generator: float
    """The generator run on every frame of the pan."""

    @property
    def excess(self) -> float:
        """generator / floor: 1 = as steady as a painting fixed to the scene; above 1 = flicker."""
        return self.generator / self.floor if self.floor > 0 else float("nan")


PAN_STEP = (0.6, 0.35)
"""The synthetic pan's motion per frame, px (dx, dy): sub-pixel, as most real motion is."""
PAN_FRAMES = 8


def pan_crop(height: int, width: int, count: int = PAN_FRAMES, step: tuple[float, float] = PAN_STEP, margin: int = 16) -> tuple[int, int]:
    """The (w, h) of the pan's crops from a ``height`` x ``width`` frame: ``margin`` px off every side
    (less on frames under 128 px, so small ones keep most of their content), but never less than the
    pan travels, so no reflected border slides in. ValueError when too little is left."""
    travel = math.ceil((count - 1) * max(abs(step[0]), abs(step[1]))) + 1
    m = max(travel, min(margin, min(height, width) // 8))
    h, w = height - 2 * m, width - 2 * m
    if h < 16 or w < 16:
        raise ValueError(f"frame {width}x{height} is too small for a pan (at least {16 + 2 * travel} px a side)")
    return w, h


def pan_sources(frames: Sequence[np.ndarray]) -> list[np.ndarray]:
    """The clip's frames a pan starts from: its first, middle and last."""
    return [frames[0], frames[len(frames) // 2], frames[-1]]


def pan_consistency(
    stylize: Callable[[list[np.ndarray]], list[np.ndarray]],
    frames: Sequence[np.ndarray],
    count: int = PAN_FRAMES,
    step: tuple[float, float] = PAN_STEP,
    margin: int = 16,
    flow: FlowEstimator | None = None,
) -> PanConsistency:
    """How much of a style's E ratio is flicker, and how much is the metric's floor for its texture.

    Warping by a sub-pixel flow resamples the previous frame, and resampling loses the finest detail,
    so E(V) is not 0 even for an output that moves exactly with the scene: a sharply textured
    painting, fixed to the scene, scores several times the soft input's E(V). ``floor`` is that E
    ratio on a synthetic pan: each of ``frames`` (cropped as ``pan_crop`` says) is panned by ``step``
    px per frame, its stylization is panned the same way, and E(V) is taken with the flow and mask
    estimated on the panned input (``flow``: the metric's, Farnebäck by default), as for any clip.
    ``generator`` runs ``stylize`` on the panned input instead. Both average over the frames; a frame
    with no texture for the pan to move (E(V) of the input 0, e.g. black) is skipped. The floor is
    of this pan, not a bound for other motion: on a real clip, or from frame to frame, a style can
    score below it.
    """
    floors, gens = [], []
    for frame in frames:
        size = pan_crop(frame.shape[0], frame.shape[1], count, step, margin)
        src = pan_frames(frame, count, step, size)
        geometry = video_geometry(src, flow)
        e_in = temporal_error(src, geometry).e_v
        if e_in <= 0:
            continue
        still = stylize([frame])[0]
        floors.append(temporal_error(pan_frames(still, count, step, size), geometry).e_v / e_in)
        gens.append(temporal_error(stylize(src), geometry).e_v / e_in)
    if not floors:
        raise ValueError("no frame has texture for the pan to move (the input's E(V) is 0 on every one)")
    return PanConsistency(float(np.mean(floors)), float(np.mean(gens)))


def laplacian_variance(img: np.ndarray) -> float:
    """Variance of the Laplacian of the grey image: a standard focus/sharpness measure."""
    grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY) if img.ndim == 3 else img
    return float(cv2.Laplacian(grey.astype(np.float32), cv2.CV_32F, ksize=3).var())


def sharpness_retained(outputs: Sequence[np.ndarray], reference: Sequence[np.ndarray]) -> float:
    """Mean Laplacian variance of ``outputs`` / that of ``reference`` (the per-frame output)."""
    num = np.mean([laplacian_variance(o) for o in outputs])
    den = np.mean([laplacian_variance(r) for r in reference])
    return float(num / den) if den > 0 else float("nan")


def mean_abs_delta(outputs: Sequence[np.ndarray], reference: Sequence[np.ndarray]) -> float:
    """Mean |output − per-frame output| over all frames, pixels and channels, in [0, 1]."""
    return float(np.mean([np.abs(o.astype(np.int16) - r).mean() for o, r in zip(outputs, reference, strict=True)]) / 255.0)


# ------------------------------------------------------------------------------ style strength
#
# How close frames are to a set of paintings, without pretrained features: the Laplacian-pyramid
# patch sliced Wasserstein distance of Karras et al. 2018 ("Progressive Growing of GANs",
# section 5 and appendix D). 7x7 neighbourhoods are sampled from each level of a 5-level
# Laplacian pyramid (256 px down to 16 px), standardised, and the two descriptor sets are
# compared by the mean 1-D Wasserstein distance along random directions. We standardise both sets
# with the *paintings'* per-level channel statistics (not each set's own), so a palette that is
# off counts as a distance rather than being normalised away.

SWD_LEVELS = 5
"""Pyramid levels: 256, 128, 64, 32 and 16 px on the short side."""
SWD_PATCH = 7
"""Neighbourhood size (7x7x3 = 147-dimensional descriptors)."""


def laplacian_pyramid(img: np.ndarray, levels: int = SWD_LEVELS, base: int = 256) -> list[np.ndarray]:
    """(H, W, 3) uint8 RGB -> ``levels`` float32 bands, finest first.

    The image is resized so its short side is ``base`` (aspect kept), then band i is
    G_i - up(G_{i+1}) with the 5-tap binomial filter of cv2.pyrDown/pyrUp; the last is G_{levels-1}.
    """
    h, w = img.shape[:2]
    s = base / min(h, w)
    size = (max(1, round(w * s)), max(1, round(h * s)))
    g = cv2.resize(img, size, interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC).astype(np.float32) / 255.0
    bands = []
    for _ in range(levels - 1):
        down = cv2.pyrDown(g)
        bands.append(g - cv2.pyrUp(down, dstsize=(g.shape[1], g.shape[0])))
        g = down
    bands.append(g)
    return bands


def _patches(band: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` random 7x7 neighbourhoods of one band: (count, 147) float32."""
    p = SWD_PATCH
    h, w = band.shape[:2]
    if h < p or w < p:
        raise ValueError(f"a {w}x{h} pyramid level is smaller than the {p}x{p} neighbourhood")
    windows = np.lib.stride_tricks.sliding_window_view(band, (p, p), axis=(0, 1))  # (h-p+1, w-p+1, 3, p, p)
    ys = rng.integers(0, h - p + 1, count)
    xs = rng.integers(0, w - p + 1, count)
    return windows[ys, xs].reshape(count, -1)


def pyramid_descriptors(images: Sequence[np.ndarray], total: int = 8192, seed: int = 0) -> list[np.ndarray]:
    """About ``total`` patch descriptors per level, drawn evenly from ``images``: a list of (n, 147) arrays."""
    if not images:
        raise ValueError("no images to describe")
    rng = np.random.default_rng(seed)
    per = max(1, -(-total // len(images)))
    per_level: list[list[np.ndarray]] = [[] for _ in range(SWD_LEVELS)]
    for img in images:
        for lvl, band in enumerate(laplacian_pyramid(img)):
            per_level[lvl].append(_patches(band, per, rng))
    return [np.concatenate(d)[:total] for d in per_level]


@dataclass(frozen=True)
class DescriptorStats:
    """Per-level channel mean and std of a reference set's descriptors (the paintings')."""

    mean: list[np.ndarray]
    """Per level, (3,): the mean of each colour channel over all descriptor entries."""
    std: list[np.ndarray]
    """Per level, (3,)."""

    @classmethod
    def of(cls, descriptors: Sequence[np.ndarray]) -> DescriptorStats:
        means, stds = [], []
        for d in descriptors:
            by_channel = d.reshape(len(d), 3, -1)  # descriptors are (3, 7, 7) flattened
            means.append(by_channel.mean(axis=(0, 2)))
            stds.append(by_channel.std(axis=(0, 2)) + 1e-8)
        return cls(means, stds)

    def apply(self, descriptors: Sequence[np.ndarray]) -> list[np.ndarray]:
        out = []
        for d, m, s in zip(descriptors, self.mean, self.std, strict=True):
            by_channel = (d.reshape(len(d), 3, -1) - m[None, :, None]) / s[None, :, None]
            out.append(by_channel.reshape(len(d), -1).astype(np.float32))
        return out


def sliced_wasserstein(a: np.ndarray, b: np.ndarray, directions: int = 128, repeats: int = 4, seed: int = 0) -> float:
    """Mean over random unit directions of the 1-D Wasserstein-1 distance between the projections.

    Sets of different sizes are compared at ``min(len(a), len(b))`` evenly spaced quantiles.
    """
    rng = np.random.default_rng(seed)
    n = min(len(a), len(b))
    q = (np.arange(n) + 0.5) / n
    dists = []
    for _ in range(repeats):
        d = rng.standard_normal((a.shape[1], directions)).astype(np.float32)
        d /= np.linalg.norm(d, axis=0, keepdims=True)
        pa, pb = np.sort(a @ d, axis=0), np.sort(b @ d, axis=0)
        if len(pa) != n:
            pa = np.quantile(pa, q, axis=0)
        if len(pb) != n:
            pb = np.quantile(pb, q, axis=0)
        dists.append(float(np.abs(pa - pb).mean()))
    return float(np.mean(dists))


@dataclass(frozen=True)
class StyleDistance:
    """Sliced Wasserstein distances to a painting set, per pyramid level (finest first)."""

    output: list[float]
    """Stylized frames -> paintings."""
    input: list[float]
    """Unstylized input frames -> paintings (the reference: ratio 1.0 = no move towards them)."""
    floor: list[float]
    """One half of the paintings -> the other half: what 'as close as a painting' reads."""

    @property
    def ratio(self) -> float:
        """Mean over levels of output / mean over levels of input; lower is closer to the paintings."""
        return float(np.mean(self.output) / np.mean(self.input))

    @property
    def level_ratios(self) -> list[float]:
        return [o / i for o, i in zip(self.output, self.input, strict=True)]

    def to_dict(self) -> dict[str, object]:
        return {"swd_ratio": self.ratio, "swd_level_ratios": self.level_ratios, "swd_output": self.output,
                "swd_input": self.input, "swd_paintings_floor": self.floor}  # fmt: skip


class PaintingSet:
    """A painting set's descriptors and statistics, computed once and compared with many videos."""

    def __init__(self, paintings: Sequence[np.ndarray], total: int = 8192, seed: int = 0) -> None:
        if len(paintings) < 2:
            raise ValueError("a painting set needs at least 2 images")
        self.total = total
        self.descriptors = pyramid_descriptors(paintings, total, seed)
        self.stats = DescriptorStats.of(self.descriptors)
        self.normalised = self.stats.apply(self.descriptors)
        half = len(paintings) // 2
        a = self.stats.apply(pyramid_descriptors(paintings[:half], total // 2, seed + 1))
        b = self.stats.apply(pyramid_descriptors(paintings[half:], total // 2, seed + 2))
        self.floor = [sliced_wasserstein(x, y) for x, y in zip(a, b, strict=True)]

    def distance(self, frames: Sequence[np.ndarray], seed: int = 3) -> list[float]:
        """Per-level SWD of ``frames`` ((H, W, 3) uint8 RGB) to the paintings."""
        d = self.stats.apply(pyramid_descriptors(frames, self.total, seed))
        return [sliced_wasserstein(x, y) for x, y in zip(d, self.normalised, strict=True)]

    def compare(self, outputs: Sequence[np.ndarray], inputs: Sequence[np.ndarray]) -> StyleDistance:
        return StyleDistance(self.distance(outputs), self.distance(inputs), self.floor)


# ------------------------------------------------------------------------------ periodic artefacts


def _peakiness(grey: np.ndarray) -> float:
    """Mean over the period-2 and period-4 lattice frequencies (all k·N/4 bins but DC) of the bin's
    power over the mean power of the ring of bins around it.

    A checkerboard from strided transposed convolutions puts a sharp peak on exactly these bins; a
    texture or an edge spreads its power over neighbouring bins too, so it barely moves this ratio.
    """
    h, w = (grey.shape[0] // 4) * 4, (grey.shape[1] // 4) * 4
    g = grey[:h, :w].astype(np.float64)
    g = (g - g.mean()) * np.outer(np.hanning(h), np.hanning(w))  # a window: no leakage from the borders
    power = np.abs(np.fft.fft2(g)) ** 2
    ratios = []
    for ky in range(4):
        for kx in range(4):
            if ky == 0 and kx == 0:
                continue
            y, x = ky * h // 4, kx * w // 4
            ys = (np.arange(y - 3, y + 4) % h)[:, None]
            xs = (np.arange(x - 3, x + 4) % w)[None, :]
            block = power[ys, xs]
            ring = (block.sum() - block[2:5, 2:5].sum()) / (block.size - 9)  # bins 2-3 away
            ratios.append(block[3, 3] / max(ring, 1e-12))
    return float(np.mean(ratios))


def periodic_artefact_index(outputs: Sequence[np.ndarray], inputs: Sequence[np.ndarray]) -> float:
    """Spectral peakiness at periods 2 and 4 px of the outputs over that of the inputs (1 = none added)."""
    grey = [cv2.cvtColor(o, cv2.COLOR_RGB2GRAY) for o in outputs]
    ref = [cv2.cvtColor(i, cv2.COLOR_RGB2GRAY) for i in inputs]
    return float(np.mean([_peakiness(g) for g in grey]) / np.mean([_peakiness(r) for r in ref]))


def style_strength(paintings: PaintingSet, outputs: Sequence[np.ndarray], inputs: Sequence[np.ndarray]) -> dict[str, object]:
    """Every style-strength number of stylized ``outputs`` against their unstylized ``inputs``:
    the SWD ratio (overall, per level, raw distances, the paintings' floor) and the periodic-artefact index."""
    return paintings.compare(outputs, inputs).to_dict() | {"periodic_artefact_index": periodic_artefact_index(outputs, inputs)}


def load_paintings(folder: str | Path, limit: int = 512, seed: int = 0) -> list[np.ndarray]:
    """Up to ``limit`` images (recursively, a fixed random subset when there are more) as RGB uint8."""
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"paintings folder not found: {folder}")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp", ".webp"))
    if len(files) > limit:
        idx = np.random.default_rng(seed).choice(len(files), limit, replace=False)
        files = [files[i] for i in sorted(idx)]
    images = []
    for p in files:
        bgr = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if bgr is not None:
            images.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    if len(images) < 2:
        raise ValueError(f"need at least 2 readable images in {folder}, found {len(images)}")
    return images
