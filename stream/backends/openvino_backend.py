"""OpenVINO engine (CPU): the ONNX file onnxruntime runs, compiled once per input shape.

Why OpenVINO on CPU: on the same file it runs monet and candy 2.5-3x faster than onnxruntime at
640x360 and 720p in bf16, and 1.2-1.4x in fp32 (docs/benchmarks.md); bf16 needs native support
(AVX512-BF16 or AMX). The model is read once and compiled with a static input shape per padded
frame size: static shapes ran a few % faster than one dynamic-shape compile here, and a compile
costs 0.13-0.24 s (2 loaded cores), so a new frame size costs one short stall, not a restart. Compiled
shapes are kept in a small LRU, because a stream switches between few sizes; ``prepare`` compiles
sizes ahead of use.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

import numpy as np

from vst.errors import BackendUnavailable, StyleError, VstError
from vst.hardware import cpu_has_bf16
from vst.stream.engine import EngineOptions, engine_options
from vst.stream.backends.onnx_io import CHECK_HW, OnnxFrameEngine, style_onnx
from vst.styles import Style

log = logging.getLogger("vst.engine.openvino")

DEFAULT_MAX_SHAPES = 6
"""Compiled shapes kept. Each holds its own buffers: measured +80 MB (bf16) to +150 MB (fp32) of RSS
at 1280x720, 25-45 MB at 640x360, for monet and candy alike. Six covers an adaptive-size ladder."""


class OpenVinoEngine(OnnxFrameEngine):
    """Runs a style's ONNX graph with OpenVINO on the CPU, in bf16 where the CPU has it, else fp32.

    ``precision``: 'auto' (bf16 on CPUs with native bf16, fp32 elsewhere), 'fp32' or 'bf16'
    (refused on a CPU without native bf16). Threads: ``options.threads``, else every CPU, as the
    onnxruntime backend does.
    """

    backend = "openvino"

    device = "cpu"

    def __init__(self, style: Style, options: EngineOptions | str | None = None, *, max_shapes: int | None = None) -> None:
        opts = engine_options(options)
        precision = opts.precision
        max_shapes = opts.max_shapes if max_shapes is None else max_shapes
        try:
            import openvino as ov
            import openvino.properties as props
            import openvino.properties.hint as hints
        except ImportError:
            raise BackendUnavailable("backend openvino is not installed: pip install openvino (or use --backend onnxruntime)") from None
        if precision not in ("auto", "fp32", "bf16"):
            raise VstError(f"openvino supports precision fp32 or bf16, not {precision!r}")
        if precision == "bf16" and not cpu_has_bf16():
            raise BackendUnavailable("this CPU has no native bf16 (AVX512-BF16/AMX); use --precision fp32")
        if max_shapes < 1:
            raise VstError(f"max_shapes must be >= 1, got {max_shapes}")
        self.precision = ("bf16" if cpu_has_bf16() else "fp32") if precision == "auto" else precision
        self.threads = opts.threads or (os.cpu_count() or 1)
        self.max_shapes = max_shapes
        path, meta = style_onnx(style)
        self._setup_io(style, meta)
        self._ov = ov
        self._core = ov.Core()
        try:
            self._model = self._core.read_model(str(path))
        except Exception as e:  # OpenVINO's frontends raise untyped RuntimeErrors for files they can't read
            raise StyleError(f"OpenVINO cannot read {path.name}: {str(e).strip().splitlines()[0][:160]}") from None
        self.input = self.input or self._model.inputs[0].get_any_name()
        self._ov_type = ov.Type.bf16 if self.precision == "bf16" else ov.Type.f32
        # The precision is always set explicitly: OpenVINO's own CPU default is bf16 where the CPU
        # has it, so 'fp32' would otherwise silently run in bf16.
        self._config = {
            hints.inference_precision: self._ov_type,
            hints.performance_mode: hints.PerformanceMode.LATENCY,
            props.inference_num_threads: self.threads,
        }
        self._precision_key = hints.inference_precision
        self._requests: OrderedDict[tuple[int, int], Any] = OrderedDict()
        self._lock = threading.Lock()  # prepare() may compile from another thread than infer()'s
        self.compile_s: dict[tuple[int, int], float] = {}
        """Seconds each cached shape took to compile (H, W) -> s, for logs and benchmarks."""
        # Compile one shape now, so a model OpenVINO cannot compile fails here, not mid-stream.
        self._request(self.input_hw(*CHECK_HW))

    @property
    def shapes(self) -> list[tuple[int, int]]:
        """Compiled (H, W) input shapes, least recently used first."""
        return list(self._requests)

    def prepare(self, sizes: Iterable[tuple[int, int]]) -> None:
        """Compile the shapes frames of ``sizes`` (W, H) will need, now rather than on their first frame.

        Safe to call from another thread while ``infer`` runs (e.g. ahead of a processing-size
        change): compiling does not block inference at other shapes.
        """
        for w, h in sizes:
            self._request(self.input_hw(h, w))

    def _request(self, hw: tuple[int, int]) -> Any:
        with self._lock:
            request = self._requests.get(hw)
            if request is not None:
                self._requests.move_to_end(hw)
                return request
        t0 = time.perf_counter()
        model = self._model.clone()  # reshape mutates; the read model stays shape-free
        try:
            model.reshape({self.input: self._ov.PartialShape([1, 3, *hw])})
            compiled = self._core.compile_model(model, "CPU", self._config)
        except Exception as e:  # untyped RuntimeError: fixed-size graph, unsupported op...
            raise VstError(f"OpenVINO cannot compile this style for {hw[1]}x{hw[0]}: {str(e).strip().splitlines()[0][:160]}") from None
        got = compiled.get_property(self._precision_key)
        if got != self._ov_type:  # never run in another precision than the one reported
            raise BackendUnavailable(f"OpenVINO compiled in {got}, not the requested {self.precision}")
        seconds = time.perf_counter() - t0
        with self._lock:
            if hw in self._requests:  # another thread compiled it meanwhile: keep one
                self._requests.move_to_end(hw)
                return self._requests[hw]
            request = self._requests[hw] = compiled.create_infer_request()
            self.compile_s[hw] = seconds
            while len(self._requests) > self.max_shapes:
                old, _ = self._requests.popitem(last=False)  # an in-flight request lives on until it returns
                self.compile_s.pop(old, None)
                log.debug("dropped the compiled %dx%d model (LRU, %d kept)", old[1], old[0], self.max_shapes)
        log.info("compiled for %dx%d (%s, %d threads) in %.0f ms", hw[1], hw[0], self.precision, self.threads, seconds * 1e3)
        return request

    def infer(self, x: np.ndarray) -> np.ndarray:
        """Tensor-level API: (1, 3, H, W) float32 in the model's own range -> its (1, 3, H, W) float32 output.

        The result is the request's own output buffer, valid until the next ``infer`` at the same
        shape (no copy per frame). A shape not seen recently is compiled first (~0.1-0.2 s).
        OpenVINO releases the GIL while it runs.
        """
        request = self._request((int(x.shape[2]), int(x.shape[3])))
        request.infer({self.input: x, **self.feeds}, share_inputs=True, share_outputs=True)
        return request.get_output_tensor(0).data
