"""A tiny training config on real data (seconds per step on a CPU), shared by the training tests."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from vst.train.config import TrainConfig, load_config


@pytest.fixture(autouse=True)
def flow_cache_in_tmp(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Flows are cached in a per-session temp folder, never the user's ~/.cache."""
    monkeypatch.setenv("VST_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))


def tiny_config(tmp_path: Path, data: type, **over: object) -> TrainConfig:
    paintings = tmp_path / "paintings"
    paintings.mkdir(exist_ok=True)
    for p in sorted(data("paintings", "vangogh", "trainA").glob("*.jpg"))[:6]:
        shutil.copy(p, paintings / p.name)
    text = f"""
[data]
a_sources = ["{data("frames", "corridor_neuflow")}"]
a_stills = ["{paintings}"]
a_still_p = 0.5
frame_size = [32, 24]
b_dir = "{paintings}"
b_load = 36
b_crop = 32
long_gap = 3
[model]
arch = "compact"
width = 4
n_blocks = 1
affine = true
d_ndf = 8
[optim]
steps = 4
batch = 2
pool = 3
[run]
threads = 1
log_every = 1
sample_every = 2
checkpoint_every = 0
style_name = "tiny"
"""
    path = tmp_path / "tiny.toml"
    path.write_text(text)
    return load_config(path, [f"{k}={v}" for k, v in over.items()])
