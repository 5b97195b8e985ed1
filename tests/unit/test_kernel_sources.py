"""The CUDA sources in vst.kernels compile as C++ (-Wall -Werror) with the CPU prelude, for T = float and __half.

The real prelude of ``vst.kernels._cuda`` (LD/ST) is compiled too; only <cuda_fp16.h> and the CUDA built-ins
are replaced (tests/unit/cuda_emulation.py). This catches what g++ warns about (names, argument lists,
device-helper signatures, unused variables) for every source, including any no wrapper launches;
tests/unit/test_kernels_cpu_emulation.py runs the kernels against the torch references.
"""

from __future__ import annotations

import importlib
import subprocess
from pathlib import Path

import pytest

from cuda_emulation import HAVE_GXX, cpu_source

from vst.kernels._cuda import full_source


def _sources() -> list[tuple[str, str]]:
    found = []
    for mod in ("blend", "layout"):  # vst.kernels.warp holds device functions only: blend compiles them
        module = importlib.import_module(f"vst.kernels.{mod}")
        found += [(f"{mod}.{name}", src) for name, src in vars(module).items() if isinstance(src, str) and "__global__" in src]
    return found


@pytest.mark.skipif(not HAVE_GXX, reason="g++ is not installed")
@pytest.mark.parametrize("t", ["float", "__half"])
@pytest.mark.parametrize(("name", "source"), _sources(), ids=[n for n, _ in _sources()])
def test_kernel_source_compiles_as_cxx(tmp_path: Path, name: str, source: str, t: str) -> None:
    path = tmp_path / f"{name}.cpp"
    path.write_text(cpu_source(full_source(source, t)))
    done = subprocess.run(["g++", "-std=c++17", "-fsyntax-only", "-Wall", "-Werror", str(path)],
                          capture_output=True, text=True, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr[:2000]
