"""Churn and soak (slow; run with `pytest -m slow tests/integration/test_churn_soak.py`).

Results go to artifacts/churn.json and artifacts/soak.json; docs/reliability.md records them.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from vst.stream.webrtc import restrict_ice_to_host

from .serving import ARTIFACTS, VstServer, frames_decoded, open_viewer, wait_until
from .whep_client import run_in_thread, whep_session

pytestmark = pytest.mark.slow

CYCLES = int(os.environ.get("VST_CHURN_CYCLES", "200"))
SOAK_S = float(os.environ.get("VST_SOAK_SECONDS", "600"))


@pytest.mark.timeout(900)
def test_churn_connect_disconnect(styles_dir: Path) -> None:
    restrict_ice_to_host("127.0.0.1")
    srv = VstServer(["--source", "testsrc", "--size", "320x180", "--style", "compact-test", "--max-viewers", "2"],
                    env={"VST_STYLES_DIR": str(styles_dir)}, log_name="churn")  # fmt: skip
    samples: list[dict[str, Any]] = []
    try:

        async def run() -> None:
            for i in range(CYCLES):
                res = await whep_session(srv.base, None, frames=2)
                assert res.status == 201 and res.frames == 2, (i, res)
                if i in (9, CYCLES // 2, CYCLES - 1):
                    await asyncio.sleep(1.0)  # let closes settle before sampling
                    s = srv.stats()
                    samples.append({"cycle": i + 1, "rss_mb": s["rss_mb"], "asyncio_tasks": s["asyncio_tasks"],
                                    "viewers": s["viewers"], "track_errors": s["track_errors"]})  # fmt: skip

        t0 = time.monotonic()
        run_in_thread(run)
        elapsed = time.monotonic() - t0
        assert wait_until(lambda: srv.stats()["viewers"] == 0, 10)
        final = srv.stats()
    finally:
        code = srv.stop()
    result = {"cycles": CYCLES, "seconds": round(elapsed, 1), "samples": samples,
              "sessions_total": final["sessions_total"], "rss_growth_mb": round(samples[-1]["rss_mb"] - samples[0]["rss_mb"], 1),
              "task_growth": samples[-1]["asyncio_tasks"] - samples[0]["asyncio_tasks"], "exit_code": code}  # fmt: skip
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "churn.json").write_text(json.dumps(result, indent=2))
    assert code == 0
    assert final["sessions_total"] == CYCLES and final["track_errors"] == 0
    assert result["task_growth"] <= 2, result
    assert result["rss_growth_mb"] < 60, result


@pytest.mark.timeout(SOAK_S + 240)
def test_soak_480p(chromium: Any, styles_dir: Path) -> None:
    srv = VstServer(["--source", "sample", "--size", "854x480", "--fps", "30", "--style", "compact-test"],
                    env={"VST_STYLES_DIR": str(styles_dir)}, log_name="soak")  # fmt: skip
    rows: list[dict[str, Any]] = []
    try:
        page = open_viewer(chromium, srv.url)
        t0 = time.monotonic()
        last_n, last_t = frames_decoded(page), t0
        while time.monotonic() - t0 < SOAK_S:
            time.sleep(15)
            s, n, t = srv.stats(), frames_decoded(page), time.monotonic()
            rows.append({"t_s": round(t - t0), "decoded_fps": round((n - last_n) / (t - last_t), 1),
                         "output_fps": s["output_fps"], "source_fps": s["source_fps"], "inference_ms": s["inference_ms"],
                         "cpu_percent": s["cpu_percent"], "rss_mb": s["rss_mb"], "dropped": s["dropped_frames"],
                         "errors": s["engine_errors"] + s["source_errors"] + s["track_errors"]})  # fmt: skip
            last_n, last_t = n, t
            (ARTIFACTS / "soak.json").write_text(json.dumps(rows, indent=1))  # partial results survive a kill
        page.close(run_before_unload=True)
    finally:
        code = srv.stop()
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "soak.json").write_text(json.dumps(rows, indent=1))
    assert code == 0
    assert rows and all(r["decoded_fps"] > 0 for r in rows), "the stream stalled during the soak"
    assert all(r["errors"] == 0 for r in rows)
    steady = rows[len(rows) // 4 :]  # after warm-up (allocator, encoder buffers)
    assert steady[-1]["rss_mb"] - steady[0]["rss_mb"] < 100, rows
