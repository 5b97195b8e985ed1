"""The TensorRT engine's stream discipline and per-size contexts, on the fake device with a stand-in for the
tensorrt module (TensorRT cannot be installed here; tests/gpu/test_gpu_backends.py runs the real one).

What this shows: inference is enqueued on the engine's own stream, never on the caller's or the legacy
default stream, with ``wait_stream`` both ways around it; contexts are an LRU; a build for a new size
(slow) happens outside the engine's lock, so inference at a size it has keeps running meanwhile. What it
cannot show: anything TensorRT itself does."""

from __future__ import annotations

import json
import threading
import types
from pathlib import Path
from typing import Any

import pytest
import torch

from fake_cuda import FakeDevice, FakeStream

import vst.export.trt_build as trt_build
from vst.models import GeneratorSpec, build_generator, init_weights
from vst.stream.backends import trt_backend
from vst.stream.engine import EngineOptions
from vst.styles import Style, save_style


class LoggedStream(FakeStream):
    def __init__(self, log: list[tuple[Any, ...]], name: str) -> None:
        super().__init__()
        self.log, self.name = log, name

    def wait_stream(self, stream: Any) -> None:
        super().wait_stream(stream)
        self.log.append(("wait", self.name, stream.name))


class LoggedDevice(FakeDevice):
    def __init__(self) -> None:
        super().__init__()
        self.log: list[tuple[Any, ...]] = []
        self.streams: list[LoggedStream] = []

    def stream(self) -> LoggedStream:
        s = LoggedStream(self.log, f"s{len(self.streams)}")
        self.streams.append(s)
        return s


class FakeContext:
    def __init__(self, device: LoggedDevice, profiles: dict[int, tuple[int, int]]) -> None:
        self.device, self.profiles = device, profiles
        self.shape: tuple[int, ...] = ()

    def set_optimization_profile_async(self, profile: int, handle: int) -> None:
        self.device.log.append(("profile", profile, handle))

    def set_input_shape(self, name: str, shape: tuple[int, ...]) -> None:
        self.shape = shape

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        return self.shape

    def set_tensor_address(self, name: str, ptr: int) -> None:
        pass

    def execute_async_v3(self, handle: int) -> bool:
        current = getattr(self.device.current, "stream", None)
        self.device.log.append(("execute", handle, current.cuda_stream if current is not None else 0))
        return True


class FakeCudaEngine:
    """An engine with one optimization profile per size it was 'built' for."""

    num_io_tensors = 2

    def __init__(self, device: LoggedDevice, sizes: list[tuple[int, int]]) -> None:
        self.device, self.sizes = device, sizes  # (W, H)
        self.num_optimization_profiles = len(sizes)

    def get_tensor_name(self, i: int) -> str:
        return ("input", "output")[i]

    def get_tensor_mode(self, name: str) -> str:
        return "in" if name == "input" else "out"

    def get_tensor_dtype(self, name: str) -> str:
        return "float"

    def get_tensor_profile_shape(self, name: str, p: int) -> tuple[tuple[int, ...], ...]:
        w, h = self.sizes[p]
        return (1, 3, h, w), (1, 3, h, w), (1, 3, h, w)

    def create_execution_context(self) -> FakeContext:
        return FakeContext(self.device, dict(enumerate(self.sizes)))


@pytest.fixture
def style(tmp_path_factory: pytest.TempPathFactory) -> Style:
    spec = GeneratorSpec("compact", {"width": 8, "n_blocks": 2})
    net = init_weights(build_generator(spec), gain=0.2, seed=3)
    return save_style(tmp_path_factory.mktemp("styles"), "trt-fake", net, spec, {"provenance": "test"})


class Builds:
    """Stands in for ``vst.export.trt_build.ensure_engine``: writes the sizes to a file; ``gate`` holds a build."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.calls = folder, 0
        self.gate = threading.Event()
        self.gate.set()

    def __call__(self, style: Style, sizes: list[tuple[int, int]], precision: str, progress: Any = None) -> Path:
        if not self.gate.wait(10):
            raise TimeoutError("test gate never opened")
        self.calls += 1
        path = self.folder / f"engine{self.calls}.json"
        path.write_text(json.dumps(sizes))
        return path


@pytest.fixture
def rig(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> tuple[LoggedDevice, Builds]:
    device = LoggedDevice()

    class Runtime:
        def __init__(self, logger: Any) -> None:
            pass

        def deserialize_cuda_engine(self, data: bytes) -> FakeCudaEngine:
            return FakeCudaEngine(device, [tuple(s) for s in json.loads(data)])  # type: ignore[misc]

    trt = types.SimpleNamespace(Runtime=Runtime, TensorIOMode=types.SimpleNamespace(INPUT="in", OUTPUT="out"),
                                DataType=types.SimpleNamespace(HALF="half", FLOAT="float"))  # fmt: skip
    builds = Builds(tmp_path)
    monkeypatch.setattr(trt_build, "import_tensorrt", lambda: trt)
    monkeypatch.setattr(trt_build, "ensure_engine", builds)
    monkeypatch.setattr(trt_backend, "_trt_logger", lambda: None)
    monkeypatch.setattr(trt_backend, "_torch_dtype", lambda trt, dt: torch.float32)
    return device, builds


def test_inference_runs_on_its_own_stream_with_handshakes_both_ways(rig: tuple[LoggedDevice, Builds], style: Style) -> None:
    device, _ = rig
    engine = trt_backend.TensorRTEngine(style, EngineOptions(precision="fp32"), device)
    own = device.streams[0]
    caller = device.stream()
    x = engine.static_input((36, 64))
    device.log.clear()
    with device.use(caller):
        y = engine.infer(x, caller)
    assert y.shape == (1, 3, 36, 64)
    assert device.log == [("wait", own.name, caller.name), ("execute", own.cuda_stream, own.cuda_stream),
                          ("wait", caller.name, own.name)]  # fmt: skip
    assert own.cuda_stream != 0 and own is not caller  # never the legacy default stream, never the caller's


def test_contexts_are_an_lru(rig: tuple[LoggedDevice, Builds], style: Style) -> None:
    device, builds = rig
    engine = trt_backend.TensorRTEngine(style, EngineOptions(precision="fp32", max_graphs=2), device)
    engine.prepare([(64, 36), (80, 48), (32, 20)])  # one engine, three profiles
    for hw in ((36, 64), (48, 80), (20, 32), (48, 80)):
        engine.static_input(hw)
    assert list(engine._slots) == [(20, 32), (48, 80)]  # (36, 64) dropped, (48, 80) most recent
    assert builds.calls == 1  # contexts come from the one engine: no build per size it has


def test_a_new_size_widens_the_engine(rig: tuple[LoggedDevice, Builds], style: Style) -> None:
    device, builds = rig
    engine = trt_backend.TensorRTEngine(style, EngineOptions(precision="fp32"), device)
    for hw in ((36, 64), (48, 80), (36, 64)):
        engine.static_input(hw)
    assert sorted(engine.sizes) == sorted([(64, 36), (80, 48)]) and builds.calls == 2


def test_a_build_for_a_new_size_never_blocks_inference(rig: tuple[LoggedDevice, Builds], style: Style) -> None:
    """A builder thread asking for a new size (minutes of TensorRT build) holds no lock inference needs."""
    device, builds = rig
    engine = trt_backend.TensorRTEngine(style, EngineOptions(precision="fp32"), device)
    caller = device.stream()
    x = engine.static_input((36, 64))
    builds.gate.clear()
    builder = threading.Thread(target=engine.static_input, args=((48, 80),), daemon=True)
    builder.start()
    try:
        done = threading.Event()

        def infer_three() -> None:
            for _ in range(3):
                engine.infer(x, caller)
            done.set()

        threading.Thread(target=infer_three, daemon=True).start()
        assert done.wait(5), "inference waited for the build"
    finally:
        builds.gate.set()
        builder.join(10)
    assert (48, 80) in engine._slots and (36, 64) in engine._profiles
