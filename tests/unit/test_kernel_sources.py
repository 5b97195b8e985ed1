"""The CUDA sources in vst.kernels compile as C++ against a stub CUDA prelude (T = float).

No GPU reaches CI, so this is the only check there that the kernels parse and type-check: names,
argument lists, device-helper signatures. What they compute is checked against the torch
references by tests/gpu/test_kernels.py on a CUDA machine.
"""

from __future__ import annotations

import importlib
import shutil
import subprocess
from pathlib import Path

import pytest

_STUB = r"""
#include <math.h>
#include <algorithm>
using std::min; using std::max;
#define __device__
#define __global__
#define __forceinline__ inline
struct dim3 { unsigned x, y, z; };
static dim3 blockDim, blockIdx, threadIdx;
typedef float T;
inline float LD(const float v) { return v; }
inline void ST(float* p, float v) { *p = v; }
"""


def _sources() -> list[tuple[str, str]]:
    found = []
    for mod in ("warp", "occlusion", "blend", "layout"):
        module = importlib.import_module(f"vst.kernels.{mod}")
        found += [(f"{mod}.{name}", src) for name, src in vars(module).items() if isinstance(src, str) and "__global__" in src]
    return found


@pytest.mark.skipif(shutil.which("g++") is None, reason="g++ is not installed")
@pytest.mark.parametrize(("name", "source"), _sources(), ids=[n for n, _ in _sources()])
def test_kernel_source_compiles_as_cxx(tmp_path: Path, name: str, source: str) -> None:
    path = tmp_path / f"{name}.cpp"
    path.write_text(_STUB + source)
    done = subprocess.run(["g++", "-fsyntax-only", "-Wall", "-Werror", str(path)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[:2000]
