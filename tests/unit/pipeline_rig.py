"""What the pipeline tests share (tests/unit/test_pipeline.py, test_pipeline_i420.py): a tiny untrained
style to serve, and a poll for what the pipeline's threads do."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from vst.models import GeneratorSpec, build_generator, init_weights
from vst.styles import Style, save_style


def tiny_style(directory: Path) -> Style:
    """An untrained 2-block 'compact' style named 'tiny', saved in ``directory``: cheap to run."""
    spec = GeneratorSpec("compact", {"width": 8, "n_blocks": 2})
    net = init_weights(build_generator(spec), gain=0.2, seed=3)
    return save_style(directory, "tiny", net, spec, {"provenance": "test"})


def until(check: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Whether ``check()`` came true within ``timeout`` seconds (polled every 20 ms)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if check():
            return True
        time.sleep(0.02)
    return False
