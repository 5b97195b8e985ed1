"""The one pipeline per process: source -> processor -> published output -> sinks.

    capture thread     reads the source at its own pace into a one-slot input (an unread frame that
                       gets overwritten counts as dropped); reconnects live sources with backoff
    processing thread  takes the newest input, applies queued commands between frames, and submits
                       the frame to the processor (vst.stream.processor: host or CUDA)
    output callback    the processor hands each result to ``_on_processed``, which publishes it
                       (one I420 conversion for every viewer); outputs never go backwards

Viewers never call the engine: WebRTC tracks await ``Pipeline.next_output`` and share the one
output (``vst.stream.webrtc`` fans it out). Engine/source exceptions are logged, counted and shown
in the picture (an error banner); the video never silently freezes.

State and commands. ``status`` (a ``PipelineState``) has one writer, the processing thread: the
capture thread, the server and the CLI post transitions and commands (style, blend, reset) to one
queue, which the processing thread applies between frames.

The parts live beside this module: ``newest`` (the one-slot mailbox), ``browser_source`` (the
viewer-fed source), ``processor``/``cuda_processor`` (the device-specific step), ``overlay``
(latency stamp and banners).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import cv2
import numpy as np

from vst.errors import SourceError, VstError
from vst.stream.blend_config import DEFAULT_BUDGET, BlendConfig
from vst.stream.browser_source import BrowserSource
from vst.stream.cuda_processor import CudaProcessor, ProcessedI420
from vst.stream.engine import Engine, make_engine
from vst.stream.newest import OneSlot
from vst.stream.overlay import STAMP_BITS, STAMP_BLOCKS, STAMP_HEIGHT, banner, read_stamp, stamp_time
from vst.stream.processor import Processed, Processor, ProcessorKind, make_processor
from vst.stream.sizing import SizeControl, SizeController, guided_upscale, ladder, upscale
from vst.stream.sources import Source, open_source
from vst.styles import Style, resolve_style

log = logging.getLogger("vst.pipeline")

__all__ = ["STAMP_BITS", "STAMP_BLOCKS", "STAMP_HEIGHT", "BrowserSource", "OneSlot", "Output", "Pipeline",
           "PipelineConfig", "PipelineState", "banner", "read_stamp", "stamp_time"]  # fmt: skip


class PipelineState(enum.Enum):
    """Where the pipeline is; ``Pipeline.state`` gives it as text with a detail (e.g. the retry delay)."""

    STARTING = "starting"
    WAITING_FOR_CAMERA = "waiting for a browser camera"
    RUNNING = "running"
    RECONNECTING = "reconnecting"
    SOURCE_LOST = "source lost"
    STOPPED = "stopped"


@dataclass(frozen=True)
class PipelineConfig:
    """What the pipeline runs. Defaults live here and nowhere else."""

    source: str = "sample"
    """Source spec (see ``vst.stream.sources``) or 'browser' (frames pushed by a WebRTC viewer)."""
    size: tuple[int, int] = (640, 360)
    """Box the frames are fitted into (aspect kept, even sides): the output size viewers get."""
    adaptive: bool = False
    """Adaptive processing size (``--size auto``): stylize a smaller copy when the source rate cannot be
    held, and scale the result back up to the output size (``vst.stream.sizing``)."""
    min_size: tuple[int, int] = (160, 90)
    """Adaptive: the smallest processing size (a box the frame is fitted into)."""
    upscale: Literal["guided", "bicubic"] = "guided"
    """Adaptive: how a smaller stylization is scaled to the output size. 'guided' (a guided filter driven
    by the full-resolution input) measured ~2 dB PSNR closer to a full-size stylization than bicubic at
    the same total time (docs/benchmarks.md)."""
    size_control: SizeControl = field(default_factory=SizeControl)
    """Adaptive: when the controller steps (thresholds, windows, hysteresis)."""
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
    blend_options: BlendConfig = field(default_factory=BlendConfig)
    """The rest of the blend (σ, mask threshold, scene cut...); ``blend`` and ``blend_budget`` override its two fields."""
    processor: ProcessorKind = "auto"
    """'auto': the CUDA processor for torch-cuda/tensorrt engines, else the host one; 'host' forces the host one."""
    reconnect_min_s: float = 0.5
    """First reconnect delay for a dropped live source; doubles up to ``reconnect_max_s``."""
    reconnect_max_s: float = 8.0
    """Ceiling of the reconnect backoff."""
    idle_s: float = 0.5
    """With no new input for this long while the source is down, re-publish a status frame."""
    stamp: bool = False
    """Stamp each output's capture time into its top rows (for glass-to-glass latency tests)."""
    device_i420: bool = False
    """CUDA processor: convert to I420 on the GPU and download that (half the bytes, no host conversion)
    for frames the host publishes as they are (not upscaled, not stamped). ``Output.stylized`` is then
    decoded from the I420 on first use, so it is no longer the exact RGB."""

    @property
    def blend_config(self) -> BlendConfig:
        """The validated blend config (``ValueError`` for an invalid one)."""
        return replace(self.blend_options, alpha=self.blend, budget=self.blend_budget)


# Commands and transitions, applied by the processing thread between frames.
@dataclass(frozen=True)
class _State:
    state: PipelineState
    detail: str = ""


@dataclass(frozen=True)
class _SetEngine:
    engine: Engine
    style: Style | None = None
    done: threading.Event | None = None


@dataclass(frozen=True)
class _SetBlend:
    alpha: float


@dataclass(frozen=True)
class _ResetBlend:
    pass


_Command = _State | _SetEngine | _SetBlend | _ResetBlend


@dataclass
class Output:
    """One published result. Arrays are never mutated after publishing (viewers share them)."""

    seq: int
    _stylized: np.ndarray | None
    """(H, W, 3) uint8 RGB, or None where the CUDA processor gave I420 only (see ``stylized``)."""
    original: np.ndarray
    """(H, W, 3) uint8 RGB, the input the stylized frame came from."""
    stylized_yuv: np.ndarray
    """(H*3/2, W) uint8 I420 of ``stylized``: converted once here, so viewers' encoders skip it."""
    captured: float
    """Wall-clock time (time.time()) the source frame was read."""
    _original_yuv: np.ndarray | None = field(default=None, repr=False)

    @property
    def stylized(self) -> np.ndarray:
        """(H, W, 3) uint8 RGB. From the CUDA processor's I420 it is decoded on first use (viewers'
        encoders read only ``stylized_yuv``); two threads may both convert once, to equal results."""
        if self._stylized is None:
            self._stylized = cv2.cvtColor(self.stylized_yuv, cv2.COLOR_YUV2RGB_I420)
        return self._stylized

    @property
    def original_yuv(self) -> np.ndarray:
        """(H*3/2, W) uint8 I420 of ``original``, converted on first use: most outputs are never shown
        in their original form, and this runs on the pipeline's hot path otherwise. Two threads may
        both convert once; the results are equal."""
        if self._original_yuv is None:
            self._original_yuv = cv2.cvtColor(self.original, cv2.COLOR_RGB2YUV_I420)
        return self._original_yuv


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


class Pipeline:
    """Source -> processor in worker threads; the newest result is awaited by WebRTC tracks."""

    def __init__(self, config: PipelineConfig) -> None:
        self.config = config
        try:
            self.blend_config = config.blend_config
        except ValueError as e:
            raise VstError(f"--blend: {e}") from None
        self.style: Style = resolve_style(config.style)
        self.browser: BrowserSource | None = None
        self._source: Source | None = None
        self._engines: dict[str, Engine] = {}
        self._current: Engine | None = None
        self._engine_lock = threading.Lock()  # engine builds (style switches) one at a time
        self._processor: Processor | None = None
        self._inbox: queue.SimpleQueue[_Command] = queue.SimpleQueue()
        self.blend_alpha = self.blend_config.alpha
        """The blend strength last asked for (applied by the processing thread before the next frame)."""
        self._in = OneSlot()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._out: Output | None = None
        self._seq = 0
        self._last_index = -1
        self._publish_lock = threading.Lock()  # CUDA outputs arrive on several encode threads
        self._loops: dict[asyncio.AbstractEventLoop, asyncio.Event] = {}
        self._loops_lock = threading.Lock()
        self._state = PipelineState.STARTING
        self._state_detail = ""
        # stats (written by the worker threads, read by /stats; plain ints/floats are fine to race on)
        self.last_error = ""
        self.frames_in = 0
        self.frames_inferred = 0
        self.dropped = 0
        self.stale_dropped = 0
        self.engine_errors = 0
        self.source_errors = 0
        self.reconnects = 0
        self._rate_in = _Rate()
        self._rate_out = _Rate()
        self._infer_ms: deque[float] = deque(maxlen=120)
        self._shrink_ms = self._upscale_ms = 0.0  # the last resize to and from the processing size (--size auto)
        # adaptive size (processing thread only): the controller for the current frame size, and the
        # full-resolution inputs of frames in flight (the upscale's guide and the published original)
        self._sizer: SizeController | None = None
        self._sizer_frame: tuple[int, int] | None = None
        self._full: dict[float, np.ndarray] = {}
        self._preparing = threading.Event()  # set while the ladder's shapes compile (OpenVINO)
        self.processing_size: tuple[int, int] | None = None
        """(W, H) the engine ran at for the last frame."""

    # ------------------------------------------------------------------ state

    @property
    def status(self) -> PipelineState:
        return self._state

    @property
    def state(self) -> str:
        """The state as text for /stats, banners and logs: the detail where there is one."""
        return self._state_detail or self._state.value

    @state.setter
    def state(self, text: str) -> None:
        """Compatibility for callers that assigned the text (the server: 'waiting for a browser camera'):
        posted, like every transition; prefer ``camera_released``."""
        known = {s.value: s for s in PipelineState}
        self._post(_State(known.get(text, PipelineState.WAITING_FOR_CAMERA if "camera" in text else PipelineState.SOURCE_LOST),
                          "" if text in known else text))  # fmt: skip

    def camera_released(self) -> None:
        """The browser camera that was the input left: wait for another (called by the server)."""
        self._post(_State(PipelineState.WAITING_FOR_CAMERA))

    def _post(self, command: _Command) -> None:
        self._inbox.put(command)
        if not self._threads:  # not running: nobody else applies it
            self._apply_commands()
        else:
            self._in.wake()

    def _apply_commands(self) -> None:
        """Only the processing thread (or the one thread before start/after stop) runs this."""
        while True:
            try:
                cmd = self._inbox.get_nowait()
            except queue.Empty:
                return
            if isinstance(cmd, _State):
                if (cmd.state, cmd.detail) != (self._state, self._state_detail):
                    log.info("state -> %s", cmd.detail or cmd.state.value)
                self._state, self._state_detail = cmd.state, cmd.detail
            elif isinstance(cmd, _SetEngine):
                self._current = cmd.engine
                if self._processor is not None:
                    self._processor.set_engine(cmd.engine)
                if self._sizer is not None:  # a new style's engine compiles the ladder's shapes too
                    self._prepare(self._sizer.sizes)
                if cmd.style is not None:
                    self.style = cmd.style
                    log.info("style -> %s", cmd.style.name)
                if cmd.done is not None:
                    cmd.done.set()
            elif isinstance(cmd, _SetBlend):
                if self._processor is not None:
                    self._processor.set_blend(cmd.alpha)
            elif isinstance(cmd, _ResetBlend) and self._processor is not None:
                self._processor.reset()

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Build the engine and processor and open the source (raising VstError for the CLI), then start the threads."""
        self._current = self.build_engine(self.style)
        self._processor = make_processor(self._current, self.blend_config, self._on_processed, self.config.processor)
        if self.config.source == "browser":
            self.browser = BrowserSource(self.config.size, self.config.fps or 30.0)
            self._source = self.browser
            self._post(_State(PipelineState.WAITING_FOR_CAMERA))
        else:
            self._source = self._open()
        for name, target in (("vst-capture", self._capture_loop), ("vst-process", self._process_loop)):
            t = threading.Thread(target=target, name=name, daemon=True)
            self._threads.append(t)
        for t in self._threads:
            t.start()

    def stop(self, timeout: float = 8.0) -> None:
        """Stop both threads, the processor, and release the source (camera, RTSP connection).

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
        if self._processor is not None:
            try:
                self._processor.flush(timeout)
            except VstError as e:
                log.warning("processor at stop: %s", e)
            self._processor.close()
        if self._source is not None:
            self._source.close()
            self._source = None
        self._post(_State(PipelineState.STOPPED))  # no thread left: applied here

    def _open(self) -> Source:
        # Files loop while served; sources.AvSource never loops a live stream, whatever its scheme.
        return open_source(self.config.source, self.config.size, fps=self.config.fps, loop=True, realtime=False)

    # ------------------------------------------------------------------ styles and blend (commands)

    def build_engine(self, style: Style) -> Engine:
        """Build (or reuse) the engine for ``style``. Slow: call from a worker thread, not the event loop."""
        with self._engine_lock:
            key = str(style.weights.resolve())  # by file: a path and a bundled style may share a name
            if key not in self._engines:
                self._engines[key] = make_engine(style, self.config.backend)
            return self._engines[key]

    def set_style(self, name: str, timeout: float = 10.0) -> Style:
        """Switch style: builds the engine here (slow: not on the event loop), then the processing thread
        swaps it in between frames; returns once it has (or after ``timeout``). Raises StyleError/VstError."""
        style = resolve_style(name)
        engine = self.build_engine(style)
        done = threading.Event()
        self._post(_SetEngine(engine, style, done))
        if not done.wait(timeout):
            log.warning("style %s: the processing thread has not applied it within %.0f s", style.name, timeout)
        return style

    def set_engine(self, engine: Engine) -> None:
        """Run ``engine`` from the next frame on (the style stays as it is named; tests and tools)."""
        self._post(_SetEngine(engine))

    def set_blend(self, alpha: float) -> None:
        """Set the blend strength live (never blocks); raises VstError for a value the blend config refuses."""
        try:
            alpha = self.blend_config.check_alpha(alpha)
        except ValueError as e:
            raise VstError(str(e)) from None
        self.blend_alpha = alpha
        self._post(_SetBlend(alpha))

    def reset_blend(self) -> None:
        self._post(_ResetBlend())

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
        announced = 0.0
        while not self._stop.is_set():
            src = self._source
            try:
                if src is None:
                    self._post(_State(PipelineState.RECONNECTING, f"reconnecting to {self.config.source}"))
                    src = self._source = self._open()
                    self.reconnects += 1
                    self._post(_ResetBlend())
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
                    if self._state is not PipelineState.RUNNING and (self.browser is None or self.browser.publisher is not None):
                        if now - announced > 0.1:  # posted again until the processing thread has applied it
                            self._post(_State(PipelineState.RUNNING))
                            announced = now
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
                self._post(_State(PipelineState.SOURCE_LOST, f"source lost, retrying in {delay:.1f}s"))
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

    def _process_loop(self) -> None:
        logged = 0
        processor = self._processor
        assert processor is not None
        while not self._stop.is_set():
            self._apply_commands()
            item = self._in.take(self.config.idle_s)
            self._apply_commands()
            if item is None:
                if self._out is not None and self._state is not PipelineState.RUNNING and not self._stop.is_set():
                    # source down: keep the viewers' video alive with a visible status
                    self._publish(banner(self._out.original, self.state, (40, 40, 160)), self._out.original, time.time())
                continue
            frame, captured = item
            t0 = time.perf_counter()
            try:
                image = self._shrink(frame.image, captured)
                if self.config.device_i420 and isinstance(processor, CudaProcessor):  # unless the host must edit the RGB
                    h, w = image.shape[:2]
                    direct = image is frame.image and not self.config.stamp and h % 2 == 0 and w % 2 == 0
                    processor.set_output("i420" if direct else "rgb")
                processor.submit(image, captured)
            except Exception as e:  # logged, counted and shown; the next frame tries again
                self._full.pop(captured, None)
                self.engine_errors += 1
                self.last_error = f"style {self.style.name}: {type(e).__name__}: {e}"
                if logged < 3 or self.engine_errors % 100 == 0:
                    log.error("engine failed on frame %d (%d errors)", frame.index, self.engine_errors, exc_info=logged < 3)
                    logged += 1
                self._publish(self._stamped(banner(frame.image, f"style error: {type(e).__name__}"), captured), frame.image, captured)
                continue
            if self._sizer is not None:
                self._adapt(time.perf_counter() - t0)

    # ------------------------------------------------------------------ adaptive size

    def _shrink(self, image: np.ndarray, captured: float) -> np.ndarray:
        """The frame the processor gets: ``image`` itself, or (adaptive) a copy at the processing size.
        The full-resolution image is kept for ``_on_processed`` (keyed by capture time)."""
        h, w = image.shape[:2]
        if not self.config.adaptive:
            self.processing_size = (w, h)
            return image
        if self._sizer_frame != (w, h):  # first frame, or the source changed size: a new ladder
            start = self._sizer.index if self._sizer is not None else 0
            sizes = ladder((w, h), self.config.min_size)
            self._sizer, self._sizer_frame = SizeController(sizes, self.config.size_control, start), (w, h)
            self._prepare(sizes)
        size = self._sizer.size
        self.processing_size = size
        if size == (w, h):
            return image
        self._full[captured] = image
        while len(self._full) > 8:  # outputs that never came (a processor error): forget the oldest
            self._full.pop(next(iter(self._full)))
        t0 = time.perf_counter()
        small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        self._shrink_ms = (time.perf_counter() - t0) * 1e3
        return small

    def _prepare(self, sizes: list[tuple[int, int]]) -> None:
        """Compile every ladder size now, off the processing thread (OpenVINO compiles per shape)."""
        engine = self._current
        assert engine is not None  # set before the first frame

        def run() -> None:
            try:
                engine.prepare(sizes)
            except Exception as e:  # a size it cannot compile fails again, visibly, when it is used
                log.warning("could not prepare processing sizes %s: %s", sizes, e)
            finally:
                self._preparing.clear()

        self._preparing.set()
        threading.Thread(target=run, name="vst-prepare", daemon=True).start()

    def _adapt(self, busy_s: float) -> None:
        """Feed the controller one frame's busy time (shrink + engine + blend + upscale + publish)."""
        assert self._sizer is not None
        if self._preparing.is_set():  # compiles share the cores: these timings are not the steady state
            return
        period = 1.0 / (self._rate_in.rate(time.monotonic()) or self.config.fps or 30.0)
        # the processor's own time (engine + blend) runs at the processing size; the rest (resize,
        # upscale, I420 conversion) is paid at the output size whatever the processing size
        scalable = self._infer_ms[-1] if self._infer_ms else None
        # the shrink and the upscale vanish altogether on the first rung (the frame's own size)
        resize = self._shrink_ms + self._upscale_ms if self._sizer.index > 0 else 0.0
        if self._sizer.update(time.monotonic(), busy_s * 1e3, period, scalable, resize) is not None and self._processor is not None:
            self._processor.reset()  # the blend's history is at the old size

    def _stamped(self, image: np.ndarray, captured: float) -> np.ndarray:
        if self.config.stamp:
            stamp_time(image, int(captured * 1000) % (1 << STAMP_BITS))
        return image

    def _on_processed(self, p: Processed | ProcessedI420) -> None:
        """The processor's output callback (the processing thread on the host, encode threads on CUDA)."""
        with self._publish_lock:
            if p.index <= self._last_index:  # an encode worker finished after a newer frame's: stale
                self.stale_dropped += 1
                return
            self._last_index = p.index
        full = self._full.pop(p.captured, None)
        if isinstance(p, ProcessedI420) and full is None and not self.config.stamp:  # published as converted on the GPU
            self._infer_ms.append(p.process_ms)
            self.frames_inferred += 1
            self._publish(None, p.original.copy(), p.captured, p.index, p.stylized_yuv.copy())
            return
        # Published arrays are shared by every viewer and never mutated: copy what the processor may reuse.
        if full is not None and full.shape != p.stylized.shape:  # adaptive: back to the output size
            size = (full.shape[1], full.shape[0])
            t0 = time.perf_counter()
            stylized = guided_upscale(p.stylized, full) if self.config.upscale == "guided" else upscale(p.stylized, size)
            self._upscale_ms = (time.perf_counter() - t0) * 1e3
            original = full
        else:
            stylized = p.stylized if p.owned and not self.config.stamp else p.stylized.copy()
            original = p.original if p.owned else p.original.copy()
        self._infer_ms.append(p.process_ms)
        self.frames_inferred += 1
        self._publish(self._stamped(stylized, p.captured), original, p.captured, p.index)

    def _publish(self, stylized: np.ndarray | None, original: np.ndarray, captured: float, index: int | None = None,
                 yuv: np.ndarray | None = None) -> None:  # fmt: skip
        """Publish one output; ``yuv`` when it is already I420 (then ``stylized`` may be None)."""
        if yuv is None:
            if stylized is None:
                raise VstError("publish: neither an RGB picture nor its I420 was given")
            yuv = cv2.cvtColor(stylized, cv2.COLOR_RGB2YUV_I420)
        with self._publish_lock:
            if index is not None and index < self._last_index:  # overtaken during the conversion
                self.stale_dropped += 1
                return
            self._seq += 1
            self._out = Output(self._seq, stylized, original, yuv, captured)
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
        engine = self._current
        return {
            "state": self.state,
            "source": self.config.source,
            "style": self.style.name,
            "backend": engine.backend if engine is not None else None,
            "processor": self._processor.kind if self._processor is not None else None,
            "size": [self._out.stylized_yuv.shape[1], self._out.stylized_yuv.shape[0] * 2 // 3] if self._out is not None else None,
            "processing_size": list(self.processing_size) if self.processing_size is not None else None,
            "size_mode": "auto" if self.config.adaptive else "fixed",
            "size_load": round(self._sizer.load, 2) if self._sizer is not None else None,
            "size_changes": self._sizer.changes if self._sizer is not None else 0,
            "source_fps": round(self._rate_in.rate(now), 2),
            "output_fps": round(self._rate_out.rate(now), 2),
            "inference_ms": round(ms[len(ms) // 2], 2) if ms else None,
            "inference_ms_p95": round(ms[int(len(ms) * 0.95)], 2) if ms else None,
            "frames_in": self.frames_in,
            "frames_inferred": self.frames_inferred,
            "dropped_frames": self.dropped,
            "stale_outputs": self.stale_dropped,
            "engine_errors": self.engine_errors,
            "source_errors": self.source_errors,
            "reconnects": self.reconnects,
            "last_error": self.last_error,
            "blend": self.blend_alpha,
        }
