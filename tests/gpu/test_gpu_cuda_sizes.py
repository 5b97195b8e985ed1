"""A new frame size on a real GPU: the CUDA graph for it is captured on the processor's builder thread while
frames keep running at the old size, then outputs switch and match the engine (marked gpu; skipped with a
reason without CUDA). tests/unit/test_cuda_sizes.py runs the same scheduling on the fake device."""

from __future__ import annotations

import time

import numpy as np
import pytest

from vst.models import GeneratorSpec, build_generator, init_weights
from vst.stream.engine import make_engine
from vst.styles import save_style

pytestmark = pytest.mark.gpu


def test_new_size_captured_beside_the_stream(tmp_path_factory: pytest.TempPathFactory) -> None:
    pytest.importorskip("cupy", reason="the CUDA processor's kernels need cupy (pip install 'vst[gpu]')")
    from vst.stream.cuda_processor import CudaConfig, CudaProcessor
    from vst.stream.sources import TestSource

    spec = GeneratorSpec("compact", {"width": 8, "n_blocks": 2})
    style = save_style(tmp_path_factory.mktemp("styles"), "sizes", init_weights(build_generator(spec), gain=0.2, seed=9), spec,
                       {"provenance": "test"})  # fmt: skip
    engine = make_engine(style, "torch-cuda")
    shapes: dict[int, tuple[int, ...]] = {}
    last: dict[int, np.ndarray] = {}
    proc = CudaProcessor(engine, CudaConfig(encode_workers=1, switch_wait_s=0.0),
                         lambda p: (shapes.__setitem__(p.index, p.stylized.shape), last.__setitem__(0, p.stylized.copy())))  # fmt: skip
    a, b = TestSource((128, 72)), TestSource((192, 108))
    try:
        for i in range(3):
            proc.submit(a.render(i), 0.0)
        end = time.monotonic() + 60
        frame = b.render(0)
        while time.monotonic() < end:
            proc.submit(frame, 0.0)
            proc.flush(timeout=60)
            if shapes[max(shapes)] == (108, 192, 3):
                break
        else:
            pytest.fail("never switched to 192x108")
    finally:
        proc.close()
    assert set(shapes.values()) <= {(72, 128, 3), (108, 192, 3)}
    np.testing.assert_array_equal(last[0], engine(frame))
