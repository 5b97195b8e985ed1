"""PyTorch engines: torch-cpu (fp32, or bf16 autocast) and torch-cuda (fp16, channels-last)."""

from __future__ import annotations

import logging
import os

import numpy as np
import torch

from vst.errors import BackendUnavailable, VstError
from vst.hardware import cpu_has_bf16, env_threads
from vst.imaging import pad_to_multiple, to_frame, to_tensor
from vst.styles import Style, load_generator

log = logging.getLogger("vst.engine.torch")


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
        if threads := env_threads():
            # On a busy host fewer OpenMP threads avoid spinning at barriers while descheduled.
            torch.set_num_threads(threads)

    @torch.inference_mode()
    def __call__(self, frame: np.ndarray) -> np.ndarray:
        x, (h, w) = pad_to_multiple(to_tensor(frame))
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            y = self.net(x)
        return to_frame(y[..., :h, :w])


class TorchCudaEngine:
    """PyTorch on CUDA: fp16, channels-last, one CUDA graph per frame size.

    Why each piece: fp16 puts the convs on tensor cores; channels-last (NHWC) is the layout cuDNN's
    tensor-core convs want, so it saves the NCHW<->NHWC transposes around every conv; a CUDA graph
    replays the ~60 kernels of a generator with one launch, which matters at 720p/1080p where a
    frame is a few ms and Python launch overhead would otherwise be a large share of it.

    Knobs (environment, so the constructor keeps the factory's (style, precision) signature):
    ``VST_CUDA_GRAPHS=0`` runs eagerly, ``VST_CHANNELS_LAST=0`` keeps NCHW, ``VST_TORCH_COMPILE=1``
    compiles the net with inductor (max-autotune, minutes at start-up) before graph capture.
    """

    backend = "torch-cuda"

    def __init__(self, style: Style, precision: str = "auto") -> None:
        if not torch.cuda.is_available():
            raise BackendUnavailable("backend torch-cuda needs a CUDA GPU and a CUDA build of torch; none found")
        if precision not in ("auto", "fp16", "fp32"):
            raise VstError(f"torch-cuda supports precision fp16 or fp32, not {precision!r}")
        self.precision = "fp16" if precision == "auto" else precision
        self.dtype = torch.float16 if self.precision == "fp16" else torch.float32
        self.device = torch.device("cuda")
        self.memory_format = torch.channels_last if _env_flag("VST_CHANNELS_LAST", True) else torch.contiguous_format
        self.use_graphs = _env_flag("VST_CUDA_GRAPHS", True)
        torch.backends.cudnn.benchmark = True  # fixed shapes per stream: let cuDNN time its conv algorithms once
        net = load_generator(style).to(self.device, self.dtype).to(memory_format=self.memory_format)
        self.net: torch.nn.Module = net
        if _env_flag("VST_TORCH_COMPILE", False):
            # Our own graph capture below does the launch-overhead part; inductor only fuses.
            self.net = torch.compile(net, mode="max-autotune-no-cudagraphs", dynamic=False)  # type: ignore[assignment]
        self._graphs: dict[tuple[int, int], tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor]] = {}
        self._inputs: dict[tuple[int, int], torch.Tensor] = {}

    # ------------------------------------------------------------------ tensor-level API (pipeline)

    def static_input(self, hw: tuple[int, int]) -> torch.Tensor:
        """The (1, 3, H, W) input buffer for padded size ``hw``: write into it and ``infer`` it, no copy."""
        if self.use_graphs:
            return self._graph(hw)[1]
        if hw not in self._inputs:
            self._inputs[hw] = torch.zeros(1, 3, *hw, device=self.device, dtype=self.dtype).contiguous(
                memory_format=self.memory_format
            )
        return self._inputs[hw]

    @torch.inference_mode()
    def infer(self, x: torch.Tensor) -> torch.Tensor:
        """(1, 3, H, W) in [-1, 1] on cuda -> (1, 3, H, W) [-1, 1] in ``self.dtype``, on the current stream.

        With graphs the result is the graph's static output: valid until the next ``infer`` at that size.
        """
        if not self.use_graphs:
            return self.net(x.to(self.dtype).contiguous(memory_format=self.memory_format))
        graph, static_in, static_out = self._graph((int(x.shape[2]), int(x.shape[3])))
        if x.data_ptr() != static_in.data_ptr():
            static_in.copy_(x)
        graph.replay()
        return static_out

    def _graph(self, hw: tuple[int, int]) -> tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor]:
        entry = self._graphs.get(hw)
        if entry is not None:
            return entry
        log.info("capturing a CUDA graph for %dx%d", hw[1], hw[0])
        static_in = torch.zeros(1, 3, *hw, device=self.device, dtype=self.dtype).contiguous(memory_format=self.memory_format)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.inference_mode(), torch.cuda.stream(side):
            for _ in range(3):  # warm-up: cuDNN autotuning and lazy inits must not happen inside capture
                self.net(static_in)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.inference_mode(), torch.cuda.graph(graph):
            static_out = self.net(static_in)
        entry = self._graphs[hw] = (graph, static_in, static_out)
        return entry

    # ------------------------------------------------------------------ frame API (Engine protocol)

    @torch.inference_mode()
    def __call__(self, frame: np.ndarray) -> np.ndarray:
        x, (h, w) = pad_to_multiple(to_tensor(frame, self.device, self.dtype))
        y = self.infer(x)
        return to_frame(y[..., :h, :w])


def _env_flag(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    return default if value is None else value.strip().lower() not in ("0", "false", "no", "off", "")
