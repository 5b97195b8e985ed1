"""The one backend factory: a style plus a backend name becomes an ``Engine``.

Every engine maps one RGB frame to its stylized version (the ``Engine`` protocol, which the host
processor runs):

    engine(frame: np.ndarray[H, W, 3] uint8) -> np.ndarray[H, W, 3] uint8

The CUDA engines (torch-cuda, tensorrt) also implement ``TensorEngine``, the tensor-level contract
the CUDA processor runs: a static input buffer per size and ``infer(x, stream)`` enqueued on a
stream, never on the legacy default stream. Settings reach an engine through ``EngineOptions``,
passed by the factory; no engine reads the environment itself.

Backends are imported lazily, so this module imports on a machine without CUDA, onnxruntime's
GPU build or TensorRT. A missing backend raises ``BackendUnavailable`` with an install hint;
nothing ever falls back silently, and ``auto`` logs what it picked.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

from vst.errors import BackendUnavailable, VstError
from vst.styles import Style

log = logging.getLogger("vst.engine")

BACKENDS = ("openvino", "onnxruntime", "torch-cpu", "torch-cuda", "tensorrt")
BackendName = Literal["auto", "openvino", "onnxruntime", "torch-cpu", "torch-cuda", "tensorrt"]

CUDA_BACKENDS = ("torch-cuda", "tensorrt")
"""Backends whose engines are ``TensorEngine``s: the pipeline runs them through the CUDA processor."""

# name -> "module:class"; each class takes (style, options) and raises BackendUnavailable itself.
_REGISTRY: dict[str, str] = {
    "openvino": "vst.stream.backends.openvino_backend:OpenVinoEngine",
    "torch-cpu": "vst.stream.backends.torch_backend:TorchCpuEngine",
    "torch-cuda": "vst.stream.backends.torch_backend:TorchCudaEngine",
    "onnxruntime": "vst.stream.backends.ort_backend:OrtEngine",
    "tensorrt": "vst.stream.backends.trt_backend:TensorRTEngine",
}


@dataclass(frozen=True)
class EngineOptions:
    """How an engine is built. Defaults here and nowhere else; each backend reads only its own fields."""

    precision: str = "auto"
    """'auto' (each backend's best: fp16 on CUDA, bf16 for OpenVINO where the CPU has it, else fp32),
    'fp32', 'fp16' or 'bf16'; a backend refuses what it cannot run."""
    threads: int | None = None
    """CPU inference threads (None: every CPU). torch-cpu, onnxruntime, openvino."""
    cuda_graphs: bool = True
    """torch-cuda: replay one CUDA graph per input size (one launch instead of ~60 kernels)."""
    max_graphs: int = 4
    """torch-cuda: CUDA graphs (one per input size) kept, least recently used dropped first."""
    channels_last: bool = True
    """torch-cuda: NHWC, the layout cuDNN's tensor-core convolutions want."""
    torch_compile: bool = False
    """torch-cuda: fuse with inductor (max-autotune, minutes at start-up) before graph capture."""
    max_shapes: int = 6
    """openvino: compiled input shapes kept (LRU)."""

    @classmethod
    def from_env(cls, **overrides: Any) -> EngineOptions:
        """The options the environment asks for (``VST_THREADS``, ``VST_CUDA_GRAPHS``, ``VST_CHANNELS_LAST``,
        ``VST_TORCH_COMPILE``): for CLIs and the factory's default, read once here."""
        from vst.hardware import env_threads

        found: dict[str, Any] = {"threads": env_threads()}
        for field, name in (("cuda_graphs", "VST_CUDA_GRAPHS"), ("channels_last", "VST_CHANNELS_LAST"),
                            ("torch_compile", "VST_TORCH_COMPILE")):  # fmt: skip
            value = os.environ.get(name)
            if value is not None:
                found[field] = value.strip().lower() not in ("0", "false", "no", "off", "")
        return replace(cls(**{k: v for k, v in found.items() if v is not None}), **overrides)


@runtime_checkable
class Engine(Protocol):
    """Stylizes one frame at a time. Not thread-safe: one caller at a time (``prepare`` excepted)."""

    backend: str
    """The backend's name, as given to ``make_engine``."""
    precision: str
    """What the arithmetic runs in: 'fp32', 'bf16', 'fp16'."""
    device: str
    """Where it computes: 'cpu' or 'cuda'."""
    threads: int | None
    """CPU inference threads it runs with (None: not a CPU engine)."""

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 RGB -> (H, W, 3) uint8 RGB."""
        ...

    def prepare(self, sizes: Sequence[tuple[int, int]]) -> None:
        """Build whatever frame sizes (W, H) need ahead of use (compiled shapes, engines). Called off
        the processing thread while frames keep flowing; engines that need nothing do nothing."""
        ...


class EngineBase:
    """The ``Engine`` protocol's defaults, for engines that need no build per size and are not CPU-threaded."""

    threads: int | None = None

    def prepare(self, sizes: Sequence[tuple[int, int]]) -> None:
        """Nothing to build ahead: every size runs on first use."""


@runtime_checkable
class TensorEngine(Engine, Protocol):
    """The CUDA engines' tensor-level contract (TorchCudaEngine, TensorRTEngine)."""

    io_dtype: Any
    """torch dtype of the input and output tensors."""

    def static_input(self, hw: tuple[int, int]) -> Any:
        """The (1, 3, H, W) ``io_dtype`` input buffer for padded size ``hw``: write into it, then ``infer`` it (no copy)."""
        ...

    def infer(self, x: Any, stream: Any) -> Any:
        """(1, 3, H, W) in [-1, 1] -> (1, 3, H, W) ``io_dtype``, enqueued so that it follows ``stream``'s prior work
        and ``stream``'s later work follows it. The result is the engine's buffer: valid until the next call."""
        ...


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def openvino_installed() -> bool:
    """Whether the openvino package is importable (checked without importing it: that takes ~0.3 s)."""
    return importlib.util.find_spec("openvino") is not None


def _ort_has_cuda() -> bool:
    if importlib.util.find_spec("onnxruntime") is None:
        return False
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers()


def choose_backend(style: Style) -> tuple[str, str]:
    """What ``auto`` means, and why: ``(backend, reason)``.

    - torch styles on a CUDA GPU: torch-cuda.
    - ONNX styles on a CUDA GPU with onnxruntime-gpu: onnxruntime's CUDA EP.
    - Otherwise the CPU: OpenVINO when it is installed (on the same ONNX file 2.5-3x faster than
      onnxruntime in bf16, 1.2-1.4x in fp32: docs/benchmarks.md), else onnxruntime, which is in
      turn faster than eager torch (it prepacks conv weights once; oneDNN reorders them every call).
    """
    if style.kind == "torch" and cuda_available():
        return "torch-cuda", "a CUDA GPU is present"
    if style.kind == "onnx" and cuda_available() and _ort_has_cuda():
        return "onnxruntime", "an ONNX style and onnxruntime's CUDA execution provider"
    if openvino_installed():
        return "openvino", "CPU inference, and OpenVINO is installed (faster than onnxruntime on CPU)"
    return "onnxruntime", "CPU inference; OpenVINO is not installed (pip install openvino: faster on CPU)"


def make_engine(style: Style, backend: BackendName | str = "auto", precision: str | None = None,
                options: EngineOptions | None = None) -> Engine:  # fmt: skip
    """Build the engine for ``style`` on ``backend`` ('auto' picks and logs).

    ``options`` default to ``EngineOptions.from_env()``; ``precision``, when given, overrides theirs.
    """
    options = options or EngineOptions.from_env()
    if precision is not None:
        options = replace(options, precision=precision)
    if backend == "auto":
        backend, why = choose_backend(style)
        log.info("backend auto -> %s for style %r: %s", backend, style.name, why)
    if backend not in _REGISTRY:
        raise VstError(f"unknown backend {backend!r}; choose one of: auto, {', '.join(BACKENDS)}")
    module_name, cls_name = _REGISTRY[backend].split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise BackendUnavailable(f"backend {backend} is not installed ({e.name or e}); see README 'Backends'") from None
    engine: Engine = getattr(module, cls_name)(style, options)
    if backend in CUDA_BACKENDS and not isinstance(engine, TensorEngine):
        raise VstError(f"engine {type(engine).__name__} does not implement the TensorEngine contract")
    log.info("engine %s (%s, %s) ready for style %r", engine.backend, engine.precision, engine.device, style.name)
    return engine


def engine_options(options: EngineOptions | str | None) -> EngineOptions:
    """A backend constructor's second argument: options, or (older callers) just a precision string."""
    if options is None:
        return EngineOptions()
    return EngineOptions(precision=options) if isinstance(options, str) else options
