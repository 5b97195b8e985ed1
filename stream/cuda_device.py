"""What the CUDA processor asks of a device: streams, events, buffers and a CuPy for its kernels.

``TorchCudaDevice`` is the real one (torch.cuda + CuPy). The processor's scheduling logic (slots,
events, collector, encode workers) only talks to this protocol, so the unit tests run it against a
fake device on the CPU (tests/unit/fake_cuda.py): CPU tensors, events that are complete when recorded,
and the CUDA kernels through the g++ emulation.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any, Protocol

import torch


class Stream(Protocol):
    """The part of ``torch.cuda.Stream`` the processor uses."""

    def wait_event(self, event: Any) -> None: ...
    def wait_stream(self, stream: Any) -> None: ...


class Event(Protocol):
    """The part of ``torch.cuda.Event`` the processor uses."""

    def record(self, stream: Any = None) -> None: ...
    def synchronize(self) -> None: ...
    def elapsed_time(self, end: Any) -> float: ...


class Device(Protocol):
    """A place the CUDA processor's buffers live and its work is ordered."""

    torch_device: torch.device

    def stream(self) -> Stream: ...
    def event(self, timing: bool = False) -> Event: ...
    def use(self, stream: Stream) -> AbstractContextManager[Any]:
        """Make ``stream`` current: torch ops and engine calls inside are enqueued on it."""
        ...
    def pinned(self, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        """Page-locked host memory (async copies need it)."""
        ...
    def synchronize(self) -> None:
        """Wait for all work: setup and buffer rebuilds only, never per frame."""
        ...
    def kernels(self) -> Any:
        """The ``cupy`` module the vst.kernels wrappers use (a CPU stand-in on a fake device)."""
        ...
    def kernel_stream(self, stream: Stream) -> AbstractContextManager[Any]:
        """Make CuPy launch on ``stream`` (torch's stream, so kernels and torch ops stay ordered)."""
        ...


class TorchCudaDevice:
    """The GPU: torch.cuda streams and events, pinned host memory, CuPy on torch's streams."""

    def __init__(self) -> None:
        from vst.errors import BackendUnavailable

        if not torch.cuda.is_available():
            raise BackendUnavailable("the CUDA processor needs a CUDA GPU; none found")
        self.torch_device = torch.device("cuda")

    def stream(self) -> Stream:
        return torch.cuda.Stream()

    def event(self, timing: bool = False) -> Event:
        return torch.cuda.Event(enable_timing=timing)  # sync-only events are cheaper

    def use(self, stream: Stream) -> AbstractContextManager[Any]:
        return torch.cuda.stream(stream)  # type: ignore[arg-type]

    def pinned(self, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        return torch.empty(shape, dtype=dtype, pin_memory=True)

    def synchronize(self) -> None:
        torch.cuda.synchronize()

    def kernels(self) -> Any:
        from vst.kernels._cuda import cupy

        return cupy()

    def kernel_stream(self, stream: Stream) -> AbstractContextManager[Any]:
        cp = self.kernels()
        return cp.cuda.ExternalStream(stream.cuda_stream)  # type: ignore[attr-defined]
