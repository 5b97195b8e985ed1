"""The one temporal-blend configuration, shared by the CPU ``BlendStage``, the CUDA processor and the CLIs.

Pure stdlib (no numpy, torch or OpenCV), so a CLI can take its defaults from here without loading
the blend stage. Values are on the 0..255 scale of uint8 frames; the CUDA path, which works on
[-1, 1] tensors, converts them with ``scaled``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

BlendMode = Literal["full", "lowpass", "restore"]
WarpKernel = Literal["linear", "cubic"]

DEFAULT_BUDGET = 12.0
"""Most mean |out − G| per frame, in levels of 255: 0.047, inside the issue's mean |Δ| <= 0.05."""


@dataclass(frozen=True)
class BlendConfig:
    """How the flow-guided temporal blend runs; validated on construction (``ValueError``, one line)."""

    alpha: float = 0.0
    """Weight of the warped previous output, 0 (off) .. ``alpha_limit``. May be changed live (``with_alpha``)."""
    sigma: float = 0.95
    """Gaussian σ in pixels separating the blended band from G's detail band ('lowpass')."""
    mask_threshold: float = 16.0
    """Mean |x_t − warp(x_{t−1})| over RGB, 0..255, above which a pixel counts as occluded."""
    budget: float | None = DEFAULT_BUDGET
    """Most mean |out − G| per frame, 0..255 levels ('lowpass'); None: only ``shrink``."""
    shrink: float = 0.0
    """A fixed soft threshold b on the blended deviation from G, 0..255 levels ('lowpass')."""
    cut_fraction: float = 0.35
    """Scene-cut reset: a frame where fewer pixels than this pass the photometric mask restarts the history."""
    mode: BlendMode = "lowpass"
    """'lowpass' (the runtime default; the CUDA path runs only this), 'full' or 'restore' (CPU, for comparison)."""
    kernel: WarpKernel = "cubic"
    """Interpolation of the history warp (the CUDA kernels are bicubic)."""
    max_gain: float = 1.6
    """'restore' only: the most the detail band may be amplified."""
    clamp: int = 0
    """History clamp radius r (0 = off): before blending, the warped history is clamped per channel to
    the min..max of G's (2r+1)² neighbourhood. A colour the current frame has nowhere nearby is a
    ghost dragged in by a wrong flow (flat regions, where the photometric check cannot see the
    flow is wrong); without the clamp such smears can build up over frames. Off by default: it cost
    sharpness on smooth footage at 1280x720 and cut on swimming-texture styles (docs/temporal.md)."""

    def __post_init__(self) -> None:
        if self.mode not in ("full", "lowpass", "restore"):
            raise ValueError(f"unknown blend mode {self.mode!r}")
        if self.kernel not in ("linear", "cubic"):
            raise ValueError(f"unknown warp kernel {self.kernel!r}")
        if not 0.0 <= self.mask_threshold < 85.0:  # 3·threshold must stay below the CPU path's saturating channel sum
            raise ValueError(f"mask_threshold must be in [0, 85), got {self.mask_threshold}")
        if not self.shrink >= 0:  # written so that NaN fails too
            raise ValueError(f"shrink must be >= 0, got {self.shrink}")
        if self.budget is not None and not self.budget >= 0:
            raise ValueError(f"budget must be >= 0, got {self.budget}")
        if not (self.sigma > 0 and math.isfinite(self.sigma)):
            raise ValueError(f"sigma must be > 0, got {self.sigma}")
        if isinstance(self.clamp, bool) or not (isinstance(self.clamp, int) and 0 <= self.clamp <= 8):
            raise ValueError(f"clamp must be an integer radius in [0, 8], got {self.clamp!r}")
        if not 0.0 <= self.cut_fraction <= 1.0:
            raise ValueError(f"cut_fraction must be in [0, 1], got {self.cut_fraction}")
        self.check_alpha(self.alpha)

    @property
    def alpha_limit(self) -> float:
        """α = 1 would freeze the picture in 'full'/'restore'; 'lowpass' with a threshold always tracks G."""
        return 1.0 if self.mode == "lowpass" and (self.shrink > 0 or self.budget is not None) else 0.95

    def check_alpha(self, value: float) -> float:
        """``value`` as a float if it is a valid α for this config, else ``ValueError``."""
        value = float(value)
        limit = self.alpha_limit
        if not 0.0 <= value <= limit:
            why = "" if limit == 1.0 else " (1 needs mode 'lowpass' with a budget or shrink)"
            raise ValueError(f"blend alpha must be in [0, {limit}] for mode {self.mode!r}{why}, got {value}")
        return value

    def with_alpha(self, alpha: float) -> BlendConfig:
        return replace(self, alpha=self.check_alpha(alpha))

    def scaled(self, scale: float) -> tuple[float, float, float | None]:
        """(mask_threshold, shrink, budget) on another value scale: ``scale`` = 1/127.5 for [-1, 1] tensors."""
        return self.mask_threshold * scale, self.shrink * scale, None if self.budget is None else self.budget * scale
