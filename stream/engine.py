"""The one backend factory: a style plus a backend name becomes an ``Engine``.

An engine maps one RGB frame to its stylized version:

    engine(frame: np.ndarray[H, W, 3] uint8) -> np.ndarray[H, W, 3] uint8

Backends are imported lazily, so this module imports on a machine without CUDA, onnxruntime's
GPU build or TensorRT. A missing backend raises ``BackendUnavailable`` with an install hint;
nothing ever falls back silently, and ``auto`` logs what it picked.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
from typing import Literal, Protocol

import numpy as np

from vst.errors import BackendUnavailable, VstError
from vst.styles import Style

log = logging.getLogger("vst.engine")

BACKENDS = ("openvino", "onnxruntime", "torch-cpu", "torch-cuda", "tensorrt")
BackendName = Literal["auto", "openvino", "onnxruntime", "torch-cpu", "torch-cuda", "tensorrt"]

# name -> "module:class"; each class takes (style, precision) and raises BackendUnavailable itself.
_REGISTRY: dict[str, str] = {
    "openvino": "vst.stream.backends.openvino_backend:OpenVinoEngine",
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


def make_engine(style: Style, backend: BackendName | str = "auto", precision: str = "auto") -> Engine:
    """Build the engine for ``style`` on ``backend`` ('auto' picks and logs)."""
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
    engine: Engine = getattr(module, cls_name)(style, precision)
    log.info("engine %s (%s) ready for style %r", engine.backend, engine.precision, style.name)
    return engine
