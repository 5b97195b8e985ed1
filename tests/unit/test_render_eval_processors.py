"""vst-render and vst-eval stylize through the processors vst-stream runs (``make_processor``), with CLI
defaults from ``BlendConfig``; their frames are the ones the old loops of their own produced.

The host processor runs here on a real clip; the CUDA processor runs on the CPU against the fake device
(tests/unit/fake_cuda.py), as in test_cuda_processor.py.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from fake_cuda import FakeDevice, FakeTensorEngine

import vst.stream.cuda_processor as cuda_processor
import vst.stream.engine as engine_mod
import vst.stream.render as render_mod
from vst.stream.blend import make_blend
from vst.stream.blend_config import BlendConfig
from vst.stream.engine import EngineBase
from vst.stream.processor import HostProcessor, Processed, make_processor
from vst.stream.sources import AvSource
from vst.styles import resolve_style

SIZE = (96, 96)  # carphone (176x144) fits as 96x78: 78 = 2 mod 4, so frames are padded
BACKEND = "onnxruntime"  # deterministic and quick here; every CPU backend goes through the same host processor


@pytest.fixture
def clip(data: type) -> Path:
    return data("videos", "carphone_pristine.mp4")  # type: ignore[operator, no-any-return]


def _frames(clip: Path, limit: int = 10_000) -> list[np.ndarray]:
    src = AvSource(str(clip), SIZE)
    try:
        return [f.image for _, f in zip(range(limit), src)]
    finally:
        src.close()


def _capture(monkeypatch: pytest.MonkeyPatch) -> list[np.ndarray]:
    """Record every frame vst-render hands its encoder (x264 itself is not bit-reproducible run to run)."""
    seen: list[np.ndarray] = []
    encode = render_mod.Mp4Sink.__call__

    def recording(self: render_mod.Mp4Sink, p: Processed) -> None:
        seen.append(p.stylized.copy())
        encode(self, p)

    monkeypatch.setattr(render_mod.Mp4Sink, "__call__", recording)
    return seen


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_render_frames_equal_the_old_loop(clip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, alpha: float) -> None:
    seen = _capture(monkeypatch)
    n = render_mod.render(clip, tmp_path / "out.mp4", render_mod.RenderConfig(size=SIZE, backend=BACKEND, blend=alpha, progress=False))
    frames = _frames(clip)
    assert n == len(seen) == len(frames) == 120
    # What vst-render did before it used the processors: engine, then the blend stage, frame by frame.
    engine = engine_mod.make_engine(resolve_style(None), BACKEND)
    blend = make_blend(alpha, budget=BlendConfig().budget)
    for i, (frame, got) in enumerate(zip(frames, seen, strict=True)):
        np.testing.assert_array_equal(got, blend(frame, engine(frame)), err_msg=f"frame {i}")


def test_render_through_the_cuda_processor(clip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A CUDA backend renders through the CUDA processor, every frame in order although the sink is slow."""
    engine = FakeTensorEngine()
    monkeypatch.setattr(engine_mod, "make_engine", lambda *_a, **_k: engine)
    monkeypatch.setattr(cuda_processor, "TorchCudaDevice", lambda: FakeDevice(event_delay_s=0.001))
    seen = _capture(monkeypatch)
    encode = render_mod.Mp4Sink.__call__

    def slow(self: render_mod.Mp4Sink, p: Processed) -> None:
        time.sleep(random.uniform(0, 0.004))  # would reorder outputs across two encode workers
        encode(self, p)

    monkeypatch.setattr(render_mod.Mp4Sink, "__call__", slow)
    n = render_mod.render(clip, tmp_path / "out.mp4", render_mod.RenderConfig(size=SIZE, backend="torch-cuda", progress=False))
    frames = _frames(clip)
    assert n == len(seen) == len(frames)
    reference = FakeTensorEngine()  # its own buffers: the processor's were made under inference mode
    for frame, got in zip(frames, seen, strict=True):
        np.testing.assert_array_equal(got, reference(frame))


def test_ordered_cuda_processor_never_drops(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cuda_processor, "TorchCudaDevice", lambda: FakeDevice(event_delay_s=0.001))
    got: list[int] = []

    def sink(p: Processed) -> None:
        time.sleep(random.uniform(0, 0.003))
        got.append(p.index)

    proc = make_processor(FakeTensorEngine(), BlendConfig(), sink, ordered=True)
    try:
        assert proc.kind == "cuda" and proc.config.encode_workers == 1  # type: ignore[attr-defined]
        frame = np.zeros((30, 42, 3), np.uint8)
        for _ in range(40):
            proc.submit(frame, 0.0)
        proc.flush()
    finally:
        proc.close()
    assert got == list(range(40))


def test_host_processor_refuses_a_non_image_model() -> None:
    from vst.errors import VstError

    class OneChannel(EngineBase):
        backend, precision, device = "onnxruntime", "fp32", "cpu"

        def __call__(self, frame: np.ndarray) -> np.ndarray:
            return frame[..., 0]

    proc = HostProcessor(OneChannel(), BlendConfig(), lambda _p: None)
    with pytest.raises(VstError, match="not an RGB image model"):
        proc.submit(np.zeros((8, 8, 3), np.uint8), 0.0)


# ---------------------------------------------------------------------- vst-eval


@pytest.fixture
def frames(clip: Path) -> list[np.ndarray]:
    return _frames(clip, 24)


def test_eval_stylizes_through_the_processor(frames: list[np.ndarray]) -> None:
    from vst.stream.eval_cli import stylize

    engine = engine_mod.make_engine(resolve_style(None), BACKEND)
    stylized, ms = stylize(engine, frames, "monet")
    assert ms > 0 and len(stylized) == len(frames)
    for frame, got in zip(frames, stylized, strict=True):
        np.testing.assert_array_equal(got, engine(frame))


def test_eval_stylizes_through_the_cuda_processor(frames: list[np.ndarray], monkeypatch: pytest.MonkeyPatch) -> None:
    """The CUDA processor's outputs live in reused pinned buffers: eval keeps copies, all of them, in order."""
    from vst.stream.eval_cli import stylize

    monkeypatch.setattr(cuda_processor, "TorchCudaDevice", lambda: FakeDevice(event_delay_s=0.001))
    engine = FakeTensorEngine()
    stylized, _ = stylize(engine, frames, "fake")  # type: ignore[arg-type]
    reference = FakeTensorEngine()
    for frame, got in zip(frames, stylized, strict=True):
        np.testing.assert_array_equal(got, reference(frame))


def test_eval_pan_separates_texture_from_flicker(clip: Path) -> None:
    """--pan: the bundled monet and candy through vst-eval's own processor. Candy's E ratio on the pan is
    far above its texture's floor (it flickers); monet's excess is a fraction of candy's."""
    import json

    from cli_run import run_cli

    pans = {}
    for style in ("monet", "candy"):
        r = run_cli("vst.stream.eval_cli", str(clip), "--style", style, "--frames", "6", "--size", "160x128",
                    "--backend", BACKEND, "--pan", "--json", timeout=180)  # fmt: skip
        assert r.returncode == 0, r.stderr
        pans[style] = json.loads(r.stdout)["pan"]
    assert all(p["floor"] > 0 for p in pans.values()), pans
    assert pans["candy"]["excess"] > 3.0 and pans["monet"]["excess"] < 0.6 * pans["candy"]["excess"], pans


@pytest.mark.parametrize("mode", ["lowpass", "full"])
def test_eval_blends_are_what_the_host_processor_serves(frames: list[np.ndarray], mode: str) -> None:
    from vst.stream.eval_cli import evaluate, stylize

    engine = engine_mod.make_engine(resolve_style(None), BACKEND)
    stylized, ms = stylize(engine, frames, "monet")
    alpha = 0.9
    _, results, outputs = evaluate(frames, stylized, [alpha], ms, "dis", "farneback", mode, BlendConfig().budget)
    served: list[np.ndarray] = []
    proc = HostProcessor(engine, BlendConfig(alpha=alpha, mode=mode), lambda p: served.append(p.stylized))  # type: ignore[arg-type]
    for frame in frames:
        proc.submit(frame, 0.0)
    assert results[0].alpha == alpha
    for got, want in zip(outputs[alpha], served, strict=True):
        np.testing.assert_array_equal(got, want)


def test_host_processor_overlap_serves_the_sequential_frames(frames: list[np.ndarray]) -> None:
    """The blend's flow beside the engine (the default) gives the frames the sequential order gives, also
    around an engine failure (the failed frame's motion is dropped; the history stays at the last output;
    the warm-started flow has seen the failed frame in both orders)."""
    import threading

    engine = engine_mod.make_engine(resolve_style(None), BACKEND)

    class FailsOnFourth(EngineBase):
        backend, precision, device = BACKEND, "fp32", "cpu"

        def __init__(self) -> None:
            self.calls = 0

        def __call__(self, frame: np.ndarray) -> np.ndarray:
            self.calls += 1
            if self.calls == 4:
                raise RuntimeError("simulated backend failure")
            return engine(frame)

    served: dict[bool, list[np.ndarray]] = {}
    for overlap in (False, True):
        out: list[np.ndarray] = []
        proc = HostProcessor(FailsOnFourth(), BlendConfig(alpha=1.0), lambda p: out.append(p.stylized), overlap=overlap)
        for i, frame in enumerate(frames):
            if i == 3:
                with pytest.raises(RuntimeError, match="simulated"):
                    proc.submit(frame, 0.0)
            else:
                proc.submit(frame, 0.0)
        proc.close()
        served[overlap] = out
    assert len(served[True]) == len(frames) - 1
    assert not any(t.name.startswith("vst-flow") for t in threading.enumerate())  # close() ended the helper
    assert any(not np.array_equal(a, engine(f)) for a, f in zip(served[True][4:], frames[5:], strict=False))  # it blends
    for a, b in zip(served[True], served[False], strict=True):
        np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------------- CLI defaults


def _defaults(parser_module: str) -> dict[str, object]:
    import importlib

    module = importlib.import_module(parser_module)
    build = getattr(module, "build_parser", None) or module._parser
    args = build().parse_args(["in.mp4", "out.mp4"] if parser_module.endswith("render") else ["in.mp4"])
    return vars(args)


@pytest.mark.parametrize("module", ["vst.stream.render", "vst.stream.eval_cli", "vst.stream.serve_cli"])
def test_cli_blend_defaults_come_from_blend_config(module: str) -> None:
    defaults = BlendConfig()
    if module.endswith("serve_cli"):
        from vst.stream.serve_cli import build_parser

        args = vars(build_parser().parse_args([]))
    else:
        args = _defaults(module)
    assert args["blend_budget"] == defaults.budget
    assert args["blend_clamp"] == defaults.clamp
    if module.endswith("eval_cli"):
        assert args["mode"] == defaults.mode
    else:
        assert args["blend"] == defaults.alpha


def test_blend_option_helpers_take_a_config() -> None:
    from vst.cli import DEFAULT_BLEND_BUDGET, ArgumentParser, add_blend_option, add_budget_option, add_clamp_option

    p = ArgumentParser(prog="t")
    add_blend_option(p, "strength", BlendConfig(alpha=0.5))
    add_budget_option(p, BlendConfig(budget=None))
    add_clamp_option(p, BlendConfig(clamp=0))
    args = p.parse_args([])
    assert args.blend == 0.5 and args.blend_budget is None and args.blend_clamp == 0
    assert p.parse_args(["--blend-clamp", "3"]).blend_clamp == 3
    with pytest.raises(SystemExit) as exit_info:  # one error line, exit 2 (vst's ArgumentParser)
        p.parse_args(["--blend-clamp", "9"])
    assert exit_info.value.code == 2
    assert DEFAULT_BLEND_BUDGET == BlendConfig().budget  # the old name still answers, from BlendConfig


def test_eval_default_alpha_is_the_mode_limit() -> None:
    from vst.stream.eval_cli import blend_config

    assert blend_config(0.0, "lowpass", 12.0).alpha_limit == 1.0
    assert blend_config(0.0, "full", 12.0).alpha_limit == blend_config(0.0, "lowpass", None).alpha_limit == 0.95


def test_render_config_refuses_a_bad_blend_in_one_line() -> None:
    from vst.errors import VstError

    with pytest.raises(VstError, match="--blend"):
        _ = render_mod.RenderConfig(blend=1.0, blend_budget=None).blend_config
    assert render_mod.RenderConfig(blend=1.0, blend_clamp=0).blend_config.clamp == 0


@pytest.fixture(autouse=True)
def _seeded() -> Iterator[None]:
    random.seed(0)
    yield
