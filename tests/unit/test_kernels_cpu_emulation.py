"""The real CUDA kernels, run on the CPU through their wrappers, against the torch references.

No GPU reaches CI, so this is where the kernels' logic is checked there: the sources of vst.kernels
compile with g++ (tests/unit/cuda_emulation.py) and the wrappers run them on numpy arrays. The cases are
tests/kernel_cases.py, the ones tests/gpu/test_kernels.py runs with CuPy on a GPU. Tolerances are tighter
here: the emulator and the references share one CPU and the same rounded inputs, so fp32 differs by float
reordering (and the reference's own round trip through grid_sample's [-1, 1] coordinates: ~1e-5 at
x = 130), fp16 by the output's rounding as well: half an ulp, at most 2^-11·|value|.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import numpy as np
import pytest
import torch

from cuda_emulation import HAVE_GXX, EmulatedCupy
from kernel_cases import CASES, DTYPES, H, W, KernelRig

import vst.kernels.blend
import vst.kernels.layout
from vst.kernels import _cuda

log = logging.getLogger(__name__)

pytestmark = pytest.mark.skipif(not HAVE_GXX, reason="g++ is not installed: the CUDA sources are compiled as C++")

ATOL = dict.fromkeys(DTYPES, 3e-5)
RTOL = {torch.float32: 0.0, torch.float16: 2.0**-11}
# Only a pixel within float reordering of a mask's threshold could flip (none does with these seeds): one.
MASK_FLIP = dict.fromkeys(DTYPES, 1.5 / (H * W))


@pytest.fixture
def rig(monkeypatch: pytest.MonkeyPatch) -> Iterator[KernelRig]:
    """vst.kernels with cupy replaced by the CPU stand-in; no compiled kernel outlives the test."""
    emulated = EmulatedCupy()
    for module in (_cuda, vst.kernels.blend, vst.kernels.layout):
        monkeypatch.setattr(module, "cupy", lambda: emulated)  # each imported the name `cupy` itself
    _cuda.kernel.cache_clear()  # a real CuPy kernel cached by a GPU test must not be used here, nor ours there
    yield KernelRig(torch.device("cpu"), lambda t: t.numpy(), torch.from_numpy, ATOL, RTOL, MASK_FLIP)
    _cuda.kernel.cache_clear()


@pytest.mark.parametrize("case", sorted(CASES))
def test_kernel_matches_reference(rig: KernelRig, case: str) -> None:
    log.info("%s: %.3g", case, CASES[case](rig))


def test_emulator_rejects_arguments_a_gpu_would_misread(rig: KernelRig) -> None:
    """A Python int goes to CuPy as long long, a float16 array to a float* is read as garbage, a strided view
    as if contiguous: on the GPU these give wrong numbers, here they raise."""
    k = _cuda.kernel(vst.kernels.blend._LOWPASS_SRC, "shrink_add", "float")
    dev, b, styl, out = np.zeros((3, 4, 6), np.float32), np.zeros((), np.float32), np.zeros((3, 4, 6), np.float32), np.zeros((3, 4, 6), np.float32)
    k((1,), (128,), (dev, b, styl, out, np.int32(72)))  # the right call runs
    with pytest.raises(TypeError, match="np.int32"):
        k((1,), (128,), (dev, b, styl, out, 72))
    with pytest.raises(TypeError, match="float32 array"):
        k((1,), (128,), (dev.astype(np.float16), b, styl, out, np.int32(72)))
    with pytest.raises(ValueError, match="C-contiguous"):
        k((1,), (128,), (dev[..., ::2], b, styl, out, np.int32(72)))
