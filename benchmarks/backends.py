#!/usr/bin/env python3
"""CPU backends compared in one run: OpenVINO fp32/bf16 against onnxruntime, quality and speed.

    python benchmarks/backends.py                                     # monet + candy, 3 sizes, 20 runs
    python benchmarks/backends.py --styles monet --sizes 640x360 --runs 30 --json backends.json

Quality: ``--frames`` frames spread over ``--video`` (default bikes.mp4 from ../shared/data), at
the clip's own size fitted into ``--quality-size``. Each backend's uint8 output is compared with
the fp32 reference: eager torch (torch-cpu fp32) for our torch styles, onnxruntime fp32 for
imported ONNX styles, which have no torch implementation. Reported: mean |Δ| and max |Δ| in 0-255
levels over all pixels of all frames, the share of values off by more than 8 levels, and PSNR
from the pooled MSE.

Speed: inference only (``engine.infer`` on a preprocessed (1, 3, H, W) tensor, pre/post-processing
excluded, the same tensor for every backend), at each size. Backends run alternately, one call
each per round, so load from other processes falls on all of them alike; the table gives the
median of ``--runs`` rounds and ratios of medians. The first call per backend and size is
reported apart: for OpenVINO it includes compiling that shape, i.e. what a new frame size costs
a running stream.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from vst.cli import check_output_path, parse_size, run_main, setup_logging, write_output
from vst.errors import VstError

log = logging.getLogger("vst.bench.backends")

DEFAULT_VIDEO = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "videos" / "bikes.mp4"


def read_frames(path: Path, count: int, fit: tuple[int, int]) -> list[np.ndarray]:
    """``count`` RGB frames spread evenly over the clip, fitted inside ``fit`` (W, H) with aspect kept."""
    import av

    from vst.imaging import fit_size

    with av.open(str(path)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    if not frames:
        raise VstError(f"no frames in {path}")
    picks = [frames[i] for i in np.linspace(0, len(frames) - 1, min(count, len(frames))).round().astype(int)]
    h, w = picks[0].shape[:2]
    fw, fh = fit_size(w, h, fit)
    return [cv2.resize(f, (fw, fh), interpolation=cv2.INTER_AREA) if (fw, fh) != (w, h) else f for f in picks]


def _engines(style: Any, with_bf16: bool) -> dict[str, Any]:
    from vst.stream.engine import make_engine

    engines = {"onnxruntime": make_engine(style, "onnxruntime"), "openvino-fp32": make_engine(style, "openvino", "fp32")}
    if with_bf16:
        engines["openvino-bf16"] = make_engine(style, "openvino", "bf16")
    return engines


def quality(style: Any, engines: dict[str, Any], frames: list[np.ndarray]) -> dict[str, Any]:
    """|Δ| and PSNR of each engine against the style's fp32 reference, pooled over ``frames``."""
    from vst.stream.engine import make_engine

    if style.kind == "torch":
        ref_name, ref_engine = "torch-cpu fp32", make_engine(style, "torch-cpu", "fp32")
    else:
        ref_name, ref_engine = "onnxruntime fp32", engines["onnxruntime"]
    refs = [ref_engine(f).astype(np.int16) for f in frames]
    out: dict[str, Any] = {"reference": ref_name, "frames": len(frames), "size": f"{frames[0].shape[1]}x{frames[0].shape[0]}"}
    for name, engine in engines.items():
        if engine is ref_engine:
            continue
        diffs = np.concatenate([np.abs(engine(f).astype(np.int16) - r).ravel() for f, r in zip(frames, refs, strict=True)])
        mse = float(np.mean(diffs.astype(np.float64) ** 2))
        out[name] = {
            "mean": round(float(diffs.mean()), 4),
            "max": int(diffs.max()),
            "over8_pct": round(100 * float((diffs > 8).mean()), 4),
            "psnr_db": round(10 * np.log10(255**2 / mse), 2) if mse > 0 else float("inf"),
        }
    return out


def speed(engines: dict[str, Any], frame: np.ndarray, size: tuple[int, int], runs: int) -> dict[str, Any]:
    """Median inference ms per engine at ``size`` (W, H), engines alternating within each round."""
    w, h = size
    img = cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA)
    inputs = {}
    for name, engine in engines.items():
        x = np.ascontiguousarray(img.transpose(2, 0, 1)[None], dtype=np.float32)
        inputs[name] = (x / 127.5 - 1.0) if engine.value_range < 0 else x * (engine.value_range / 255.0)
    first, times, frame_times = {}, {name: [] for name in engines}, {name: [] for name in engines}
    for name, engine in engines.items():
        t0 = time.perf_counter()
        engine.infer(inputs[name])  # a new shape: OpenVINO compiles it here
        first[name] = (time.perf_counter() - t0) * 1e3
    for _ in range(runs):
        for name, engine in engines.items():
            t0 = time.perf_counter()
            engine.infer(inputs[name])
            t1 = time.perf_counter()
            engine(img)  # the whole frame call serving times: conversion, padding, infer, back to uint8
            times[name].append((t1 - t0) * 1e3)
            frame_times[name].append((time.perf_counter() - t1) * 1e3)
    med = {name: statistics.median(ts) for name, ts in times.items()}
    med_frame = {name: statistics.median(ts) for name, ts in frame_times.items()}
    row: dict[str, Any] = {"size": f"{w}x{h}", "median_ms": {k: round(v, 1) for k, v in med.items()},
                           "frame_median_ms": {k: round(v, 1) for k, v in med_frame.items()},
                           "first_ms": {k: round(v, 1) for k, v in first.items()}}  # fmt: skip
    row["speedup_vs_ort"] = {k: round(med["onnxruntime"] / v, 2) for k, v in med.items() if k != "onnxruntime"}
    row["frame_speedup_vs_ort"] = {k: round(med_frame["onnxruntime"] / v, 2) for k, v in med_frame.items() if k != "onnxruntime"}
    row["compile_ms"] = {k: round(e.compile_s[(h, w)] * 1e3, 1) for k, e in engines.items() if hasattr(e, "compile_s")}
    return row


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="OpenVINO fp32/bf16 against onnxruntime: quality and inference ms, in one run")
    p.add_argument("--styles", nargs="+", default=["monet", "candy"])
    p.add_argument("--sizes", nargs="+", type=parse_size, default=[(320, 180), (640, 360), (1280, 720)], metavar="WxH")
    p.add_argument("--runs", type=int, default=20, help="timed rounds per size (median reported)")
    p.add_argument("--video", type=Path, default=DEFAULT_VIDEO, help="real clip for the quality frames (default bikes.mp4)")
    p.add_argument("--frames", type=int, default=10, help="quality frames, spread over the clip")
    p.add_argument("--quality-size", type=parse_size, default=(640, 360), metavar="WxH")
    p.add_argument("--json", type=Path)
    p.add_argument("-v", "--verbose", action="count", default=0)
    args = p.parse_args(argv)
    setup_logging(args.verbose - 1)

    def body() -> int:
        from importlib.metadata import version

        from vst.hardware import cpu_has_bf16, cpu_model, env_threads
        from vst.styles import resolve_style

        if args.json:
            check_output_path(args.json)
        if not args.video.is_file():
            raise VstError(f"no clip at {args.video}: pass --video")
        if args.runs < 1 or args.frames < 1:
            raise VstError("--runs and --frames must be >= 1")
        bf16 = cpu_has_bf16()
        meta = {"cpu": cpu_model(), "cpu_count": os.cpu_count(), "bf16": bf16, "threads": env_threads() or os.cpu_count(),
                "openvino": version("openvino"), "onnxruntime": version("onnxruntime"), "torch": version("torch"),
                "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "load_avg_start": os.getloadavg(), "argv": sys.argv[1:]}  # fmt: skip
        print(f"# {meta['cpu']}, {meta['cpu_count']} CPUs, bf16 {bf16}, {meta['threads']} threads, "  # noqa: T201
              f"openvino {meta['openvino']}, onnxruntime {meta['onnxruntime']}, load {meta['load_avg_start'][0]:.1f}")
        frames = read_frames(args.video, args.frames, args.quality_size)
        results: dict[str, Any] = {"meta": meta, "styles": {}}
        for name in args.styles:
            style = resolve_style(name)
            engines = _engines(style, bf16)
            q = quality(style, engines, frames)
            print(f"\n## {name}: quality vs {q['reference']}, {q['frames']} frames of {args.video.name} at {q['size']}")  # noqa: T201
            print("| backend | mean abs diff | max abs diff | > 8 levels | PSNR dB |\n|---|---|---|---|---|")  # noqa: T201
            for k, v in q.items():
                if isinstance(v, dict):
                    print(f"| {k} | {v['mean']:.3f} | {v['max']} | {v['over8_pct']:.3f} % | {v['psnr_db']:.1f} |")  # noqa: T201
            rows = []
            print(f"\n## {name}: ms, median of {args.runs} alternating rounds: infer / whole frame call "  # noqa: T201
                  "(first call at the size, incl. OpenVINO's compile)")
            cols = list(engines)
            print("| size | " + " | ".join(cols) + " | " + " | ".join(f"ort / {c}" for c in cols[1:]) + " |")  # noqa: T201
            print("|---" * (1 + 2 * len(cols) - 1) + "|")  # noqa: T201
            for size in args.sizes:
                r = speed(engines, frames[0], size, args.runs)
                rows.append(r)
                cells = " | ".join(f"{r['median_ms'][c]:.1f} / {r['frame_median_ms'][c]:.1f} ({r['first_ms'][c]:.0f})" for c in cols)
                ratios = " | ".join(f"{r['speedup_vs_ort'][c]:.2f}x / {r['frame_speedup_vs_ort'][c]:.2f}x" for c in cols[1:])
                print(f"| {r['size']} | {cells} | {ratios} |", flush=True)  # noqa: T201
            results["styles"][name] = {"quality": q, "speed": rows}
        meta["load_avg_end"] = os.getloadavg()
        print(f"\n# load average at the end: {meta['load_avg_end'][0]:.1f}")  # noqa: T201
        if args.json:
            write_output(args.json, json.dumps(results, indent=2) + "\n")
        return 0

    run_main(body)


if __name__ == "__main__":
    main()
