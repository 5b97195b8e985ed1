"""A fake CUDA device for the CUDA processor's scheduling: CPU tensors, streams that run work at once,
events that complete ``delay_s`` after they are recorded, and the real CUDA kernels through the g++
emulation (tests/unit/cuda_emulation.py). What it cannot show: real overlap, races on device memory."""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
from collections.abc import Iterable, Iterator
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import torch

from cuda_emulation import EmulatedCupy

from vst.kernels import _cuda
from vst.stream.engine import EngineBase


_handles = itertools.count(1)  # 0 would be the legacy default stream: no fake stream is ever that


class FakeStream:
    def __init__(self) -> None:
        self.waits = 0
        self.cuda_stream = next(_handles)
        """A handle, as ``torch.cuda.Stream.cuda_stream`` (what TensorRT's execute_async_v3 takes)."""

    def wait_event(self, event: Any) -> None:
        self.waits += 1

    def wait_stream(self, stream: Any) -> None:
        self.waits += 1


class FakeEvent:
    """Complete ``delay_s`` after ``record``; ``synchronize`` sleeps until then (as a host wait on a GPU would)."""

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s
        self.ready_at = 0.0
        self.recorded = 0

    def record(self, stream: Any = None) -> None:
        self.recorded += 1
        self.ready_at = time.monotonic() + self.delay_s

    def synchronize(self) -> None:
        wait = self.ready_at - time.monotonic()
        if wait > 0:
            time.sleep(wait)

    def elapsed_time(self, end: FakeEvent) -> float:
        return max(0.0, (end.ready_at - self.ready_at) * 1e3)


class FakeEmulatedCupy(EmulatedCupy):
    def from_dlpack(self, t: Any) -> np.ndarray:
        return t.numpy() if isinstance(t, torch.Tensor) else np.from_dlpack(t)


@contextlib.contextmanager
def kernels_on(monkeypatch: pytest.MonkeyPatch, cp: Any, *modules: ModuleType) -> Iterator[None]:
    """Within: vst.kernels._cuda and each of ``modules`` (vst.kernels.yuv, ...) get ``cp`` as their CuPy,
    and no kernel compiled before (a real CuPy one from a GPU test) is reused, nor ours after."""
    for module in (_cuda, *modules):
        monkeypatch.setattr(module, "cupy", lambda: cp)
    _cuda.kernel.cache_clear()
    yield
    _cuda.kernel.cache_clear()


def run_through(proc: Any, frames: Iterable[np.ndarray], timeout: float = 10.0) -> None:
    """Submit ``frames`` to ``proc`` (a ``CudaProcessor``), wait until all their outputs are handed on, close it."""
    try:
        for f in frames:
            proc.submit(f, 0.0)
        proc.flush(timeout=timeout)
    finally:
        proc.close()


class FakeDevice:
    """``vst.stream.cuda_device.Device`` on the CPU."""

    torch_device = torch.device("cpu")

    def __init__(self, event_delay_s: float = 0.0) -> None:
        self.event_delay_s = event_delay_s
        self.syncs = 0
        self.cupy = FakeEmulatedCupy()
        self.current = threading.local()

    def stream(self) -> FakeStream:
        return FakeStream()

    def event(self, timing: bool = False) -> FakeEvent:
        return FakeEvent(self.event_delay_s)

    @contextlib.contextmanager
    def use(self, stream: FakeStream) -> Iterator[FakeStream]:
        self.current.stream = stream
        yield stream

    def pinned(self, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        return torch.empty(shape, dtype=dtype)

    def synchronize(self) -> None:
        self.syncs += 1

    def kernels(self) -> Any:
        return self.cupy

    def kernel_stream(self, stream: FakeStream) -> contextlib.AbstractContextManager[Any]:
        return contextlib.nullcontext()


class FakeTensorEngine(EngineBase):
    """A ``TensorEngine`` on the CPU: y = 0.5·x + 0.1 (a fixed per-pixel 'style'), with an optional failure."""

    backend = "torch-cuda"
    precision = "fp32"
    device = "cuda"
    io_dtype = torch.float32

    def __init__(self, fail_on: set[int] | None = None) -> None:
        self.fail_on = fail_on or set()
        self.calls = 0
        self._inputs: dict[tuple[int, int], torch.Tensor] = {}
        self._out: torch.Tensor | None = None

    def static_input(self, hw: tuple[int, int]) -> torch.Tensor:
        if hw not in self._inputs:
            self._inputs[hw] = torch.zeros(1, 3, *hw)
        return self._inputs[hw]

    def infer(self, x: torch.Tensor, stream: Any) -> torch.Tensor:
        n, self.calls = self.calls, self.calls + 1
        if n in self.fail_on:
            raise RuntimeError(f"simulated engine failure on call {n}")
        if self._out is None or self._out.shape != x.shape:
            self._out = torch.empty_like(x)
        return torch.mul(x, 0.5, out=self._out).add_(0.1)

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        from vst.imaging import pad_to_multiple, to_frame, to_tensor

        x, (h, w) = pad_to_multiple(to_tensor(frame))
        return to_frame(self.infer(x, None)[..., :h, :w])
