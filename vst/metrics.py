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

Flows come from a different estimator than the runtime blend's (Farnebäck by default, the blend
uses DIS) so that the metric does not share the blend's flow errors.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

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
