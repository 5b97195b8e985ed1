"""The one backend factory: a style plus a backend name becomes an ``Engine``.

An engine maps one RGB frame to its stylized version:

    engine(frame: np.ndarray[H, W, 3] uint8) -> np.ndarray[H, W, 3] uint8

Backends are imported lazily, so this module imports on a machine without CUDA, onnxruntime's
GPU build or TensorRT. A missing backend raises ``BackendUnavailable`` with an install hint;
nothing ever falls back silently, and ``auto`` logs what it picked.
"""

from __future__ import annotations

import importlib
import logging
from typing import Literal, Protocol

import numpy as np

from vst.errors import BackendUnavailable, VstError
from vst.styles import Style

log = logging.getLogger("vst.engine")

BACKENDS = ("torch-cpu", "torch-cuda", "onnxruntime", "tensorrt")
BackendName = Literal["auto", "torch-cpu", "torch-cuda", "onnxruntime", "tensorrt"]

# name -> "module:class"; each class takes (style, precision) and raises BackendUnavailable itself.
_REGISTRY: dict[str, str] = {
    "torch-cpu": "vst.stream.backends.torch_backend:TorchCpuEngine",
    "torch-cuda": "vst.stream.backends.torch_backend:TorchCudaEngine",
    "onnxruntime": "vst.stream.backends.ort_backend:OrtEngine",
    "tensorrt": "vst.stream.backends.trt_backend:TensorRTEngine",
}


class Engine(Protocol):
    """Stylizes one frame at a time. Not thread-safe: one caller at a time."""

    backend: str
    """The backend's name, as given to ``make_engine``."""
    precision: str
    """What the arithmetic runs in: 'fp32', 'bf16', 'fp16'."""

    def __call__(self, frame: np.ndarray) -> np.ndarray: ...


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def choose_backend(style: Style) -> str:
    """What ``auto`` means: torch styles on CUDA when there is one; everything else in onnxruntime.

    On CPU, onnxruntime runs our exported generators 1.2-2.8x faster than eager torch (it prepacks
    conv weights once; oneDNN reorders them every call): see docs/benchmarks.md.
    """
    if style.kind == "torch" and cuda_available():
        return "torch-cuda"
    return "onnxruntime"


def make_engine(style: Style, backend: BackendName | str = "auto", precision: str = "auto") -> Engine:
    """Build the engine for ``style`` on ``backend`` ('auto' picks and logs)."""
    if backend == "auto":
        backend = choose_backend(style)
        log.info("backend auto -> %s for style %r", backend, style.name)
    if backend not in _REGISTRY:
        raise VstError(f"unknown backend {backend!r}; choose one of: auto, {', '.join(BACKENDS)}")
    module_name, cls_name = _REGISTRY[backend].split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise BackendUnavailable(f"backend {backend} is not installed ({e.name or e}); see README 'Backends'") from None
    engine: Engine = getattr(module, cls_name)(style, precision)
    log.info("engine %s (%s) ready for style %r", engine.backend, engine.precision, style.name)
    return engine
