"""Adaptive processing size (``--size auto``): hold the source frame rate by stylizing fewer pixels.

Viewers keep one output resolution (the source frame, fitted into ``--max-size``); the pipeline
stylizes a smaller copy when it cannot keep up and scales the result back up (``upscale``). Users
would rather see smooth motion than maximum detail, so the controller steps down quickly (one
window of overload, several steps at once if needed) and up slowly (one step, only after a
sustained headroom, with a hold that doubles when a step up had to be undone).

The controller is pure logic on (time, busy ms, frame period) samples, so tests feed it synthetic
timings; the pipeline owns one and applies its decisions between frames.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from dataclasses import dataclass

import cv2
import numpy as np

log = logging.getLogger("vst.sizing")

MAX_STEPS = 6
"""Sizes in a ladder: every one stays compiled in the OpenVINO backend's shape cache (it keeps six)."""
STEP = 0.8
"""The largest linear step down (0.64x the pixels): finer steps when the floor is near, coarser
ones (geometric, to reach the floor in ``MAX_STEPS``) when it is far."""


def fit(size: tuple[int, int], box: tuple[int, int]) -> tuple[int, int]:
    """``size`` (W, H) scaled down to fit ``box`` (aspect kept), never up."""
    w, h = size
    s = min(1.0, box[0] / w, box[1] / h)
    return max(2, round(w * s)), max(2, round(h * s))


def ladder(frame: tuple[int, int], min_size: tuple[int, int]) -> list[tuple[int, int]]:
    """Processing sizes (W, H) for output frames of ``frame`` (W, H), largest first, at most ``MAX_STEPS``.

    The first is ``frame`` itself (no resize). The others have sides in multiples of 4 (the
    generators downsample twice) and keep the aspect; the last is ``min_size`` fitted to the aspect
    and rounded up, so the floor is always there. Steps are 0.8x linear, or larger when six steps of
    0.8 would not reach the floor.
    """
    w, h = frame
    low = fit(frame, min_size)
    floor = (min(w, -(-low[0] // 4) * 4), min(h, -(-low[1] // 4) * 4))  # rounded up to multiples of 4
    floor_scale = max(floor[0] / w, floor[1] / h)
    step = min(STEP, floor_scale ** (1 / (MAX_STEPS - 1))) if floor_scale < 1 else STEP
    out = [frame]  # full size: no resize at all
    for i in range(1, MAX_STEPS):
        if out[-1] == floor:
            break
        size = (round(w * step**i / 4) * 4, round(h * step**i / 4) * 4)
        if size[0] * 0.92 < floor[0] or size[1] * 0.92 < floor[1]:  # at (or within 8 % of) the floor
            size = floor
        out.append(size)
    return out


@dataclass(frozen=True)
class SizeControl:
    """When the controller moves. Loads are busy time per frame / source frame period."""

    down_load: float = 0.92
    """Step down when the window's mean load is above this: the source rate is not held."""
    target_load: float = 0.75
    """A step down goes to the largest size predicted to run at or below this load."""
    up_load: float = 0.6
    """Step up one size only if the load predicted there is below this (the hysteresis gap)."""
    window_s: float = 1.0
    """Loads are averaged over this long, or over ``min_samples`` frames when that takes longer."""
    min_samples: int = 5
    settle_s: float = 1.5
    """At start and after a change, samples are ignored this long (a new shape's first frames compile,
    caches warm)."""
    up_hold_s: float = 3.0
    """Headroom must last this long before stepping up."""
    max_up_hold_s: float = 30.0
    """The up hold doubles after each step up that had to be undone within ``regret_s``, up to this."""
    regret_s: float = 6.0


class SizeController:
    """Chooses the index into a ladder of processing sizes from measured per-frame busy times.

    ``update`` is called once per processed frame with the wall time (s), the frame's busy time (ms),
    the source frame period (s) and, optionally, the part of the busy time that runs at the processing
    size (engine + blend; the rest, such as the upscale to the output size, does not shrink with it)
    and the part that exists only because the processing size is not the frame's (the shrink and the
    upscale: the first rung, the frame itself, has neither). It returns the new index when the size
    should change, else None. The cost model (the scalable part grows with the pixel count, the
    resize part vanishes on the first rung, the rest stays) only predicts; measurements decide.
    """

    def __init__(self, sizes: list[tuple[int, int]], control: SizeControl | None = None, start: int = 0) -> None:
        if not sizes:
            raise ValueError("the size ladder is empty")
        self.sizes = sizes
        self.control = control or SizeControl()
        self.index = min(max(start, 0), len(sizes) - 1)
        self._samples: deque[tuple[float, float, float, float]] = deque()  # (time, load, scalable load, resize load)
        self._changed: float | None = None
        self._headroom_since: float | None = None
        self._last_up = -1e9
        self._up_hold = self.control.up_hold_s
        self.changes = 0
        self.load = 0.0
        """The last window's mean load (busy / period)."""
        self.scalable_load = 0.0
        """The part of ``load`` that scales with the processing size's pixels."""
        self.resize_load = 0.0
        """The part of ``load`` spent resizing to and from the processing size (none on the first rung)."""

    @property
    def size(self) -> tuple[int, int]:
        return self.sizes[self.index]

    def _pixels(self, i: int) -> int:
        w, h = self.sizes[i]
        return w * h

    def predicted_load(self, i: int) -> float:
        fixed = self.load - self.scalable_load - (self.resize_load if i == 0 else 0.0)
        return fixed + self.scalable_load * self._pixels(i) / self._pixels(self.index)

    def update(self, now: float, busy_ms: float, period_s: float, scalable_ms: float | None = None,
               resize_ms: float = 0.0) -> int | None:  # fmt: skip
        c = self.control
        if self._changed is None:  # the first frames warm caches (and compile shapes): settle first
            self._changed = now
        if now - self._changed < c.settle_s or period_s <= 0:
            return None
        scalable = busy_ms if scalable_ms is None else min(scalable_ms, busy_ms)
        resize = min(max(resize_ms, 0.0), busy_ms - scalable)
        self._samples.append((now, busy_ms / (period_s * 1e3), scalable / (period_s * 1e3), resize / (period_s * 1e3)))
        # the window: the last window_s, but never fewer than min_samples frames (a slow engine)
        while len(self._samples) > c.min_samples and now - self._samples[0][0] > c.window_s:
            self._samples.popleft()
        if len(self._samples) < c.min_samples or now - self._samples[0][0] < c.window_s * 0.8:
            return None
        n = len(self._samples)
        self.load = sum(s[1] for s in self._samples) / n
        self.scalable_load = sum(s[2] for s in self._samples) / n
        self.resize_load = sum(s[3] for s in self._samples) / n
        if self.load > c.down_load and self.index < len(self.sizes) - 1:
            target = self.index + 1
            while target < len(self.sizes) - 1 and self.predicted_load(target) > c.target_load:
                target += 1
            if now - self._last_up < c.regret_s:  # the last step up did not hold: wait longer next time
                self._up_hold = min(self._up_hold * 2, c.max_up_hold_s)
            return self._move(now, target)
        up = self._step_up()
        if up is not None:
            if self._headroom_since is None:
                self._headroom_since = now
            elif now - self._headroom_since >= self._up_hold:
                self._last_up = now
                return self._move(now, up)
        else:
            self._headroom_since = None
        return None

    def _step_up(self) -> int | None:
        """The size to step up to if there is headroom for it: the next larger one, or else the frame's
        own size when only dropping the resize makes room (an upscale that costs more than the engine)."""
        if self.index == 0:
            return None
        if self.predicted_load(self.index - 1) < self.control.up_load:
            return self.index - 1
        return 0 if self.predicted_load(0) < self.control.up_load else None

    def _move(self, now: float, index: int) -> int:
        old, self.index = self.index, index
        self._changed, self._headroom_since = now, None
        self._samples.clear()
        self.changes += 1
        log.info("processing size %dx%d -> %dx%d (load %.2f of the frame period)", *self.sizes[old], *self.sizes[index], self.load)
        return index


# ---------------------------------------------------------------------- upscaling


def upscale(stylized: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(h, w, 3) uint8 -> (H, W, 3) uint8 at ``size`` (W, H), bicubic.

    ``--upscale bicubic``: the cheapest. The default, ``guided_upscale``, is about 2 dB PSNR closer to
    the full-size stylization at equal time (docs/benchmarks.md, "Upscaling a smaller stylization").
    """
    if stylized.shape[1::-1] == tuple(size):
        return stylized
    return cv2.resize(stylized, size, interpolation=cv2.INTER_CUBIC)


def guided_upscale(stylized: np.ndarray, guide: np.ndarray, radius: int = 4, eps: float = 1e-3) -> np.ndarray:
    """Fast guided-filter upsampling: the local linear model q = a·I + b between the low-res input's
    luma I and its stylization q, fitted at low resolution per output channel, then applied to the
    full-resolution luma, so edges follow the full-res input.

    ``stylized`` (h, w, 3) uint8; ``guide`` (H, W, 3) uint8 RGB, the full-res input. Returns (H, W, 3)
    uint8. Everything is in 0..255 units (eps scaled to match) and uses OpenCV's ops: numpy's
    clip/astype at full resolution alone cost more than the whole low-res fit.
    """
    H, W = guide.shape[:2]
    h, w = stylized.shape[:2]
    full = _full_res_buffers(H, W)
    luma_full = full["luma"]
    cv2.cvtColor(guide, cv2.COLOR_RGB2GRAY, dst=full["grey"])
    np.copyto(luma_full, full["grey"], casting="unsafe")
    luma = cv2.resize(luma_full, (w, h), interpolation=cv2.INTER_AREA)
    p = stylized.astype(np.float32)
    k = (2 * radius + 1, 2 * radius + 1)
    luma3 = cv2.merge([luma, luma, luma])
    mean_i = cv2.blur(luma3, k)
    var_i = cv2.blur(luma3 * luma3, k) - mean_i * mean_i
    mean_p = cv2.blur(p, k)
    cov = cv2.blur(p * luma3, k) - mean_i * mean_p
    a = cov / (var_i + eps * 255 * 255)
    b = mean_p - a * mean_i
    # Full resolution: into this thread's buffers for the size. Fresh arrays here, several frames' worth
    # alive at once, made glibc trim and re-fault its heap on every call: 8.5 ms instead of 2 at 640x360.
    a_full, b_full, out = full["a"], full["b"], full["out"]
    cv2.resize(cv2.blur(a, k), (W, H), dst=a_full, interpolation=cv2.INTER_LINEAR)
    cv2.resize(cv2.blur(b, k), (W, H), dst=b_full, interpolation=cv2.INTER_LINEAR)
    cv2.merge([luma_full, luma_full, luma_full], dst=out)
    cv2.multiply(a_full, out, dst=out)
    cv2.add(out, b_full, dst=out)
    cv2.max(out, 0.0, dst=out)  # convertScaleAbs saturates at 255 but mirrors negatives
    return cv2.convertScaleAbs(out)  # the result is the caller's: a fresh array


_scratch = threading.local()


def _full_res_buffers(h: int, w: int) -> dict[str, np.ndarray]:
    """This thread's full-resolution scratch arrays for ``guided_upscale`` at (h, w), kept across calls."""
    buffers: dict[str, np.ndarray] | None = getattr(_scratch, "buffers", None)
    if buffers is None or buffers["luma"].shape != (h, w):
        buffers = {"grey": np.empty((h, w), np.uint8), "luma": np.empty((h, w), np.float32),
                   "a": np.empty((h, w, 3), np.float32), "b": np.empty((h, w, 3), np.float32),
                   "out": np.empty((h, w, 3), np.float32)}  # fmt: skip
        _scratch.buffers = buffers
    return buffers
