"""ONNX export of our torch generators, with dynamic height and width.

The graph is what TensorRT's ONNX parser and onnxruntime both take: opset 18 with only
Conv, ConvTranspose, InstanceNormalization, Pad (mode=reflect), Relu, Add, Tanh and Resize. Input
``input`` is ``(1, 3, H, W)`` in [-1, 1] with H and W free multiples of 4 (the generators
downsample twice by 2); output ``output`` has the same shape and range.

``precision='fp16'`` exports the graph itself in half precision (weights, activations and I/O):
TensorRT 11 builds strongly typed networks only (BuilderFlag.FP16 is gone), so FP16 has to be
in the ONNX file, not a builder flag.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from vst.errors import VstError
from vst.fileio import file_lock
from vst.imaging import GENERATOR_SPEC
from vst.styles import Style, cache_root, load_generator

log = logging.getLogger("vst.export.onnx")

OPSET = 18
"""The dynamo exporter's floor; TensorRT 10/11 parse it, onnxruntime >= 1.17 runs it."""
EXPORT_VERSION = 1
"""Bump when the export logic changes the graph: it is part of every cached file's name."""
INPUT_NAME, OUTPUT_NAME = "input", "output"
Precision = Literal["fp32", "fp16"]

# Ops our generators export to, all in TensorRT's ONNX-parser operator support list
# (onnx-tensorrt docs/operators.md) and in onnxruntime's CPU EP.
# Resize: the resize-convolution layouts' 2x upsampling (nearest, or linear with half_pixel /
# pytorch_half_pixel coordinates), both in onnx-tensorrt's supported Resize modes.
TRT_PARSER_OPS = frozenset({"Conv", "ConvTranspose", "InstanceNormalization", "Pad", "Relu", "Add", "Tanh", "Identity", "Resize"})


class ExportError(VstError):
    """The model could not be exported, or the export contains something TensorRT cannot parse."""


def export_onnx(
    net: nn.Module,
    out: Path,
    *,
    precision: Precision = "fp32",
    opset: int = OPSET,
    sample_hw: tuple[int, int] = (64, 64),
) -> Path:
    """Export ``net`` (an RGB [-1,1] -> [-1,1] generator) to ``out`` with free H and W.

    The write is atomic (temp file + rename), so a crash never leaves a half-written model that
    a later run would trust. Raises ``ExportError`` when the exporter fails or the graph holds an
    op outside ``TRT_PARSER_OPS``.
    """
    import onnx

    if precision not in ("fp32", "fp16"):
        raise ExportError(f"ONNX export precision must be fp32 or fp16, not {precision!r}")
    h, w = sample_hw
    if GENERATOR_SPEC.padded_hw(h, w) != (h, w):
        raise ExportError(f"sample size {w}x{h} must be a padded size (multiples of {GENERATOR_SPEC.size_multiple}, "
                          f"at least {GENERATOR_SPEC.min_side})")  # fmt: skip
    dtype = torch.float16 if precision == "fp16" else torch.float32
    # A copy: the caller's module keeps its dtype and device.
    model = copy.deepcopy(net).to("cpu", dtype).eval()
    x = torch.zeros(1, 3, h, w, dtype=dtype)
    # H = 4*h4 tells torch.export that H is a multiple of 4, so no shape guards get baked in; the
    # smallest H is GENERATOR_SPEC's minimum side, the size frames are padded to.
    low = GENERATOR_SPEC.min_side // GENERATOR_SPEC.size_multiple
    h4 = torch.export.Dim("h4", min=low, max=2048)
    w4 = torch.export.Dim("w4", min=low, max=2048)
    t0 = time.perf_counter()
    try:
        with _exporter_quiet():
            program = torch.onnx.export(
                model,
                (x,),
                dynamo=True,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                opset_version=opset,
                dynamic_shapes={"x": {2: 4 * h4, 3: 4 * w4}},
                optimize=True,
                verbose=False,
            )
    except Exception as e:  # the exporter raises many unrelated types; all mean "not exportable"
        raise ExportError(f"ONNX export failed: {str(e).strip().splitlines()[0][:200]}") from e
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".part", dir=out.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        program.save(str(tmp))
        proto = onnx.load(str(tmp))
        onnx.checker.check_model(proto)
        ops = graph_ops(proto)
        unsupported = sorted(set(ops) - TRT_PARSER_OPS)
        if unsupported:
            raise ExportError(f"export produced ops outside the TensorRT-parser set: {unsupported}")
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    log.debug("exported %s (%s, opset %d, %s) in %.1f s", out.name, precision, opset, dict(ops), time.perf_counter() - t0)
    return out


# Loggers of the exporter's internals (torch.onnx, its onnxscript optimizer, onnx_ir passes): at INFO
# they print ~20 lines per export ("No unused functions to remove", initializer dedup...).
_EXPORTER_LOGGERS = ("torch.onnx", "torch.export", "torch._export", "torch._dynamo", "onnxscript", "onnx_ir")


class _ToDebug(logging.Handler):
    """Re-logs an exporter record as one DEBUG line of ours: visible with -vv, silent otherwise.

    Only their INFO and above: their own DEBUG output is ~2500 lines per export.
    """

    def emit(self, record: logging.LogRecord) -> None:
        log.debug("[%s] %s", record.name, record.getMessage())


@contextlib.contextmanager
def _exporter_quiet() -> Iterator[None]:
    """Route the exporter's log records and warnings to our DEBUG log for the duration of an export.

    Process-wide while it runs (logging and warnings are global); exports are rare and short.
    """
    handler = _ToDebug(logging.INFO)
    saved = []
    for name in _EXPORTER_LOGGERS:
        logger = logging.getLogger(name)
        saved.append((logger, logger.propagate, logger.handlers[:]))
        logger.handlers[:] = [handler]
        logger.propagate = False
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")  # torch-internal deprecations and missing-op notes, not ours
            yield
    finally:
        for logger, propagate, handlers in saved:
            logger.handlers[:] = handlers
            logger.propagate = propagate
    for w in caught:
        log.debug("exporter warning: %s: %s", w.category.__name__, str(w.message).splitlines()[0][:200])


def graph_ops(model_or_path: object) -> Counter[str]:
    """Op-type histogram of an ONNX model (a ``ModelProto`` or a path)."""
    import onnx

    model = onnx.load(str(model_or_path)) if isinstance(model_or_path, str | Path) else model_or_path
    return Counter(n.op_type for n in model.graph.node)  # type: ignore[attr-defined]


def onnx_cache_path(style: Style, precision: Precision = "fp32", opset: int = OPSET) -> Path:
    """Where ``cached_onnx`` keeps a style's export: named by weights digest, opset, precision."""
    return cache_root() / "onnx" / f"{style.name}-{style.digest()[:16]}-op{opset}-{precision}-v{EXPORT_VERSION}.onnx"


def cached_onnx(style: Style, precision: Precision = "fp32", opset: int = OPSET) -> Path:
    """The style's ONNX file: an ONNX style's own file, or our export of a torch style (cached).

    The cache key is the weights' sha256, so retraining a style under the same name exports again.
    """
    if style.kind == "onnx":
        if precision != "fp32":
            raise ExportError(f"style {style.name!r} is a third-party ONNX model; only its own fp32 graph is available")
        return style.weights
    path = onnx_cache_path(style, precision, opset)
    if path.exists():
        log.debug("ONNX cache hit %s", path)
        return path
    with file_lock(path):  # processes starting together (one per GPU) export once; the others wait and reuse it
        if path.exists():
            return path
        # The one line a first use prints: the export takes a few seconds, once per style version.
        log.info("exporting style %r to ONNX (%s) once, cached at %s", style.name, precision, path)
        return export_onnx(load_generator(style), path, precision=precision, opset=opset)
