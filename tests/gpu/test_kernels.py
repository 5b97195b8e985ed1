"""Each CuPy kernel against its torch reference on random inputs, per dtype (skipped without CUDA).

The cases are tests/kernel_cases.py; tests/unit/test_kernels_cpu_emulation.py runs the same ones on the CPU.
"""

from __future__ import annotations

import logging

import pytest
import torch

from kernel_cases import CASES, DTYPES, KernelRig

log = logging.getLogger(__name__)

# Max abs error of a kernel vs its fp32 reference; fp16 storage rounds inputs and outputs.
TOL = {torch.float32: 1e-4, torch.float16: 2e-2}
# Masks are thresholds: a pixel within rounding of the threshold may flip; allow this fraction.
MASK_FLIP = {torch.float32: 1e-3, torch.float16: 2e-2}


@pytest.fixture
def rig(cuda: torch.device) -> KernelRig:
    cp = pytest.importorskip("cupy", reason="CuPy kernels need cupy (pip install 'vst[gpu]')")
    return KernelRig(cuda, cp.asarray, lambda a: torch.as_tensor(a, device=cuda), TOL, dict.fromkeys(DTYPES, 0.0), MASK_FLIP)


@pytest.mark.parametrize("case", sorted(CASES))
def test_kernel_matches_reference(rig: KernelRig, case: str) -> None:
    log.info("%s: %.3g", case, CASES[case](rig))
