"""A CPU stand-in for the part of CuPy that ``vst.kernels`` uses, so the real CUDA sources run without a GPU.

Arrays are numpy arrays. ``RawKernel`` compiles the kernel's full source (the ``vst.kernels._cuda``
prelude, the ``T`` typedef and the kernel) as C++ with g++, with ``CPU_PRELUDE`` in place of
``<cuda_fp16.h>``: ``__half`` is ``_Float16``, so fp16 storage rounds to nearest even as on the GPU.
A launch runs every thread of every block in turn, in C. That checks what the kernels compute and the
arguments the wrappers pass (count, dtype, contiguity); it cannot show what only the hardware shows:
races (none of these elementwise kernels shares memory between threads), out-of-bounds reads, nvcc's
FMA contraction, or shared memory, atomics and ``__syncthreads`` (unsupported here).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

HAVE_GXX = shutil.which("g++") is not None

CPU_PRELUDE = r"""
#include <math.h>
#include <algorithm>
using std::min; using std::max;
#define __device__
#define __global__
#define __forceinline__ inline
struct dim3 { unsigned x, y, z; };
[[maybe_unused]] static dim3 gridDim, blockDim, blockIdx, threadIdx;  // set per thread by the launcher
typedef _Float16 __half;  // IEEE binary16, as CUDA's
inline float __half2float(__half v) { return (float)v; }
inline __half __float2half_rn(float v) { return (__half)v; }  // round to nearest even
"""
"""Stands in for ``<cuda_fp16.h>`` and the CUDA built-ins; shared with tests/unit/test_kernel_sources.py."""

_CUDA_INCLUDE = "#include <cuda_fp16.h>\n"
_CXXFLAGS = ("-std=c++17", "-O1", "-shared", "-fPIC")
_GLOBAL = re.compile(r'extern\s+"C"\s+__global__\s+void\s+(\w+)\s*\(([^)]*)\)')
_PARAM = re.compile(r"^(?:const\s+)?(\w+(?:\s+\w+)*?)\s*(\*?)\s*(\w+)$")
_DTYPES = {"float": np.dtype(np.float32), "__half": np.dtype(np.float16), "unsigned char": np.dtype(np.uint8),
           "int": np.dtype(np.int32)}  # fmt: skip
_SCALAR_CTYPES = {np.dtype(np.float32): ctypes.c_float, np.dtype(np.int32): ctypes.c_int}
_LAUNCHER = r"""
extern "C" void vst_launch_{name}(unsigned vst_gx, unsigned vst_gy, unsigned vst_gz,
                                  unsigned vst_bx, unsigned vst_by, unsigned vst_bz, {params}) {{
    gridDim = {{vst_gx, vst_gy, vst_gz}};
    blockDim = {{vst_bx, vst_by, vst_bz}};
    for (unsigned vst_z = 0; vst_z < vst_gz; ++vst_z)
    for (unsigned vst_y = 0; vst_y < vst_gy; ++vst_y)
    for (unsigned vst_x = 0; vst_x < vst_gx; ++vst_x)
    for (unsigned vst_k = 0; vst_k < vst_bz; ++vst_k)
    for (unsigned vst_j = 0; vst_j < vst_by; ++vst_j)
    for (unsigned vst_i = 0; vst_i < vst_bx; ++vst_i) {{
        blockIdx = {{vst_x, vst_y, vst_z}};
        threadIdx = {{vst_i, vst_j, vst_k}};
        {name}({args});
    }}
}}
"""


def cpu_source(code: str) -> str:
    """A kernel source as ``vst.kernels._cuda.kernel`` hands it to CuPy, made compilable as C++ for the CPU."""
    if _CUDA_INCLUDE not in code:
        raise ValueError("expected the vst.kernels._cuda prelude (it includes <cuda_fp16.h>)")
    return code.replace(_CUDA_INCLUDE, CPU_PRELUDE, 1)


@dataclass(frozen=True)
class _Param:
    text: str
    name: str
    dtype: np.dtype
    pointer: bool


def _signature(code: str, name: str) -> list[_Param]:
    """The parameters of kernel ``name``, with ``T`` resolved through the source's typedef."""
    typedef = re.search(r"typedef\s+(\w+)\s+T\s*;", code)
    found = {m.group(1): m.group(2) for m in _GLOBAL.finditer(code)}
    if name not in found:
        raise ValueError(f"no extern \"C\" __global__ kernel {name!r} in the source (has {sorted(found)})")
    params = []
    for text in (p.strip() for p in found[name].split(",")):
        m = _PARAM.match(text)
        base = m and (typedef.group(1) if m.group(1) == "T" and typedef else m.group(1))
        if m is None or base not in _DTYPES:
            raise ValueError(f"kernel {name}: cannot emulate parameter {text!r}")
        params.append(_Param(text, m.group(3), _DTYPES[base], bool(m.group(2))))
    return params


def _with_launchers(code: str) -> str:
    """The CPU source plus one ``vst_launch_<name>`` per kernel: the whole grid in one ctypes call."""
    launchers = []
    for m in _GLOBAL.finditer(code):
        names = ", ".join(p.name for p in _signature(code, m.group(1)))
        launchers.append(_LAUNCHER.format(name=m.group(1), params=" ".join(m.group(2).split()), args=names))
    return cpu_source(code) + "".join(launchers)


@functools.cache
def _library(code: str) -> ctypes.CDLL:
    """Compile once per source: in-process here, across runs in a temp dir keyed by the source's hash."""
    source = _with_launchers(code)
    key = hashlib.sha256("\0".join((*_CXXFLAGS, source)).encode()).hexdigest()[:20]
    cache = Path(tempfile.gettempdir()) / f"vst-cuda-emulation-{os.getuid()}"
    cache.mkdir(exist_ok=True)
    lib = cache / f"{key}.so"
    if not lib.exists():
        start = time.perf_counter()
        # Per-process names, the library renamed into place: parallel runs never see half a file.
        cpp, partial = (cache / f"{key}.{os.getpid()}{ext}" for ext in (".cpp", ".so"))
        cpp.write_text(source)
        done = subprocess.run(["g++", *_CXXFLAGS, "-o", str(partial), str(cpp)], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"g++ could not compile the kernel source {cpp}:\n{done.stderr[:4000]}")
        os.replace(partial, lib)
        cpp.unlink()
        log.debug("cuda emulation: compiled %s in %.2f s", lib.name, time.perf_counter() - start)
    return ctypes.CDLL(str(lib))


def _dim3(d: int | Sequence[int]) -> tuple[int, int, int]:
    dims = (d,) if isinstance(d, int) else tuple(d)
    if not 1 <= len(dims) <= 3:
        raise ValueError(f"grid/block must have 1 to 3 dimensions, got {d!r}")
    return (*dims, 1, 1, 1)[:3]  # type: ignore[return-value]


class RawKernel:
    """``cupy.RawKernel(code, name)``: ``k(grid, block, args)`` runs the kernel over the whole grid."""

    def __init__(self, code: str, name: str) -> None:
        self.code, self.name = code, name
        self._params = _signature(code, name)
        self._launch: Callable[..., None] = getattr(_library(code), f"vst_launch_{name}")
        self._launch.argtypes = [ctypes.c_uint] * 6 + [
            ctypes.c_void_p if p.pointer else _SCALAR_CTYPES[p.dtype] for p in self._params
        ]
        self._launch.restype = None

    def __call__(self, grid: int | Sequence[int], block: int | Sequence[int], args: Sequence[Any], **kwargs: Any) -> None:
        if kwargs.get("shared_mem"):
            raise NotImplementedError("dynamic shared memory is not emulated")
        if len(args) != len(self._params):
            raise TypeError(f"kernel {self.name} takes {len(self._params)} arguments, got {len(args)}")
        self._launch(*_dim3(grid), *_dim3(block), *(self._c_arg(a, p) for a, p in zip(args, self._params, strict=True)))

    def _c_arg(self, value: Any, param: _Param) -> Any:
        """What CuPy would pass, checked as the GPU cannot: pointer dtypes and contiguity, exact scalar types."""
        where = f"kernel {self.name}, parameter {param.text!r}"
        if param.pointer:
            if not isinstance(value, np.ndarray) or value.dtype != param.dtype:
                raise TypeError(f"{where}: wants a {param.dtype} array, got {type(value).__name__} {getattr(value, 'dtype', '')}")
            if not value.flags.c_contiguous:
                raise ValueError(f"{where}: the array is not C-contiguous; the kernel would read it as if it were")
            return value.ctypes.data
        # CuPy passes a Python int as long long and a float as double: only exact numpy scalars are safe.
        if type(value) is not param.dtype.type:
            raise TypeError(f"{where}: wants np.{param.dtype}, got {type(value).__name__}")
        return value.item()


class EmulatedCupy:
    """The ``cupy`` module as ``vst.kernels`` uses it: numpy for arrays and array functions, plus ``RawKernel``."""

    RawKernel = RawKernel

    def __getattr__(self, name: str) -> Any:
        attr = getattr(np, name)
        if callable(attr) and not isinstance(attr, type):
            return _device_result(attr)
        return attr


def _device_result(fn: Callable[..., Any]) -> Callable[..., Any]:
    """CuPy functions return 0-d device arrays where numpy returns scalars; kernels take those as pointers."""

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        out = fn(*args, **kwargs)
        return np.asarray(out) if isinstance(out, np.generic) else out

    return call
