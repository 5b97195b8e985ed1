"""The CUDA-stream pipeline: frames in, stylized frames out, with upload, compute and download overlapped.

    pipe = CudaPipeline(make_engine(style, "torch-cuda"), PipelineConfig(size=(1280, 720)), sink=encode)
    for i, frame in enumerate(frames):
        pipe.submit(frame)          # returns as soon as the work is enqueued
    pipe.flush()                    # every sink call has returned
    pipe.close()

Per frame t (slot i = t mod depth), three CUDA streams and host threads:

    host (caller)   copy frame -> pinned_in[i]          (waits only for slot i's previous upload)
    h2d stream      pinned_in[i] -> dev_in[i]           (after compute released dev_in[i])
    compute stream  uint8 HWC -> fp16 NCHW, infer, [blend], fp16 NCHW -> uint8 HWC into dev_out[i]
    d2h stream      dev_out[i] -> pinned_out[i]
    collector       waits on slot i's D2H event, hands pinned_out[i] to an encode worker
    encode workers  sink(index, frame) on CPU threads; the slot is free again when it returns

Upload and download have their own streams, so frame t+1's upload runs during frame t's
inference and frame t-1's download. Streams hand off through events (``wait_event``), never
``synchronize()``; the only host waits are on one slot's event, where the host must touch that
slot's pinned memory. Every buffer is allocated once per size in the constructor: the hot path
allocates nothing (torch ops write in place or with ``out=``). ``config.timing`` adds CUDA timing
events per stage for benchmarks; serving leaves it off.

Engines used here implement the tensor-level API: ``infer(x) -> y`` on the current stream and,
optionally, ``static_input(hw)`` (TorchCudaEngine, TensorRTEngine).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np

from vst.errors import BackendUnavailable, VstError
from vst.imaging import SIZE_MULTIPLE
from vst.stream.blend import DEFAULT_BUDGET

log = logging.getLogger("vst.cuda_pipeline")

STAGES = ("upload", "preprocess", "infer", "blend", "postprocess", "download")


def reflect_pad_(x: Any, h: int, w: int) -> None:
    """Fill x[..., h:, :] and x[..., :, w:] by reflection, as ``vst.imaging.pad_to_multiple`` does, in place.

    Instance norm takes whole-image statistics, so the pad content changes every output pixel a
    little: the pipeline must pad exactly as the engines' frame API does. At most 3 rows/cols.
    """
    hp, wp = x.shape[-2:]
    for k in range(hp - h):
        x[:, :, h + k, :w].copy_(x[:, :, h - 2 - k, :w])
    for k in range(wp - w):
        x[:, :, :, w + k].copy_(x[:, :, :, w - 2 - k])


def frame_to_input_(frame: Any, x: Any) -> None:
    """uint8 (H, W, 3) tensor -> x (1, 3, Hp, Wp) in [-1, 1], reflect-padded; in place, no allocation.

    Device-agnostic torch ops (the CPU unit test checks them against ``vst.imaging``).
    """
    h, w = frame.shape[:2]
    x[0, :, :h, :w].copy_(frame.permute(2, 0, 1))  # the uint8 -> float cast happens inside the copy kernel
    x[:, :, :h, :w].div_(127.5).sub_(1.0)  # the same ops as to_tensor: bit-identical in fp32
    reflect_pad_(x, h, w)


def output_to_frame_(y: Any, scratch: Any, out: Any) -> None:
    """(1, 3, H, W) in [-1, 1] -> uint8 (H, W, 3) ``out``, through a float32 ``scratch`` (1, 3, H, W).

    A scratch, not in place: y may be the blend history or an engine's output buffer. +0.5 then the
    truncating uint8 cast rounds half up (``to_frame`` rounds half to even: off by at most 1 level).
    """
    scratch.copy_(y)
    scratch.add_(1.0).mul_(127.5).add_(0.5).clamp_(0.0, 255.0)
    out.permute(2, 0, 1).copy_(scratch[0])


class TensorEngine(Protocol):
    """A CUDA engine's tensor-level API (TorchCudaEngine, TensorRTEngine)."""

    dtype: Any
    """torch dtype of the model input."""

    def infer(self, x: Any) -> Any:
        """(1, 3, H, W) cuda tensor in [-1, 1] -> (1, 3, H, W), enqueued on the current stream."""
        ...


@dataclass(frozen=True)
class PipelineConfig:
    """How the pipeline is laid out. Defaults here, nowhere else."""

    size: tuple[int, int]
    """(W, H) of every frame; buffers are allocated for exactly this size."""
    depth: int = 2
    """Host/device buffer sets in flight: 2 = double buffering."""
    layout: Literal["torch", "cupy"] = "torch"
    """Layout conversion: in-place torch ops into preallocated buffers, or vst.kernels.layout (CuPy)."""
    blend_alpha: float = 0.0
    """Temporal blend weight (0 = off). Flow runs on the submitting thread (DIS), the blend is CuPy ('lowpass', as BlendStage)."""
    blend_threshold: float = 16.0
    """Photometric occlusion threshold on the 0..255 scale (BlendStage's mask_threshold)."""
    blend_sigma: float = 0.95
    """Gaussian σ separating the blended band from G's detail band (BlendStage's sigma)."""
    blend_shrink: float = 0.0
    """Fixed soft threshold on the blended deviation from G, 0..255 levels (BlendStage's shrink)."""
    blend_budget: float | None = DEFAULT_BUDGET
    """Most mean |out − G| per frame, 0..255 levels (BlendStage's budget); None = only blend_shrink."""
    encode_workers: int = 2
    """CPU threads running the sink (encode)."""
    timing: bool = False
    """Record CUDA timing events per stage (benchmarks only)."""


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
    marks: dict[str, Any] = field(default_factory=dict)
    index: int = -1
    t_submit: float = 0.0


class CudaPipeline:
    """Double-buffered, three-stream frame pipeline around a CUDA engine (see module docstring)."""

    def __init__(self, engine: TensorEngine, config: PipelineConfig,
                 sink: Callable[[int, np.ndarray], None] | None = None) -> None:  # fmt: skip
        import torch

        if not torch.cuda.is_available():
            raise BackendUnavailable("the CUDA pipeline needs a CUDA GPU; none found")
        if not hasattr(engine, "infer"):
            raise VstError(f"engine {type(engine).__name__} has no tensor-level infer(); use torch-cuda or tensorrt")
        if config.depth < 2:
            raise VstError("pipeline depth must be at least 2 (double buffering)")
        self.torch = torch
        self.engine, self.config, self.sink = engine, config, sink
        w, h = config.size
        self.h, self.w = h, w
        self.hp, self.wp = h + (-h) % SIZE_MULTIPLE, w + (-w) % SIZE_MULTIPLE
        dev = torch.device("cuda")
        self.dtype = getattr(engine, "dtype", torch.float16)
        self.h2d = torch.cuda.Stream()
        self.compute = torch.cuda.Stream()
        self.d2h = torch.cuda.Stream()
        blend = config.blend_alpha > 0
        ev = lambda: torch.cuda.Event(enable_timing=False)  # noqa: E731 - sync-only events are cheaper
        self.slots: list[_Slot] = []
        for _ in range(config.depth):
            pin_in = torch.empty((h, w, 3), dtype=torch.uint8, pin_memory=True)
            pin_out = torch.empty((h, w, 3), dtype=torch.uint8, pin_memory=True)
            slot = _Slot(pin_in, pin_in.numpy(), pin_out, pin_out.numpy(),
                         torch.empty((h, w, 3), dtype=torch.uint8, device=dev),
                         torch.empty((h, w, 3), dtype=torch.uint8, device=dev),
                         ev(), ev(), ev(), ev())  # fmt: skip
            if blend:
                slot.pinned_flow = torch.empty((h, w, 2), dtype=torch.float32, pin_memory=True)
                slot.pinned_flow_np = slot.pinned_flow.numpy()
                slot.dev_flow = torch.empty((h, w, 2), dtype=torch.float32, device=dev)
            if config.timing:
                slot.marks = {k: torch.cuda.Event(enable_timing=True) for k in ("h2d0", "h2d1", "c0", "pre", "inf", "bl", "post", "d2h0", "d2h1")}
            slot.free.set()
            self.slots.append(slot)
        with torch.cuda.stream(self.compute):
            static = getattr(engine, "static_input", None)
            self.x = static((self.hp, self.wp)) if static else torch.zeros((1, 3, self.hp, self.wp), dtype=self.dtype, device=dev)
            self.post = torch.empty((1, 3, h, w), dtype=torch.float32, device=dev)  # fp32: exact 0..255 rounding
            if blend:
                self.flow_buf = torch.empty((1, 2, h, w), dtype=self.dtype, device=dev)
                self.prev_x = torch.empty((1, 3, h, w), dtype=self.dtype, device=dev)
                self.prev_out = torch.empty((1, 3, h, w), dtype=self.dtype, device=dev)
                self.cur_x = torch.empty((1, 3, h, w), dtype=self.dtype, device=dev)
        torch.cuda.synchronize()  # setup only: buffers exist before the first frame's streams use them
        self._have_history = False
        self._prev_frame: np.ndarray | None = None
        self._flow = None
        if blend:
            from vst.flow import make_flow

            self._flow = make_flow("dis")
        self._layout = _CupyLayout() if config.layout == "cupy" else None
        self._blend_kernel = _cupy_blend() if blend else None
        self._count = 0
        self._pending: queue.Queue[_Slot | None] = queue.Queue()
        self._pool = ThreadPoolExecutor(max_workers=config.encode_workers, thread_name_prefix="vst-encode")
        self._outstanding = 0
        self._cv = threading.Condition()
        self._error: BaseException | None = None
        self.stage_ms: dict[str, list[float]] = {k: [] for k in STAGES}
        self.latency_ms: list[float] = []
        self.flow_ms: list[float] = []
        """Host flow time per frame (ms), with blending on."""
        self._collector = threading.Thread(target=self._collect, name="vst-d2h-collector", daemon=True)
        self._collector.start()

    # ------------------------------------------------------------------ producer side

    def submit(self, frame: np.ndarray) -> None:
        """Enqueue one (H, W, 3) uint8 frame; returns once its GPU work is queued."""
        if self._error is not None:
            raise VstError(f"pipeline failed: {self._error}") from self._error
        torch = self.torch
        if frame.shape != (self.h, self.w, 3):
            raise VstError(f"frame {frame.shape} does not match the pipeline size {self.w}x{self.h}")
        t0 = time.perf_counter()
        slot = self.slots[self._count % len(self.slots)]
        slot.free.wait()  # encode of this slot's previous frame has returned: pinned_out may be overwritten
        slot.free.clear()
        slot.h2d_done.synchronize()  # this slot's previous upload has read pinned_in (one event, not the device)
        np.copyto(slot.pinned_in_np, frame)
        flow_ready = False
        if self._flow is not None:
            if self._prev_frame is not None:
                tf = time.perf_counter()
                np.copyto(slot.pinned_flow_np, self._flow(frame, self._prev_frame))  # t -> t-1
                self.flow_ms.append((time.perf_counter() - tf) * 1e3)
                flow_ready = True
            if self._prev_frame is None:
                self._prev_frame = frame.copy()  # once; later frames copy into it
            else:
                np.copyto(self._prev_frame, frame)
        slot.index, slot.t_submit = self._count, t0
        m = slot.marks
        with torch.inference_mode():
            # upload: copy_ enqueues on the *current* stream, hence the stream context
            with torch.cuda.stream(self.h2d):
                self.h2d.wait_event(slot.pre_done)  # compute has consumed dev_in from this slot's last frame
                if m:
                    m["h2d0"].record(self.h2d)
                slot.dev_in.copy_(slot.pinned_in, non_blocking=True)
                if flow_ready:
                    slot.dev_flow.copy_(slot.pinned_flow, non_blocking=True)
                if m:
                    m["h2d1"].record(self.h2d)
                slot.h2d_done.record(self.h2d)
            # compute
            with torch.cuda.stream(self.compute):
                self.compute.wait_event(slot.h2d_done)
                self.compute.wait_event(slot.d2h_done)  # dev_out's previous download has finished
                if m:
                    m["c0"].record(self.compute)
                self._preprocess(slot.dev_in)
                slot.pre_done.record(self.compute)
                if m:
                    m["pre"].record(self.compute)
                y = self.engine.infer(self.x)
                if m:
                    m["inf"].record(self.compute)
                y = y[:, :, : self.h, : self.w]
                if self._blend_kernel is not None:
                    y = self._blend(slot, y, flow_ready)
                if m:
                    m["bl"].record(self.compute)
                self._postprocess(y, slot.dev_out)
                if m:
                    m["post"].record(self.compute)
                slot.compute_done.record(self.compute)
            # download
            with torch.cuda.stream(self.d2h):
                self.d2h.wait_event(slot.compute_done)
                if m:
                    m["d2h0"].record(self.d2h)
                slot.pinned_out.copy_(slot.dev_out, non_blocking=True)
                if m:
                    m["d2h1"].record(self.d2h)
                slot.d2h_done.record(self.d2h)
        with self._cv:
            self._outstanding += 1
        self._pending.put(slot)
        self._count += 1

    def _preprocess(self, dev_in: Any) -> None:
        if self._layout is not None:
            self._layout.to_nchw(dev_in, self.x[:, :, : self.h, : self.w])
            reflect_pad_(self.x, self.h, self.w)
        else:
            frame_to_input_(dev_in, self.x)

    def _blend(self, slot: _Slot, y: Any, flow_ready: bool) -> Any:
        """Warp + photometric mask + low-band blend against the previous output (CuPy kernels), then keep history."""
        torch = self.torch
        self.cur_x.copy_(self.x[:, :, : self.h, : self.w])
        if flow_ready and self._have_history:
            self.flow_buf[0].copy_(slot.dev_flow.permute(2, 0, 1))
            cfg = self.config  # images are in [-1, 1]: 0..255 thresholds scale by 1/127.5
            budget = None if cfg.blend_budget is None else cfg.blend_budget / 127.5
            out = self._blend_kernel(self.cur_x, self.prev_x, self.prev_out, y, self.flow_buf, cfg.blend_alpha,
                                     cfg.blend_threshold / 127.5, cfg.blend_sigma, cfg.blend_shrink / 127.5, budget)  # fmt: skip
            self.prev_out.copy_(torch.from_dlpack(out))  # DLPack: stream-ordered hand-off, no host sync
        else:
            self.prev_out.copy_(y)
        self.prev_x.copy_(self.cur_x)
        self._have_history = True
        return self.prev_out

    def _postprocess(self, y: Any, dev_out: Any) -> None:
        if self._layout is not None:
            self._layout.to_hwc(y, dev_out)
        else:
            output_to_frame_(y, self.post, dev_out)

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
            if self.sink is not None:
                self.sink(slot.index, slot.pinned_out_np)
            self.latency_ms.append((time.perf_counter() - slot.t_submit) * 1e3)
        except BaseException as e:
            self._fail(e, slot)
            return
        slot.free.set()
        with self._cv:
            self._outstanding -= 1
            self._cv.notify_all()

    def _fail(self, e: BaseException, slot: _Slot) -> None:
        log.error("pipeline frame %d failed: %s", slot.index, e)
        self._error = e
        slot.free.set()
        with self._cv:
            self._outstanding -= 1
            self._cv.notify_all()

    def _record_timing(self, m: dict[str, Any]) -> None:
        pairs = {"upload": ("h2d0", "h2d1"), "preprocess": ("c0", "pre"), "infer": ("pre", "inf"),
                 "blend": ("inf", "bl"), "postprocess": ("bl", "post"), "download": ("d2h0", "d2h1")}  # fmt: skip
        for stage, (a, b) in pairs.items():
            self.stage_ms[stage].append(m[a].elapsed_time(m[b]))

    def flush(self, timeout: float | None = None) -> None:
        """Block until every submitted frame has been through the sink."""
        with self._cv:
            if not self._cv.wait_for(lambda: self._outstanding == 0, timeout=timeout):
                raise VstError("pipeline flush timed out")
        if self._error is not None:
            raise VstError(f"pipeline failed: {self._error}") from self._error

    def close(self) -> None:
        self._pending.put(None)
        self._collector.join(timeout=5)
        self._pool.shutdown(wait=True)


class _CupyLayout:
    """vst.kernels.layout on the compute stream. Its kernels return new arrays (pool-allocated by CuPy);
    the result is copied into our preallocated buffers."""

    def __init__(self) -> None:
        from vst.kernels import layout

        self.layout = layout
        import torch

        self.torch = torch
        self.cp = _cp()

    def _stream(self) -> Any:
        return self.cp.cuda.ExternalStream(self.torch.cuda.current_stream().cuda_stream)

    def to_nchw(self, dev_in: Any, x_view: Any) -> None:
        with self._stream():
            out = self.layout.hwc_to_nchw_cupy(self.cp.from_dlpack(dev_in), dtype=str(x_view.dtype).removeprefix("torch."))
        x_view.copy_(self.torch.from_dlpack(out))

    def to_hwc(self, y: Any, dev_out: Any) -> None:
        with self._stream():
            out = self.layout.nchw_to_hwc_cupy(self.cp.from_dlpack(y))
        dev_out.copy_(self.torch.from_dlpack(out))


def _cp() -> Any:
    from vst.kernels._cuda import cupy

    return cupy()


def _cupy_blend() -> Callable[..., Any]:
    """The 'lowpass' blend kernels bound to torch's current stream; torch tensors in, a CuPy array out."""
    import torch

    from vst.kernels.blend import lowpass_blend_cupy

    cp = _cp()

    def run(cur: Any, prev_in: Any, prev_out: Any, styl: Any, flow: Any, *params: float | None) -> Any:
        with cp.cuda.ExternalStream(torch.cuda.current_stream().cuda_stream):
            return lowpass_blend_cupy(*(cp.from_dlpack(t) for t in (cur, prev_in, prev_out, styl, flow)), *params)

    return run
