"""The serving pipeline publishing the CUDA processor's device-converted I420 (``PipelineConfig.device_i420``),
on the fake device: viewers' encoders get the same I420 the host conversion would make, with no host conversion."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from cuda_emulation import HAVE_GXX
from fake_cuda import FakeDevice, FakeTensorEngine
from pipeline_rig import tiny_style, until

import vst.stream.cuda_processor
import vst.stream.pipeline as pipeline_mod
from vst.stream.pipeline import Pipeline, PipelineConfig
from vst.styles import Style

pytestmark = pytest.mark.skipif(not HAVE_GXX, reason="g++ is not installed: the CUDA sources are compiled as C++")


@pytest.fixture
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Style:
    return tiny_style(tmp_path_factory.mktemp("styles"))


@pytest.mark.parametrize("stamp", [False, True])
def test_pipeline_publishes_the_device_i420(monkeypatch: pytest.MonkeyPatch, tiny: Style, stamp: bool) -> None:
    device = FakeDevice()
    conversions: list[int] = []
    real_cvt = cv2.cvtColor

    def counting_cvt(src: np.ndarray, code: int) -> np.ndarray:
        if code == cv2.COLOR_RGB2YUV_I420:
            conversions.append(1)
        return real_cvt(src, code)

    monkeypatch.setattr(vst.stream.cuda_processor, "TorchCudaDevice", lambda: device)
    monkeypatch.setattr(pipeline_mod, "make_engine", lambda style, backend: FakeTensorEngine())
    monkeypatch.setattr(pipeline_mod.cv2, "cvtColor", counting_cvt)
    p = Pipeline(PipelineConfig(source="testsrc", size=(64, 36), fps=60, style=str(tiny.weights), backend="torch-cuda",
                                device_i420=True, stamp=stamp))  # fmt: skip
    p.start()
    try:
        assert until(lambda: p.latest is not None and p.latest.seq > 5)
        out = p.latest
        assert out is not None and out.stylized_yuv.shape == (54, 64)
        assert p.stats()["size"] == [64, 36]
        expected = FakeTensorEngine()(out.original)
        if stamp:  # the stamp is drawn on the RGB: the processor downloads RGB, the host converts
            assert conversions and out.stylized.shape == (36, 64, 3)
        else:
            assert not conversions  # every published picture came converted from the device
            np.testing.assert_array_equal(out.stylized_yuv, real_cvt(expected, cv2.COLOR_RGB2YUV_I420))
            # RGB only on demand, decoded from the 4:2:0 picture (lossy at colour edges)
            np.testing.assert_array_equal(out.stylized, real_cvt(out.stylized_yuv, cv2.COLOR_YUV2RGB_I420))
    finally:
        p.stop()
