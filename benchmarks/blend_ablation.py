#!/usr/bin/env python3
"""Why the temporal blend is built the way it is: each design choice switched off or changed, one
at a time, scored with vst-eval's metric on the real clips in ../shared/data.

    python benchmarks/blend_ablation.py                              # every variant, every clip (~3 min, 2 cores)
    python benchmarks/blend_ablation.py --variants default "bilinear history warp" --clips carphone --json ablation.json

Per clip the style (candy by default: it flickers most) runs once; the metric's geometry
(Farnebäck flow and its forward-backward occlusion mask) is computed once; then each variant's
``BlendStage`` runs over the same outputs. Cells: E(V) cut / sharpness retained / mean |Δ|.
The issue's targets: cut >= 75 %, sharpness >= 0.90, |Δ| <= 0.05.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from vst.cli import check_output_path, parse_size, run_main, setup_logging, write_output
from vst.errors import VstError
from vst.flow import DISFlow, make_flow
from vst.stream.blend import BlendStage

log = logging.getLogger("vst.bench.ablation")

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CLIPS = {  # name: (path under ../shared/data, frames)
    "bikes60": ("videos/bikes.mp4", 60),
    "bikes": ("videos/bikes.mp4", 250),
    "bbb": ("videos/bigbuckbunny.mp4", 60),
    "carphone": ("videos/carphone_pristine.mp4", 120),
    "corridor": ("frames/corridor_neuflow", 10),
    "market": ("frames/sintel_market", 10),
}
VARIANTS: dict[str, dict[str, Any]] = {  # name: BlendStage options (flow_scale / flow_pixels: the flow's working size)
    "default": {"alpha": 1.0},
    "history clamp 5x5": {"alpha": 1.0, "clamp": 2},
    "history clamp 3x3": {"alpha": 1.0, "clamp": 1},
    "α 0.5": {"alpha": 0.5},
    "full band, α 0.7": {"alpha": 0.7, "mode": "full"},
    "bilinear history warp": {"alpha": 1.0, "kernel": "linear"},
    "σ 1.5 (narrower blended band)": {"alpha": 1.0, "sigma": 1.5},
    "σ 0.7 (wider blended band)": {"alpha": 1.0, "sigma": 0.7},
    "mask threshold 12": {"alpha": 1.0, "mask_threshold": 12.0},
    "mask threshold 20": {"alpha": 1.0, "mask_threshold": 20.0},
    "flow: OpenCV fast preset @ 0.5": {"alpha": 1.0, "flow": "dis-fast"},
    "flow: DIS medium, full res": {"alpha": 1.0, "flow": "dis-medium", "flow_scale": 1.0},
    "flow: the metric's own Farnebäck (ceiling, not fair)": {"alpha": 1.0, "flow": "farneback"},
    "flow at most 160x90 px": {"alpha": 1.0, "flow_pixels": 160 * 90},
    "DIS 3 descent iterations": {"alpha": 1.0, "dis": {"GradientDescentIterations": 3}},
    "DIS without spatial propagation": {"alpha": 1.0, "dis": {"UseSpatialPropagation": False}},
    "DIS patch stride 5": {"alpha": 1.0, "dis": {"PatchStride": 5}},
    "DIS warm start": {"alpha": 1.0, "dis": {}, "warm": True},
    "DIS warm start, stride 5": {"alpha": 1.0, "dis": {"PatchStride": 5}, "warm": True},
    "DIS warm start, 3 iterations": {"alpha": 1.0, "dis": {"GradientDescentIterations": 3}, "warm": True},
    "DIS warm start, 2 iterations": {"alpha": 1.0, "dis": {"GradientDescentIterations": 2}, "warm": True},
    "flow at most 320x180 px": {"alpha": 1.0, "flow_pixels": 320 * 180},
    "budget 6": {"alpha": 1.0, "budget": 6.0},
    "budget 18 (over the |Δ| target)": {"alpha": 1.0, "budget": 18.0},
    "fixed b 7, no budget": {"alpha": 1.0, "budget": None, "shrink": 7.0},
}


def _stage(options: dict[str, Any]) -> BlendStage:
    opts = dict(options)
    alpha, scale, pixels = opts.pop("alpha"), opts.pop("flow_scale", None), opts.pop("flow_pixels", None)
    if "dis" in opts:  # the runtime's DIS with some settings changed
        opts["flow"] = DISFlow("realtime", 0.5 if scale is None else scale, pixels, opts.pop("dis"), opts.pop("warm", False))
    else:
        opts["flow"] = make_flow(opts.get("flow", "dis"), scale, pixels)
    return BlendStage(alpha, **opts)


def run(clips: list[str], variants: list[str], style: str, size: tuple[int, int], backend: str) -> list[dict[str, Any]]:
    from vst.metrics import temporal_error, video_geometry
    from vst.stream.engine import make_engine
    from vst.stream.eval_cli import load_frames, score_blend
    from vst.styles import resolve_style

    engine = make_engine(resolve_style(style), backend)
    rows = []
    for clip in clips:
        rel, count = CLIPS[clip]
        if not (DATA / rel).exists():
            raise VstError(f"{DATA / rel} is missing: this benchmark needs ../shared/data beside the checkout")
        frames = load_frames(str(DATA / rel), size, count)
        stylized = [engine(f) for f in frames]
        geometry = video_geometry(frames, make_flow("farneback"))
        base = temporal_error(stylized, geometry).e_v
        input_e_v = temporal_error(frames, geometry).e_v  # the E ratio's reference: the input video's own E(V)
        h, w = frames[0].shape[:2]
        for name in variants:
            result, _ = score_blend(frames, stylized, geometry, base, _stage(VARIANTS[name]), input_e_v=input_e_v)
            rows.append({"clip": clip, "frames": len(frames), "size": f"{w}x{h}", "variant": name, "input_e_v": input_e_v,
                         "per_frame_e_v": base, "per_frame_e_ratio": base / input_e_v, **asdict(result)})  # fmt: skip
            log.info("%-9s %-34s cut %3.0f %%  E ratio %.2f -> %.2f  sharpness %.2f  |Δ| %.3f  %.1f ms", clip, name,
                     100 * result.e_v_reduction, base / input_e_v, result.e_ratio, result.sharpness, result.mean_abs_delta,
                     result.blend_ms)  # fmt: skip
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    """Markdown: one row per variant, one column per clip."""
    clips = list(dict.fromkeys(r["clip"] for r in rows))
    lines = ["| variant | " + " | ".join(clips) + " |", "|---" * (len(clips) + 1) + "|"]
    for name in dict.fromkeys(r["variant"] for r in rows):
        cells = {r["clip"]: f"{100 * r['e_v_reduction']:.0f} / {r['sharpness']:.2f} / {r['mean_abs_delta']:.3f}"
                 for r in rows if r["variant"] == name}  # fmt: skip
        label = name.replace("|", "\\|")  # a pipe in a name would split the Markdown cell
        lines.append(f"| {label} | " + " | ".join(cells.get(c, "") for c in clips) + " |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clips", nargs="+", default=list(CLIPS), choices=list(CLIPS))
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS), metavar="NAME")
    p.add_argument("--style", default="candy")
    p.add_argument("--size", type=parse_size, default=(320, 180))
    p.add_argument("--backend", default="onnxruntime")
    p.add_argument("--json", type=Path, default=None, help="also write the rows as JSON")
    args = p.parse_args()
    setup_logging(0)

    def body() -> int:
        if args.json:
            check_output_path(args.json)  # before minutes of work, not after
        rows = run(args.clips, args.variants, args.style, args.size, args.backend)
        sys.stdout.write(table(rows) + "\n")
        if args.json:
            write_output(args.json, json.dumps(rows, indent=1) + "\n")
        return 0

    run_main(body)


if __name__ == "__main__":
    main()
