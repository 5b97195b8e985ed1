"""What machine this is: CPU model and features, for engines, benchmarks and model cards."""

from __future__ import annotations

import os
import platform
from functools import cache
from pathlib import Path


@cache
def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:  # not Linux
        return ""


def cpu_model() -> str:
    """The CPU's marketing name ('Intel(R) Xeon(R) ...'), or the platform's guess."""
    for line in _cpuinfo().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "CPU"


def cpu_has_bf16() -> bool:
    """True where oneDNN has native bf16 (AVX512-BF16 or AMX)."""
    flags = _cpuinfo()
    return "avx512_bf16" in flags or "amx_bf16" in flags


def env_threads() -> int:
    """CPU threads asked for with $VST_THREADS (0: the backend's default)."""
    from vst.errors import VstError

    text = os.environ.get("VST_THREADS", "0")
    try:
        threads = int(text)
    except ValueError:
        raise VstError(f"VST_THREADS must be a whole number, got {text!r}") from None
    if threads < 0:
        raise VstError(f"VST_THREADS must be >= 0, got {threads}")
    return threads
