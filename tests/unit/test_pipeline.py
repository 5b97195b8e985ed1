"""The pipeline around its processor: state with one writer, commands applied between frames, errors shown,
and the processor choice (host on CPU; CUDA for torch-cuda/tensorrt engines, run here on the fake device)."""

from __future__ import annotations

import logging
import threading

import numpy as np
import pytest

from fake_cuda import FakeDevice, FakeTensorEngine
from pipeline_rig import tiny_style, until

import vst.stream.cuda_processor
import vst.stream.pipeline as pipeline_mod
from vst.errors import BackendUnavailable, VstError
from vst.stream.blend_config import BlendConfig
from vst.stream.pipeline import Pipeline, PipelineConfig, PipelineState
from vst.stream.engine import EngineBase
from vst.stream.processor import HostProcessor, make_processor
from vst.styles import Style

@pytest.fixture
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Style:
    return tiny_style(tmp_path_factory.mktemp("styles"))


class Invert(EngineBase):
    backend, precision, device = "test", "fp32", "cpu"

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        return 255 - frame


class Flaky(Invert):
    def __init__(self) -> None:
        self.n = 0

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        self.n += 1
        if self.n % 2:
            raise RuntimeError("simulated backend failure")
        return super().__call__(frame)


def test_host_processor_state_commands_and_errors(tiny: Style, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "vst.processor")
    p = Pipeline(PipelineConfig(source="testsrc", size=(64, 36), fps=60, style=str(tiny.weights), backend="torch-cpu"))
    assert p.status is PipelineState.STARTING
    p.start()
    try:
        assert "processor: host" in caplog.text and isinstance(p._processor, HostProcessor)
        assert until(lambda: p.status is PipelineState.RUNNING and p.latest is not None)
        assert p.stats()["processor"] == "host" and p.state == "running"
        # Commands: applied by the processing thread between frames.
        p.set_blend(0.5)
        assert p.blend_alpha == 0.5 and until(lambda: p._processor.blend.alpha == 0.5)  # type: ignore[union-attr]
        with pytest.raises(VstError, match="alpha"):
            p.set_blend(1.5)
        p.set_engine(Flaky())
        assert until(lambda: p.stats()["engine_errors"] >= 2)
        assert "simulated backend failure" in p.stats()["last_error"]
        seq = p.latest.seq  # type: ignore[union-attr]
        assert until(lambda: p.latest is not None and p.latest.seq > seq + 2), "output froze after engine errors"
        p.set_engine(Invert())
        done: list[Style] = []
        t = threading.Thread(target=lambda: done.append(p.set_style(str(tiny.weights))))
        t.start()
        t.join(20)
        assert done and p.style.name == done[0].name
        # The server's old assignment is posted like any transition.
        p.state = "waiting for a browser camera"
        assert until(lambda: p.status is not PipelineState.STARTING)
    finally:
        p.stop()
    assert p.status is PipelineState.STOPPED and p.stats()["state"] == "stopped"


def test_cuda_engines_get_the_cuda_processor() -> None:
    """On CPU the CUDA processor refuses clearly: proof that a torch-cuda engine is routed to it."""
    with pytest.raises(BackendUnavailable, match="CUDA"):
        make_processor(FakeTensorEngine(), BlendConfig(), lambda _: None)
    assert isinstance(make_processor(FakeTensorEngine(), BlendConfig(), lambda _: None, "host"), HostProcessor)
    with pytest.raises(VstError, match="CUDA engine"):
        make_processor(Invert(), BlendConfig(), lambda _: None, "cuda")  # type: ignore[arg-type]


def test_pipeline_serves_through_the_cuda_processor(monkeypatch: pytest.MonkeyPatch, tiny: Style,
                                                   caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    """The serving pipeline with a torch-cuda engine runs the CUDA processor (fake device); outputs are
    published in order, the startup log says which processor runs."""
    caplog.set_level(logging.INFO, "vst.processor")
    monkeypatch.setattr(vst.stream.cuda_processor, "TorchCudaDevice", lambda: FakeDevice())
    monkeypatch.setattr(pipeline_mod, "make_engine", lambda style, backend: FakeTensorEngine())
    p = Pipeline(PipelineConfig(source="testsrc", size=(64, 36), fps=60, style=str(tiny.weights), backend="torch-cuda"))
    p.start()
    try:
        assert "processor: CUDA" in caplog.text
        assert until(lambda: p.latest is not None and p.latest.seq > 5)
        out = p.latest
        assert out is not None and out.stylized.shape == (36, 64, 3)
        np.testing.assert_array_equal(out.stylized, FakeTensorEngine()(out.original))
        assert p.stats()["processor"] == "cuda"
    finally:
        p.stop()


def test_blend_config_defaults_are_the_clis() -> None:
    from vst.cli import DEFAULT_BLEND_BUDGET

    assert BlendConfig().budget == DEFAULT_BLEND_BUDGET
    with pytest.raises(ValueError, match="mask_threshold"):
        BlendConfig(mask_threshold=90)
    with pytest.raises(ValueError, match="alpha"):
        BlendConfig(alpha=1.0, budget=None)
    for radius in (-1, 9, 1.5, True):
        with pytest.raises(ValueError, match="clamp"):
            BlendConfig(clamp=radius)  # type: ignore[arg-type]
    with pytest.raises(VstError, match="--blend"):
        Pipeline(PipelineConfig(blend=1.0, blend_budget=None))


def test_layout_reads_source_processor_sinks() -> None:
    """pipeline.py keeps its old names importable while the parts live in their own modules."""
    homes = {"OneSlot": "newest", "BrowserSource": "browser_source", "banner": "overlay", "stamp_time": "overlay",
             "read_stamp": "overlay"}  # fmt: skip
    for name, module in homes.items():
        assert getattr(pipeline_mod, name).__module__ == f"vst.stream.{module}"
