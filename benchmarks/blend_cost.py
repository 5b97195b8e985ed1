#!/usr/bin/env python3
"""What the temporal blend costs on this CPU, against the engine it follows, measured in one run.

    python benchmarks/blend_cost.py                                  # candy and monet, 320x180 and 640x360
    python benchmarks/blend_cost.py --styles candy --sizes 320x180 --frames 120 --json blend.json

For each style and size: the bundled sample clip is fitted to the size, stylized once (engine
ms/frame timed), then ``BlendStage(alpha)`` runs over the frames and its flow and the rest of the
stage are timed separately. Reports medians and p90s and the blend's share of frame time,
blend / (engine + blend).

Then the host processor (what vst-stream runs on a CPU) runs the clip with the blend off, with the
blend in turn with the engine in one thread ('sequential'), and with its flow beside the engine
('overlap', the default): the blend's share of the processor's frame time is 1 - off / on. The issue's budget is a share of at most 15 %
at 640x360 on the backend ``auto`` picks.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from pathlib import Path
from typing import Any


from vst.cli import check_output_path, int_range, parse_size, run_main, setup_logging, write_output
from vst.errors import VstError
from vst.flow import FLOW_NAMES, TimedFlow, make_flow
from vst.stream.blend_config import BlendConfig

log = logging.getLogger("vst.bench.blend")


def _stats(ms: list[float]) -> dict[str, float]:
    ms = sorted(ms)
    return {"median": round(statistics.median(ms), 3), "p90": round(ms[int(0.9 * (len(ms) - 1))], 3), "min": round(ms[0], 3)}


def measure(style: str, size: tuple[int, int], frames: int, alpha: float, backend: str, rounds: int = 3,
            flow_name: str = "dis", clamp: int = BlendConfig.clamp) -> dict[str, Any]:  # fmt: skip
    from vst.stream.blend import make_blend
    from vst.stream.engine import make_engine
    from vst.stream.eval_cli import load_frames
    from vst.styles import resolve_style

    clip = load_frames("sample", size, frames)
    engine = make_engine(resolve_style(style), backend)
    engine(clip[0])  # warm-up
    engine_ms, styled = [], []
    for x in clip:
        t0 = time.perf_counter()
        styled.append(engine(x))
        engine_ms.append(1e3 * (time.perf_counter() - t0))
    flow = TimedFlow(make_flow(flow_name))
    stage = make_blend(alpha, flow=flow, clamp=clamp)
    stage_ms = []
    for x, g in zip(clip, styled, strict=True):
        t0 = time.perf_counter()
        stage(x, g)
        stage_ms.append(1e3 * (time.perf_counter() - t0))
    stage_ms = stage_ms[1:]  # the first frame only starts the history
    rest = [s - f for s, f in zip(stage_ms, flow.ms, strict=True)]
    eng, blend = _stats(engine_ms), _stats(stage_ms)
    h, w = clip[0].shape[:2]
    frame_ms, shares = processor_frame_ms(engine, clip, alpha, rounds, flow_name, clamp)
    return {
        "style": style, "size": f"{w}x{h}", "backend": engine.backend, "frames": len(clip), "alpha": alpha,
        "engine_ms": eng, "blend_ms": blend, "flow_ms": _stats(flow.ms), "warp_mask_blend_ms": _stats(rest),
        "share": round(blend["median"] / (eng["median"] + blend["median"]), 4),
        "processor_frame_ms": frame_ms,
        "flow": flow.name, "clamp": stage.config.clamp,
        "processor_share": shares,  # median over rounds of the share within each round
    }  # fmt: skip


def processor_frame_ms(engine: Any, clip: list[Any], alpha: float, rounds: int, flow: str = "dis",
                       clamp: int = BlendConfig.clamp) -> tuple[dict[str, dict[str, float]], dict[str, float]]:  # fmt: skip
    """Frame time of the host processor (what vst-stream runs on a CPU) over the clip: blend off, blend
    in turn with the engine in one thread ('sequential'), and the blend's flow beside the engine
    ('overlap', the default); and the blend's share of the frame, 1 - off / on, per round, median over rounds.

    The three run in turn, ``rounds`` times, in a rotating order. Shares are paired within a round
    because this VM's speed drifts by up to 15 % within a minute (seen: blend-off frames 47.7 ms, then
    55 ms for the rest of the run), which unpaired minima or medians mix into the share."""
    from vst.stream.processor import HostProcessor

    base = BlendConfig(clamp=clamp)
    modes = ["off", "sequential", "overlap"]
    runs: dict[str, list[float]] = {m: [] for m in modes}
    for r in range(rounds):
        for mode in modes[r % 3:] + modes[: r % 3]:
            proc = HostProcessor(engine, base.with_alpha(0.0 if mode == "off" else alpha), lambda _p: None,
                                 flow=flow, overlap=mode == "overlap")  # fmt: skip
            proc.submit(clip[0], 0.0)  # starts the history
            t0 = time.perf_counter()
            for x in clip[1:]:
                proc.submit(x, 0.0)
            runs[mode].append(1e3 * (time.perf_counter() - t0) / (len(clip) - 1))
            proc.close()
    shares = {m: round(statistics.median(1 - off / on for off, on in zip(runs["off"], runs[m], strict=True)), 4)
              for m in modes[1:]}  # fmt: skip
    return {k: {**_stats(v), "rounds": [round(x, 3) for x in v]} for k, v in runs.items()}, shares


def _body(args: argparse.Namespace) -> int:
    if not 0.0 < args.alpha <= 1.0:
        raise VstError(f"--alpha must be in (0, 1] (0 is no blend to time), got {args.alpha}")
    if args.frames < 3:
        raise VstError(f"--frames must be at least 3, got {args.frames}")
    if args.json:
        check_output_path(args.json)  # before minutes of work, not after
    rows = [measure(s, size, args.frames, args.alpha, args.backend, args.rounds, f, args.clamp)
            for s in args.styles for size in args.sizes for f in args.flows]  # fmt: skip
    for r in rows:
        log.info(
            "%-6s %-8s %s: engine %6.1f ms | blend %5.2f ms (p90 %5.2f; flow %4.2f, warp+mask+blend %4.2f) | share %4.1f %%",
            r["style"], r["size"], r["flow"], r["engine_ms"]["median"], r["blend_ms"]["median"], r["blend_ms"]["p90"],
            r["flow_ms"]["median"], r["warp_mask_blend_ms"]["median"], 100 * r["share"],
        )  # fmt: skip
        f, ps = r["processor_frame_ms"], r["processor_share"]
        log.info("%-6s %-8s %s: host processor frame ms (median round): blend off %.1f | sequential %.1f (share %.1f %%) | "
                 "overlap %.1f (share %.1f %%)", r["style"], r["size"], r["flow"], f["off"]["median"],
                 f["sequential"]["median"], 100 * ps["sequential"], f["overlap"]["median"], 100 * ps["overlap"])  # fmt: skip
    if args.json:
        write_output(args.json, json.dumps(rows, indent=1) + "\n")
    return 0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--styles", nargs="+", default=["candy", "monet"], help="styles to pair the blend with")
    p.add_argument("--sizes", nargs="+", type=parse_size, default=[(320, 180), (640, 360)])
    p.add_argument("--frames", type=int, default=100, help="frames of the sample clip (default 100)")
    p.add_argument("--alpha", type=float, default=1.0, help="blend strength (default 1)")
    p.add_argument("--backend", default="auto", help="engine backend (default auto: what vst-stream picks)")
    p.add_argument("--rounds", type=int, default=7, help="host-processor runs per mode, interleaved (default 7)")
    p.add_argument("--flows", nargs="+", default=["dis"], choices=FLOW_NAMES, help="the blend's flow estimators to compare")
    p.add_argument("--clamp", type=int_range(0, 8), default=BlendConfig.clamp,
                   help=f"the blend's history clamp radius (default {BlendConfig.clamp}, BlendConfig's)")
    p.add_argument("--json", type=Path, default=None, help="also write the rows as JSON")
    args = p.parse_args()
    setup_logging(0)
    run_main(lambda: _body(args))


if __name__ == "__main__":
    sys.exit(main())
