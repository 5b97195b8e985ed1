"""PyTorch engines: torch-cpu (fp32, or bf16 autocast) and torch-cuda (fp16, channels-last)."""

from __future__ import annotations

import logging

import numpy as np
import torch

from vst.errors import BackendUnavailable, VstError
from vst.imaging import pad_to_multiple, to_frame, to_tensor
from vst.styles import Style, load_generator

log = logging.getLogger("vst.engine.torch")


def cpu_has_bf16() -> bool:
    """True where oneDNN has native bf16 (AVX512-BF16 or AMX)."""
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


class TorchCpuEngine:
    """Eager PyTorch on the CPU.

    precision 'auto' is fp32: on the 2-core AVX512-BF16 Xeon we measured bf16 autocast *slower*
    (ResNet-9 256x256: 676 ms vs 500 ms; compact 320x180: 29 vs 25 ms), so bf16 is opt-in.
    """

    backend = "torch-cpu"

    def __init__(self, style: Style, precision: str = "auto") -> None:
        if precision not in ("auto", "fp32", "bf16"):
            raise VstError(f"torch-cpu supports precision fp32 or bf16, not {precision!r}")
        if precision == "bf16" and not cpu_has_bf16():
            raise BackendUnavailable("this CPU has no native bf16 (AVX512-BF16/AMX); use --precision fp32")
        self.precision = "fp32" if precision == "auto" else precision
        self.net = load_generator(style)

    @torch.inference_mode()
    def __call__(self, frame: np.ndarray) -> np.ndarray:
        x, (h, w) = pad_to_multiple(to_tensor(frame))
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            y = self.net(x)
        return to_frame(y[..., :h, :w])


class TorchCudaEngine:
    """PyTorch on CUDA in fp16 with channels-last weights (tensor-core friendly NHWC convs)."""

    backend = "torch-cuda"

    def __init__(self, style: Style, precision: str = "auto") -> None:
        if not torch.cuda.is_available():
            raise BackendUnavailable("backend torch-cuda needs a CUDA GPU and a CUDA build of torch; none found")
        if precision not in ("auto", "fp16", "fp32"):
            raise VstError(f"torch-cuda supports precision fp16 or fp32, not {precision!r}")
        self.precision = "fp16" if precision == "auto" else precision
        self.dtype = torch.float16 if self.precision == "fp16" else torch.float32
        self.device = torch.device("cuda")
        self.net = load_generator(style).to(self.device, self.dtype).to(memory_format=torch.channels_last)

    @torch.inference_mode()
    def __call__(self, frame: np.ndarray) -> np.ndarray:
        x, (h, w) = pad_to_multiple(to_tensor(frame, self.device, self.dtype))
        y = self.net(x.contiguous(memory_format=torch.channels_last))
        return to_frame(y[..., :h, :w])
