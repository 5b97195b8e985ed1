"""TensorRT engine backend: loads engines that ``vst.export`` built, and asks it to build on first use.

Serving never builds engines itself (GUIDE principle 7): a missing engine for a frame size is
requested from ``vst.export.trt_build.ensure_engine``, which logs a progress message, builds it
once and caches it under a name carrying model hash, shapes, precision, GPU and TensorRT version.

Device memory comes from torch (``torch.empty(..., device='cuda')``), and inference is enqueued
with ``execute_async_v3`` on torch's current stream, so the CUDA-stream pipeline can place it on
its compute stream with no pycuda/cuda-python dependency. Written against the TensorRT 10/11
Python API; unverified here (TensorRT cannot be installed on the development machines).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vst.errors import BackendUnavailable, VstError
from vst.stream.cuda_device import Device
from vst.stream.engine import EngineBase, EngineOptions, engine_options
from vst.styles import Style

log = logging.getLogger("vst.engine.trt")


@dataclass
class _Slot:
    """One optimization profile's execution context with its fixed-shape I/O buffers."""

    context: Any
    input: Any  # torch.Tensor (1, 3, H, W) on cuda
    output: Any  # torch.Tensor (1, 3, H, W) on cuda
    engine: Any  # the ICudaEngine the context came from: kept alive while the context may still run


class TensorRTEngine(EngineBase):
    """Runs a TensorRT engine for a style; one execution context per frame size (profile)."""

    backend = "tensorrt"

    device = "cuda"

    def __init__(self, style: Style, options: EngineOptions | str | None = None, device: Device | None = None) -> None:
        """``device``: where streams and buffers come from (None: the GPU; the unit tests pass a fake one)."""
        opts = engine_options(options)
        precision = opts.precision
        from vst.export.trt_build import import_tensorrt

        self.trt = import_tensorrt()  # BackendUnavailable "TensorRT not installed ..." without it
        import torch

        if device is None:
            if not torch.cuda.is_available():
                raise BackendUnavailable("backend tensorrt needs a CUDA GPU; none found")
            from vst.stream.cuda_device import TorchCudaDevice

            device = TorchCudaDevice()
        self._device: Device = device
        if precision not in ("auto", "fp16", "fp32"):
            raise VstError(f"tensorrt supports precision fp16 or fp32, not {precision!r}")
        self.precision = "fp16" if precision == "auto" else precision
        self.style = style
        self.torch_device = device.torch_device
        self._stream: Any = device.stream()  # TensorRT enqueues here, never on the legacy default stream
        # The I/O dtype the engine will have (confirmed from the engine when it loads).
        self.dtype = self.out_dtype = torch.float16 if self.precision == "fp16" else torch.float32
        if style.kind != "torch":
            # Third-party ONNX styles carry their own conventions (value range, BGR, fixed size, extra
            # inputs) that OrtEngine handles; TensorRT engines are built from our own exports only.
            raise BackendUnavailable(f"style {style.name!r} is a third-party ONNX model; run it with --backend onnxruntime")
        self._runtime = self.trt.Runtime(_trt_logger())
        self._engine: Any = None
        self._path: Path | None = None
        self._slots: OrderedDict[tuple[int, int], _Slot] = OrderedDict()  # (H, W) -> slot, least recently used first
        self.max_contexts = max(1, opts.max_graphs)
        """Execution contexts (one per frame size) kept; ``EngineOptions.max_graphs`` bounds both CUDA engines."""
        # The CUDA processor prepares a new size on a builder thread while the inference thread runs: the
        # lock covers the tables only, never a build (minutes) or a load.
        self._lock = threading.Lock()
        self._profiles: dict[tuple[int, int], int] = {}  # (H, W) -> profile index
        self.sizes: list[tuple[int, int]] = []  # (W, H) the loaded engine covers

    # ------------------------------------------------------------------ engine management

    def prepare(self, sizes: list[tuple[int, int]]) -> None:
        """Make sure the loaded engine covers ``sizes`` (W, H), building a wider one if not."""
        from vst.export.trt_build import ensure_engine, normalize_sizes

        wanted = normalize_sizes([*self.sizes, *sizes])
        if self._engine is not None and wanted == self.sizes:
            return
        path = ensure_engine(self.style, wanted, self.precision, progress=lambda m: log.warning("%s", m))
        self._load(path, wanted)

    def _load(self, path: Path, sizes: list[tuple[int, int]]) -> None:
        engine = self._runtime.deserialize_cuda_engine(path.read_bytes())
        if engine is None:
            raise VstError(f"TensorRT could not load {path.name}: delete it and it is rebuilt on next use")
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        mode = self.trt.TensorIOMode
        self.input_name = next(n for n in names if engine.get_tensor_mode(n) == mode.INPUT)
        self.output_name = next(n for n in names if engine.get_tensor_mode(n) == mode.OUTPUT)
        self.dtype = _torch_dtype(self.trt, engine.get_tensor_dtype(self.input_name))
        self.out_dtype = _torch_dtype(self.trt, engine.get_tensor_dtype(self.output_name))
        profiles = {}
        for p in range(engine.num_optimization_profiles):
            _, opt, _ = engine.get_tensor_profile_shape(self.input_name, p)
            profiles[(int(opt[2]), int(opt[3]))] = p
        with self._lock:  # contexts in use keep the old engine alive (_Slot.engine) until they are dropped
            self._slots.clear()
            self._engine, self._path, self._profiles, self.sizes = engine, path, profiles, sizes
        log.info("loaded %s (%d profile(s), input %s %s)", path.name, len(profiles), self.input_name, self.dtype)

    def _slot(self, hw: tuple[int, int]) -> _Slot:
        with self._lock:
            slot = self._slots.get(hw)
            if slot is not None:
                self._slots.move_to_end(hw)
                return slot
            covered = hw in self._profiles
        if not covered:  # slow (a build): outside the lock, so the inference thread keeps running
            log.warning("frame size %dx%d is not in the engine; asking vst.export to build one that has it", hw[1], hw[0])
            self.prepare([(hw[1], hw[0])])
        with self._lock:
            slot = self._slots.get(hw)
            if slot is None:
                slot = self._slots[hw] = self._new_slot(hw)
                while len(self._slots) > self.max_contexts:
                    old, _ = self._slots.popitem(last=False)
                    log.info("dropped the TensorRT context for %dx%d (LRU, %d kept)", old[1], old[0], self.max_contexts)
            return slot

    def _new_slot(self, hw: tuple[int, int]) -> _Slot:
        """An execution context on the loaded engine's profile for ``hw``, with its I/O buffers (under the lock)."""
        import torch

        engine = self._engine
        context = engine.create_execution_context()
        stream = self._stream.cuda_stream
        # Set once per context: each context stays on its own profile, so no per-frame profile switch.
        context.set_optimization_profile_async(self._profiles[hw], stream)
        shape = (1, 3, *hw)
        context.set_input_shape(self.input_name, shape)
        with self._device.use(self._stream):  # the memset is ordered before this engine's executes, whoever calls
            x = torch.zeros(shape, device=self.torch_device, dtype=self.dtype)
            y = torch.empty(tuple(context.get_tensor_shape(self.output_name)), device=self.torch_device, dtype=self.out_dtype)
        context.set_tensor_address(self.output_name, y.data_ptr())
        return _Slot(context, x, y, engine)

    # ------------------------------------------------------------------ tensor-level API (pipeline)

    def static_input(self, hw: tuple[int, int]) -> Any:
        """The engine's own input buffer for padded size ``hw`` (H, W): write into it to skip a copy."""
        return self._slot(hw).input

    @property
    def io_dtype(self) -> Any:
        return self.dtype

    def infer(self, x: Any, stream: Any = None) -> Any:
        """(1, 3, H, W) cuda tensor in the model's range -> its output buffer (valid until the next call).

        Enqueued on the engine's own stream, which first waits for ``stream`` (default: the current
        one) and which ``stream`` then waits for: ``wait_stream`` both ways, no host wait.
        """
        import torch

        caller = stream if stream is not None else torch.cuda.current_stream()
        hw = (int(x.shape[2]), int(x.shape[3]))
        if self._engine is None:
            self.prepare([(hw[1], hw[0])])
        slot = self._slot(hw)
        self._stream.wait_stream(caller)  # the input was written on the caller's stream
        with self._device.use(self._stream):
            if x.data_ptr() != slot.input.data_ptr():
                slot.input.copy_(x)
            slot.context.set_tensor_address(self.input_name, slot.input.data_ptr())
            if not slot.context.execute_async_v3(self._stream.cuda_stream):
                raise VstError("TensorRT execute_async_v3 failed (see the tensorrt log lines)")
        caller.wait_stream(self._stream)  # the caller's later work reads the output
        return slot.output

    # ------------------------------------------------------------------ frame API (Engine protocol)

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        import torch

        from vst.imaging import GENERATOR_SPEC

        with torch.inference_mode():
            y = self.infer(GENERATOR_SPEC.to_input(frame, self.torch_device, self.dtype))
            return GENERATOR_SPEC.to_frame(y, *frame.shape[:2])


def _trt_logger() -> Any:
    from vst.export.trt_build import trt_logger

    return trt_logger()


def _torch_dtype(trt: Any, dt: Any) -> Any:
    import torch

    table = {trt.DataType.HALF: torch.float16, trt.DataType.FLOAT: torch.float32}
    if dt not in table:
        raise VstError(f"unexpected TensorRT I/O dtype {dt}")
    return table[dt]
