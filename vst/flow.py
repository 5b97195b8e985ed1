"""Optical flow estimators and Middlebury ``.flo`` IO.

Every estimator follows one protocol:

    flow = estimator(prev, nxt)   # prev, nxt: (H, W, 3) uint8 RGB -> (H, W, 2) float32 [dx, dy]

``flow[y, x]`` is the displacement (pixels) of pixel (x, y) of ``prev`` into ``nxt``, so
``nxt(p + flow(p)) ≈ prev(p)``: pass ``(frame_t, frame_{t-1})`` to get the backward flow that
warps frame t-1 onto frame t.

``make_flow(name)`` is the one factory: 'dis' (default, OpenCV DIS at half resolution),
'farneback' (used by the metric so that E(V) does not share the blend's flow errors), and room
for GPU estimators, which are imported lazily there.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from vst.errors import VstError

log = logging.getLogger("vst.flow")

FLO_MAGIC = 202021.25  # b"PIEH" read as a little-endian float32
FLOW_NAMES = ("dis", "dis-realtime", "dis-ultrafast", "dis-fast", "dis-medium", "farneback")

_DIS_PRESETS = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}
# 'realtime' (the default): ultrafast's patches (8 px, stride 4; 4 descent steps, no variational
# refinement) but refined down to the finest pyramid level. OpenCV's presets stop 2 levels above
# it, which at half resolution leaves 1/8-resolution flow: measured on the blend, the finest level
# lifted the E(V) cut on the corridor from 66 % to 76 % and on Sintel market from 42 % to 64 % for
# about +0.7 ms at 320x180 (docs/temporal.md).
_DIS_REALTIME = {"FinestScale": 0, "PatchSize": 8, "PatchStride": 4, "GradientDescentIterations": 4,
                 "VariationalRefinementIterations": 0}  # fmt: skip
DIS_PRESET_NAMES = ("realtime", *_DIS_PRESETS)
# 'dis', the blend's flow: 'realtime' started from the previous pair's flow (warm), which buys back
# what a patch stride of 5 instead of 4 loses: within 1 point of realtime's E(V) cut on five clips at
# 640x360, for 2.6 instead of 4.2 ms per pair at 320x180 (docs/temporal.md, session 6).
_DIS_STREAM = {"PatchStride": 5}
_CUT_LEVELS = 24.0
"""Mean |grey difference| (0..255) of a pair above which a warm-started DIS starts cold instead."""


class FlowEstimator(Protocol):
    """Dense flow between two RGB frames of the same size."""

    name: str

    def __call__(self, prev: np.ndarray, nxt: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 x2 -> (H, W, 2) float32 flow prev -> nxt in pixels [dx, dy]."""
        ...

    def reset(self) -> None:
        """Forget whatever the estimator carries from one call to the next (a scene cut, a new stream)."""
        ...


def _gray(img: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"flow input must be (H, W, 3) uint8, got {img.shape} {img.dtype}")
    g = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    if size is None:
        return g
    # Bilinear sampling at pixel centres is 5x faster than INTER_AREA and, at exactly 2x, identical to
    # it (each output averages one 2x2 block); between 1x and 2x it is plain bilinear, which samples
    # every input pixel. Further down it would skip pixels (alias), so area averaging takes over.
    at_most_halved = size[0] >= g.shape[1] / 2 and size[1] >= g.shape[0] / 2
    return cv2.resize(g, size, interpolation=cv2.INTER_LINEAR if at_most_halved else cv2.INTER_AREA)


def _upsample(flow: np.ndarray, w: int, h: int) -> np.ndarray:
    """Resize a low-resolution flow field to (h, w) and scale its vectors by the same ratio."""
    fh, fw = flow.shape[:2]
    if (fw, fh) == (w, h):
        return flow
    # Scale the vectors before resizing (linear interpolation commutes with it): 4x fewer values,
    # and no strided per-channel writes on the full-size field.
    scaled = flow * np.array([w / fw, h / fh], np.float32)
    return cv2.resize(scaled, (w, h), interpolation=cv2.INTER_LINEAR)


class _ScaledFlow:
    """Shared plumbing: compute at ``scale`` x the input size, then upsample with scaled vectors."""

    name = "flow"
    min_size = (1, 1)
    """(shorter, longer) side the estimator needs at the least; smaller frames get zero flow."""

    def __init__(self, scale: float, max_pixels: int | None = None) -> None:
        if not 0.0 < scale <= 1.0:
            raise ValueError(f"flow scale must be in (0, 1], got {scale}")
        if max_pixels is not None and max_pixels < 64:
            raise ValueError(f"flow max_pixels must be >= 64, got {max_pixels}")
        self.scale, self.max_pixels = scale, max_pixels

    def _work_size(self, w: int, h: int) -> tuple[int, int] | None:
        """(w, h) to compute at, None for full size: ``scale`` x the input, lowered further where that
        holds more than ``max_pixels``, and raised as far as ``min_size`` needs."""
        short, long = self.min_size
        s = self.scale if self.max_pixels is None else min(self.scale, (self.max_pixels / (w * h)) ** 0.5)
        s = max(s, short / min(w, h), long / max(w, h))
        size = round(w * s), round(h * s)
        if s >= 1.0 or min(size) < short or max(size) < long:
            return None
        return size

    def __call__(self, prev: np.ndarray, nxt: np.ndarray) -> np.ndarray:
        if prev.shape != nxt.shape:
            raise ValueError(f"flow frames differ in shape: {prev.shape} vs {nxt.shape}")
        h, w = prev.shape[:2]
        if min(w, h) < self.min_size[0] or max(w, h) < self.min_size[1]:
            return np.zeros((h, w, 2), np.float32)  # too small to estimate: no motion rather than an error
        size = self._work_size(w, h)
        flow = self._compute(_gray(prev, size), _gray(nxt, size))
        return _upsample(flow, w, h)

    def _compute(self, prev: np.ndarray, nxt: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def reset(self) -> None:
        """Nothing carried between calls."""


class DISFlow(_ScaledFlow):
    """OpenCV Dense Inverse Search, computed at ``scale`` x resolution (0.5 = a quarter of the pixels).

    Not thread-safe (the OpenCV object keeps state); use one per stream.
    """

    min_size = (8, 12)  # OpenCV's DIS refuses images with a side under 8 or both under 12

    def __init__(self, preset: str = "realtime", scale: float = 0.5, max_pixels: int | None = None,
                 params: dict[str, int | bool] | None = None, warm: bool = False) -> None:  # fmt: skip
        """``params``: OpenCV DIS settings over the preset's, by setter name (``{"PatchStride": 5}``).
        ``warm``: start each call from the previous call's flow (OpenCV refines a flow it is given),
        for a stream of consecutive pairs whose motion changes slowly; ``reset`` forgets it."""
        super().__init__(scale, max_pixels)
        self.warm = warm
        self._last: np.ndarray | None = None
        if preset not in DIS_PRESET_NAMES:
            raise ValueError(f"unknown DIS preset {preset!r}; choose one of {', '.join(DIS_PRESET_NAMES)}")
        self.preset = preset
        self.name = f"dis-{preset}@{scale:g}" + (f"<={max_pixels}px" if max_pixels else "")
        self.name += "".join(f",{k}={v}" for k, v in (params or {}).items()) + (",warm" if warm else "")
        self._params = {**_DIS_REALTIME, **(params or {})} if preset == "realtime" else dict(params or {})
        self._dis = self._create()

    def _create(self) -> Any:
        dis = cv2.DISOpticalFlow_create(_DIS_PRESETS["ultrafast" if self.preset == "realtime" else self.preset])
        for key, value in self._params.items():
            setter = getattr(dis, f"set{key}", None)
            if setter is None:
                raise ValueError(f"OpenCV's DIS has no setting {key!r}")
            setter(value)
        return dis

    def _compute(self, prev: np.ndarray, nxt: np.ndarray) -> np.ndarray:
        if not self.warm:
            return self._dis.calc(prev, nxt, None)
        if self._last is not None and (self._last.shape[:2] != prev.shape[:2]
                                       or cv2.norm(prev, nxt, cv2.NORM_L1) > _CUT_LEVELS * prev.size):  # fmt: skip
            # a new size, or grey levels that changed too much for the last motion to mean anything here
            # (a scene cut that a caller such as the CUDA processor only sees later): start cold
            self.reset()
        init = self._last  # calc writes into a flow it is given: a copy leaves the array returned last intact
        self._last = self._dis.calc(prev, nxt, None if init is None else init.copy())
        return self._last

    def reset(self) -> None:
        """Forget the previous flow (a scene cut, a new source): the next call starts from zero."""
        if self._last is not None:
            self._last = None
            # OpenCV's DIS keeps buffers from a call that was given a flow, and later calls without one
            # still differ from a fresh object's (measured, OpenCV 5.0): start over with a new one
            self._dis = self._create()


class FarnebackFlow(_ScaledFlow):
    """OpenCV Farnebäck polynomial-expansion flow: a different method from DIS, for the metric."""

    def __init__(self, scale: float = 1.0, levels: int = 5, winsize: int = 15, iterations: int = 3,
                 max_pixels: int | None = None) -> None:  # fmt: skip
        super().__init__(scale, max_pixels)
        self.name = f"farneback@{scale:g}" + (f"<={max_pixels}px" if max_pixels else "")
        self.levels, self.winsize, self.iterations = levels, winsize, iterations

    def _compute(self, prev: np.ndarray, nxt: np.ndarray) -> np.ndarray:
        return cv2.calcOpticalFlowFarneback(
            prev, nxt, None, pyr_scale=0.5, levels=self.levels, winsize=self.winsize,
            iterations=self.iterations, poly_n=7, poly_sigma=1.5, flags=cv2.OPTFLOW_FARNEBACK_GAUSSIAN,
        )  # fmt: skip


class TimedFlow:
    """Wraps an estimator and records each call's wall time (ms), so a blend's cost splits into flow + the rest."""

    def __init__(self, inner: FlowEstimator) -> None:
        self.inner, self.name = inner, inner.name
        self.ms: list[float] = []

    def __call__(self, prev: np.ndarray, nxt: np.ndarray) -> np.ndarray:
        t0 = time.perf_counter()
        out = self.inner(prev, nxt)
        self.ms.append(1e3 * (time.perf_counter() - t0))
        return out

    def reset(self) -> None:
        self.inner.reset()


def make_flow(name: str = "dis", scale: float | None = None, max_pixels: int | None = None) -> FlowEstimator:
    """The flow factory: 'dis' (the blend's: 'dis-realtime' at half resolution with a patch stride of 5,
    warm-started from the previous pair), 'dis-<preset>' (cold), 'farneback'.

    ``max_pixels`` caps the working size (pixels; DIS and Farnebäck), so that the flow's cost and its pixel scale
    stop growing with the frame: at 1280x720 half resolution is 640x360, where DIS's fixed 8-px
    patches see a quarter of the context they see at 320x180.

    GPU estimators (e.g. a RAFT/NeuFlow engine) belong here, imported lazily and raising
    ``BackendUnavailable`` when their hardware or package is missing; never a silent fallback.
    """
    if name == "dis":  # the blend's: consecutive frames, so each pair starts from the last pair's flow
        return DISFlow("realtime", 0.5 if scale is None else scale, max_pixels, _DIS_STREAM, warm=True)
    if name.startswith("dis-") and name[4:] in DIS_PRESET_NAMES:
        return DISFlow(name[4:], 0.5 if scale is None else scale, max_pixels)
    if name == "farneback":
        return FarnebackFlow(1.0 if scale is None else scale, max_pixels=max_pixels)
    raise VstError(f"unknown flow estimator {name!r}; choose one of: {', '.join(FLOW_NAMES)}")


def read_flo(path: str | Path) -> np.ndarray:
    """Read a Middlebury .flo file -> (H, W, 2) float32."""
    raw = Path(path).read_bytes()
    if len(raw) < 12 or np.frombuffer(raw[:4], "<f4")[0] != FLO_MAGIC:
        raise VstError(f"{path} is not a Middlebury .flo file (no PIEH header)")
    w, h = (int(v) for v in np.frombuffer(raw[4:12], "<i4"))
    if w <= 0 or h <= 0 or len(raw) != 12 + 8 * w * h:
        raise VstError(f"{path}: corrupt .flo ({w}x{h} header, {len(raw)} bytes)")
    return np.frombuffer(raw[12:], "<f4").reshape(h, w, 2).copy()


def write_flo(path: str | Path, flow: np.ndarray) -> None:
    """Write (H, W, 2) flow as a Middlebury .flo file (little-endian float32)."""
    if flow.ndim != 3 or flow.shape[2] != 2:
        raise ValueError(f"flow must be (H, W, 2), got {flow.shape}")
    h, w = flow.shape[:2]
    header = np.array([FLO_MAGIC], "<f4").tobytes() + np.array([w, h], "<i4").tobytes()
    Path(path).write_bytes(header + np.ascontiguousarray(flow, "<f4").tobytes())


def endpoint_error(flow: np.ndarray, gt: np.ndarray, valid: np.ndarray | None = None) -> float:
    """Mean end-point error ||flow - gt||₂ over ``valid`` pixels (all when None)."""
    epe = np.linalg.norm(flow.astype(np.float64) - gt, axis=-1)
    return float(epe[valid].mean() if valid is not None else epe.mean())
