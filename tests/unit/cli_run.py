"""Running a CLI as a user does (a subprocess) and checking its one-line error contract."""

from __future__ import annotations

import os
import subprocess
import sys


def run_cli(module: str, *args: str, timeout: float = 120, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m module args...`` with captured text output (and extra environment variables)."""
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, timeout=timeout, check=False,
                          env={**os.environ, **(env or {})})  # fmt: skip


def one_line_error(r: subprocess.CompletedProcess[str], needle: str = "") -> str:
    """The process failed with exactly one ``error:`` line on stderr (containing ``needle``) and no traceback."""
    assert r.returncode != 0, r.stdout + r.stderr
    assert "Traceback" not in r.stderr, r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and needle in errors[0], r.stderr
    return errors[0]
