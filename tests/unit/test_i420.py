"""RGB -> I420 on the device (vst.kernels.yuv): the numpy reference against OpenCV (the host path), the CUDA
kernel through the g++ emulation against the reference, and the CUDA processor's 'i420' output on the fake
device. Exact equality everywhere: integer arithmetic, so there is no tolerance to allow."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import cv2
import numpy as np
import pytest

from cuda_emulation import HAVE_GXX, EmulatedCupy
from fake_cuda import FakeDevice, FakeTensorEngine, kernels_on, run_through

import vst.kernels.yuv
from vst.errors import VstError
from vst.kernels.yuv import i420_shape, rgb_to_i420_cupy, rgb_to_i420_reference
from vst.stream.blend_config import BlendConfig
from vst.stream.cuda_processor import CudaConfig, CudaProcessor, ProcessedI420

needs_gxx = pytest.mark.skipif(not HAVE_GXX, reason="g++ is not installed: the CUDA sources are compiled as C++")
SIZES = [(62, 98), (180, 320), (2, 2), (36, 50)]  # (H, W): odd block counts, one block, a partial CUDA block


def _rgb(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("hw", SIZES)
def test_reference_equals_the_host_conversion(hw: tuple[int, int]) -> None:
    rgb = _rgb(*hw)
    np.testing.assert_array_equal(rgb_to_i420_reference(rgb), cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420))


def test_reference_extremes() -> None:
    """Black, white and the primaries: limited-range levels, as OpenCV gives them."""
    colours = np.array([[0, 0, 0], [255, 255, 255], [255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0]], np.uint8)
    rgb = np.repeat(np.repeat(colours[None], 2, axis=0), 2, axis=1)  # each colour a 2x2 block
    np.testing.assert_array_equal(rgb_to_i420_reference(rgb), cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420))
    assert rgb_to_i420_reference(rgb)[0, 0] == 16 and rgb_to_i420_reference(rgb)[0, 2] == 235


@pytest.mark.parametrize("bad", [(3, 4), (4, 5), (1, 2)])
def test_odd_sizes_are_refused_in_one_line(bad: tuple[int, int]) -> None:
    with pytest.raises(ValueError, match="even width and height"):
        rgb_to_i420_reference(_rgb(*bad))
    with pytest.raises(ValueError, match="even width and height"):
        i420_shape(*bad)


@pytest.fixture
def emulated(monkeypatch: pytest.MonkeyPatch) -> Iterator[EmulatedCupy]:
    cp = EmulatedCupy()
    with kernels_on(monkeypatch, cp, vst.kernels.yuv):
        yield cp


@needs_gxx
@pytest.mark.parametrize("hw", SIZES)
def test_kernel_equals_reference(emulated: EmulatedCupy, hw: tuple[int, int]) -> None:
    rgb = _rgb(*hw, seed=1)
    np.testing.assert_array_equal(rgb_to_i420_cupy(rgb), rgb_to_i420_reference(rgb))
    out = np.full(i420_shape(*hw), 7, np.uint8)  # every byte is written: none of the 7s survive
    assert rgb_to_i420_cupy(rgb, out=out) is out
    np.testing.assert_array_equal(out, rgb_to_i420_reference(rgb))


@needs_gxx
def test_kernel_refuses_a_wrong_out(emulated: EmulatedCupy) -> None:
    with pytest.raises(ValueError, match=r"out must be \(9, 4\) uint8"):
        rgb_to_i420_cupy(_rgb(6, 4), out=np.empty((6, 4), np.uint8))


# ---------------------------------------------------------------------- the processor's 'i420' output


@pytest.fixture
def device(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeDevice]:
    dev = FakeDevice(event_delay_s=0.002)
    with kernels_on(monkeypatch, dev.cupy, vst.kernels.yuv):
        yield dev


class CollectYuv:
    def __init__(self) -> None:
        self.yuv: dict[int, np.ndarray] = {}
        self.rgb: dict[int, np.ndarray] = {}
        self.lock = threading.Lock()

    def __call__(self, p: object) -> None:
        with self.lock:
            if isinstance(p, ProcessedI420):
                self.yuv[p.index] = p.stylized_yuv.copy()  # the processor's pinned buffer
            else:
                self.rgb[p.index] = p.stylized.copy()  # type: ignore[attr-defined]


@needs_gxx
def test_processor_downloads_i420_equal_to_the_host_conversion(device: FakeDevice) -> None:
    frames = [_rgb(62, 98, seed=s) for s in range(5)]
    sink = CollectYuv()
    proc = CudaProcessor(FakeTensorEngine(), CudaConfig(output="i420", depth=2), sink, device)
    run_through(proc, frames)
    ref = FakeTensorEngine()
    assert sorted(sink.yuv) == list(range(5)) and not sink.rgb
    for i, f in enumerate(frames):
        assert sink.yuv[i].shape == (93, 98)  # 1.5 bytes a pixel
        np.testing.assert_array_equal(sink.yuv[i], cv2.cvtColor(ref(f), cv2.COLOR_RGB2YUV_I420))
    assert device.syncs == 2  # buffer setup and the I420 buffers; none per frame


@needs_gxx
def test_processor_switches_output_between_frames(device: FakeDevice) -> None:
    frames = [_rgb(36, 50, seed=s) for s in range(6)]
    sink = CollectYuv()
    proc = CudaProcessor(FakeTensorEngine(), CudaConfig(BlendConfig(alpha=0.0), depth=2), sink, device)
    try:
        for i, f in enumerate(frames):
            proc.set_output("i420" if i % 2 else "rgb")
            proc.submit(f, 0.0)
        proc.flush(timeout=10)
        with pytest.raises(VstError, match="'rgb' or 'i420'"):
            proc.set_output("nv12")  # type: ignore[arg-type]
    finally:
        proc.close()
    ref = FakeTensorEngine()
    assert sorted(sink.rgb) == [0, 2, 4] and sorted(sink.yuv) == [1, 3, 5]
    for i in (1, 3, 5):
        np.testing.assert_array_equal(sink.yuv[i], rgb_to_i420_reference(ref(frames[i])))
    for i in (0, 2, 4):
        np.testing.assert_array_equal(sink.rgb[i], ref(frames[i]))


@needs_gxx
def test_processor_i420_refuses_an_odd_frame_and_keeps_going(device: FakeDevice) -> None:
    sink = CollectYuv()
    proc = CudaProcessor(FakeTensorEngine(), CudaConfig(output="i420", depth=2, slot_timeout_s=2.0), sink, device)
    try:
        for _ in range(3):  # more than the slots: each failure gives its slot back
            with pytest.raises(VstError, match="output 'i420': I420 needs an even width and height"):
                proc.submit(_rgb(35, 50), 0.0)
        proc.submit(_rgb(36, 50), 0.0)
        proc.flush(timeout=5)
    finally:
        proc.close()
    assert sorted(sink.yuv) == [0]


def test_processed_i420_decodes_rgb_on_demand() -> None:
    rgb = np.full((4, 6, 3), 128, np.uint8)
    p = ProcessedI420(0, rgb_to_i420_reference(rgb), rgb, 0.0, 1.0)
    assert p.stylized.shape == (4, 6, 3) and np.abs(p.stylized.astype(int) - 128).max() <= 1
    assert p.stylized is p.stylized  # converted once


def test_config_refuses_an_unknown_output() -> None:
    with pytest.raises(ValueError, match="'rgb' or 'i420'"):
        CudaConfig(output="nv12")  # type: ignore[arg-type]
