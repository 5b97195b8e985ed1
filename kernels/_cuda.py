"""Lazy CuPy access and a compile cache for the raw CUDA kernels of this package.

Nothing here imports cupy at module import time, so ``import vst.kernels`` works without CUDA.
"""

from __future__ import annotations

import functools
from typing import Any

from vst.errors import BackendUnavailable

# C type per dtype name; every kernel loads/stores through LD/ST and computes in float.
_CTYPES = {"float32": "float", "float16": "__half"}
_PRELUDE = """
#include <cuda_fp16.h>
__device__ __forceinline__ float LD(const float v) { return v; }
__device__ __forceinline__ float LD(const __half v) { return __half2float(v); }
__device__ __forceinline__ void ST(float* p, float v) { *p = v; }
__device__ __forceinline__ void ST(__half* p, float v) { *p = __float2half_rn(v); }
"""


def cupy() -> Any:
    """The cupy module, or ``BackendUnavailable`` with an install hint."""
    try:
        import cupy as cp
    except ImportError:
        raise BackendUnavailable("CuPy kernels need cupy: pip install 'vst[gpu]' (cupy-cuda12x) or cupy-cuda13x") from None
    try:
        cp.cuda.runtime.getDeviceCount()
    except cp.cuda.runtime.CUDARuntimeError as e:
        raise BackendUnavailable(f"CuPy is installed but no CUDA device is usable: {e}") from None
    return cp


def ctype(dtype: Any) -> str:
    name = str(getattr(dtype, "name", dtype))
    if name not in _CTYPES:
        raise TypeError(f"kernel supports float32 and float16, not {name}")
    return _CTYPES[name]


def full_source(source: str, t: str) -> str:
    """What ``kernel`` compiles: the prelude, ``typedef t T;`` and ``source``."""
    return _PRELUDE + f"typedef {t} T;\n" + source


@functools.lru_cache(maxsize=None)
def kernel(source: str, name: str, t: str, cp: Any = None) -> Any:
    """Compile ``source`` with the element type T = ``t`` (cached per source/type/module).

    ``cp``: the cupy module to compile with (a device's ``kernels()``); None: ``cupy()``.
    """
    cp = cp if cp is not None else cupy()
    return cp.RawKernel(full_source(source, t), name)


def launch(k: Any, n: int, args: tuple[Any, ...], block: int = 256) -> None:
    k(((n + block - 1) // block,), (block,), args)
