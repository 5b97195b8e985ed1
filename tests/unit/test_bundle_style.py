"""benchmarks/bundle_style.py: a card that continues a bundled style pins the file's commit."""

from __future__ import annotations

import importlib.util
import re
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _module():  # noqa: ANN202
    spec = importlib.util.spec_from_file_location("bundle_style", ROOT / "benchmarks" / "bundle_style.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(), reason="needs git and the repository's history")
def test_initialised_from_a_bundled_style_names_its_commit() -> None:
    pin = _module()._pin_bundled
    pinned = pin("vst/assets/styles/monet.safetensors")
    assert re.fullmatch(r"vst/assets/styles/monet\.safetensors as of commit [0-9a-f]{7,}", pinned), pinned
    assert pin("runs/monet/checkpoint.safetensors") == "runs/monet/checkpoint.safetensors"  # not bundled: as it is
