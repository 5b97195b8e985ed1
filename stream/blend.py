"""The runtime temporal blend: a flow-guided blend of the previous output into the current one.

    stage = BlendStage(alpha=1.0)          # alpha may be changed live from another thread
    out = stage(frame, engine(frame))      # (H, W, 3) uint8 RGB in, (H, W, 3) uint8 out

Per frame: DIS flow t -> t-1 on the *inputs* (at half resolution, refined to the finest level), warp the previous input
(bilinear) and the previous output (bicubic) onto frame t, a photometric mask
(|x_t − warp(x_{t−1})| small) keeps the blend off occlusions, then the issue's

    out_t = mask·(α·warp(out_{t−1}) + (1−α)·G(x_t)) + (1−mask)·G(x_t)

applied, by default (mode 'lowpass'), as

    out_t = G + S_b(α·m·blur_σ(warp(out_{t−1}) − G)),   S_b(v) = sign(v)·max(|v| − b, 0)

- blur_σ (σ = 0.95 px): only the band below ~σ is blended; G(x_t)'s finest detail passes untouched,
  so recursive warping cannot blur the brush texture away (the 'full' blend kept 55-70 % of the
  per-frame sharpness).
- S_b (soft threshold): small deviations from G(x_t) are dropped and large ones kept minus b.
  Among all ways to spend a mean-|out − G| budget, moving the pixels with the largest temporal
  jump is the one that cuts squared temporal error most (S_b solves min ||out − target||² + λ||out − G||₁),
  and subtracting b every frame bounds how far the history can drift from G(x_t) (limits
  accumulation). b is chosen per frame as the smallest that keeps the mean |out − G| within
  ``budget`` (12 levels of 255 by default): the output never strays further from the per-frame
  stylization than that, however strongly a style flickers. A hard clamp (the opposite choice)
  cut E(V) far less for the same |Δ|.
- bicubic warp of the history: sharper than bilinear under recursion.
- neighbourhood clamp (``clamp`` = r, off by default): the warped history is clamped per channel to
  the min..max of G(x_t) over the (2r+1)² window around each pixel. In flat regions a wrong flow
  passes the photometric check (the input looks the same wherever it points), so the history can
  drag colours in from elsewhere, and with α 1 such a smear builds up frame by frame; the clamp
  drops a colour G has nowhere nearby. It also pulls the history to G's local extremes, which cost
  sharpness on smooth (upscaled) footage and most of the cut on styles whose strokes swim (candy),
  so it is an option, not the default (docs/temporal.md).
docs/temporal.md has the measurements behind every choice; 'full' and 'restore' stay for comparison.

A scene cut (too few pixels pass the photometric check) resets the history; a new resolution
starts a new history. The reference maths is in ``vst.warp`` (torch); this CPU path uses OpenCV
and is tested against it.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from vst.errors import VstError
from vst.flow import FlowEstimator, make_flow
from vst.stream.blend_config import DEFAULT_BUDGET, BlendConfig, BlendMode, WarpKernel

__all__ = ["DEFAULT_BUDGET", "BlendConfig", "BlendStage", "Motion", "budget_threshold", "make_blend"]
from vst.warp import blur_radius

log = logging.getLogger("vst.blend")

_INTERP = {"linear": cv2.INTER_LINEAR, "cubic": cv2.INTER_CUBIC}
_CHANNEL_SUM = np.ones((1, 3), np.float32)
_D = BlendConfig()  # the keyword defaults below come from the one config


@dataclass(frozen=True)
class Motion:
    """``BlendStage.motion``'s result: what the blend takes from the inputs and the history alone."""

    alpha: float
    """The blend strength this frame runs at (read once, so a live change never splits a frame)."""
    matched: np.ndarray | None = None
    """(H, W) uint8, 1 where the photometric check says the pixel is not occluded; None: the history
    restarts with this frame."""
    warped: np.ndarray | None = None
    """(H, W, 3) float32: the previous output warped onto this frame (None with ``matched``)."""


class BlendStage:
    """Flow-guided temporal blend of stylized frames; one instance per stream, one caller at a time.

    ``alpha`` (0 = off, up to 1; 1 measured best) is read once per frame, so a viewer slider or another thread
    may set it at any time. With alpha 0 the stage returns ``stylized`` itself and keeps no history.
    """

    def __init__(
        self,
        alpha: float = 0.0,
        flow: str | FlowEstimator = "dis",
        *,
        mode: BlendMode = _D.mode,
        kernel: WarpKernel = _D.kernel,
        mask_threshold: float = _D.mask_threshold,
        cut_fraction: float = _D.cut_fraction,
        sigma: float = _D.sigma,
        shrink: float = _D.shrink,
        budget: float | None = _D.budget,
        max_gain: float = _D.max_gain,
        clamp: int = _D.clamp,
    ) -> None:
        """
        alpha: weight of the warped previous output, in [0, 1] (0 = off). In 'lowpass' mode 1 is
            safe: G's detail band always passes and the budget (or ``shrink``) pulls the rest back
            towards G.
        flow: flow estimator name for ``vst.flow.make_flow`` (or an estimator).
        mode: 'full' (blend everything), 'lowpass' (blend only blur_σ; G's detail passes through),
            'restore' (blend everything, then rescale the detail band to G's energy).
        kernel: interpolation of the output warp ('linear' or 'cubic').
        mask_threshold: mean |x_t − warp(x_{t−1})| over RGB, 0..255, above which a pixel is occluded.
        cut_fraction: a frame where fewer pixels than this pass the mask is a scene cut.
        sigma: Gaussian σ (pixels) that separates the blended band from the detail band.
        shrink: a fixed soft threshold b (0..255 levels) on the blended deviation from G ('lowpass' only).
        budget: the most mean |out − G| (0..255 levels) a frame may have ('lowpass' only); b is raised
            per frame to meet it. None = no budget (only ``shrink``).
        max_gain: the most the detail band may be amplified (guards against noise blow-up).
        clamp: history clamp radius (0 = off): the warped history is clamped to the range of G's
            (2r+1)² neighbourhood, so a wrong flow cannot smear colours the frame does not have.
        """
        self.config = BlendConfig(alpha, sigma, mask_threshold, budget, shrink, cut_fraction, mode, kernel, max_gain, clamp)
        self._clamp_kernel = np.ones((2 * clamp + 1, 2 * clamp + 1), np.uint8) if clamp else None
        self._flow = make_flow(flow) if isinstance(flow, str) else flow
        self.mode, self.kernel = mode, kernel
        self.mask_threshold, self.cut_fraction = mask_threshold, cut_fraction
        self.sigma, self.shrink, self.budget, self.max_gain = sigma, shrink, budget, max_gain
        self.last_shrink = 0.0
        """The soft threshold b the last blended frame used (levels), for logs and stats."""
        self._lock = threading.Lock()
        self._alpha = 0.0
        self.alpha = alpha
        self.cuts = 0
        """Scene cuts detected since construction."""
        self._prev_in: np.ndarray | None = None
        self._prev_out: np.ndarray | None = None  # float32, so rounding does not accumulate
        self._grid: np.ndarray | None = None  # (H, W, 2) float32 pixel coordinates [x, y]
        self._shrunk: np.ndarray | None = None  # scratch for the soft threshold

    @property
    def alpha(self) -> float:
        return self._alpha

    @alpha.setter
    def alpha(self, value: float) -> None:
        value = self.config.check_alpha(value)
        with self._lock:
            self._alpha = value

    @classmethod
    def from_config(cls, config: BlendConfig, flow: str | FlowEstimator = "dis") -> BlendStage:
        """The stage for ``config`` (the form the pipeline and the CLIs use)."""
        return cls(config.alpha, flow, mode=config.mode, kernel=config.kernel, mask_threshold=config.mask_threshold,
                   cut_fraction=config.cut_fraction, sigma=config.sigma, shrink=config.shrink, budget=config.budget,
                   max_gain=config.max_gain, clamp=config.clamp)  # fmt: skip

    def reset(self) -> None:
        """Forget the history: the next frame is passed through and starts a new one."""
        self._prev_in = self._prev_out = None
        self._flow.reset()  # a warm-started flow must not start from the old scene's motion

    def _remember(self, frame: np.ndarray, out: np.ndarray) -> None:
        if self._prev_in is None or self._prev_in.shape != frame.shape:
            self._prev_in = np.empty_like(frame)
        np.copyto(self._prev_in, frame)  # a copy: the caller may reuse ``frame``'s buffer
        self._prev_out = out.astype(np.float32) if out.dtype != np.float32 else out

    def _map(self, flow: np.ndarray) -> np.ndarray:
        """(H, W, 2) sample positions p + flow(p), one interleaved map that cv2.remap takes as is."""
        h, w = flow.shape[:2]
        if self._grid is None or self._grid.shape[:2] != (h, w):
            gy, gx = np.mgrid[0:h, 0:w].astype(np.float32)
            self._grid = np.dstack([gx, gy])
        return cv2.add(self._grid, np.asarray(flow, np.float32))  # an estimator may return float64

    def __call__(self, frame: np.ndarray, stylized: np.ndarray) -> np.ndarray:
        """frame: input x_t, (H, W, 3) uint8; stylized: G(x_t), same shape. Returns (H, W, 3) uint8."""
        return self.finish(frame, stylized, self.motion(frame))

    def motion(self, frame: np.ndarray) -> Motion:
        """Phase 1, from the inputs and the history alone: the flow t -> t-1, the sample map, the
        photometric mask and the history warped onto frame t.

        It needs nothing from the engine, so a processor may run it on another thread while the engine
        stylizes ``frame``; ``finish`` must then follow before the next ``motion``. Alpha is read here.
        """
        alpha = self._alpha
        if alpha == 0.0 or self._prev_in is None:
            return Motion(alpha)
        if self._prev_in.shape != frame.shape:
            log.info("blend: resolution changed to %dx%d, new history", frame.shape[1], frame.shape[0])
            return Motion(alpha)
        pos = self._map(self._flow(frame, self._prev_in))
        warped_in = cv2.remap(self._prev_in, pos, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        # Channel sum by cv2.transform, saturating at 255: exact for the comparison while 3·threshold < 255
        # (numpy's axis-2 reductions were a third of the stage's time).
        total = cv2.transform(cv2.absdiff(frame, warped_in), _CHANNEL_SUM)
        # 1 = not occluded. Compared in numpy: OpenCV mistakes a 1x1 array for a scalar.
        matched = (total <= 3.0 * self.mask_threshold).view(np.uint8)
        matched_fraction = cv2.countNonZero(matched) / matched.size
        if matched_fraction < self.cut_fraction:
            self.cuts += 1
            log.info("blend: scene cut (%.0f%% of pixels matched), history reset", 100 * matched_fraction)
            self._flow.reset()
            return Motion(alpha)
        assert self._prev_out is not None
        warped = cv2.remap(self._prev_out, pos, None, _INTERP[self.kernel], borderMode=cv2.BORDER_REPLICATE)
        return Motion(alpha, matched, warped)

    def finish(self, frame: np.ndarray, stylized: np.ndarray, motion: Motion) -> np.ndarray:
        """Phase 2: blend the warped history into ``stylized`` = G(``frame``) where ``motion`` (this
        frame's ``motion``) says the pixels match; advance the history."""
        alpha = motion.alpha
        if alpha == 0.0:
            if self._prev_in is not None:
                self.reset()
            return stylized
        if frame.shape != stylized.shape:
            raise ValueError(f"frame {frame.shape} and stylized {stylized.shape} differ in shape")
        matched, warped = motion.matched, motion.warped
        if matched is None or warped is None:  # no history yet, a new size, or a scene cut
            self._remember(frame, stylized)
            return stylized
        g = stylized.astype(np.float32)
        if self._clamp_kernel is not None:
            # min/max filters of G, on the uint8 frame (the same values, 1.6x faster than on float32)
            lo, hi = cv2.erode(stylized, self._clamp_kernel), cv2.dilate(stylized, self._clamp_kernel)
            cv2.min(cv2.max(warped, lo.astype(np.float32)), hi.astype(np.float32), dst=warped)
        # α·mask as 3 channels for cv2.multiply: numpy's (H, W, 3) x (H, W, 1) broadcast was 4x slower,
        # cv2.merge 1.5x slower than this
        am = cv2.cvtColor(np.multiply(matched, np.float32(alpha), dtype=np.float32), cv2.COLOR_GRAY2RGB)
        if self.mode == "lowpass":
            dev = cv2.multiply(self._blur(cv2.subtract(warped, g)), am)  # blur is linear: one blur instead of two
            b = self._threshold(dev)
            if b > 0:
                if self._shrunk is None or self._shrunk.shape != dev.shape:
                    self._shrunk = np.empty_like(dev)
                dev -= np.clip(dev, -b, b, out=self._shrunk)  # v − clip(v, ±b) = sign(v)·max(|v| − b, 0)
            self.last_shrink = b
            out = cv2.add(g, dev)
        else:
            out = cv2.add(g, cv2.multiply(cv2.subtract(warped, g), am))
            if self.mode == "restore":
                out = self._restore_detail(out, g)
        cv2.threshold(out, 255.0, 255.0, cv2.THRESH_TRUNC, dst=out)  # clip to [0, 255] in place
        cv2.threshold(out, 0.0, 0.0, cv2.THRESH_TOZERO, dst=out)
        self._remember(frame, out)  # both halves of the history advance: the next flow is t+1 -> t
        return cv2.convertScaleAbs(out)  # rounds to nearest, ties to even (as the CUDA layout's rintf); out >= 0

    def _threshold(self, dev: np.ndarray) -> float:
        """The soft threshold b for this frame's blended deviation ``dev`` (levels)."""
        if self.budget is None:
            return self.shrink
        return max(self.shrink, budget_threshold(dev, self.budget, start=self.last_shrink))

    def _blur(self, img: np.ndarray) -> np.ndarray:
        size = 2 * blur_radius(self.sigma) + 1  # OpenCV's own choice for σ 0.95 was radius 4
        return cv2.GaussianBlur(img, (size, size), self.sigma, borderType=cv2.BORDER_REPLICATE)

    def _restore_detail(self, out: np.ndarray, g: np.ndarray) -> np.ndarray:
        """Rescale out's detail band so its energy matches G(x_t)'s (one global gain per frame)."""
        low = self._blur(out)
        detail = out - low
        target = float(np.square(g - self._blur(g)).mean())
        have = float(np.square(detail).mean())
        gain = min(self.max_gain, max(1.0, (target / have) ** 0.5)) if have > 0 else 1.0
        return low + gain * detail


def _abs_sample(dev: np.ndarray, stride: int) -> np.ndarray:
    """|dev[::stride, ::stride]| as a 2-D array of one channel (a column per channel value)."""
    h, w = dev.shape[:2]
    if stride == 2 and h and w and h % 2 == 0 and w % 2 == 0 and dev.dtype in (np.float32, np.float64):
        # OpenCV's nearest-neighbour halving of an even size samples exactly the even rows and
        # columns, 4x faster than numpy's strided copy
        sample = cv2.resize(dev, (w // 2, h // 2), interpolation=cv2.INTER_NEAREST)
        return np.abs(sample, out=sample).reshape(-1, sample.shape[2] if sample.ndim == 3 else 1)
    return np.abs(dev[::stride, ::stride]).reshape(-1, dev.shape[2] if dev.ndim == 3 else 1)


def budget_threshold(dev: np.ndarray, budget: float, stride: int = 2, start: float = 0.0) -> float:
    """``vst.warp.budget_threshold`` for (H, W, C) arrays: the smallest b >= 0 with mean |S_b(dev)| <= budget.

    Same stride-2 sample as the reference, but by Newton's method instead of a sort (0.1 ms instead of
    0.4 at 320x180), each step one OpenCV threshold and two reductions: g(b) = mean(max(|v| − b, 0))
    is convex, decreasing and piecewise linear, so Newton steps from the left of the root never
    overshoot and land on it exactly once on its linear piece; a step from the right lands left of it (the tangent lies below g). ``start``, the previous
    frame's b, is usually within one or two steps of this frame's.
    """
    a = _abs_sample(dev, stride)
    if a.size == 0:
        return 0.0
    top = float(a.max())  # g = 0 from here on: the answer is never larger
    n, b, kept = a.size, min(max(0.0, start), top), np.empty_like(a)
    for _ in range(64):  # typically 1-2 steps warm, 3-7 cold; the bound only guards against float stalls
        # g(b)·n = Σ_{|v| > b} |v| − b·#{|v| > b}: one OpenCV threshold pass and two reductions
        cv2.threshold(a, b, 0.0, cv2.THRESH_TOZERO, dst=kept)
        above = cv2.countNonZero(kept)  # −g'(b)·n
        excess = (cv2.sumElems(kept)[0] - b * above) / n - budget  # g(b) − budget
        if excess <= 0.0 and (b == 0.0 or (above == 0 and budget == 0.0)):
            break  # within budget with no threshold, or budget 0 and b = max |v|
        if above == 0:  # b = max |v| with budget > 0: the root lies to the left; approach it from there
            b = 0.0
            continue
        step = excess * n / above
        b = max(0.0, b + step)
        if abs(step) <= 1e-6 * max(1.0, b):
            break
    return b


def make_blend(alpha: float, config: BlendConfig | None = None, **options: Any) -> BlendStage:
    """A ``BlendStage`` for a CLI or server: an out-of-range setting is a one-line VstError.

    With ``config`` the stage runs it at ``alpha`` (``options`` may then only name the flow).
    """
    try:
        if config is not None:
            return BlendStage.from_config(config.with_alpha(alpha), **options)
        return BlendStage(alpha, **options)
    except ValueError as e:  # the stage owns the valid ranges
        raise VstError(f"--blend: {e}") from None
