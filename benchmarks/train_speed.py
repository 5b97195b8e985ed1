#!/usr/bin/env python3
"""Training step time on this CPU: bf16 autocast and channels-last memory format, each against fp32 NCHW.

    python benchmarks/train_speed.py --config fast_cpu --steps 10 --rounds 3 --json out.json

One trainer per variant is built from the same config and seed on the same loaded data, so every
variant takes the same batches. Variants are timed in alternating rounds of ``--steps`` steps (after
``--warmup`` steps each), and the report gives each variant's median seconds per step and its ratio
to the first variant within this one run; machines drift, so compare ratios, not times across runs.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import statistics
import time
from pathlib import Path

import torch

from vst.cli import check_output_path, int_range, run_main, setup_logging, write_output
from vst.errors import VstError
from vst.train.config import load_config
from vst.train.trainer import CycleGANTrainer

log = logging.getLogger("vst.bench.train_speed")

VARIANTS = {
    "fp32 NCHW": ["run.amp='off'", "run.channels_last=false"],
    "bf16 autocast": ["run.amp='bf16'", "run.channels_last=false"],
    "channels-last": ["run.amp='off'", "run.channels_last=true"],
    "bf16 + channels-last": ["run.amp='bf16'", "run.channels_last=true"],
}


def body() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="fast_cpu", help="training config (file or bundled name; default fast_cpu)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--steps", type=int_range(1, 10_000), default=10, help="timed steps per variant per round")
    p.add_argument("--warmup", type=int_range(0, 1000), default=3)
    p.add_argument("--rounds", type=int_range(1, 100), default=3)
    p.add_argument("--threads", type=int_range(0, 256), default=None, help="torch threads (default: the config's)")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("-v", "--verbose", action="count", default=0)
    args = p.parse_args()
    setup_logging(args.verbose)
    if args.json:
        check_output_path(args.json)
    base = list(args.overrides) + ([f"run.threads={args.threads}"] if args.threads is not None else [])
    trainers: dict[str, CycleGANTrainer] = {}
    for name in args.variants:
        cfg = load_config(args.config, base + VARIANTS[name])
        shared = next(iter(trainers.values()), None)  # the first trainer loads the data, the others share it
        trainers[name] = CycleGANTrainer(cfg, Path("/nonexistent/train_speed"), shared and shared.a, shared and shared.b)  # never writes
    times: dict[str, list[float]] = {n: [] for n in trainers}
    losses: dict[str, dict[str, float]] = {}
    for r in range(args.rounds):
        for name, t in trainers.items():
            for _ in range(args.warmup if r == 0 else 0):
                t.train_step(*t.sample_batch())
            start = time.perf_counter()
            for _ in range(args.steps):
                losses[name] = t.train_step(*t.sample_batch())
            times[name].append((time.perf_counter() - start) / args.steps)
        log.info("round %d: %s", r + 1, ", ".join(f"{n} {v[-1]:.3f} s" for n, v in times.items()))
    for name, loss in losses.items():
        if not all(math.isfinite(v) for v in loss.values()):
            raise VstError(f"{name}: a loss is not finite ({loss})")
    first = next(iter(times))
    ref = statistics.median(times[first])
    rows = [{"variant": n, "s_per_step": statistics.median(v), "rounds": v, "ratio_to_first": statistics.median(v) / ref} for n, v in times.items()]
    print(f"config {args.config}, {torch.get_num_threads()} torch thread(s), {args.steps} steps x {args.rounds} rounds, medians:")
    print("| variant | s/step | vs " + first + " |\n|---|---|---|")
    for row in rows:
        print(f"| {row['variant']} | {row['s_per_step']:.3f} | {row['ratio_to_first']:.2f}x |")
    if args.json:
        write_output(args.json, json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    run_main(body)
