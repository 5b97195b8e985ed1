"""The CUDA processor: frames in, stylized frames out, with upload, compute and download overlapped.

    proc = CudaProcessor(make_engine(style, "torch-cuda"), CudaConfig(), on_output)
    for frame in frames:
        proc.submit(frame, time.time())   # returns as soon as the work is enqueued
    proc.flush()                          # every on_output call has returned
    proc.close()

Per frame t (slot i = t mod depth), three streams and host threads:

    host (caller)   copy frame -> pinned_in[i]          (waits only for slot i's previous upload)
    h2d stream      pinned_in[i] -> dev_in[i]           (after compute released dev_in[i])
    compute stream  uint8 HWC -> NCHW, infer, [blend], NCHW -> uint8 HWC into dev_out[i]
                    [output 'i420': RGB -> I420 into dev_yuv[i], vst.kernels.yuv]
    d2h stream      dev_out[i] -> pinned_out[i]   (or dev_yuv[i] -> pinned_yuv[i]: half the bytes)
    collector       waits on slot i's D2H event, hands the slot to an encode worker
    encode workers  on_output(Processed) on CPU threads; the slot is free again when it returns

Streams hand off through events (``wait_event``), never ``synchronize()``; the only host waits are
on one slot's event, where the host must touch that slot's pinned memory. Buffers are allocated
once per frame size (and again only when the size changes). Encode workers finish out of order: an
output older than one already handed on is stale and dropped (counted in ``stale_dropped``).

The blend is ``BlendStage``'s 'lowpass' (vst.kernels.blend) with the same ``BlendConfig``: a float32
history, live α, and the scene cut decided on the device. Flow (DIS) runs on the submitting thread.

A new frame size never stalls the stream: the engine's per-size preparation (a CUDA graph capture, a
TensorRT context or build) runs on a builder thread, on its own stream, while frames keep running at the
old size (resized to it); the next frame of the new size after it is ready switches the buffers. Only
the very first size is prepared on the submitting thread, announced in the log. Ready sizes are an LRU
(``CudaConfig.max_sizes``); a failed preparation is logged once and the old size stays. A style switch
(``set_engine``) is prepared the same way: the old engine runs until the new one's input is ready.

Every device call goes through a ``vst.stream.cuda_device.Device``: the unit tests run this
scheduling on the CPU against a fake device (tests/unit/fake_cuda.py).
"""

from __future__ import annotations

import functools
import logging
import queue
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

import cv2
import numpy as np
import torch

from vst.errors import VstError
from vst.imaging import GENERATOR_SPEC, InputSpec
from vst.stream.blend_config import BlendConfig
from vst.stream.cuda_device import Device, TorchCudaDevice
from vst.stream.engine import TensorEngine
from vst.stream.processor import OutputCallback, Processed

log = logging.getLogger("vst.cuda_processor")

OutputFormat = Literal["rgb", "i420"]
STAGES = ("upload", "preprocess", "infer", "blend", "postprocess", "download")
_SCALE = 1 / 127.5  # 0..255 levels -> the [-1, 1] tensors' scale


def reflect_pad_(x: Any, h: int, w: int, spec: InputSpec = GENERATOR_SPEC) -> None:
    """Fill x[..., h:, :] and x[..., :, w:] as ``spec.pad`` (the reference) does, in place, no allocation.

    Instance norm takes whole-image statistics, so the pad content changes every output pixel a
    little: the processor must pad exactly as the reference. Mirrors without repeating the edge
    (row h + k is row h - 2 - k), or repeats the edge where ``spec.border`` says a side is too small.
    """
    hp, wp = x.shape[-2:]
    replicate = spec.border(h, w) == "replicate"
    for k in range(hp - h):
        x[:, :, h + k, :w].copy_(x[:, :, h - 1 if replicate else h - 2 - k, :w])
    for k in range(wp - w):  # after the rows: the corner comes from the padded rows, as F.pad's does
        x[:, :, :, w + k].copy_(x[:, :, :, w - 1 if replicate else w - 2 - k])


def frame_to_input_(frame: Any, x: Any, spec: InputSpec = GENERATOR_SPEC) -> None:
    """uint8 (H, W, 3) tensor -> x (1, 3, Hp, Wp), ``spec.to_input`` in place (no allocation); x is
    ``spec.padded_hw(H, W)`` in size. Device-agnostic torch ops (the CPU unit tests check them
    against the reference). Our generators' spec only: [-1, 1], RGB."""
    if spec.value_range != -1.0 or spec.channel_order != "rgb":
        raise VstError("the CUDA processor runs our generators' input spec only ([-1, 1], RGB)")
    h, w = frame.shape[:2]
    x[0, :, :h, :w].copy_(frame.permute(2, 0, 1))  # the uint8 -> float cast happens inside the copy kernel
    x[:, :, :h, :w].div_(127.5).sub_(1.0)  # the same ops as the reference: bit-identical in fp32
    reflect_pad_(x, h, w, spec)


def output_to_frame_(y: Any, scratch: Any, out: Any) -> None:
    """(1, 3, H, W) in [-1, 1] -> uint8 (H, W, 3) ``out``, through a float32 ``scratch`` (1, 3, H, W).

    A scratch, not in place: y may be the blend history or an engine's output buffer. Rounds half to
    even (``round_``), exactly as the reference ``GENERATOR_SPEC.to_frame``.
    """
    scratch.copy_(y)
    scratch.add_(1.0).mul_(127.5).round_().clamp_(0.0, 255.0)
    out.permute(2, 0, 1).copy_(scratch[0])


@dataclass(frozen=True)
class CudaConfig:
    """How the CUDA processor is laid out. Defaults here, nowhere else."""

    blend: BlendConfig = field(default_factory=BlendConfig)
    """The temporal blend (mode 'lowpass' only); its alpha may be changed live with ``set_blend``."""
    size: tuple[int, int] | None = None
    """(W, H) to allocate buffers for up front; None: on the first frame (a new size reallocates)."""
    depth: int = 2
    """Host/device buffer sets in flight: 2 = double buffering."""
    encode_workers: int = 2
    """CPU threads running the output callback (I420 conversion, encode)."""
    timing: bool = False
    """Record CUDA timing events per stage (benchmarks only)."""
    slot_timeout_s: float = 30.0
    """Longest wait for a free slot before ``submit`` gives up with a VstError (a stuck sink)."""
    flow: str = "dis"
    """The blend's flow estimator (``vst.flow.make_flow`` name), run on the submitting thread."""
    max_sizes: int = 4
    """Frame sizes whose engine input (CUDA graph, TensorRT context) is known ready, least recently used
    forgotten first; a forgotten size is prepared again beside the stream. Keep it at most the engine's
    own bound (``EngineOptions.max_graphs``), which is what frees the device memory."""
    switch_wait_s: float = 0.1
    """How long a new size's engine preparation may hold ``submit`` before frames go on at the old size
    (resized to it) while it finishes beside the stream: a quick one switches at once."""
    output: OutputFormat = "rgb"
    """What is downloaded: 'rgb' (H, W, 3), or 'i420' converted on the device (1.5 bytes a pixel
    instead of 3) for a sink that encodes; then the callback gets ``ProcessedI420``. ``set_output``
    changes it between frames."""

    def __post_init__(self) -> None:
        if self.max_sizes < 1:
            raise ValueError(f"max_sizes must be at least 1, got {self.max_sizes}")
        if self.switch_wait_s < 0:
            raise ValueError(f"switch_wait_s must be >= 0, got {self.switch_wait_s}")
        if self.output not in ("rgb", "i420"):
            raise ValueError(f"output must be 'rgb' or 'i420', not {self.output!r}")


@dataclass(frozen=True)
class ProcessedI420:
    """A ``Processed`` whose stylized picture was converted to I420 on the device (``CudaConfig.output``).

    Same fields as ``Processed``; ``stylized_yuv`` is what was downloaded, and ``stylized`` (RGB) is
    converted back on the host only when read (a stamp, an upscale, a test). Arrays are the processor's
    buffers: valid only during the callback.
    """

    index: int
    stylized_yuv: np.ndarray
    """(H*3/2, W) uint8 I420 (``vst.kernels.yuv`` layout, what ``av.VideoFrame.from_ndarray(.., 'yuv420p')`` reads)."""
    original: np.ndarray
    """(H, W, 3) uint8 RGB, the input it came from."""
    captured: float
    process_ms: float
    owned: bool = False

    @functools.cached_property
    def stylized(self) -> np.ndarray:
        """(H, W, 3) uint8 RGB decoded from ``stylized_yuv`` (lossy: chroma is 4:2:0)."""
        return cv2.cvtColor(self.stylized_yuv, cv2.COLOR_YUV2RGB_I420)


@dataclass
class _Build:
    """One engine preparation for a new frame size, on its own thread."""

    size: tuple[int, int]
    """(H, W) of the frames."""
    padded: tuple[int, int]
    """(Hp, Wp) the engine runs."""
    engine: Any
    started: float
    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None


@dataclass
class _Slot:
    pinned_in: Any
    pinned_in_np: np.ndarray
    pinned_out: Any
    pinned_out_np: np.ndarray
    dev_in: Any
    dev_out: Any
    h2d_done: Any
    pre_done: Any
    compute_done: Any
    d2h_done: Any
    free: threading.Event = field(default_factory=threading.Event)
    pinned_flow: Any = None
    pinned_flow_np: np.ndarray | None = None
    dev_flow: Any = None
    pinned_yuv: Any = None
    pinned_yuv_np: np.ndarray | None = None
    dev_yuv: Any = None
    output: OutputFormat = "rgb"
    """What this slot's current frame downloads (set per frame: ``set_output`` may change it between frames)."""
    marks: dict[str, Any] = field(default_factory=dict)
    index: int = -1
    t_submit: float = 0.0
    captured: float = 0.0


class CudaProcessor:
    """Double-buffered, three-stream processor around a ``TensorEngine`` (see the module docstring)."""

    kind: Literal["host", "cuda"] = "cuda"

    def __init__(self, engine: TensorEngine, config: CudaConfig | None = None, on_output: OutputCallback | None = None,
                 device: Device | None = None) -> None:  # fmt: skip
        config = config or CudaConfig()
        if config.depth < 2:
            raise VstError("processor depth must be at least 2 (double buffering)")
        if config.blend.mode != "lowpass":
            raise VstError(f"the CUDA blend runs mode 'lowpass' only, not {config.blend.mode!r}")
        self.device: Device = device or TorchCudaDevice()  # BackendUnavailable without a GPU
        self.engine, self.config, self.on_output = engine, config, on_output
        self.blend_config = config.blend
        self._alpha = config.blend.alpha
        self._output: OutputFormat = config.output
        self.h2d, self.compute, self.d2h = self.device.stream(), self.device.stream(), self.device.stream()
        self.slots: list[_Slot] = []
        self.h = self.w = 0
        self._blend_ready = False  # blend buffers exist for the current size
        self._i420_ready = False  # I420 buffers exist for the current size
        self._have_history = False
        self._prev_frame: np.ndarray | None = None
        self._flow: Any = None
        # new input sizes (submitting thread only): prepared beside the stream, LRU of the ready ones
        self._ready: OrderedDict[tuple[int, int], None] = OrderedDict()
        self._build: _Build | None = None
        self._engine_build: _Build | None = None  # a style switch being prepared (set_engine)
        self._failed: set[tuple[int, int]] = set()
        self._builder_stream = self.device.stream()
        self.resized_frames = 0
        """Frames run at the previous size (resized to it) while a new size was being prepared."""
        self._count = 0
        self._newest_emitted = -1
        self._emit_lock = threading.Lock()
        self.stale_dropped = 0
        """Outputs dropped because a newer one had already been handed on (encode workers finish out of order)."""
        self._pending: queue.Queue[_Slot | None] = queue.Queue()
        self._pool = ThreadPoolExecutor(max_workers=config.encode_workers, thread_name_prefix="vst-encode")
        self._outstanding = 0
        self._cv = threading.Condition()
        self._error: BaseException | None = None
        self.stage_ms: dict[str, list[float]] = {k: [] for k in STAGES}
        self.latency_ms: list[float] = []
        self.flow_ms: list[float] = []
        """Host flow time per frame (ms), with blending on."""
        if config.size is not None:
            self._allocate(config.size[1], config.size[0])
            self._mark_ready((self.hp, self.wp))
        self._collector = threading.Thread(target=self._collect, name="vst-d2h-collector", daemon=True)
        self._collector.start()

    # ------------------------------------------------------------------ buffers

    def _allocate(self, h: int, w: int) -> None:
        """(Re)build every per-size buffer; nothing may be in flight (``flush`` first)."""
        dev, dt = self.device, self.engine.io_dtype
        tdev = dev.torch_device
        self.h, self.w = h, w
        self.hp, self.wp = GENERATOR_SPEC.padded_hw(h, w)
        self.slots = []
        for _ in range(self.config.depth):
            pin_in, pin_out = dev.pinned((h, w, 3), torch.uint8), dev.pinned((h, w, 3), torch.uint8)
            slot = _Slot(pin_in, pin_in.numpy(), pin_out, pin_out.numpy(),
                         torch.empty((h, w, 3), dtype=torch.uint8, device=tdev),
                         torch.empty((h, w, 3), dtype=torch.uint8, device=tdev),
                         dev.event(), dev.event(), dev.event(), dev.event())  # fmt: skip
            if self.config.timing:
                slot.marks = {k: dev.event(timing=True) for k in ("h2d0", "h2d1", "c0", "pre", "inf", "bl", "post", "d2h0", "d2h1")}
            slot.free.set()
            self.slots.append(slot)
        with dev.use(self.compute):
            self.x = self.engine.static_input((self.hp, self.wp))
            if self.x.dtype != dt:
                raise VstError(f"engine {self.engine.backend}: static input is {self.x.dtype}, io_dtype says {dt}")
            self.post = torch.empty((1, 3, h, w), dtype=torch.float32, device=tdev)  # fp32: exact 0..255 rounding
        self._blend_ready = False
        self._i420_ready = False
        self._have_history = False
        self._prev_frame = None
        dev.synchronize()  # setup only: buffers exist before the first frame's streams use them
        log.info("buffers for %dx%d (%d slots, %s)", w, h, len(self.slots), dt)

    def _allocate_blend(self) -> None:
        """The blend's buffers, all float32 (the history must not round to fp16 frame after frame)."""
        dev, tdev, (h, w) = self.device, self.device.torch_device, (self.h, self.w)
        for slot in self.slots:
            slot.pinned_flow = dev.pinned((h, w, 2), torch.float32)
            slot.pinned_flow_np = slot.pinned_flow.numpy()
            slot.dev_flow = torch.empty((h, w, 2), dtype=torch.float32, device=tdev)
        with dev.use(self.compute):
            f32 = {"dtype": torch.float32, "device": tdev}
            self.flow32 = torch.empty((1, 2, h, w), **f32)
            self.cur32, self.prev_in32 = torch.empty((1, 3, h, w), **f32), torch.empty((1, 3, h, w), **f32)
            self.styl32, self.prev_out32 = torch.empty((1, 3, h, w), **f32), torch.empty((1, 3, h, w), **f32)
        if self._flow is None:
            from vst.flow import make_flow

            self._flow = make_flow(self.config.flow)
        dev.synchronize()
        self._blend_ready = True

    def _allocate_i420(self) -> None:
        """Device and pinned I420 buffers per slot (first 'i420' frame at this size)."""
        from vst.kernels.yuv import i420_shape

        try:
            shape = i420_shape(self.h, self.w)
        except ValueError as e:
            raise VstError(f"output 'i420': {e}") from None
        for slot in self.slots:
            slot.pinned_yuv = self.device.pinned(shape, torch.uint8)
            slot.pinned_yuv_np = slot.pinned_yuv.numpy()
            slot.dev_yuv = torch.empty(shape, dtype=torch.uint8, device=self.device.torch_device)
        self.device.synchronize()
        self._i420_ready = True

    # ------------------------------------------------------------------ control (between frames)

    def set_output(self, output: OutputFormat) -> None:
        """Download RGB or device-converted I420 from the next frame on (frames in flight keep theirs)."""
        if output not in ("rgb", "i420"):
            raise VstError(f"output must be 'rgb' or 'i420', not {output!r}")
        self._output = output

    def set_engine(self, engine: TensorEngine) -> None:
        """Switch engines (a style switch). Before the first frame at once; while running, the new engine's
        input at the current size (its graph capture or TensorRT context) is prepared on a builder thread
        while the old engine keeps running, and the switch happens between frames once it is ready (here
        already, if that takes at most ``switch_wait_s``). A failure is logged once and the old engine stays."""
        if not self.slots:
            self._adopt(engine)
            return
        b = self._engine_build = _Build((self.h, self.w), (self.hp, self.wp), engine, time.monotonic())
        threading.Thread(target=self._run_build, args=(b,), name="vst-build-engine", daemon=True).start()
        if not b.done.wait(self.config.switch_wait_s):
            log.warning("engine %s: preparing it at %dx%d beside the stream; the current engine runs until it is ready",
                        engine.backend, self.w, self.h)  # fmt: skip
        self._harvest_engine()

    def _harvest_engine(self) -> None:
        b = self._engine_build
        if b is None or not b.done.is_set():
            return
        self._engine_build = None
        if b.error is not None:
            log.error("engine %s: preparation failed (%s: %s); the current engine stays",
                      b.engine.backend, type(b.error).__name__, b.error)  # fmt: skip
            return
        self._adopt(b.engine)

    def _adopt(self, engine: TensorEngine) -> None:
        """Run ``engine`` from the next frame on: waits for in-flight frames, re-fetches the static input."""
        self.flush()
        self.engine = engine
        # what was prepared, building or refused belongs to the old engine (a build in flight finishes unused)
        self._ready.clear()
        self._build = None
        self._failed.clear()
        if self.slots:
            self._allocate(self.h, self.w)  # instant at the size it was prepared for; else prepared here
            self._mark_ready((self.hp, self.wp))

    def set_blend(self, alpha: float) -> None:
        self._alpha = self.blend_config.check_alpha(alpha)

    def reset(self) -> None:
        self._have_history = False
        self._prev_frame = None
        if self._flow is not None:
            self._flow.reset()

    # ------------------------------------------------------------------ producer side

    def _take_slot(self) -> _Slot:
        slot = self.slots[self._count % len(self.slots)]
        # The output callback of this slot's previous frame has returned: pinned_out may be overwritten.
        if not slot.free.wait(self.config.slot_timeout_s):
            raise VstError(f"no free slot after {self.config.slot_timeout_s:.0f} s: the output callback is stuck")
        slot.free.clear()
        return slot

    def submit(self, frame: np.ndarray, captured: float = 0.0) -> None:
        """Enqueue one (H, W, 3) uint8 frame; returns once its GPU work is queued.

        Whatever raises in here, the slot taken is released: the next ``submit`` never waits on it.
        """
        if self._error is not None:
            raise VstError(f"processor failed: {self._error}") from self._error
        h, w = frame.shape[:2]
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise VstError(f"expected an (H, W, 3) uint8 frame, got {frame.shape} {frame.dtype}")
        if self._engine_build is not None:
            self._harvest_engine()
        if (h, w) != (self.h, self.w):
            frame = self._new_size(frame)
        t0 = time.perf_counter()
        slot = self._take_slot()
        handed_on = False
        try:
            self._enqueue(slot, frame, captured, t0)
            with self._cv:
                self._outstanding += 1
            self._pending.put(slot)
            handed_on = True
            self._count += 1
        finally:
            if not handed_on:
                slot.free.set()

    # ------------------------------------------------------------------ new input sizes

    def _new_size(self, frame: np.ndarray) -> np.ndarray:
        """A frame of another size than the buffers: switch to it if its engine input is ready, else prepare
        it beside the stream and return the frame resized to the current size (what runs meanwhile)."""
        h, w = frame.shape[:2]
        if not self.slots:  # nothing runs yet: nothing to keep flowing, so this one waits
            log.warning("building the engine for %dx%d (the first size): the first frame waits for it", w, h)
            self._switch(h, w)
            return frame
        self._harvest()
        padded = GENERATOR_SPEC.padded_hw(h, w)
        if padded in self._ready:
            self._switch(h, w)
            return frame
        if (h, w) not in self._failed and self._build is None:  # one build at a time; others wait their turn
            b = self._start_build(h, w, padded)
            b.done.wait(self.config.switch_wait_s)  # a quick one (a graph the engine still has) switches at once
            self._harvest()
            if padded in self._ready:
                self._switch(h, w)
                return frame
        self.resized_frames += 1
        return cv2.resize(frame, (self.w, self.h), interpolation=cv2.INTER_AREA)

    def _start_build(self, h: int, w: int, padded: tuple[int, int]) -> _Build:
        b = self._build = _Build((h, w), padded, self.engine, time.monotonic())
        log.warning("frame size %dx%d: preparing its engine beside the stream; frames run at %dx%d until it is ready",
                    w, h, self.w, self.h)  # fmt: skip
        threading.Thread(target=self._run_build, args=(b,), name="vst-build", daemon=True).start()
        return b

    def _run_build(self, b: _Build) -> None:
        """Builder thread: the engine's slow per-size step (CUDA graph capture, TensorRT build/context), on
        its own stream; graph capture there is thread-local, so the inference thread keeps launching."""
        try:
            with torch.inference_mode(), self.device.use(self._builder_stream):
                b.engine.static_input(b.padded)
        except BaseException as e:  # reported once by _harvest on the submitting thread
            b.error = e
        finally:
            b.done.set()

    def _harvest(self) -> None:
        """A finished build: its size is ready (switched to by the next frame of that size) or refused."""
        b = self._build
        if b is None or not b.done.is_set():
            return
        self._build = None
        if b.engine is not self.engine:
            return
        h, w = b.size
        if b.error is not None:
            self._failed.add(b.size)
            log.error("frame size %dx%d: engine preparation failed (%s: %s); staying at %dx%d",
                      w, h, type(b.error).__name__, b.error, self.w, self.h)  # fmt: skip
            return
        log.info("frame size %dx%d: engine ready after %.2f s", w, h, time.monotonic() - b.started)
        self._mark_ready(b.padded)

    def _switch(self, h: int, w: int) -> None:
        """Rebuild the buffers for (h, w) (the engine input is ready, or this is the first size)."""
        self.flush()
        self._allocate(h, w)
        self._mark_ready((self.hp, self.wp))

    def _mark_ready(self, padded: tuple[int, int]) -> None:
        self._ready[padded] = None
        self._ready.move_to_end(padded)
        while len(self._ready) > self.config.max_sizes:
            (hp, wp), _ = self._ready.popitem(last=False)
            log.info("forgot the prepared size %dx%d (LRU, %d kept)", wp, hp, self.config.max_sizes)

    # ------------------------------------------------------------------ enqueue

    def _enqueue(self, slot: _Slot, frame: np.ndarray, captured: float, t0: float) -> None:
        dev = self.device
        slot.h2d_done.synchronize()  # this slot's previous upload has read pinned_in (one event, not the device)
        np.copyto(slot.pinned_in_np, frame)
        alpha = self._alpha
        flow_ready = False
        if alpha > 0:
            if not self._blend_ready:
                self._allocate_blend()
            if self._prev_frame is not None:
                tf = time.perf_counter()
                np.copyto(slot.pinned_flow_np, self._flow(frame, self._prev_frame))  # t -> t-1
                self.flow_ms.append((time.perf_counter() - tf) * 1e3)
                flow_ready = True
                np.copyto(self._prev_frame, frame)
            else:
                self._prev_frame = frame.copy()  # once per history; later frames copy into it
        else:
            self.reset()  # as BlendStage: α 0 keeps no history (nor a warm-started flow)
        slot.output = self._output
        if slot.output == "i420" and not self._i420_ready:
            self._allocate_i420()
        slot.index, slot.t_submit, slot.captured = self._count, t0, captured
        m = slot.marks
        with torch.inference_mode():
            with dev.use(self.h2d):  # copy_ enqueues on the *current* stream
                self.h2d.wait_event(slot.pre_done)  # compute has consumed dev_in from this slot's last frame
                if m:
                    m["h2d0"].record(self.h2d)
                slot.dev_in.copy_(slot.pinned_in, non_blocking=True)
                if flow_ready:
                    slot.dev_flow.copy_(slot.pinned_flow, non_blocking=True)
                if m:
                    m["h2d1"].record(self.h2d)
                slot.h2d_done.record(self.h2d)
            with dev.use(self.compute):
                self.compute.wait_event(slot.h2d_done)
                self.compute.wait_event(slot.d2h_done)  # dev_out's previous download has finished
                if m:
                    m["c0"].record(self.compute)
                frame_to_input_(slot.dev_in, self.x)
                slot.pre_done.record(self.compute)
                if m:
                    m["pre"].record(self.compute)
                y = self.engine.infer(self.x, self.compute)
                if m:
                    m["inf"].record(self.compute)
                y = y[:, :, : self.h, : self.w]
                if alpha > 0:
                    y = self._blend(slot, y, flow_ready, alpha)
                if m:
                    m["bl"].record(self.compute)
                output_to_frame_(y, self.post, slot.dev_out)
                if slot.output == "i420":  # the same RGB bytes, converted as the host would (kernels/yuv.py)
                    from vst.kernels.yuv import rgb_to_i420_cupy

                    cp = self.device.kernels()
                    with self.device.kernel_stream(self.compute):
                        rgb_to_i420_cupy(cp.from_dlpack(slot.dev_out), out=cp.from_dlpack(slot.dev_yuv), cp=cp)
                if m:
                    m["post"].record(self.compute)
                slot.compute_done.record(self.compute)
            with dev.use(self.d2h):
                self.d2h.wait_event(slot.compute_done)
                if m:
                    m["d2h0"].record(self.d2h)
                if slot.output == "i420":
                    slot.pinned_yuv.copy_(slot.dev_yuv, non_blocking=True)
                else:
                    slot.pinned_out.copy_(slot.dev_out, non_blocking=True)
                if m:
                    m["d2h1"].record(self.d2h)
                slot.d2h_done.record(self.d2h)

    def _blend(self, slot: _Slot, y: Any, flow_ready: bool, alpha: float) -> Any:
        """Warp + photometric mask + low-band blend against the float32 history (CuPy kernels), on the compute stream."""
        self.cur32.copy_(self.x[:, :, : self.h, : self.w])
        if flow_ready and self._have_history:
            from vst.kernels.blend import lowpass_blend_cupy

            cfg = self.blend_config
            threshold, shrink, budget = cfg.scaled(_SCALE)  # images are in [-1, 1]
            self.styl32.copy_(y)
            self.flow32[0].copy_(slot.dev_flow.permute(2, 0, 1))
            cp = self.device.kernels()
            with self.device.kernel_stream(self.compute):
                out = lowpass_blend_cupy(*(cp.from_dlpack(t) for t in (self.cur32, self.prev_in32, self.prev_out32, self.styl32, self.flow32)),
                                         alpha, threshold, cfg.sigma, shrink, budget, cfg.cut_fraction, clamp=cfg.clamp)  # fmt: skip
            self.prev_out32.copy_(torch.from_dlpack(out))  # DLPack: stream-ordered hand-off, no host sync
        else:
            self.prev_out32.copy_(y)
        self.prev_in32.copy_(self.cur32)
        self._have_history = True
        return self.prev_out32

    # ------------------------------------------------------------------ consumer side

    def _collect(self) -> None:
        while True:
            slot = self._pending.get()
            if slot is None:
                return
            try:
                slot.d2h_done.synchronize()  # only this slot's download; other streams keep running
                if slot.marks:
                    self._record_timing(slot.marks)
                self._pool.submit(self._emit, slot)
            except BaseException as e:  # a CUDA error must surface in submit/flush, not vanish in a thread
                self._fail(e, slot)

    def _emit(self, slot: _Slot) -> None:
        try:
            with self._emit_lock:
                stale = slot.index < self._newest_emitted
                if not stale:
                    self._newest_emitted = slot.index
            if stale:
                self.stale_dropped += 1
            elif self.on_output is not None:
                ms = (time.perf_counter() - slot.t_submit) * 1e3
                if slot.output == "i420":
                    self.on_output(ProcessedI420(slot.index, slot.pinned_yuv_np, slot.pinned_in_np, slot.captured, ms))  # type: ignore[arg-type]
                else:
                    self.on_output(Processed(slot.index, slot.pinned_out_np, slot.pinned_in_np, slot.captured, ms))
            self.latency_ms.append((time.perf_counter() - slot.t_submit) * 1e3)
        except BaseException as e:
            self._fail(e, slot)
            return
        self._release(slot)

    def _release(self, slot: _Slot) -> None:
        slot.free.set()
        with self._cv:
            self._outstanding -= 1
            self._cv.notify_all()

    def _fail(self, e: BaseException, slot: _Slot) -> None:
        log.error("frame %d failed: %s", slot.index, e)
        self._error = e
        self._release(slot)

    def _record_timing(self, m: dict[str, Any]) -> None:
        pairs = {"upload": ("h2d0", "h2d1"), "preprocess": ("c0", "pre"), "infer": ("pre", "inf"),
                 "blend": ("inf", "bl"), "postprocess": ("bl", "post"), "download": ("d2h0", "d2h1")}  # fmt: skip
        for stage, (a, b) in pairs.items():
            self.stage_ms[stage].append(m[a].elapsed_time(m[b]))

    def flush(self, timeout: float | None = None) -> None:
        """Block until every submitted frame has been through the output callback."""
        with self._cv:
            if not self._cv.wait_for(lambda: self._outstanding == 0, timeout=timeout):
                raise VstError("processor flush timed out")
        if self._error is not None:
            raise VstError(f"processor failed: {self._error}") from self._error

    def close(self) -> None:
        self._pending.put(None)
        self._collector.join(timeout=5)
        self._pool.shutdown(wait=True)
