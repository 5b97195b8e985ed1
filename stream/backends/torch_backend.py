"""PyTorch engines: torch-cpu (fp32, or bf16 autocast) and torch-cuda (fp16, channels-last)."""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict

import numpy as np
import torch

from vst.errors import BackendUnavailable, VstError
from vst.hardware import cpu_has_bf16
from vst.imaging import GENERATOR_SPEC
from vst.stream.engine import EngineBase, EngineOptions, engine_options
from vst.styles import Style, load_generator

log = logging.getLogger("vst.engine.torch")


class TorchCpuEngine(EngineBase):
    """Eager PyTorch on the CPU.

    precision 'auto' is fp32: on the 2-core AVX512-BF16 Xeon we measured bf16 autocast *slower*
    (ResNet-9 256x256: 676 ms vs 500 ms; compact 320x180: 29 vs 25 ms), so bf16 is opt-in.
    """

    backend = "torch-cpu"
    device = "cpu"

    def __init__(self, style: Style, options: EngineOptions | str | None = None) -> None:
        opts = engine_options(options)
        precision = opts.precision
        if precision not in ("auto", "fp32", "bf16"):
            raise VstError(f"torch-cpu supports precision fp32 or bf16, not {precision!r}")
        if precision == "bf16" and not cpu_has_bf16():
            raise BackendUnavailable("this CPU has no native bf16 (AVX512-BF16/AMX); use --precision fp32")
        self.precision = "fp32" if precision == "auto" else precision
        self.net = load_generator(style)
        if threads := opts.threads:
            # On a busy host fewer OpenMP threads avoid spinning at barriers while descheduled.
            torch.set_num_threads(threads)
        self.threads = torch.get_num_threads()  # process-wide in torch: what every call runs with

    @torch.inference_mode()
    def __call__(self, frame: np.ndarray) -> np.ndarray:
        x = GENERATOR_SPEC.to_input(frame)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            y = self.net(x)
        return GENERATOR_SPEC.to_frame(y, *frame.shape[:2])


class TorchCudaEngine(EngineBase):
    """PyTorch on CUDA: fp16, channels-last, one CUDA graph per frame size.

    Why each piece: fp16 puts the convs on tensor cores; channels-last (NHWC) is the layout cuDNN's
    tensor-core convs want, so it saves the NCHW<->NHWC transposes around every conv; a CUDA graph
    replays the ~60 kernels of a generator with one launch, which matters at 720p/1080p where a
    frame is a few ms and Python launch overhead would otherwise be a large share of it.

    Knobs come from ``EngineOptions`` (cuda_graphs, max_graphs, channels_last, torch_compile). Graphs
    are captured with ``capture_error_mode="thread_local"``, so an engine build (a style switch) in
    another thread cannot invalidate a capture in progress, and at most ``max_graphs`` sizes are kept.
    """

    backend = "torch-cuda"
    device = "cuda"

    def __init__(self, style: Style, options: EngineOptions | str | None = None) -> None:
        opts = engine_options(options)
        precision = opts.precision
        if not torch.cuda.is_available():
            raise BackendUnavailable("backend torch-cuda needs a CUDA GPU and a CUDA build of torch; none found")
        if precision not in ("auto", "fp16", "fp32"):
            raise VstError(f"torch-cuda supports precision fp16 or fp32, not {precision!r}")
        self.precision = "fp16" if precision == "auto" else precision
        self.dtype = torch.float16 if self.precision == "fp16" else torch.float32
        self.torch_device = torch.device("cuda")
        self.memory_format = torch.channels_last if opts.channels_last else torch.contiguous_format
        self.use_graphs = opts.cuda_graphs
        self.max_graphs = max(1, opts.max_graphs)
        if not torch.backends.cudnn.benchmark:  # process-wide: vst.process.configure_process sets it, not an engine
            log.warning("cuDNN autotuning is off: call vst.process.configure_process() at start-up (the vst CLIs do)")
        net = load_generator(style).to(self.torch_device, self.dtype).to(memory_format=self.memory_format)
        self.net: torch.nn.Module = net
        if opts.torch_compile:
            # Our own graph capture below does the launch-overhead part; inductor only fuses.
            self.net = torch.compile(net, mode="max-autotune-no-cudagraphs", dynamic=False)  # type: ignore[assignment]
        self._graphs: OrderedDict[tuple[int, int], tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor]] = OrderedDict()
        # The CUDA processor captures a new size on a builder thread while the inference thread replays:
        # the lock covers the table only, never a capture (that would stall inference for its duration).
        self._graphs_lock = threading.Lock()
        self._inputs: dict[tuple[int, int], torch.Tensor] = {}

    # ------------------------------------------------------------------ tensor-level API (pipeline)

    def static_input(self, hw: tuple[int, int]) -> torch.Tensor:
        """The (1, 3, H, W) input buffer for padded size ``hw``: write into it and ``infer`` it, no copy."""
        if self.use_graphs:
            return self._graph(hw)[1]
        if hw not in self._inputs:
            self._inputs[hw] = torch.zeros(1, 3, *hw, device=self.torch_device, dtype=self.dtype).contiguous(
                memory_format=self.memory_format
            )
        return self._inputs[hw]

    @property
    def io_dtype(self) -> torch.dtype:
        return self.dtype

    @torch.inference_mode()
    def infer(self, x: torch.Tensor, stream: torch.cuda.Stream | None = None) -> torch.Tensor:
        """(1, 3, H, W) in [-1, 1] on cuda -> (1, 3, H, W) [-1, 1] in ``self.dtype``, on ``stream`` (default: current).

        With graphs the result is the graph's static output: valid until the next ``infer`` at that size.
        """
        with torch.cuda.stream(stream if stream is not None else torch.cuda.current_stream()):
            if not self.use_graphs:
                return self.net(x.to(self.dtype).contiguous(memory_format=self.memory_format))
            graph, static_in, static_out = self._graph((int(x.shape[2]), int(x.shape[3])))
            if x.data_ptr() != static_in.data_ptr():
                static_in.copy_(x)
            graph.replay()
            return static_out

    def _graph(self, hw: tuple[int, int]) -> tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor]:
        with self._graphs_lock:
            entry = self._graphs.get(hw)
            if entry is not None:
                self._graphs.move_to_end(hw)
                return entry
        entry = self._capture(hw)
        with self._graphs_lock:
            self._graphs[hw] = entry
            while len(self._graphs) > self.max_graphs:
                old, _ = self._graphs.popitem(last=False)  # its memory returns to torch's pool
                log.info("dropped the CUDA graph for %dx%d (LRU, %d kept)", old[1], old[0], self.max_graphs)
        return entry

    def _capture(self, hw: tuple[int, int]) -> tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor]:
        """Warm up and capture the net at padded size ``hw``, ordered after the calling thread's current stream."""
        log.info("capturing a CUDA graph for %dx%d", hw[1], hw[0])
        static_in = torch.zeros(1, 3, *hw, device=self.torch_device, dtype=self.dtype).contiguous(memory_format=self.memory_format)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.inference_mode(), torch.cuda.stream(side):
            for _ in range(3):  # warm-up: cuDNN autotuning and lazy inits must not happen inside capture
                self.net(static_in)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        # Captured on our own side stream, not through ``torch.cuda.graph``: that one synchronizes the whole
        # device and empties the allocator's caches on entry, and shares one capture stream between threads,
        # all of which would stall or break the inference thread that runs beside this one.
        # thread_local: the other threads' CUDA calls (inference, an engine build) cannot break this capture.
        with torch.inference_mode(), torch.cuda.stream(side):
            graph.capture_begin(capture_error_mode="thread_local")
            try:
                static_out = self.net(static_in)
            finally:
                graph.capture_end()
        torch.cuda.current_stream().wait_stream(side)
        return graph, static_in, static_out

    # ------------------------------------------------------------------ frame API (Engine protocol)

    @torch.inference_mode()
    def __call__(self, frame: np.ndarray) -> np.ndarray:
        y = self.infer(GENERATOR_SPEC.to_input(frame, self.torch_device, self.dtype))
        return GENERATOR_SPEC.to_frame(y, *frame.shape[:2])
