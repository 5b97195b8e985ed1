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


@pytest.mark.timeout(900)
def test_gpu_finetune_dry_run_on_cpu(tmp_path: Path, data: type) -> None:
    """benchmarks/gpu_finetune.sh with toy sizes: both bundled styles fine-tuned with and without the
    flow-cycle loss, scored beside the bundled ones, and sent back as at most 8 files."""
    data("videos", "bikes.mp4")  # skips without ../shared/data
    import tarfile

    packed = tmp_path / "packed"
    subprocess.run([sys.executable, "benchmarks/prepare_train_data.py", "--out", str(packed), "--frames", "6",
                    "--photos", "4", "--paintings", "8"], cwd=ROOT, check=True, capture_output=True)  # fmt: skip
    out = tmp_path / "out"
    env = os.environ | {"TINY": "1", "DATA": str(packed), "OUT": str(out), "PYTHON": sys.executable}
    proc = subprocess.run(["bash", "benchmarks/gpu_finetune.sh"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    names = {p.name for p in out.iterdir()}
    assert names == {"scores.json", "styles.tar.gz", "gpu_finetune.log"}  # within the device's 8 returned files
    with tarfile.open(out / "styles.tar.gz") as tar:
        members = {Path(m).name for m in tar.getnames()}
    for s in ("monet", "vangogh"):
        for v in ("temporal", "flowcycle"):
            assert {f"{s}_{v}.safetensors", f"{s}_{v}.json", f"{s}_{v}_metrics.csv"} <= members
    scores = json.loads((out / "scores.json").read_text())
    assert len(scores) == 12  # (2 fine-tunes + the bundled style) x 2 styles x 2 held-out clips
    assert all(math.isfinite(r["swd_ratio"]) and math.isfinite(r["e_ratio"]) for r in scores)
