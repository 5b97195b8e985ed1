#!/usr/bin/env python3
"""How much each style looks like its painter, and how steady it is per frame, on held-out clips.

    python benchmarks/style_strength.py --style monet=../shared/data/paintings/monet/testA \
        --style runs/abl_fast/style/monet.safetensors=../shared/data/paintings/monet/testA --json out.json

For every STYLE=PAINTINGS pair and every clip (by default the clips the training configs hold out:
carphone_pristine.mp4 and frames/sintel_market), the generator runs per frame (no blend) at
``--size`` with torch on the CPU, and the report gives:
- the SWD ratio (Laplacian-pyramid patch sliced Wasserstein distance to the paintings over that of
  the unstylized input; 1 = no move towards them) and its per-level ratios, finest first;
- the E ratio: per-frame E(V) over the input video's own E(V) (Farnebäck flow and mask);
- the periodic-artefact index (checkerboard peaks at periods 2 and 4 px, output over input);
- the pan floor and excess: on a synthetic sub-pixel pan of three of the clip's frames, the E ratio
  that a perfectly consistent output with this style's texture scores (resampling loses fine detail,
  so E(V) is not 0 for it), and the generator's E ratio over that floor (1 = no flicker beyond what
  the metric charges any texture; ``vst.metrics.pan_consistency``);
- the edge ringing: how far the output swings beside clean synthetic edges in the clip's colours, pasted into its frames,
  in levels of 255 (outlines, halos and contour ringing; ``vst.train.evaluate.edge_ringing``).
The painting set's descriptors are computed once per folder.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from vst.cli import check_output_path, parse_size, run_main, setup_logging, write_output
from vst.errors import VstError
from vst.metrics import PaintingSet, load_paintings, pan_consistency, pan_sources, style_strength, temporal_error, video_geometry
from vst.stream.eval_cli import load_frames
from vst.styles import load_generator, resolve_style
from vst.train.evaluate import edge_ringing, stylize

log = logging.getLogger("vst.bench.style")

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CLIPS = {"carphone": ("videos/carphone_pristine.mp4", 60), "market": ("frames/sintel_market", 10)}


def main_body() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--style", action="append", required=True, metavar="STYLE=PAINTINGS",
                   help="a style name or .safetensors path, '=' the painting folder it is scored against (repeatable)")  # fmt: skip
    p.add_argument("--clips", nargs="+", default=None, choices=list(CLIPS), help="clips under ../shared/data (default: all)")
    p.add_argument("--clip", action="append", default=[], metavar="NAME=PATH", help="another clip: a video or frame folder (repeatable)")
    p.add_argument("--size", type=parse_size, default=(320, 180))
    p.add_argument("--frames", type=int, default=60, help="at most this many frames per clip (default 60)")
    p.add_argument("--painting-limit", type=int, default=512, help="paintings sampled per folder (default 512)")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    p.add_argument("-v", "--verbose", action="count", default=0)
    args = p.parse_args()
    setup_logging(args.verbose)
    if args.json:
        check_output_path(args.json)
    pairs = []
    for item in args.style:
        if "=" not in item:
            raise VstError(f"--style {item!r}: expected STYLE=PAINTINGS_FOLDER")
        pairs.append(tuple(item.rsplit("=", 1)))
    wanted = {n: (str(DATA / rel), count) for n, (rel, count) in CLIPS.items() if n in (args.clips or ([] if args.clip else CLIPS))}
    for item in args.clip:
        name, _, path = item.partition("=")
        wanted[name] = (path, args.frames)
    clips = {}
    for name, (path, count) in wanted.items():
        if not Path(path).exists():
            raise VstError(f"clip {path} not found")
        frames = load_frames(path, args.size, min(count, args.frames))
        clips[name] = (frames, video_geometry(frames))
    sets: dict[str, PaintingSet] = {}
    results = []
    for style_ref, folder in pairs:
        if folder not in sets:
            sets[folder] = PaintingSet(load_paintings(folder, args.painting_limit))
        style = resolve_style(style_ref)
        net = load_generator(style)
        for clip, (frames, geometry) in clips.items():
            out = stylize(net, frames)
            e_out, e_in = temporal_error(out, geometry).e_v, temporal_error(frames, geometry).e_v
            pan = pan_consistency(lambda f: stylize(net, f), pan_sources(frames))
            row = {"style": style_ref, "paintings": folder, "clip": clip, "size": f"{frames[0].shape[1]}x{frames[0].shape[0]}",
                   "e_ratio": e_out / e_in, "e_v": e_out, "input_e_v": e_in, "pan_floor": pan.floor, "pan_excess": pan.excess, "edge_ringing": edge_ringing(net, frames),
                   **style_strength(sets[folder], out, frames)}  # fmt: skip
            results.append(row)
            log.info("%s on %s: SWD ratio %.3f, E ratio %.2f (pan floor %.2f, excess %.2f)", style_ref, clip,
                     row["swd_ratio"], row["e_ratio"], pan.floor, pan.excess)
    lines = ["| style | paintings | clip | SWD ratio | per level (256→16 px) | E ratio | pan floor | pan excess | artefact index | edge ringing |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        levels = " ".join(f"{x:.2f}" for x in r["swd_level_ratios"])
        lines.append(f"| {r['style']} | {Path(r['paintings']).parent.name}/{Path(r['paintings']).name} | {r['clip']} | "
                     f"{r['swd_ratio']:.3f} | {levels} | {r['e_ratio']:.2f} | {r['pan_floor']:.2f} | {r['pan_excess']:.2f} | "
                     f"{r['periodic_artefact_index']:.2f} | {r['edge_ringing']:.1f} |")  # fmt: skip
    sys.stdout.write("\n".join(lines) + "\n")
    if args.json:
        write_output(args.json, json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    run_main(main_body)
