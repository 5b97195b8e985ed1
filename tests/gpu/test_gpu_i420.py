"""RGB -> I420 on a real GPU (vst.kernels.yuv) against the numpy reference (= the host's OpenCV conversion),
and the CUDA processor's 'i420' output against the host conversion of its RGB output (marked gpu; skipped
with a reason without CUDA). tests/unit/test_i420.py runs the same checks on the CPU emulation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vst.kernels.yuv import rgb_to_i420_cupy, rgb_to_i420_reference
from vst.models import GeneratorSpec, build_generator, init_weights
from vst.stream.engine import make_engine
from vst.styles import save_style

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("hw", [(62, 98), (180, 320), (1080, 1920)])
def test_kernel_equals_reference(hw: tuple[int, int]) -> None:
    cp = pytest.importorskip("cupy", reason="CuPy kernels need cupy (pip install 'vst[gpu]')")
    rgb = np.random.default_rng(0).integers(0, 256, (*hw, 3), dtype=np.uint8)
    np.testing.assert_array_equal(cp.asnumpy(rgb_to_i420_cupy(cp.asarray(rgb))), rgb_to_i420_reference(rgb))


def test_processor_i420_equals_its_rgb_converted(tmp_path_factory: pytest.TempPathFactory) -> None:
    pytest.importorskip("cupy", reason="CuPy kernels need cupy (pip install 'vst[gpu]')")
    from vst.stream.cuda_processor import CudaConfig, CudaProcessor
    from vst.stream.sources import TestSource

    spec = GeneratorSpec("compact", {"width": 8, "n_blocks": 2})
    style = save_style(tmp_path_factory.mktemp("styles"), "i420", init_weights(build_generator(spec), gain=0.2, seed=9), spec,
                       {"provenance": "test"})  # fmt: skip
    frames = [TestSource((130, 66)).render(i) for i in range(4)]
    got: dict[str, dict[int, np.ndarray]] = {"rgb": {}, "i420": {}}
    for output in ("rgb", "i420"):
        engine = make_engine(style, "torch-cuda")
        store = got[output]
        proc = CudaProcessor(engine, CudaConfig(encode_workers=1, output=output),  # type: ignore[arg-type]
                             lambda p, store=store, output=output: store.__setitem__(
                                 p.index, (p.stylized_yuv if output == "i420" else p.stylized).copy()))  # fmt: skip
        try:
            for f in frames:
                proc.submit(f, 0.0)
            proc.flush(timeout=60)
        finally:
            proc.close()
    assert torch.cuda.is_available()
    for i in range(len(frames)):
        np.testing.assert_array_equal(got["i420"][i], rgb_to_i420_reference(got["rgb"][i]))
