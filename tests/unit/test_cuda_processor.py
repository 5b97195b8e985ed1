"""The CUDA processor's scheduling and blend logic on the CPU, against a fake device (tests/unit/fake_cuda.py).

Slots, events, the collector and out-of-order encode workers run as on a GPU; the CUDA kernels run through
the g++ emulation. tests/gpu/test_cuda_pipeline.py runs the same processor on a real GPU.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import cv2
import numpy as np
import pytest
import torch

from cuda_emulation import HAVE_GXX
from fake_cuda import FakeDevice, FakeTensorEngine, kernels_on, run_through

import vst.kernels.blend
from vst.errors import VstError
from vst.stream.blend import BlendStage
from vst.stream.blend_config import BlendConfig
from vst.stream.cuda_processor import CudaConfig, CudaProcessor
from vst.stream.processor import Processed

needs_gxx = pytest.mark.skipif(not HAVE_GXX, reason="g++ is not installed: the CUDA sources are compiled as C++")


@pytest.fixture
def device(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeDevice]:
    dev = FakeDevice(event_delay_s=0.002)
    with kernels_on(monkeypatch, dev.cupy, vst.kernels.blend):
        yield dev


def _frames(n: int, h: int = 34, w: int = 50, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(n)]


class Collect:
    def __init__(self, delay: Any = None) -> None:
        self.got: dict[int, np.ndarray] = {}
        self.order: list[int] = []
        self.delay = delay
        self.lock = threading.Lock()

    def __call__(self, p: Processed) -> None:
        with self.lock:
            self.order.append(p.index)  # the order outputs are handed on (their encodes may finish in any order)
        if self.delay is not None:
            time.sleep(self.delay(p.index))
        with self.lock:
            self.got[p.index] = p.stylized.copy()  # the processor's buffer: valid during the call only


def _all_free(proc: CudaProcessor) -> bool:
    return all(s.free.is_set() for s in proc.slots)


def test_outputs_match_the_engine_frame_api_in_order(device: FakeDevice) -> None:
    engine, sink = FakeTensorEngine(), Collect()
    frames = _frames(7, 33, 51)  # padded to 36x52: the reflect pad of vst.imaging
    proc = CudaProcessor(engine, CudaConfig(depth=3), sink, device)
    run_through(proc, frames)
    ref = FakeTensorEngine()
    assert sorted(sink.got) == list(range(7)) and _all_free(proc)
    for i, f in enumerate(frames):
        np.testing.assert_array_equal(sink.got[i], ref(f))
    assert device.syncs == 1  # the one buffer setup; none per frame


def test_a_failing_submit_never_leaves_a_slot_held(device: FakeDevice) -> None:
    """An exception between taking and releasing a slot used to block the next submit forever."""
    engine, sink = FakeTensorEngine(fail_on={1, 2, 3}), Collect()
    proc = CudaProcessor(engine, CudaConfig(depth=2, slot_timeout_s=2.0), sink, device)
    try:
        proc.submit(_frames(1)[0])
        for _ in range(3):  # more failures than slots: each must give its slot back
            with pytest.raises(RuntimeError, match="simulated engine failure"):
                proc.submit(_frames(1)[0])
        t0 = time.monotonic()
        for f in _frames(4):
            proc.submit(f)
        assert time.monotonic() - t0 < 1.5
        proc.flush(timeout=5)
        assert _all_free(proc) and len(sink.got) == 5
    finally:
        proc.close()


@needs_gxx
def test_a_failing_flow_never_leaves_a_slot_held(device: FakeDevice) -> None:
    proc = CudaProcessor(FakeTensorEngine(), CudaConfig(BlendConfig(alpha=1.0), depth=2, slot_timeout_s=2.0), Collect(), device)
    try:
        proc.submit(_frames(1)[0])
        real = proc._flow
        proc._flow = lambda a, b: (_ for _ in ()).throw(RuntimeError("flow failed"))
        for _ in range(3):
            with pytest.raises(RuntimeError, match="flow failed"):
                proc.submit(_frames(1)[0])
        proc._flow = real
        for f in _frames(3):
            proc.submit(f)
        proc.flush(timeout=5)
        assert _all_free(proc)
    finally:
        proc.close()


def test_out_of_order_encoders_never_publish_backwards(device: FakeDevice) -> None:
    """Encode workers run concurrently and finish out of order; outputs are handed on in submission order, and
    one older than an output already handed on is dropped as stale (the publisher guards completion order)."""
    sink = Collect(delay=lambda i: 0.03 if i % 3 == 0 else 0.0)
    proc = CudaProcessor(FakeTensorEngine(), CudaConfig(depth=4, encode_workers=3), sink, device)
    try:
        for f in _frames(24):
            proc.submit(f)
        proc.flush(timeout=10)
    finally:
        proc.close()
    assert sink.order == sorted(sink.order)
    assert len(sink.order) + proc.stale_dropped == 24
    assert _all_free(proc)


def test_a_failing_sink_surfaces_in_flush_and_submit(device: FakeDevice) -> None:
    def sink(p: Processed) -> None:
        raise ValueError("encoder broke")

    proc = CudaProcessor(FakeTensorEngine(), CudaConfig(), sink, device)
    try:
        proc.submit(_frames(1)[0])
        with pytest.raises(VstError, match="encoder broke"):
            proc.flush(timeout=5)
        with pytest.raises(VstError, match="encoder broke"):
            proc.submit(_frames(1)[0])
        assert _all_free(proc)
    finally:
        proc.close()


def test_a_new_size_rebuilds_the_buffers(device: FakeDevice) -> None:
    sink = Collect()
    proc = CudaProcessor(FakeTensorEngine(), CudaConfig(size=(50, 34), switch_wait_s=5.0), sink, device)
    try:
        for f in _frames(2, 34, 50) + _frames(2, 48, 64):
            proc.submit(f)
        proc.flush(timeout=5)
    finally:
        proc.close()
    assert [sink.got[i].shape for i in range(4)] == [(34, 50, 3)] * 2 + [(48, 64, 3)] * 2


# ---------------------------------------------------------------------- blend parity with BlendStage


class FlickerEngine(FakeTensorEngine):
    """A per-frame 'style' whose low-frequency colour field changes every call (what the blend is for)."""

    def __init__(self, h: int, w: int, n: int) -> None:
        super().__init__()
        rng = np.random.default_rng(0)
        fields = [cv2.resize(rng.normal(0, 0.2, (4, 6, 3)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
                  for _ in range(n)]  # fmt: skip
        self.fields = [torch.from_numpy(f).permute(2, 0, 1)[None] for f in fields]

    def infer(self, x: torch.Tensor, stream: Any) -> torch.Tensor:
        n = self.calls
        y = super().infer(x, stream)
        h, w = self.fields[n].shape[-2:]
        y[:, :, :h, :w] += self.fields[n]
        return y.clamp_(-1, 1)


@pytest.fixture
def market(data: Any) -> list[np.ndarray]:
    folder = data("frames", "sintel_market")
    frames = [cv2.imread(str(p)) for p in sorted(folder.glob("*.png"))][:9]
    return [cv2.cvtColor(cv2.resize(f, (256, 108), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB) for f in frames]


@pytest.fixture
def corridor(data: Any) -> np.ndarray:
    path = sorted(data("frames", "corridor_neuflow").glob("*.jpg"))[0]
    return cv2.cvtColor(cv2.resize(cv2.imread(str(path)), (256, 108), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)


@needs_gxx
@pytest.mark.parametrize("clamp", [0, 2])
def test_cuda_blend_matches_blend_stage_on_real_frames(device: FakeDevice, market: list[np.ndarray], corridor: np.ndarray,
                                                       clamp: int) -> None:  # fmt: skip
    """The CUDA processor's blend (emulated kernels, float32 history, device-side scene cut) against
    BlendStage on the same frames and the same per-frame styles, with one BlendConfig (history clamp
    off and on); α changes live and a frame from another clip (a scene cut) restarts both histories."""
    frames = [*market[:9], corridor]
    alphas = [1.0, 1.0, 1.0, 0.6, 0.6, 1.0, 0.0, 1.0, 1.0, 1.0]
    h, w = frames[0].shape[:2]
    config = BlendConfig(alpha=1.0, clamp=clamp)
    host_engine, sink = FlickerEngine(h, w, len(frames)), Collect()
    stage = BlendStage.from_config(config)
    proc = CudaProcessor(FlickerEngine(h, w, len(frames)), CudaConfig(config, depth=2), sink, device)
    host = []
    try:
        for f, a in zip(frames, alphas, strict=True):
            stage.alpha = a
            host.append(stage(f, host_engine(f)))
            proc.set_blend(a)
            proc.submit(f)
            proc.flush(timeout=30)  # one at a time: flow and history follow submission order either way
    finally:
        proc.close()
    per_frame = FlickerEngine(h, w, len(frames))
    g = [per_frame(f) for f in frames]
    assert stage.cuts == 1
    # The first frame, α 0, the first frame after it (no history), the scene cut: the per-frame style on both.
    for i in (0, 6, 7, 9):
        np.testing.assert_array_equal(host[i], g[i])
        np.testing.assert_array_equal(sink.got[i], g[i])
    for i in (1, 2, 3, 4, 5, 8):
        ours, theirs = sink.got[i].astype(np.float32), host[i].astype(np.float32)
        blended = np.abs(theirs - g[i]).mean()
        diff = np.abs(ours - theirs)
        assert blended > 1.0, (i, blended)  # the blend really acts on these frames
        assert diff.mean() <= 0.5 and np.mean(diff > 4) <= 0.01, (i, diff.mean(), np.mean(diff > 4), diff.max())
