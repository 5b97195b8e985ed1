"""One vst per GPU: processes that start together share the engine cache without corrupting it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import onnx

SCRIPT = """
import logging, sys
logging.basicConfig(level=logging.INFO, stream=sys.stderr)
from vst.export.onnx_export import cached_onnx
from vst.styles import resolve_style
print(cached_onnx(resolve_style("monet")))
"""


def test_two_processes_export_the_same_onnx_once(tmp_path: Path) -> None:
    env = os.environ | {"VST_CACHE_DIR": str(tmp_path / "cache")}
    procs = [subprocess.Popen([sys.executable, "-c", SCRIPT], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]  # fmt: skip
    results = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), results
    paths = {out.strip() for out, _ in results}
    assert len(paths) == 1  # both got the same cached file
    path = Path(paths.pop())
    onnx.checker.check_model(onnx.load(str(path)))  # a whole, valid graph
    exports = sum("exporting style" in err for _, err in results)
    assert exports == 1, [err[-500:] for _, err in results]  # the lock made the second one wait and reuse it
    leftovers = [p.name for p in path.parent.iterdir() if p.suffix == ".part"]
    assert not leftovers
