"""CUDA backends against the CPU fp32 reference (marked gpu; skipped with a reason without CUDA).

Tolerances on the uint8 output (0..255), small generators with non-trivial activations:
  torch-cuda fp16 vs torch-cpu fp32      mean |diff| <= 2, 99th percentile <= 8
  torch-cuda CUDA graph vs eager (fp16)  max |diff| <= 1
  tensorrt fp16 vs torch-cpu fp32        mean |diff| <= 2, 99th percentile <= 8
  onnxruntime CUDA EP fp32 vs torch-cpu  max |diff| <= 2
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator

import numpy as np
import pytest
import torch

from vst.models import GeneratorSpec, build_generator, init_weights
from vst.stream.engine import make_engine
from vst.styles import Style, save_style

pytestmark = pytest.mark.gpu

FP16_TOL = {"mean": 2.0, "p99": 8.0}
SPECS = {
    "compact": GeneratorSpec("compact", {"width": 8, "n_blocks": 2}),
    "resnet": GeneratorSpec("resnet", {"ngf": 16, "n_blocks": 3}),
}


@pytest.fixture(params=sorted(SPECS))
def style(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Style:
    monkeypatch.setenv("VST_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    spec = SPECS[request.param]
    net = init_weights(build_generator(spec), gain=0.2, seed=5)
    return save_style(tmp_path_factory.mktemp("styles"), f"tiny-{request.param}", net, spec, {"provenance": "test"})


@pytest.fixture(params=[(128, 72), (130, 66)], ids=["128x72", "130x66-padded"])
def frame(request: pytest.FixtureRequest) -> np.ndarray:
    from vst.stream.sources import TestSource

    return TestSource(request.param).render(11)


def _diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a.astype(int) - b.astype(int))


def _fp16_close(got: np.ndarray, ref: np.ndarray) -> None:
    d = _diff(got, ref)
    assert got.shape == ref.shape and got.dtype == np.uint8
    assert d.mean() <= FP16_TOL["mean"] and np.percentile(d, 99) <= FP16_TOL["p99"], (d.mean(), np.percentile(d, 99), d.max())


def test_torch_cuda_fp16_matches_cpu(style: Style, frame: np.ndarray) -> None:
    ref = make_engine(style, "torch-cpu", "fp32")(frame)
    assert ref.std() > 5
    _fp16_close(make_engine(style, "torch-cuda", "fp16")(frame), ref)


def test_cuda_graph_matches_eager(style: Style, frame: np.ndarray, monkeypatch: pytest.MonkeyPatch) -> None:
    graphed = make_engine(style, "torch-cuda")
    monkeypatch.setenv("VST_CUDA_GRAPHS", "0")
    eager = make_engine(style, "torch-cuda")
    assert graphed.use_graphs and not eager.use_graphs  # type: ignore[attr-defined]
    a, b = graphed(frame), eager(frame)
    assert _diff(a, b).max() <= 1
    assert _diff(graphed(frame), a).max() == 0  # replay is deterministic


def test_tensor_api_static_input_and_sizes(style: Style) -> None:
    engine = make_engine(style, "torch-cuda")
    x = torch.rand(1, 3, 64, 96, device="cuda", dtype=torch.float16) * 2 - 1
    with torch.inference_mode():  # the graph's static buffers are inference tensors
        y1 = engine.infer(x).clone()  # type: ignore[attr-defined]
        engine.infer(torch.zeros(1, 3, 32, 48, device="cuda", dtype=torch.float16))  # type: ignore[attr-defined]  # another graph
        slot = engine.static_input((64, 96))  # type: ignore[attr-defined]
        slot.copy_(x)
        y2 = engine.infer(slot)  # type: ignore[attr-defined]
    torch.cuda.synchronize()
    assert y2.shape == (1, 3, 64, 96)
    assert (y1.float() - y2.float()).abs().max().item() == 0


_NO_TRT = importlib.util.find_spec("tensorrt") is None


@pytest.mark.skipif(_NO_TRT, reason="TensorRT is not installed (pip install tensorrt on a CUDA host)")
def test_tensorrt_fp16_matches_cpu_and_caches(style: Style, frame: np.ndarray) -> None:
    from vst.export.trt_build import engine_dir

    ref = make_engine(style, "torch-cpu", "fp32")(frame)
    engine = make_engine(style, "tensorrt", "fp16")
    _fp16_close(engine(frame), ref)
    files = sorted(engine_dir().glob(f"{style.name}-*.engine"))
    assert len(files) == 1
    name = files[0].name
    assert "fp16" in name and torch.cuda.get_device_name().split()[-1] in name.replace("-", " ")
    import tensorrt

    assert f"trt{tensorrt.__version__}" in name
    before = files[0].stat().st_mtime_ns
    make_engine(style, "tensorrt", "fp16")(frame)  # a second engine loads the cached file
    assert files[0].stat().st_mtime_ns == before


def _has_ort_cuda() -> bool:
    try:
        import onnxruntime as ort
    except ImportError:
        return False
    return "CUDAExecutionProvider" in ort.get_available_providers()


@pytest.mark.skipif(not _has_ort_cuda(), reason="onnxruntime has no CUDAExecutionProvider here (onnxruntime-gpu not installed)")
def test_onnxruntime_cuda_ep_matches_cpu(style: Style, frame: np.ndarray) -> None:
    ref = make_engine(style, "torch-cpu", "fp32")(frame)
    engine = make_engine(style, "onnxruntime")
    assert engine.session.get_providers()[0] == "CUDAExecutionProvider"  # type: ignore[attr-defined]
    assert _diff(engine(frame), ref).max() <= 2


@pytest.fixture(autouse=True)
def _free_cuda() -> Iterator[None]:
    yield
    torch.cuda.empty_cache()
