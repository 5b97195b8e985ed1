"""Measure serving: decoded fps per viewer, server CPU, glass-to-glass latency (p50/p95).

    python3 -m tests.integration.measure --size 320x180 --viewers 1 --seconds 30 [--style NAME]

The server stamps each frame's capture time (wall clock, ms) into its top rows
(--stamp-latency); the viewer page decodes the stamp in requestVideoFrameCallback and subtracts
it from the browser's clock (same machine, same clock). So the number covers source read ->
inference -> encode -> RTP over loopback -> jitter buffer -> decode -> frame callback.
Without --style, a random-init 'compact' style stands in for the trained compact model.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

from .serving import CHROMIUM, CHROMIUM_ARGS, VstServer, frames_decoded, make_test_style, open_viewer

log = logging.getLogger("measure")


def measure(size: str, viewers: int, seconds: float, style: str | None, source: str, fps: float,
            width: int = 16) -> dict[str, Any]:  # fmt: skip
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as d:
        if style is None:
            make_test_style(Path(d), "compact-measure", width=width)
        srv = VstServer(["--source", source, "--size", size, "--fps", str(fps), "--style", style or "compact-measure",
                         "--stamp-latency", "--max-viewers", str(max(viewers, 1))],
                        env={"VST_STYLES_DIR": d}, log_name=f"measure_{size}")  # fmt: skip
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                pages = [open_viewer(browser, srv.url) for _ in range(viewers)]
                time.sleep(3)  # settle: encoders ramp, jitter buffers fill
                for pg in pages:
                    pg.evaluate("vst.latencies.length = 0")
                d0, s0, t0 = [frames_decoded(pg) for pg in pages], srv.stats(), time.monotonic()
                cpu = []
                while time.monotonic() - t0 < seconds:
                    time.sleep(1)
                    cpu.append(srv.stats()["cpu_percent"])
                d1, s1, t1 = [frames_decoded(pg) for pg in pages], srv.stats(), time.monotonic()
                lat = sorted(x for pg in pages for x in pg.evaluate("vst.latencies"))
                browser.close()
        finally:
            srv.stop()
    span = t1 - t0
    pct = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] if lat else None  # noqa: E731
    return {
        "size": size,
        "style": style or f"compact width {width} (random init)",
        "viewers": viewers,
        "seconds": round(span, 1),
        "source_fps": round((s1["frames_in"] - s0["frames_in"]) / span, 1),
        "inferred_fps": round((s1["frames_inferred"] - s0["frames_inferred"]) / span, 1),
        "inference_ms_p50": s1["inference_ms"],
        "decoded_fps_per_viewer": [round((b - a) / span, 1) for a, b in zip(d0, d1)],
        "server_cpu_percent_mean": round(sum(cpu) / max(len(cpu), 1), 1),
        "glass_to_glass_ms_p50": pct(0.5),
        "glass_to_glass_ms_p95": pct(0.95),
        "latency_samples": len(lat),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", default="320x180")
    ap.add_argument("--viewers", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--style", default=None)
    ap.add_argument("--source", default="sample")
    ap.add_argument("--fps", type=float, default=30)
    ap.add_argument("--width", type=int, default=16, help="width of the stand-in compact net (4: near-free, isolates serving)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO)
    res = measure(args.size, args.viewers, args.seconds, args.style, args.source, args.fps, args.width)
    print(json.dumps(res))  # noqa: T201 - the script's result


if __name__ == "__main__":
    main()
