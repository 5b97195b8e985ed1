"""A new input size never blocks the CUDA processor's submitting thread (issue 10 item 4), on the fake device:
the engine's per-size preparation (a CUDA graph capture, a TensorRT build) runs on a builder thread while frames
keep running at the old size, resized to it; then the processor switches. Prepared sizes are an LRU; a failed
preparation logs one line and the old size stays."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import numpy as np
import pytest
import torch

from fake_cuda import FakeDevice, FakeTensorEngine
from pipeline_rig import until

from vst.imaging import GENERATOR_SPEC
from vst.stream.cuda_processor import CudaConfig, CudaProcessor


class SlowSizeEngine(FakeTensorEngine):
    """Preparing a size the first time waits for ``gate`` (a capture or build in progress), or fails for the
    sizes in ``fail``; records which thread prepared each size."""

    def __init__(self, fail: set[tuple[int, int]] | None = None) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.gate.set()
        self.fail = fail or set()
        self.prepared: list[tuple[tuple[int, int], str]] = []
        self.lock = threading.Lock()

    def static_input(self, hw: tuple[int, int]) -> torch.Tensor:
        with self.lock:
            known = hw in self._inputs
        if not known:
            if not self.gate.wait(10):
                raise TimeoutError("test gate never opened")
            if hw in self.fail:
                raise RuntimeError(f"simulated build failure at {hw}")
            with self.lock:
                self.prepared.append((hw, threading.current_thread().name))
        with self.lock:
            return super().static_input(hw)


class Shapes:
    def __init__(self) -> None:
        self.got: dict[int, tuple[int, ...]] = {}
        self.lock = threading.Lock()

    def __call__(self, p: Any) -> None:
        with self.lock:
            self.got[p.index] = p.stylized.shape


def _frame(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


A, B, C = (36, 64), (48, 80), (20, 32)  # (H, W), all multiples of 4: padded size = frame size


def _padded(hw: tuple[int, int]) -> tuple[int, int]:
    return GENERATOR_SPEC.padded_hw(*hw)


def test_frames_keep_flowing_at_the_old_size_until_the_new_one_is_ready(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "vst.cuda_processor")
    engine, sink = SlowSizeEngine(), Shapes()
    proc = CudaProcessor(engine, CudaConfig(depth=2, switch_wait_s=0.0), sink, FakeDevice())
    try:
        proc.submit(_frame(*A), 0.0)  # the first size: built on this thread, with a banner
        assert "building the engine for 64x36 (the first size)" in caplog.text
        engine.gate.clear()  # B's preparation now takes until the gate opens
        t0 = time.monotonic()
        for i in range(5):
            proc.submit(_frame(*B, seed=i), 0.0)
        assert time.monotonic() - t0 < 5.0  # never waited for the gate (10 s)
        proc.flush(timeout=5)
        assert [sink.got[i] for i in range(1, 6)] == [(*A, 3)] * 5  # run at A, resized
        assert proc.resized_frames == 5 and "preparing its engine beside the stream" in caplog.text
        engine.gate.set()
        assert until(lambda: proc._build is not None and proc._build.done.is_set())
        proc.submit(_frame(*B), 0.0)  # the build is done: this frame runs at B
        proc.submit(_frame(*B), 0.0)
        proc.flush(timeout=5)
    finally:
        proc.close()
    assert sink.got[6] == sink.got[7] == (*B, 3)
    assert (_padded(B), "vst-build") in engine.prepared  # prepared on the builder thread, not the submitting one
    assert "frame size 80x48: engine ready" in caplog.text


def test_a_failed_preparation_logs_one_line_and_keeps_the_old_size(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "vst.cuda_processor")
    engine, sink = SlowSizeEngine(fail={_padded(B)}), Shapes()
    proc = CudaProcessor(engine, CudaConfig(depth=2, switch_wait_s=0.0), sink, FakeDevice())
    try:
        proc.submit(_frame(*A), 0.0)
        proc.submit(_frame(*B), 0.0)
        assert until(lambda: proc._build is None or proc._build.done.is_set())
        for i in range(6):
            proc.submit(_frame(*B, seed=i), 0.0)
        proc.flush(timeout=5)
    finally:
        proc.close()
    assert set(sink.got.values()) == {(*A, 3)} and len(sink.got) == 8
    failures = [r for r in caplog.records if "engine preparation failed" in r.getMessage()]
    assert len(failures) == 1 and "\n" not in failures[0].getMessage() and "staying at 64x36" in failures[0].getMessage()
    assert proc._error is None  # the processor itself is fine


def test_prepared_sizes_are_an_lru(caplog: pytest.LogCaptureFixture) -> None:
    """max_sizes 2: A, B, C, B, A. C pushes A out; back to B switches at once (no build), back to A is
    prepared again beside the stream (forgotten)."""
    engine, sink = SlowSizeEngine(), Shapes()
    proc = CudaProcessor(engine, CudaConfig(depth=2, max_sizes=2, switch_wait_s=5.0), sink, FakeDevice())
    caplog.set_level(logging.INFO, "vst.cuda_processor")
    try:
        for hw in (A, B, C, B, A):
            proc.submit(_frame(*hw), 0.0)  # the fake's preparation is quick: each switches within switch_wait_s
            proc.flush(timeout=5)
        assert list(proc._ready) == [_padded(B), _padded(A)]  # least recent first
    finally:
        proc.close()
    starts = [r.getMessage().split(":")[0] for r in caplog.records if "preparing its engine" in r.getMessage()]
    assert starts == ["frame size 80x48", "frame size 32x20", "frame size 64x36"]
    assert "forgot the prepared size 64x36 (LRU, 2 kept)" in caplog.text
    assert [sink.got[i] for i in range(5)] == [(*A, 3), (*B, 3), (*C, 3), (*B, 3), (*A, 3)]


def test_config_refuses_bad_size_settings() -> None:
    with pytest.raises(ValueError, match="max_sizes must be at least 1"):
        CudaConfig(max_sizes=0)
    with pytest.raises(ValueError, match="switch_wait_s must be >= 0"):
        CudaConfig(switch_wait_s=-1)


def test_a_style_switch_forgets_what_the_old_engine_prepared() -> None:
    proc = CudaProcessor(SlowSizeEngine(), CudaConfig(depth=2, switch_wait_s=5.0), Shapes(), FakeDevice())
    try:
        proc.submit(_frame(*A), 0.0)
        proc.submit(_frame(*B), 0.0)
        proc.flush(timeout=5)
        assert set(proc._ready) == {_padded(A), _padded(B)}
        proc.set_engine(SlowSizeEngine())
        assert list(proc._ready) == [_padded(B)]  # only the size it runs now, re-fetched from the new engine
    finally:
        proc.close()


def test_a_style_switch_is_prepared_beside_the_stream(caplog: pytest.LogCaptureFixture) -> None:
    """The new engine's input (its graph capture) is prepared on the builder thread; the old engine keeps
    running meanwhile, then the next frame runs the new one. A failed preparation keeps the old engine."""
    caplog.set_level(logging.INFO, "vst.cuda_processor")
    old, sink = SlowSizeEngine(), Shapes()
    proc = CudaProcessor(old, CudaConfig(depth=2, switch_wait_s=0.0), sink, FakeDevice())
    try:
        proc.submit(_frame(*A), 0.0)
        new = SlowSizeEngine()
        new.gate.clear()
        proc.set_engine(new)  # returns at once: the preparation waits for the gate
        for _ in range(3):
            proc.submit(_frame(*A), 0.0)
        proc.flush(timeout=5)
        assert old.calls == 4 and new.calls == 0 and proc.engine is old
        assert "preparing it at 64x36 beside the stream" in caplog.text
        new.gate.set()
        assert until(lambda: proc._engine_build is None or proc._engine_build.done.is_set())
        proc.submit(_frame(*A), 0.0)
        proc.flush(timeout=5)
        assert proc.engine is new and new.calls == 1 and old.calls == 4
        assert (_padded(A), "vst-build-engine") in new.prepared

        broken = SlowSizeEngine(fail={_padded(A)})
        proc.set_engine(broken)
        assert until(lambda: proc._engine_build is None or proc._engine_build.done.is_set())
        for _ in range(3):
            proc.submit(_frame(*A), 0.0)
        proc.flush(timeout=5)
        assert proc.engine is new and new.calls == 4 and broken.calls == 0
    finally:
        proc.close()
    failures = [r for r in caplog.records if "preparation failed" in r.getMessage()]
    assert len(failures) == 1 and "the current engine stays" in failures[0].getMessage()
