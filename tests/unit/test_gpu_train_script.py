"""benchmarks/gpu_train.sh, the full-size GPU recipe, dry-run on the CPU with toy sizes: the data is
packed without PyAV on the far side, the teacher trains, is distilled, and everything is scored."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_gpu_recipe_dry_run_on_cpu(tmp_path: Path, data: type) -> None:
    data("videos", "bikes.mp4")  # skips without ../shared/data
    packed = tmp_path / "packed"
    subprocess.run([sys.executable, "benchmarks/prepare_train_data.py", "--out", str(packed), "--frames", "8",
                    "--photos", "6", "--paintings", "12"], cwd=ROOT, check=True, capture_output=True)  # fmt: skip
    assert len(list((packed / "frames" / "bikes").glob("*.jpg"))) == 8  # decoded here: no PyAV needed there
    assert len(list((packed / "paintings" / "vangogh").glob("*.jpg"))) == 12
    out = tmp_path / "out"
    env = os.environ | {"TINY": "1", "DATA": str(packed), "OUT": str(out), "PYTHON": sys.executable}
    proc = subprocess.run(["bash", "benchmarks/gpu_train.sh"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert {p.name for p in out.iterdir()} >= {"monet_distilled.safetensors", "monet_distilled.json", "scores.json",
                                               "teacher_samples.png", "student_samples.png", "teacher_metrics.csv"}  # fmt: skip
    assert not (out / "runs").exists()  # the run folders are not sent back
    card = json.loads((out / "monet_distilled.json").read_text())
    assert card["training"]["distilled_from"] == "monet_resnet"
    assert card["arch_kwargs"]["upsample"] == "resize"
    scores = json.loads((out / "scores.json").read_text())
    assert len(scores) == 4  # teacher and student x 2 held-out clips
    for row in scores:
        assert all(math.isfinite(row[k]) and row[k] > 0 for k in ("swd_ratio", "e_ratio", "periodic_artefact_index"))


def test_gpu_recipe_refuses_missing_data(tmp_path: Path) -> None:
    env = os.environ | {"DATA": str(tmp_path / "nothing"), "OUT": str(tmp_path / "out")}
    proc = subprocess.run(["bash", "benchmarks/gpu_train.sh"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "no prepared data" in proc.stderr
