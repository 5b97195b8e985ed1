"""TensorRT engine build from our ONNX export, and the engine cache. Only this module builds engines.

    path = ensure_engine(style, sizes=[(1280, 720)], precision="fp16")   # build once, then cached

An engine file is named after everything that went into it (GUIDE principle 7):
``{style}-{onnx sha256[:16]}-{WxH_...}-{precision}-{gpu}-trt{version}.engine``, with a JSON
sidecar holding the full key. A different GPU, TensorRT version, size set or retrained weights
gives a different file, never a stale engine.

Precision: TensorRT 11 builds strongly typed networks only (``BuilderFlag.FP16`` was removed), so
fp16 comes from an fp16 ONNX graph (``export_onnx(precision='fp16')``) parsed into a strongly
typed network. On TensorRT 10 we ask for strong typing too (the creation flag exists there), so
both versions build the same thing. Each requested size gets its own optimization profile with
min = opt = max, so TensorRT picks tactics for exactly that shape. A timing cache per GPU and
TensorRT version makes rebuilds (new sizes, retrained weights) take seconds, not minutes.

Written against the documented TensorRT Python API (10.x/11.x): TensorRT cannot be installed on
the development machines, so this module is unverified until ``benchmarks/gpu_check.sh`` runs on
a GPU host that has it.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

from vst.export.onnx_export import INPUT_NAME, cached_onnx

from vst.errors import BackendUnavailable, VstError
from vst.fileio import file_lock
from vst.imaging import GENERATOR_SPEC
from vst.styles import Style, cache_root, file_sha256

log = logging.getLogger("vst.export.trt")

TrtPrecision = Literal["fp16", "fp32"]
Size = tuple[int, int]  # (width, height)
WORKSPACE_BYTES = 4 << 30
"""Scratch memory TensorRT may use for tactics at build time; generous, H100s have 80 GB."""

_TRT_HINT = (
    "TensorRT not installed: on a CUDA machine `pip install tensorrt` (NVIDIA's index) or "
    "`pip install 'vst[tensorrt]'` for torch-tensorrt; or use --backend torch-cuda"
)


def import_tensorrt() -> ModuleType:
    """``import tensorrt``, or ``BackendUnavailable`` with the install hint."""
    try:
        import tensorrt as trt
    except ImportError:
        raise BackendUnavailable(_TRT_HINT) from None
    return trt


class _Logger:
    """Routes TensorRT's messages into ``logging`` (created lazily: the base class lives in tensorrt)."""

    _instance: Any = None

    @classmethod
    def get(cls, trt: ModuleType) -> Any:
        if cls._instance is None:

            class TrtLogger(trt.ILogger):  # type: ignore[name-defined,misc]
                def __init__(self) -> None:
                    trt.ILogger.__init__(self)

                def log(self, severity: Any, msg: str) -> None:
                    S = trt.ILogger.Severity
                    level = {S.INTERNAL_ERROR: logging.ERROR, S.ERROR: logging.ERROR, S.WARNING: logging.WARNING}.get(
                        severity, logging.DEBUG
                    )
                    log.log(level, "tensorrt: %s", msg)

            cls._instance = TrtLogger()
        return cls._instance


def trt_logger() -> Any:
    return _Logger.get(import_tensorrt())


def gpu_name() -> str:
    """The CUDA device's name, file-name safe (e.g. 'NVIDIA-H100-80GB-HBM3')."""
    import torch

    if not torch.cuda.is_available():
        raise BackendUnavailable("building a TensorRT engine needs a CUDA GPU; none found")
    return re.sub(r"[^A-Za-z0-9.]+", "-", torch.cuda.get_device_name()).strip("-")


def padded(size: Size) -> Size:
    """The engine shape (W, H) for a frame size (W, H): the size ``GENERATOR_SPEC`` pads it to."""
    hp, wp = GENERATOR_SPEC.padded_hw(size[1], size[0])
    return wp, hp


def normalize_sizes(sizes: Sequence[Size]) -> list[Size]:
    if not sizes:
        raise VstError("an engine needs at least one size (e.g. --size 1280x720)")
    return sorted({padded(s) for s in sizes}, key=lambda s: (s[0] * s[1], s))


def engine_file_name(stem: str, model_sha256: str, sizes: Sequence[Size], precision: str,
                     gpu: str | None = None, trt_version: str | None = None) -> str:  # fmt: skip
    """The cache key as a file name: model hash, shapes, precision, GPU and TensorRT version."""
    gpu = gpu or gpu_name()
    trt_version = trt_version or import_tensorrt().__version__
    shapes = "_".join(f"{w}x{h}" for w, h in normalize_sizes(sizes))
    return f"{stem}-{model_sha256[:16]}-{shapes}-{precision}-{gpu}-trt{trt_version}.engine"


def engine_dir() -> Path:
    return cache_root() / "engines"


def strongly_typed_flag(trt: ModuleType) -> int:
    """Network-creation flags: STRONGLY_TYPED where the enum has it (10.x; accepted and implied in 11.x)."""
    flag = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    return 0 if flag is None else 1 << int(flag)


def fp16_in_graph(trt: ModuleType) -> bool:
    """True when FP16 must come from the ONNX graph (strong typing), False where BuilderFlag.FP16 exists and typing is weak."""
    return hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED") or not hasattr(trt.BuilderFlag, "FP16")


def _atomic_write_bytes(dest: Path, data: bytes | memoryview) -> None:
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.part")
    try:
        with tmp.open("wb") as f:
            f.write(data)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def build_engine(
    onnx_path: Path,
    out: Path,
    sizes: Sequence[Size],
    precision: TrtPrecision = "fp16",
    *,
    timing_cache: Path | None = None,
    workspace_bytes: int = WORKSPACE_BYTES,
) -> Path:
    """Parse ``onnx_path`` and build a serialized engine with one optimization profile per size.

    ``sizes`` are (W, H) and are rounded up to multiples of 4. ``precision`` is what the graph
    computes in: with strong typing that is the ONNX file's own dtype, so pass an fp16 export for
    fp16. The timing cache (default: one per GPU and TensorRT version) is read before and
    written after the build.
    """
    trt = import_tensorrt()
    sizes = normalize_sizes(sizes)
    logger = trt_logger()
    builder = trt.Builder(logger)
    network = builder.create_network(strongly_typed_flag(trt))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise VstError(f"TensorRT cannot parse {onnx_path.name}: {errors[:300]}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    if precision == "fp16" and not fp16_in_graph(trt):
        config.set_flag(trt.BuilderFlag.FP16)  # weakly typed TensorRT (< 9): the flag, on an fp32 graph
    input_name = network.get_input(0).name if network.num_inputs else INPUT_NAME
    for w, h in sizes:
        profile = builder.create_optimization_profile()
        shape = (1, 3, h, w)
        profile.set_shape(input_name, shape, shape, shape)  # min = opt = max: tactics for exactly this shape
        config.add_optimization_profile(profile)

    timing_cache = timing_cache or engine_dir() / f"timing-{gpu_name()}-trt{trt.__version__}.cache"
    cache_bytes = timing_cache.read_bytes() if timing_cache.exists() else b""
    cache = config.create_timing_cache(cache_bytes)
    config.set_timing_cache(cache, False)  # ignore_mismatch=False: a cache from another GPU is refused, not trusted

    t0 = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise VstError(f"TensorRT failed to build an engine from {onnx_path.name} (see the tensorrt log lines above)")
    out.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write_bytes(out, memoryview(serialized))
    timing_cache.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write_bytes(timing_cache, memoryview(config.get_timing_cache().serialize()))
    log.info("built %s in %.0f s (%d profile(s): %s)", out.name, time.perf_counter() - t0, len(sizes), sizes)
    return out


def ensure_engine(
    style: Style,
    sizes: Sequence[Size],
    precision: TrtPrecision = "fp16",
    *,
    progress: Callable[[str], None] | None = None,
) -> Path:
    """The cached engine for ``style`` at ``sizes``, building it first if needed (with a progress message)."""
    trt = import_tensorrt()
    if precision not in ("fp16", "fp32"):
        raise VstError(f"TensorRT engines are built in fp16 or fp32, not {precision!r}")
    graph_precision = "fp16" if precision == "fp16" and fp16_in_graph(trt) else "fp32"
    onnx_path = cached_onnx(style, graph_precision)
    model_sha = file_sha256(onnx_path)
    sizes = normalize_sizes(sizes)
    out = engine_dir() / engine_file_name(style.name, model_sha, sizes, precision, trt_version=trt.__version__)
    if out.exists():
        return out
    with file_lock(out):
        if out.exists():  # another process built it while we waited
            return out
        say = progress or log.info
        shapes = ", ".join(f"{w}x{h}" for w, h in sizes)
        say(f"building TensorRT {precision} engine for style {style.name!r} at {shapes} (first use only; a few minutes)")
        build_engine(onnx_path, out, sizes, precision)
        key = {"style": style.name, "onnx": onnx_path.name, "onnx_sha256": model_sha, "sizes": sizes,
               "precision": precision, "gpu": gpu_name(), "tensorrt": trt.__version__}  # fmt: skip
        out.with_suffix(".json").write_text(json.dumps(key, indent=2) + "\n")
        say(f"engine ready: {out}")
    return out


# ---------------------------------------------------------------- optional torch-tensorrt path


def compile_torch_tensorrt(style: Style, size: Size, precision: TrtPrecision = "fp16") -> Any:
    """Compile the style's generator with torch-tensorrt (dynamo, ahead of time) for one (W, H).

    One static shape per module: a dynamic H/W range would make torch.export reason about the
    generators' multiple-of-4 constraint (stride-2 convs then transposed convs), which the ONNX
    path states explicitly and this path cannot. The compiled module is saved in the engine cache
    as an ExportedProgram (``torch_tensorrt.save``) and reloaded from there next time. Returns a
    callable ``(1, 3, H, W) cuda tensor -> (1, 3, H, W)``.
    """
    import torch

    try:
        import torch_tensorrt
    except ImportError:
        raise BackendUnavailable("torch-tensorrt not installed: pip install 'vst[tensorrt]'") from None
    from vst.styles import load_generator

    (w, h), = normalize_sizes([size])
    dtype = torch.float16 if precision == "fp16" else torch.float32
    version = getattr(torch_tensorrt, "__version__", "unknown")
    name = engine_file_name(style.name, style.digest(), [(w, h)], precision, trt_version=f"torchtrt{version}")
    path = (engine_dir() / name).with_suffix(".ep")
    with file_lock(path):
        if path.exists():
            return torch.export.load(str(path)).module()
        net = load_generator(style).to("cuda", dtype).eval()
        spec = torch_tensorrt.Input(shape=(1, 3, h, w), dtype=dtype)
        log.info("compiling style %r with torch-tensorrt (%s, %dx%d)", style.name, precision, w, h)
        # use_explicit_typing: the fp16 module's own dtypes decide (enabled_precisions is deprecated).
        module = torch_tensorrt.compile(net, ir="dynamo", inputs=[spec], use_explicit_typing=True)
        torch_tensorrt.save(module, str(path), arg_inputs=[torch.zeros(1, 3, h, w, device="cuda", dtype=dtype)])
    return module
