"""The CUDA processor on a real GPU: same frames as the engine, in order, no allocation or device sync per
frame, upload overlapping inference (marked gpu; skipped with a reason without CUDA). The same scheduling
runs on the CPU against a fake device in tests/unit/test_cuda_processor.py."""

from __future__ import annotations

import importlib.util
from typing import Any

import numpy as np
import pytest
import torch

from vst.models import GeneratorSpec, build_generator, init_weights
from vst.stream.blend_config import BlendConfig
from vst.stream.engine import make_engine
from vst.styles import Style, save_style

pytestmark = pytest.mark.gpu


def _style(tmp_path_factory: pytest.TempPathFactory, spec: GeneratorSpec, name: str) -> Style:
    net = init_weights(build_generator(spec), gain=0.2, seed=9)
    return save_style(tmp_path_factory.mktemp("styles"), name, net, spec, {"provenance": "test"})


@pytest.fixture
def small(tmp_path_factory: pytest.TempPathFactory) -> Style:
    return _style(tmp_path_factory, GeneratorSpec("compact", {"width": 8, "n_blocks": 2}), "pipe-small")


def _frames(size: tuple[int, int], n: int) -> list[np.ndarray]:
    from vst.stream.sources import TestSource

    src = TestSource(size)
    return [src.render(i) for i in range(n)]


def _run(engine: Any, size: tuple[int, int], frames: list[np.ndarray], **cfg: Any) -> dict[int, np.ndarray]:
    from vst.stream.cuda_processor import CudaConfig, CudaProcessor

    got: dict[int, np.ndarray] = {}
    cfg.setdefault("encode_workers", 1)  # one encoder: outputs complete in order, none is dropped as stale
    pipe = CudaProcessor(engine, CudaConfig(size=size, **cfg), lambda p: got.__setitem__(p.index, p.stylized.copy()))
    try:
        for f in frames:
            pipe.submit(f, 0.0)
            if cfg.get("blend") is not None:
                pipe.flush(timeout=60)  # one at a time: no output may be dropped as stale
        pipe.flush(timeout=60)
    finally:
        pipe.close()
    return got


@pytest.mark.parametrize("size", [(128, 72), (130, 66)], ids=["128x72", "130x66-padded"])
def test_pipeline_matches_engine_in_order(small: Style, size: tuple[int, int]) -> None:
    engine = make_engine(small, "torch-cuda")
    frames = _frames(size, 9)
    expected = [engine(f) for f in frames]
    got = _run(engine, size, frames)
    assert sorted(got) == list(range(9))
    for i, ref in enumerate(expected):
        # fp16 in-place scaling of the input against to_tensor's: <= 1 level.
        assert np.abs(got[i].astype(int) - ref.astype(int)).max() <= 1, i


def test_no_allocation_or_device_sync_per_frame(small: Style, monkeypatch: pytest.MonkeyPatch) -> None:
    from vst.stream.cuda_processor import CudaConfig, CudaProcessor

    size = (160, 96)
    engine = make_engine(small, "torch-cuda")
    frames = _frames(size, 24)
    pipe = CudaProcessor(engine, CudaConfig(size=size), None)
    try:
        for f in frames[:4]:  # warm-up: graph capture, cuDNN autotune
            pipe.submit(f, 0.0)
        pipe.flush(timeout=60)
        before = torch.cuda.memory_stats()["allocation.all.allocated"]

        def forbidden(*_: Any, **__: Any) -> None:
            raise AssertionError("device-wide synchronize on the hot path")

        monkeypatch.setattr(torch.cuda, "synchronize", forbidden)
        monkeypatch.setattr(torch.cuda.Stream, "synchronize", forbidden)
        for f in frames[4:]:
            pipe.submit(f, 0.0)
        pipe.flush(timeout=60)
        monkeypatch.undo()
        assert torch.cuda.memory_stats()["allocation.all.allocated"] == before
    finally:
        pipe.close()


def test_upload_overlaps_inference(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Frame t+1's H2D starts before frame t's inference ends (a net heavy enough to take a few ms)."""
    from vst.stream.cuda_processor import CudaConfig, CudaProcessor

    # ResNet-9 at 1080p is ~1.6 TFLOP a frame: several ms even on an H100, longer than the host's
    # 6 MB copy into pinned memory that precedes the next upload.
    style = _style(tmp_path_factory, GeneratorSpec("resnet", {"ngf": 64, "n_blocks": 9}), "pipe-heavy")
    size = (1920, 1080)
    depth = 3
    pipe = CudaProcessor(make_engine(style, "torch-cuda"), CudaConfig(size=size, depth=depth, timing=True), None)
    try:
        frames = _frames(size, 6)
        for f in frames:
            pipe.submit(f, 0.0)
        pipe.flush(timeout=120)
        a, b = pipe.slots[4 % depth].marks, pipe.slots[5 % depth].marks  # frames 4 and 5
        infer_end = a["pre"].elapsed_time(a["inf"])
        next_upload_start = a["pre"].elapsed_time(b["h2d0"])
        assert next_upload_start < infer_end, (next_upload_start, infer_end)
        assert all(len(v) == 6 for v in pipe.stage_ms.values())
    finally:
        pipe.close()


_NO_CUPY = importlib.util.find_spec("cupy") is None


@pytest.mark.skipif(_NO_CUPY, reason="CuPy is not installed: the low-pass blend kernels need it")
def test_blend_changes_later_frames_only(small: Style) -> None:
    size = (128, 72)
    engine = make_engine(small, "torch-cuda")
    frames = _frames(size, 5)
    plain = _run(engine, size, frames)
    blended = _run(engine, size, frames, blend=BlendConfig(alpha=0.5))
    assert np.abs(plain[0].astype(int) - blended[0].astype(int)).max() <= 1  # no history yet
    assert any(np.abs(plain[i].astype(int) - blended[i].astype(int)).mean() > 0.5 for i in range(1, 5))
