"""ONNX export: dynamic H/W, TensorRT-parsable ops, onnxruntime parity with torch; TensorRT build.

Small nets (ResNet ngf=8 with 2 blocks, compact width=8) keep this under a few seconds; the ops
and the graph structure are the same as the full-size generators'.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from vst.export.onnx_export import (
    INPUT_NAME,
    OPSET,
    TRT_PARSER_OPS,
    ExportError,
    cached_onnx,
    export_onnx,
    graph_ops,
    onnx_cache_path,
)
from vst.models import GeneratorSpec, build_generator, init_weights
from vst.styles import Style, save_style

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

# Max abs error of onnxruntime (fp32, CPU) against eager torch (fp32), on the [-1, 1] output scale.
# Both run the same fp32 convolutions; differences are summation order only (~1e-6 seen).
ORT_FP32_TOL = 1e-4

SPECS = {
    "resnet": GeneratorSpec("resnet", {"ngf": 8, "n_blocks": 2}),
    "compact": GeneratorSpec("compact", {"width": 8, "n_blocks": 2}),
}
SIZES = [(32, 48), (44, 80)]  # (H, W): two sizes through one exported graph, neither the export sample


def _net(arch: str) -> torch.nn.Module:
    # gain 0.2, not the 0.02 training init: activations must be far from constant for parity to mean anything.
    return init_weights(build_generator(SPECS[arch]), gain=0.2, seed=1).eval()


@pytest.fixture(scope="module", params=sorted(SPECS))
def exported(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, torch.nn.Module, Path]:
    arch = request.param
    net = _net(arch)
    path = export_onnx(net, tmp_path_factory.mktemp("onnx") / f"{arch}.onnx")
    return arch, net, path


def _session(path: Path) -> "ort.InferenceSession":
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def test_graph_is_tensorrt_parsable(exported: tuple[str, torch.nn.Module, Path]) -> None:
    _, _, path = exported
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    assert {o.version for o in model.opset_import if o.domain in ("", "ai.onnx")} == {OPSET}
    ops = graph_ops(model)
    assert set(ops) <= TRT_PARSER_OPS, ops
    # The three ops the issue names must be there as native ONNX ops, not decomposed.
    assert ops["InstanceNormalization"] > 0 and ops["ConvTranspose"] == 2 and ops["Pad"] > 0
    modes = {a.s.decode() for n in model.graph.node if n.op_type == "Pad" for a in n.attribute if a.name == "mode"}
    assert modes == {"reflect"}


def test_height_and_width_are_dynamic(exported: tuple[str, torch.nn.Module, Path]) -> None:
    _, _, path = exported
    dims = onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_value == 1 and dims[1].dim_value == 3
    assert dims[2].dim_param and dims[3].dim_param and not dims[2].dim_value and not dims[3].dim_value


@pytest.mark.parametrize("hw", SIZES)
def test_onnxruntime_matches_torch(exported: tuple[str, torch.nn.Module, Path], hw: tuple[int, int]) -> None:
    _, net, path = exported
    x = torch.rand(1, 3, *hw, generator=torch.Generator().manual_seed(hw[0])) * 2 - 1
    with torch.inference_mode():
        ref = net(x).numpy()
    got = _session(path).run(None, {INPUT_NAME: x.numpy()})[0]
    assert got.shape == ref.shape == (1, 3, *hw)
    assert ref.std() > 0.05  # a meaningful, non-constant output
    assert np.abs(got - ref).max() < ORT_FP32_TOL


def test_fp16_export_is_half_throughout(tmp_path: Path) -> None:
    """FP16 lives in the graph (TensorRT 11 is strongly typed): fp16 I/O and fp16 weights."""
    path = export_onnx(_net("compact"), tmp_path / "c16.onnx", precision="fp16")
    model = onnx.load(str(path))
    fp16 = onnx.TensorProto.FLOAT16
    assert model.graph.input[0].type.tensor_type.elem_type == fp16
    assert model.graph.output[0].type.tensor_type.elem_type == fp16
    float_inits = [i.name for i in model.graph.initializer if i.data_type == onnx.TensorProto.FLOAT]
    assert not float_inits
    assert set(graph_ops(model)) <= TRT_PARSER_OPS


def test_export_rejects_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ExportError):
        export_onnx(_net("compact"), tmp_path / "x.onnx", precision="int8")  # type: ignore[arg-type]
    with pytest.raises(ExportError):
        export_onnx(_net("compact"), tmp_path / "x.onnx", sample_hw=(30, 30))
    assert not list(tmp_path.iterdir())  # nothing half-written


@pytest.fixture(scope="module")
def tiny_cached(tmp_path_factory: pytest.TempPathFactory) -> tuple[Style, Path]:
    """One saved style and one cache dir for the cache and CLI tests: the export happens once."""
    style = save_style(tmp_path_factory.mktemp("styles"), "tiny", _net("compact"), SPECS["compact"], {"provenance": "test"})
    return style, tmp_path_factory.mktemp("cache")


def test_cached_onnx_is_keyed_by_digest(tiny_cached: tuple[Style, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    style, cache = tiny_cached
    monkeypatch.setenv("VST_CACHE_DIR", str(cache))
    first = cached_onnx(style)
    assert first == onnx_cache_path(style) and first.is_file()
    assert style.digest()[:16] in first.name and f"op{OPSET}" in first.name
    mtime = first.stat().st_mtime_ns
    assert cached_onnx(style).stat().st_mtime_ns == mtime  # a hit, not a re-export


def test_one_weights_file_under_two_layouts_is_two_exports(tmp_path: Path) -> None:
    """``antialias`` adds no weights, so a style and its anti-aliased copy share a weights file; the
    cache key holds the architecture too, or the second would run the first's graph."""
    import json

    from vst.styles import resolve_style

    kwargs = {"width": 8, "n_blocks": 1, "affine": True, "upsample": "bilinear", "pad": "reflect"}
    spec = GeneratorSpec("compact", kwargs)
    plain = save_style(tmp_path / "a", "s", build_generator(spec), spec, {})
    (tmp_path / "b").mkdir()
    copy = tmp_path / "b" / "s.safetensors"
    copy.write_bytes(plain.weights.read_bytes())
    meta = json.loads(plain.weights.with_suffix(".json").read_text())
    meta["arch_kwargs"]["antialias"] = True
    copy.with_suffix(".json").write_text(json.dumps(meta))
    aa = resolve_style(copy)
    assert aa.spec.kwargs["antialias"] is True
    assert onnx_cache_path(aa) != onnx_cache_path(plain)
    assert resolve_style(plain.weights).digest() == plain.digest()  # stable across resolves


def test_first_use_export_prints_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    """The exporter's own INFO logs (onnx_ir passes, onnxscript) and warnings stay out of the user's terminal."""
    import logging
    import warnings

    style = save_style(tmp_path / "styles", "quiet", _net("compact"), SPECS["compact"], {"provenance": "test"})
    monkeypatch.setenv("VST_CACHE_DIR", str(tmp_path / "cache"))
    loggers = [logging.getLogger(n) for n in ("onnx_ir", "onnxscript", "torch.onnx")]
    before = [(lg.propagate, list(lg.handlers)) for lg in loggers]
    with caplog.at_level(logging.INFO), warnings.catch_warnings():
        warnings.simplefilter("default")  # as a user's interpreter shows them
        path = cached_onnx(style)
    assert path.is_file()
    lines = [f"{r.name}: {r.getMessage()}" for r in caplog.records if r.levelno >= logging.INFO]
    assert len(lines) == 1 and lines[0].startswith("vst.export.onnx: exporting style 'quiet'"), lines
    out, err = capfd.readouterr()
    assert out == "" and err == ""
    assert [(lg.propagate, list(lg.handlers)) for lg in loggers] == before  # the exporter's loggers are restored


def test_onnx_style_passes_through() -> None:
    from vst.styles import resolve_style

    candy = resolve_style("candy")
    assert cached_onnx(candy) == candy.weights
    with pytest.raises(ExportError):
        cached_onnx(candy, precision="fp16")


# ------------------------------------------------------------------ TensorRT (skips without it)

_NO_TRT = importlib.util.find_spec("tensorrt") is None
_NO_CUDA = not torch.cuda.is_available()


@pytest.mark.gpu
@pytest.mark.skipif(_NO_TRT or _NO_CUDA, reason="TensorRT is not installed here (its wheels cannot be fetched) or no CUDA GPU")
def test_tensorrt_builds_and_caches_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from vst.export.trt_build import build_engine, engine_file_name

    monkeypatch.setenv("VST_CACHE_DIR", str(tmp_path / "cache"))
    onnx_path = export_onnx(_net("compact"), tmp_path / "c16.onnx", precision="fp16")
    out = build_engine(onnx_path, tmp_path / engine_file_name("c", "0" * 64, [(64, 48)], "fp16"), [(64, 48)], "fp16")
    assert out.stat().st_size > 0


def test_tensorrt_missing_is_a_clear_error() -> None:
    if not _NO_TRT:
        pytest.skip("TensorRT is installed here: the missing-package message cannot be exercised")
    from vst.errors import BackendUnavailable
    from vst.export.trt_build import import_tensorrt

    with pytest.raises(BackendUnavailable, match="TensorRT not installed"):
        import_tensorrt()


def test_engine_cache_key_names_everything() -> None:
    from vst.export.trt_build import engine_file_name, normalize_sizes, padded

    assert padded((1918, 1078)) == (1920, 1080)
    assert normalize_sizes([(1920, 1080), (1280, 720), (1279, 719)]) == [(1280, 720), (1920, 1080)]
    name = engine_file_name("monet", "ab" * 32, [(1920, 1080), (1280, 720)], "fp16", gpu="NVIDIA-H100-80GB-HBM3", trt_version="11.0.1")
    assert name == "monet-abababababababab-1280x720_1920x1080-fp16-NVIDIA-H100-80GB-HBM3-trt11.0.1.engine"
    other = {
        engine_file_name("monet", "cd" * 32, [(1280, 720)], "fp16", gpu="g", trt_version="11"),  # weights
        engine_file_name("monet", "ab" * 32, [(640, 360)], "fp16", gpu="g", trt_version="11"),  # shape
        engine_file_name("monet", "ab" * 32, [(1280, 720)], "fp32", gpu="g", trt_version="11"),  # precision
        engine_file_name("monet", "ab" * 32, [(1280, 720)], "fp16", gpu="h", trt_version="11"),  # GPU
        engine_file_name("monet", "ab" * 32, [(1280, 720)], "fp16", gpu="g", trt_version="10"),  # TensorRT
    }
    assert len(other) == 5


def test_cli_exports_onnx_and_reports_missing_tensorrt(tiny_cached: tuple[Style, Path], tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    from vst.export.cli import main

    style, cache = tiny_cached
    monkeypatch.setenv("VST_CACHE_DIR", str(cache))
    out = tmp_path / "out" / "tiny.onnx"
    with pytest.raises(SystemExit) as e:
        main(["--style", str(style.weights), "--onnx", str(out)])
    assert e.value.code == 0 and out.is_file() and set(graph_ops(out)) <= TRT_PARSER_OPS
    if _NO_TRT:
        with pytest.raises(SystemExit) as e:
            main(["--style", str(style.weights), "--engine", "--size", "640x360"])
        assert e.value.code == 2 and "TensorRT not installed" in capsys.readouterr().err
