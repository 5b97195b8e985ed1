"""The 30-minute soak of issue 12 (slow): 320x180, one Chromium viewer connected throughout, and a
WHEP player connecting, playing and leaving every 10 s.

    python3 -m pytest -m slow tests/integration/test_soak_churn.py        # 30 min
    VST_SOAK_CHURN_SECONDS=120 python3 -m pytest -m slow tests/integration/test_soak_churn.py

Pass: RSS grows under 5 % over the last two thirds of the run (the last 20 of 30 minutes), the
viewer's decoded fps stays stable (no 30 s window under half the run's median; the last third's
median within 25 % of the middle third's), no engine/source/track errors, every churn cycle
plays. Rows go to artifacts/soak_churn.json; docs/reliability.md records the result.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from vst.stream.webrtc import restrict_ice_to_host

from .serving import ARTIFACTS, VstServer, frames_decoded, open_viewer, wait_until
from .whep_client import whep_session

pytestmark = [pytest.mark.slow, pytest.mark.browser]

SECONDS = float(os.environ.get("VST_SOAK_CHURN_SECONDS", "1800"))
CYCLE_S = 10.0
SAMPLE_S = float(os.environ.get("VST_SOAK_SAMPLE_SECONDS", "30"))


def _churn(base: str, stop: threading.Event, results: dict[str, Any]) -> None:
    """A WHEP player every CYCLE_S seconds: connect, decode 3 frames, DELETE."""

    async def run() -> None:
        next_t = time.monotonic()
        while not stop.is_set():
            try:
                res = await asyncio.wait_for(whep_session(base, None, frames=3), 30)
                ok = res.status == 201 and res.frames == 3
                results["ok" if ok else "bad"].append(res.status if not ok else round(time.monotonic() - next_t, 2))
            except Exception as e:  # counted, and the soak goes on: a failure is a finding
                results["bad"].append(f"{type(e).__name__}: {e}")
            next_t += CYCLE_S
            await asyncio.sleep(max(0.0, next_t - time.monotonic()))

    restrict_ice_to_host("127.0.0.1")
    asyncio.run(run())


@pytest.mark.timeout(SECONDS + 300)
def test_soak_320p_one_viewer_plus_churn(chromium: Any, styles_dir: Path) -> None:
    srv = VstServer(["--source", "sample", "--size", "320x180", "--fps", "30", "--max-viewers", "4"],
                    env={"VST_STYLES_DIR": str(styles_dir)}, log_name="soak_churn")  # fmt: skip
    rows: list[dict[str, Any]] = []
    churn: dict[str, Any] = {"ok": [], "bad": []}
    stop = threading.Event()
    worker = threading.Thread(target=_churn, args=(srv.base, stop, churn), daemon=True)
    ARTIFACTS.mkdir(exist_ok=True)
    try:
        page = open_viewer(chromium, srv.url)
        worker.start()
        t0 = time.monotonic()
        last_n, last_t = frames_decoded(page), t0
        while time.monotonic() - t0 < SECONDS:
            time.sleep(SAMPLE_S)
            s, n, t = srv.stats(), frames_decoded(page), time.monotonic()
            rows.append({"t_s": round(t - t0), "decoded_fps": round((n - last_n) / (t - last_t), 2),
                         "output_fps": s["output_fps"], "inference_ms": s["inference_ms"], "cpu_percent": s["cpu_percent"],
                         "rss_mb": s["rss_mb"], "viewers": s["viewers"], "sessions_total": s["sessions_total"],
                         "asyncio_tasks": s["asyncio_tasks"],
                         "errors": s["engine_errors"] + s["source_errors"] + s["track_errors"]})  # fmt: skip
            last_n, last_t = n, t
            (ARTIFACTS / "soak_churn.json").write_text(json.dumps({"rows": rows}, indent=1))  # partial results survive a kill
        stop.set()
        worker.join(45)
        assert wait_until(lambda: srv.stats()["viewers"] == 1, 20), "churned sessions were not all closed"
        page.close(run_before_unload=True)
    finally:
        stop.set()
        code = srv.stop()

    later = rows[len(rows) // 3 :]  # the last 2/3: 20 of 30 minutes
    k = max(1, min(3, len(later) // 3))
    rss0, rss1 = statistics.median(r["rss_mb"] for r in later[:k]), statistics.median(r["rss_mb"] for r in later[-k:])
    fps = [r["decoded_fps"] for r in rows]
    third = max(1, len(rows) // 3)
    summary = {
        "seconds": SECONDS, "samples": len(rows), "cycles_ok": len(churn["ok"]), "cycles_bad": churn["bad"],
        "rss_mb_start_of_window": rss0, "rss_mb_end": rss1, "rss_growth_pct": round(100 * (rss1 - rss0) / rss0, 2),
        "decoded_fps_median": statistics.median(fps), "decoded_fps_min": min(fps),
        "fps_middle_third": statistics.median(fps[third : 2 * third] or fps), "fps_last_third": statistics.median(fps[2 * third :] or fps),
        "exit_code": code,
    }  # fmt: skip
    (ARTIFACTS / "soak_churn.json").write_text(json.dumps({"summary": summary, "rows": rows}, indent=1))
    assert code == 0
    assert not churn["bad"] and len(churn["ok"]) >= SECONDS / CYCLE_S * 0.8, summary
    assert all(r["errors"] == 0 for r in rows), rows
    assert summary["rss_growth_pct"] < 5.0, summary
    assert min(fps) >= 0.5 * summary["decoded_fps_median"], summary
    assert abs(summary["fps_last_third"] - summary["fps_middle_third"]) <= 0.25 * summary["fps_middle_third"], summary
