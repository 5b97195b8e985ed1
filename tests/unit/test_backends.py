"""Every backend available here produces the same frames from the same style, within stated tolerances.

Tolerances are on the uint8 output (0..255), for a small generator with non-trivial activations:
  onnxruntime fp32 vs torch-cpu fp32   max |diff| <= 1     (rounding of identical fp32 maths)
  openvino fp32 vs torch-cpu fp32      max |diff| <= 1     (the same; bf16 and real frames: test_openvino.py)
  torch-cpu bf16 vs fp32               mean |diff| <= 3    (bf16 has 8 mantissa bits)
  torch-cuda fp16 / tensorrt fp16      tests/gpu/test_gpu_backends.py (skipped without a GPU)
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

import vst.stream.engine as engine_mod
from vst.errors import BackendUnavailable, VstError
from vst.models import GeneratorSpec, build_generator, init_weights
from vst.hardware import cpu_has_bf16
from vst.stream.engine import Engine, EngineOptions, make_engine
from vst.styles import Style, save_style

UINT8_TOL = {"onnxruntime": {"max": 1}, "openvino": {"max": 1}, "torch-cpu-bf16": {"mean": 3.0}}


@pytest.fixture
def style(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Style:
    monkeypatch.setenv("VST_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    spec = GeneratorSpec("compact", {"width": 8, "n_blocks": 2})
    net = init_weights(build_generator(spec), gain=0.2, seed=3)
    return save_style(tmp_path_factory.mktemp("styles"), "tiny", net, spec, {"provenance": "test"})


@pytest.fixture
def frame() -> np.ndarray:
    """A frame from the synthetic source; 66 rows (2 mod 4) exercise the reflect padding.

    Every backend pads as ``vst.imaging.GENERATOR_SPEC`` says (odd and small sizes:
    test_preprocessing_parity.py).
    """
    from vst.stream.sources import TestSource

    return TestSource((96, 66)).render(7)


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_onnx_runtimes_match_torch_cpu(style: Style, frame: np.ndarray, backend: str) -> None:
    ref = make_engine(style, "torch-cpu", "fp32")(frame)
    got = make_engine(style, backend, "fp32")(frame)
    assert got.shape == ref.shape == frame.shape and got.dtype == np.uint8
    assert ref.std() > 5  # the output is an image, not a constant
    assert np.abs(got.astype(int) - ref.astype(int)).max() <= UINT8_TOL[backend]["max"]


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_onnx_runtimes_tensor_api(style: Style, backend: str) -> None:
    engine = make_engine(style, backend)
    x = np.random.default_rng(0).uniform(-1, 1, (1, 3, 32, 48)).astype(np.float32)
    y = engine.infer(x)  # type: ignore[attr-defined]
    assert y.shape == x.shape and y.dtype == np.float32 and np.abs(y).max() <= 1.0


@pytest.mark.parametrize("backend", ["torch-cpu", "onnxruntime", "openvino"])
def test_cpu_engines_keep_the_engine_contract(style: Style, frame: np.ndarray, backend: str) -> None:
    """Every CPU engine is an ``Engine`` (protocol members, no probing): device, thread count, and a
    ``prepare`` that builds sizes ahead and leaves the output unchanged."""
    torch_threads = torch.get_num_threads()
    try:
        engine = make_engine(style, backend, "fp32", EngineOptions(threads=1))
    finally:
        torch.set_num_threads(torch_threads)  # torch's count is process-wide: leave the other tests theirs
    assert isinstance(engine, Engine) and engine.device == "cpu" and engine.backend == backend
    assert engine.threads == 1
    before = engine(frame)
    engine.prepare([(frame.shape[1], frame.shape[0]), (48, 32)])
    assert np.array_equal(engine(frame), before)
    assert engine(frame[:32, :48]).shape == (32, 48, 3)


def _no_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine_mod, "cuda_available", lambda: False)


@pytest.mark.parametrize("style_name", ["monet", "candy"])
def test_auto_picks_openvino_on_cpu_and_says_why(style_name: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                 caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    from vst.styles import resolve_style

    monkeypatch.setenv("VST_CACHE_DIR", str(tmp_path))  # monet's export goes here, not to ~/.cache
    _no_cuda(monkeypatch)
    style = resolve_style(style_name)
    backend, why = engine_mod.choose_backend(style)
    assert backend == "openvino" and "OpenVINO is installed" in why
    monkeypatch.setattr(engine_mod, "openvino_installed", lambda: False)
    backend, why = engine_mod.choose_backend(style)
    assert backend == "onnxruntime" and "pip install openvino" in why
    with caplog.at_level(logging.INFO, logger="vst.engine"):
        engine = make_engine(style, "auto")
    assert engine.backend == "onnxruntime"
    assert any("auto -> onnxruntime" in r.getMessage() and "not installed" in r.getMessage() for r in caplog.records)


def test_auto_keeps_torch_cuda_for_torch_styles_on_a_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    from vst.styles import resolve_style

    monkeypatch.setattr(engine_mod, "cuda_available", lambda: True)
    assert engine_mod.choose_backend(resolve_style("monet"))[0] == "torch-cuda"


def test_openvino_is_installed_by_default() -> None:
    """pyproject lists openvino as a default dependency, so auto on CPU means openvino."""
    assert engine_mod.openvino_installed()


def test_unknown_backend_lists_the_choices(style: Style) -> None:
    with pytest.raises(VstError, match="openvino, onnxruntime"):
        make_engine(style, "tflite")


@pytest.mark.skipif(not cpu_has_bf16(), reason="this CPU has no native bf16 (AVX512-BF16/AMX)")
def test_torch_cpu_bf16_close_to_fp32(style: Style, frame: np.ndarray) -> None:
    ref = make_engine(style, "torch-cpu", "fp32")(frame)
    got = make_engine(style, "torch-cpu", "bf16")(frame)
    assert np.abs(got.astype(int) - ref.astype(int)).mean() <= UINT8_TOL["torch-cpu-bf16"]["mean"]


def test_cuda_backends_refuse_clearly_without_a_gpu(style: Style) -> None:
    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present: the GPU tests cover these backends")
    with pytest.raises(BackendUnavailable, match="CUDA"):
        make_engine(style, "torch-cuda")
    expected = "TensorRT not installed" if importlib.util.find_spec("tensorrt") is None else "CUDA"
    with pytest.raises(BackendUnavailable, match=expected):
        make_engine(style, "tensorrt")


def test_cuda_pipeline_refuses_clearly_without_a_gpu() -> None:
    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present: tests/gpu/test_cuda_pipeline.py covers the pipeline")
    from vst.stream.cuda_processor import CudaConfig, CudaProcessor

    with pytest.raises(BackendUnavailable):
        CudaProcessor(object(), CudaConfig(size=(64, 48)))  # type: ignore[arg-type]
