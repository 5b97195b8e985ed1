"""The one inference pipeline per process: source -> engine -> blend -> newest output.

Two threads, so that the newest frame always wins:

    capture thread   reads the source at its own pace into a one-slot input (an unread frame
                     that gets overwritten counts as dropped); reconnects live sources with
                     exponential backoff
    inference thread takes the newest input, runs engine + blend, publishes one output

Viewers never call the engine: WebRTC tracks await ``Pipeline.next_output`` and share the one
output (``vst.stream.webrtc`` fans it out). Engine/source exceptions are logged, counted and shown
in the picture (an error banner); the video never silently freezes.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from vst.errors import SourceError, VstError
from vst.imaging import fit_size
from vst.stream.blend import DEFAULT_BUDGET, make_blend
from vst.stream.engine import Engine, make_engine
from vst.stream.sources import Frame, Source, open_source
from vst.styles import Style, resolve_style

log = logging.getLogger("vst.pipeline")

STAMP_BITS = 24
"""Latency stamp: bits of (capture wall-clock ms mod 2**24), after a white+black sync pair."""
STAMP_BLOCKS = STAMP_BITS + 2
STAMP_HEIGHT = 12


@dataclass(frozen=True)
class PipelineConfig:
    """What the pipeline runs. Defaults live here and nowhere else."""

    source: str = "sample"
    """Source spec (see ``vst.stream.sources``) or 'browser' (frames pushed by a WebRTC viewer)."""
    size: tuple[int, int] = (640, 360)
    """Box the frames are fitted into (aspect kept, even sides)."""
    fps: float | None = None
    """Pacing for files/testsrc (None: the file's own rate); a rate hint for webcams."""
    style: str | None = None
    """Style name or path (None: the default style)."""
    backend: str = "auto"
    """Engine backend passed to ``make_engine``."""
    blend: float = 0.0
    """Initial temporal blend strength (0: off)."""
    blend_budget: float | None = DEFAULT_BUDGET
    """The blend's most mean |out − G| per frame, 0..255 levels (None: no budget)."""
    reconnect_min_s: float = 0.5
    """First reconnect delay for a dropped live source; doubles up to ``reconnect_max_s``."""
    reconnect_max_s: float = 8.0
    """Ceiling of the reconnect backoff."""
    idle_s: float = 0.5
    """With no new input for this long while the source is down, re-publish a status frame."""
    stamp: bool = False
    """Stamp each output's capture time into its top rows (for glass-to-glass latency tests)."""


class OneSlot:
    """A one-element mailbox: ``put`` overwrites, ``take`` waits for and removes the newest item."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: Any = None
        self._full = False

    def put(self, item: Any) -> bool:
        """Store ``item``; True when an unread item was overwritten (a dropped frame)."""
        with self._cond:
            dropped = self._full
            self._item, self._full = item, True
            self._cond.notify()
            return dropped

    def take(self, timeout: float) -> Any:
        """The newest item, or None after ``timeout`` seconds without one."""
        with self._cond:
            if not self._full:
                self._cond.wait(timeout)
            if not self._full:
                return None
            item, self._item, self._full = self._item, None, False
            return item

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()


class BrowserSource:
    """A live source fed by a WebRTC viewer's camera: ``push`` from the event loop, iterate in a thread.

    Holds only the newest ``av.VideoFrame``; conversion to RGB happens in the reading thread, off
    the event loop.
    """

    live = True

    def __init__(self, size: tuple[int, int], fps: float = 30.0) -> None:
        self.size = size
        self.fps = fps
        self._slot = OneSlot()
        self._closed = False
        self.publisher: str | None = None
        """Session id of the viewer whose camera is the input (the latest one wins)."""

    def push(self, frame: Any) -> None:
        self._slot.put(frame)

    def release(self, session_id: str) -> bool:
        """The publisher ``session_id`` left: forget it and its pending frame. True if it was the input."""
        if self.publisher != session_id:
            return False
        self.publisher = None
        self._slot.take(0)
        return True

    def __iter__(self) -> Iterator[Frame]:
        t0, n = time.monotonic(), 0
        while not self._closed:
            vf = self._slot.take(0.25)
            if vf is None:
                continue
            w, h = fit_size(vf.width, vf.height, self.size)
            image = vf.to_ndarray(width=w, height=h, format="rgb24")
            yield Frame(np.ascontiguousarray(image), time.monotonic() - t0, n)
            n += 1

    def close(self) -> None:
        self._closed = True
        self._slot.wake()


@dataclass
class Output:
    """One published result. Arrays are never mutated after publishing (viewers share them)."""

    seq: int
    stylized: np.ndarray
    """(H, W, 3) uint8 RGB."""
    original: np.ndarray
    """(H, W, 3) uint8 RGB, the input the stylized frame came from."""
    stylized_yuv: np.ndarray
    """(H*3/2, W) uint8 I420 of ``stylized``: converted once here, so viewers' encoders skip it."""
    original_yuv: np.ndarray
    """(H*3/2, W) uint8 I420 of ``original``."""
    captured: float
    """Wall-clock time (time.time()) the source frame was read."""


@dataclass
class _Rate:
    """Events per second over a sliding window."""

    window: float = 2.0
    times: deque[float] = field(default_factory=lambda: deque(maxlen=512))

    def tick(self, t: float) -> None:
        self.times.append(t)

    def rate(self, now: float) -> float:
        while self.times and now - self.times[0] > self.window:
            self.times.popleft()
        if len(self.times) < 2:
            return 0.0
        span = max(now - self.times[0], 1e-3)
        return (len(self.times) - 1) / span if span > 0 else 0.0


def stamp_time(image: np.ndarray, ms: int) -> None:
    """Write ``ms mod 2**24`` as black/white blocks across the top rows of ``image`` (in place)."""
    h, w = image.shape[:2]
    bw = w // (STAMP_BLOCKS + 2)
    if bw < 4 or h < STAMP_HEIGHT * 2:
        return
    bits = [1, 0] + [(ms >> (STAMP_BITS - 1 - i)) & 1 for i in range(STAMP_BITS)]
    for i, b in enumerate(bits):
        image[:STAMP_HEIGHT, i * bw : (i + 1) * bw] = 255 if b else 0


def read_stamp(image: np.ndarray) -> int | None:
    """Inverse of ``stamp_time`` (None when the sync pair is not there)."""
    w = image.shape[1]
    bw = w // (STAMP_BLOCKS + 2)
    if bw < 4:
        return None
    y = STAMP_HEIGHT // 2
    lum = [int(image[y, i * bw + bw // 2].mean()) for i in range(STAMP_BLOCKS)]
    if lum[0] < 128 or lum[1] >= 128:
        return None
    value = 0
    for v in lum[2:]:
        value = (value << 1) | (v >= 128)
    return value


def banner(image: np.ndarray, text: str, colour: tuple[int, int, int] = (200, 30, 30)) -> np.ndarray:
    """A dimmed copy of ``image`` with ``text`` on a coloured bar: the visible error state."""
    out = (image.astype(np.uint16) * 2 // 5).astype(np.uint8)
    h, w = out.shape[:2]
    bar = max(18, h // 8)
    y0 = h // 2 - bar // 2
    out[y0 : y0 + bar] = colour
    scale = max(0.35, min(1.2, w / 900))
    cv2.putText(out, text[:60], (6, y0 + bar * 2 // 3), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return out


class Pipeline:
    """Source -> engine -> blend in worker threads; the newest result is awaited by WebRTC tracks."""

    def __init__(self, config: PipelineConfig) -> None:
        self.config = config
        self.style: Style = resolve_style(config.style)
        self.browser: BrowserSource | None = None
        self._source: Source | None = None
        self._engines: dict[str, Engine] = {}
        self._engine: Engine | None = None
        self._engine_lock = threading.Lock()  # engine builds (style switches) one at a time
        self._blend = make_blend(config.blend, budget=config.blend_budget)
        self.blend_alpha = config.blend
        self._reset_blend = False
        self._in = OneSlot()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._out: Output | None = None
        self._seq = 0
        self._loops: dict[asyncio.AbstractEventLoop, asyncio.Event] = {}
        self._loops_lock = threading.Lock()
        # stats (written by the worker threads, read by /stats; plain ints/floats are fine to race on)
        self.state = "starting"
        self.last_error = ""
        self.frames_in = 0
        self.frames_inferred = 0
        self.dropped = 0
        self.engine_errors = 0
        self.source_errors = 0
        self.reconnects = 0
        self._rate_in = _Rate()
        self._rate_out = _Rate()
        self._infer_ms: deque[float] = deque(maxlen=120)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Build the engine and open the source (raising VstError for the CLI), then start the threads."""
        self._engine = self.build_engine(self.style)
        if self.config.source == "browser":
            self.browser = BrowserSource(self.config.size, self.config.fps or 30.0)
            self._source = self.browser
            self.state = "waiting for a browser camera"
        else:
            self._source = self._open()
        for name, target in (("vst-capture", self._capture_loop), ("vst-infer", self._infer_loop)):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self, timeout: float = 8.0) -> None:
        """Stop both threads and release the source (camera, RTSP connection).

        The capture thread closes its own source (closing a PyAV container under a decoding
        thread is unsafe); only a thread stuck past ``timeout`` gets its source closed from here.
        """
        self._stop.set()
        self._in.wake()
        if self.browser is not None:
            self.browser.close()
        for t in self._threads:
            t.join(timeout)
            if t.is_alive():
                log.warning("thread %s did not stop within %.1fs", t.name, timeout)
        self._threads.clear()
        if self._source is not None:
            self._source.close()
            self._source = None
        self.state = "stopped"

    def _open(self) -> Source:
        # Files loop while served; sources.AvSource never loops a live stream, whatever its scheme.
        return open_source(self.config.source, self.config.size, fps=self.config.fps, loop=True, realtime=False)

    # ------------------------------------------------------------------ styles and blend

    def build_engine(self, style: Style) -> Engine:
        """Build (or reuse) the engine for ``style``. Slow: call from a worker thread, not the event loop."""
        with self._engine_lock:
            key = str(style.weights.resolve())  # by file: a path and a bundled style may share a name
            if key not in self._engines:
                self._engines[key] = make_engine(style, self.config.backend)
            return self._engines[key]

    def set_style(self, name: str) -> Style:
        """Switch style (blocking while a new engine builds). Raises StyleError/VstError for bad names."""
        style = resolve_style(name)
        engine = self.build_engine(style)
        self.style, self._engine = style, engine
        self._reset_blend = True
        log.info("style -> %s", style.name)
        return style

    def set_blend(self, alpha: float) -> None:
        """Set the blend strength live; raises VstError for a value the blend stage refuses."""
        try:
            self._blend.alpha = alpha
        except ValueError as e:
            raise VstError(str(e)) from None
        self.blend_alpha = alpha

    # ------------------------------------------------------------------ threads

    def _capture_loop(self) -> None:
        try:
            self._capture()
        finally:
            if self._source is not None:
                self._source.close()
                self._source = None

    def _capture(self) -> None:
        delay = self.config.reconnect_min_s
        while not self._stop.is_set():
            src = self._source
            try:
                if src is None:
                    self.state = f"reconnecting to {self.config.source}"
                    src = self._source = self._open()
                    self.reconnects += 1
                    self._reset_blend = True
                    log.info("source %s reopened", self.config.source)
                paced = not src.live
                period = 1.0 / (self.config.fps or src.fps or 30.0)
                t0 = time.monotonic()
                for n, frame in enumerate(src):
                    if self._stop.is_set():
                        return
                    if paced:  # files/testsrc: emit at the frame rate, like a camera would
                        wait = t0 + n * period - time.monotonic()
                        if wait > 0:
                            self._stop.wait(wait)
                        elif wait < -1.0:
                            t0 = time.monotonic() - n * period
                    now = time.monotonic()
                    self.frames_in += 1
                    self._rate_in.tick(now)
                    if self.state != "running" and (self.browser is None or self.browser.publisher is not None):
                        self.state = "running"
                    delay = self.config.reconnect_min_s
                    if self._in.put((frame, time.time())):
                        self.dropped += 1
                if self._stop.is_set():
                    return
                raise SourceError(f"{self.config.source} ended")
            except VstError as e:
                if self._stop.is_set():
                    return
                self.source_errors += 1
                self.last_error = str(e)
                log.warning("source error (%d): %s; retrying in %.1fs", self.source_errors, e, delay)
                if src is not None and src is not self.browser:
                    src.close()
                    self._source = None
                self.state = f"source lost, retrying in {delay:.1f}s"
                self._stop.wait(delay)
                delay = min(delay * 2, self.config.reconnect_max_s)
            except Exception as e:  # a bug in a source must not kill capture silently
                self.source_errors += 1
                self.last_error = f"{type(e).__name__}: {e}"
                log.exception("unexpected source failure")
                if src is not None and src is not self.browser:
                    src.close()
                    self._source = None
                self._stop.wait(delay)
                delay = min(delay * 2, self.config.reconnect_max_s)

    def _infer_loop(self) -> None:
        logged = 0
        while not self._stop.is_set():
            item = self._in.take(self.config.idle_s)
            if item is None:
                if self._out is not None and self.state != "running":
                    # source down: keep the viewers' video alive with a visible status
                    self._publish(banner(self._out.original, self.state, (40, 40, 160)), self._out.original, time.time())
                continue
            frame, captured = item
            image = frame.image
            if self._reset_blend:
                self._blend.reset()
                self._reset_blend = False
            engine = self._engine
            t = time.perf_counter()
            try:
                assert engine is not None
                out = engine(image)
                out = self._blend(image, out)  # alpha 0 is a pass-through
                self._infer_ms.append((time.perf_counter() - t) * 1e3)
                self.frames_inferred += 1
            except Exception as e:  # logged, counted and shown; the next frame tries again
                self.engine_errors += 1
                self.last_error = f"style {self.style.name}: {type(e).__name__}: {e}"
                if logged < 3 or self.engine_errors % 100 == 0:
                    log.error("engine failed on frame %d (%d errors)", frame.index, self.engine_errors, exc_info=logged < 3)
                    logged += 1
                out = banner(image, f"style error: {type(e).__name__}")
            if self.config.stamp:
                out = np.array(out, copy=True) if not out.flags.writeable else out
                stamp_time(out, int(captured * 1000) % (1 << STAMP_BITS))
            self._publish(out, image, captured)

    def _publish(self, stylized: np.ndarray, original: np.ndarray, captured: float) -> None:
        self._seq += 1
        self._out = Output(self._seq, stylized, original, cv2.cvtColor(stylized, cv2.COLOR_RGB2YUV_I420),
                           cv2.cvtColor(original, cv2.COLOR_RGB2YUV_I420), captured)  # fmt: skip
        self._rate_out.tick(time.monotonic())
        with self._loops_lock:
            items = list(self._loops.items())
        for loop, _ in items:
            try:
                loop.call_soon_threadsafe(self._wake, loop)
            except RuntimeError:  # loop closed during shutdown
                with self._loops_lock:
                    self._loops.pop(loop, None)

    # ------------------------------------------------------------------ asyncio side

    def _wake(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._loops_lock:
            ev = self._loops.get(loop)
            self._loops[loop] = asyncio.Event()
        if ev is not None:
            ev.set()

    async def next_output(self, after: int, timeout: float) -> Output | None:
        """The newest output with ``seq > after``; None after ``timeout`` seconds without one."""
        out = self._out
        if out is not None and out.seq > after:
            return out
        loop = asyncio.get_running_loop()
        with self._loops_lock:
            ev = self._loops.setdefault(loop, asyncio.Event())
        try:
            await asyncio.wait_for(ev.wait(), timeout)
        except asyncio.TimeoutError:
            return None
        out = self._out
        return out if out is not None and out.seq > after else None

    @property
    def latest(self) -> Output | None:
        return self._out

    # ------------------------------------------------------------------ stats

    def stats(self) -> dict[str, Any]:
        now = time.monotonic()
        ms = sorted(self._infer_ms)
        return {
            "state": self.state,
            "source": self.config.source,
            "style": self.style.name,
            "backend": getattr(self._engine, "backend", None),
            "size": list(self._out.stylized.shape[1::-1]) if self._out is not None else None,
            "source_fps": round(self._rate_in.rate(now), 2),
            "output_fps": round(self._rate_out.rate(now), 2),
            "inference_ms": round(ms[len(ms) // 2], 2) if ms else None,
            "inference_ms_p95": round(ms[int(len(ms) * 0.95)], 2) if ms else None,
            "frames_in": self.frames_in,
            "frames_inferred": self.frames_inferred,
            "dropped_frames": self.dropped,
            "engine_errors": self.engine_errors,
            "source_errors": self.source_errors,
            "reconnects": self.reconnects,
            "last_error": self.last_error,
            "blend": self.blend_alpha,
            "blend_available": True,
        }

