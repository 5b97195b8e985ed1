"""The processor: the one device-specific stage between a source and the sinks.

    source -> Pipeline (capture, newest-wins, state) -> Processor.submit(frame, captured)
                                                          -> on_output(Processed) -> publish -> sinks

Two implementations of one protocol:

- ``HostProcessor``: the engine's frame API and the CPU ``BlendStage``, synchronously, in the caller's
  thread (openvino, onnxruntime, torch-cpu).
- ``CudaProcessor`` (``vst.stream.cuda_processor``): pinned buffers, three CUDA streams and the CuPy
  low-pass blend; ``submit`` returns once the work is enqueued and outputs arrive on encode threads
  (torch-cuda, tensorrt).

``make_processor`` picks by the engine's backend and logs the choice. Everything that configures a
processor (``set_engine``, ``set_blend``, ``reset``) is called by the pipeline's processing thread
between frames, never concurrently with ``submit``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

import numpy as np

from vst.errors import VstError
from vst.flow import FlowEstimator
from vst.stream.blend import BlendStage, Motion
from vst.stream.blend_config import BlendConfig
from vst.stream.engine import CUDA_BACKENDS, Engine, TensorEngine

log = logging.getLogger("vst.processor")


@dataclass(frozen=True)
class Processed:
    """One processed frame, handed to the output callback.

    ``stylized`` and ``original`` may be the processor's own buffers: valid only during the callback
    (copy what you keep).
    """

    index: int
    """Submission number (0, 1, ...): outputs may arrive out of order on the CUDA processor."""
    stylized: np.ndarray
    """(H, W, 3) uint8 RGB."""
    original: np.ndarray
    """(H, W, 3) uint8 RGB, the input it came from."""
    captured: float
    """The ``captured`` time given to ``submit``."""
    process_ms: float
    """Submit to output, ms (host: engine + blend; CUDA: upload to download)."""
    owned: bool = False
    """True: the arrays are the receiver's to keep (the host processor's fresh results)."""


OutputCallback = Callable[[Processed], None]


@runtime_checkable
class Processor(Protocol):
    """Frames in (``submit``), ``Processed`` out (the callback given at construction)."""

    kind: Literal["host", "cuda"]

    def submit(self, frame: np.ndarray, captured: float) -> None:
        """Process one (H, W, 3) uint8 frame. Raises what the engine raised; never leaves the processor
        unable to take the next frame."""
        ...

    def set_engine(self, engine: Engine) -> None:
        """Use ``engine`` from the next frame on (a style switch); the blend history restarts."""
        ...

    def set_blend(self, alpha: float) -> None:
        """The blend strength from the next frame on (already validated against the processor's BlendConfig)."""
        ...

    def reset(self) -> None:
        """Forget the blend history (a new source, a scene the caller knows changed)."""
        ...

    def flush(self, timeout: float | None = None) -> None:
        """Return once every submitted frame's callback has returned."""
        ...

    def close(self) -> None: ...


def check_output(out: object, frame: np.ndarray, backend: str) -> np.ndarray:
    """``out`` if it is an (H, W, 3) uint8 image of ``frame``'s shape, else a one-line VstError: a model
    that returns one channel, or another size, must not reach the blend or an encoder."""
    shape, dtype = getattr(out, "shape", None), getattr(out, "dtype", None)
    if shape != frame.shape or dtype != np.uint8:
        got = f"{shape if shape is not None else type(out).__name__} {dtype if dtype is not None else ''}".strip()
        raise VstError(f"engine {backend} returned {got} for a {frame.shape} uint8 frame: not an RGB image model")
    return out  # type: ignore[return-value]


class HostProcessor:
    """Engine frame API + CPU ``BlendStage`` in the caller's thread (outputs in order).

    With the blend on, the blend's first phase (flow and mask, from the inputs alone) runs on a helper
    thread while the engine stylizes the same frame; ``overlap=False`` runs it in this thread, just
    before the engine (benchmarks/blend_cost.py compares the two).
    """

    kind: Literal["host", "cuda"] = "host"

    def __init__(self, engine: Engine, blend: BlendConfig, on_output: OutputCallback, flow: str | FlowEstimator = "dis",
                 overlap: bool = True) -> None:  # fmt: skip
        self._engine = engine
        self._blend = BlendStage.from_config(blend, flow)
        self._on_output = on_output
        self._count = 0
        self.overlap = overlap
        self._helper: ThreadPoolExecutor | None = None

    @property
    def blend(self) -> BlendStage:
        return self._blend

    def submit(self, frame: np.ndarray, captured: float) -> None:
        t0 = time.perf_counter()
        out, motion = self._stylize(frame)
        out = self._blend.finish(frame, out, motion)  # alpha 0 is a pass-through
        index, self._count = self._count, self._count + 1
        # ``frame`` is the source's array, never reused by a source (sources.Frame): owned with the result
        self._on_output(Processed(index, out, frame, captured, (time.perf_counter() - t0) * 1e3, owned=True))

    def _stylize(self, frame: np.ndarray) -> tuple[np.ndarray, Motion]:
        """G(frame) and the blend's motion for it, side by side where that is on."""
        if not self.overlap or self._blend.alpha == 0.0:
            motion = self._blend.motion(frame)  # first, as when overlapped: a failing engine then leaves the same state
            return check_output(self._engine(frame), frame, self._engine.backend), motion
        if self._helper is None:
            self._helper = ThreadPoolExecutor(1, thread_name_prefix="vst-flow")
        pending = self._helper.submit(self._blend.motion, frame)
        try:
            out = check_output(self._engine(frame), frame, self._engine.backend)
        finally:  # never leave a motion running into the next frame's (it reads the history finish writes)
            motion = pending.result()
        return out, motion

    def set_engine(self, engine: Engine) -> None:
        self._engine = engine
        self._blend.reset()

    def set_blend(self, alpha: float) -> None:
        self._blend.alpha = alpha

    def reset(self) -> None:
        self._blend.reset()

    def flush(self, timeout: float | None = None) -> None:
        """Nothing is ever pending: ``submit`` returns after the callback."""

    def close(self) -> None:
        if self._helper is not None:
            self._helper.shutdown(wait=True)
            self._helper = None


ProcessorKind = Literal["auto", "host", "cuda"]


def make_processor(engine: Engine, blend: BlendConfig, on_output: OutputCallback, kind: ProcessorKind = "auto", *,
                   ordered: bool = False, flow: str = "dis") -> Processor:  # fmt: skip
    """The processor for ``engine``: CUDA for the CUDA backends (torch-cuda, tensorrt), else host; logged.

    ``kind`` 'host' forces the host processor (e.g. to compare); 'cuda' refuses a non-CUDA engine.
    ``ordered``: every frame reaches ``on_output``, in submission order (files: vst-render, vst-eval).
    Otherwise the CUDA processor's encode workers run in parallel and drop an output that a newer
    one overtook (live serving wants the newest frame, not every frame); the host processor is
    always in order. ``flow``: the blend's flow estimator (``vst.flow.make_flow`` name).
    """
    cuda = engine.backend in CUDA_BACKENDS
    if kind == "cuda" and not cuda:
        raise VstError(f"the CUDA processor needs a CUDA engine (torch-cuda or tensorrt), not {engine.backend}")
    if kind != "host" and cuda:
        from vst.stream.cuda_processor import CudaConfig, CudaProcessor

        if not isinstance(engine, TensorEngine):
            raise VstError(f"engine {type(engine).__name__} does not implement the TensorEngine contract")
        log.info("processor: CUDA streams (%s %s, CuPy blend) - pinned upload, three streams, encode workers",
                 engine.backend, engine.precision)  # fmt: skip
        # One encode worker hands outputs on in order, so none is ever stale and dropped.
        config = CudaConfig(blend=blend, flow=flow, **({"encode_workers": 1} if ordered else {}))
        return CudaProcessor(engine, config, on_output)
    log.info("processor: host (%s %s on %s, CPU blend)", engine.backend, engine.precision, engine.device)
    return HostProcessor(engine, blend, on_output, flow)
