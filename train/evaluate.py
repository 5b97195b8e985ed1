"""Evaluate trained styles on held-out clips: E(V) (vst.metrics) and input | output PNG grids.

    python -m vst.train.evaluate --style runs/monet/style/monet.safetensors \\
        --style runs/monet_notemp/snapshots/step_0000250.safetensors \\
        --clip ../shared/data/videos/carphone_pristine.mp4 --size 176x144 --json ev.json --grid grid.png

E(V) uses Farnebäck flow on the *input* frames (a different estimator from the DIS flows training
used, so the metric does not reward fitting one estimator's errors).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from vst.cli import parse_size, run_main, setup_logging
from vst.imaging import pad_to_multiple, to_frame, to_tensor
from vst.metrics import laplacian_variance, temporal_error, video_geometry
from vst.styles import load_generator, resolve_style

from .data import list_images, read_rgb, read_video, resize
from .losses import edge_colours, paste_edges, ringing_loss, step_edges
from .trainer import grid_image, write_png

log = logging.getLogger("vst.train.evaluate")


def load_clip(path: Path, size: tuple[int, int], max_frames: int = 0) -> list[np.ndarray]:
    """A video file or frame folder as RGB uint8 frames resized to ``size`` (w, h)."""
    raw = [read_rgb(p) for p in list_images(path)[: max_frames or None]] if path.is_dir() else read_video(path, max_frames)
    return [resize(f, *size) for f in raw]


@torch.no_grad()
def stylize(net: nn.Module, frames: list[np.ndarray]) -> list[np.ndarray]:
    """Per-frame generator outputs, (H, W, 3) uint8."""
    out = []
    for f in frames:
        x, (h, w) = pad_to_multiple(to_tensor(f))  # any size, as the engines do
        out.append(to_frame(net(x)[..., :h, :w]))
    return out


@torch.no_grad()
def edge_ringing(net: nn.Module, frames: list[np.ndarray], count: int = 32, seed: int = 0) -> float:
    """How far ``net`` swings beside a clean edge, in levels of 255: ``losses.ringing_loss`` on
    ``count`` synthetic edges coloured from ``frames`` (darkest / brightest of random pixels) and
    pasted into them (alone, a net trained against ringing can behave on them and still ring on
    real frames). Outlines, halos and contour ringing raise it; colour maps score 0."""
    gen = torch.Generator().manual_seed(seed)
    total = 0.0
    for i in torch.randint(0, len(frames), (count,), generator=gen).tolist():
        x = to_tensor(frames[i])
        edges, dist = step_edges(edge_colours(x, gen), gen)
        pasted, dist, valid = paste_edges(x, edges, dist, gen)
        total += float(ringing_loss(net(pasted), dist, valid))
    return total / count * 127.5


def evaluate(style_paths: list[str], clip: Path, size: tuple[int, int], max_frames: int = 0) -> dict[str, Any]:
    """E(V) / E_warp of each style's per-frame output on ``clip``, with the input's own as reference."""
    frames = load_clip(clip, size, max_frames)
    geometry = video_geometry(frames)
    ref = temporal_error(frames, geometry)
    result: dict[str, Any] = {
        "clip": clip.name, "size": f"{size[0]}x{size[1]}", "frames": len(frames), "flow": "farneback",
        "input": {"e_v": ref.e_v, "e_warp": ref.e_warp, "valid": ref.valid}, "styles": {},
    }  # fmt: skip
    outputs: dict[str, list[np.ndarray]] = {}
    for path in style_paths:
        style = resolve_style(path)
        net = load_generator(style)
        outs = stylize(net, frames)
        te = temporal_error(outs, geometry)
        sharp = float(np.mean([laplacian_variance(o) for o in outs]))
        result["styles"][path] = {"e_v": te.e_v, "e_warp": te.e_warp, "laplacian_var": sharp, "steps": style.meta.get("training", {}).get("steps")}
        outputs[path] = outs
        log.info("%s on %s: E(V)=%.6f E_warp=%.5f (input %.6f)", path, clip.name, te.e_v, te.e_warp, ref.e_v)
    result["_frames"], result["_outputs"] = frames, outputs
    return result


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m vst.train.evaluate", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--style", action="append", required=True, help="style name or file (repeatable)")
    p.add_argument("--clip", action="append", required=True, type=Path, help="held-out video or frame folder (repeatable)")
    p.add_argument("--size", action="append", type=parse_size, help="WxH per clip (multiples of 4)")
    p.add_argument("--frames", type=int, default=0, help="frames per clip (0 = all)")
    p.add_argument("--json", type=Path, help="write the numbers here")
    p.add_argument("--grid", type=Path, help="PNG: per clip, rows of input | each style's output")
    p.add_argument("--grid-rows", type=int, default=2, help="frames per clip in the grid")
    args = p.parse_args(argv)
    setup_logging(0)
    run_main(lambda: _run(args))


def _run(args: argparse.Namespace) -> int:
    sizes = args.size or [(176, 144)] * len(args.clip)
    if len(sizes) != len(args.clip):
        raise SystemExit("error: give one --size per --clip")
    results, rows = [], []
    for clip, size in zip(args.clip, sizes, strict=True):
        r = evaluate(args.style, clip, size, args.frames)
        frames, outputs = r.pop("_frames"), r.pop("_outputs")
        results.append(r)
        for i in np.linspace(0, len(frames) - 1, args.grid_rows).round().astype(int):
            cells = [frames[i]] + [outputs[s][i] for s in args.style]
            rows.append([torch.from_numpy(c).permute(2, 0, 1).float().div(127.5).sub(1) for c in cells])
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    if args.grid:
        write_png(args.grid, grid_image(rows))
    for r in results:
        line = ", ".join(f"{Path(k).stem}: E(V)={v['e_v']:.6f}" for k, v in r["styles"].items())
        log.info("%s (%s, %d frames): input E(V)=%.6f; %s", r["clip"], r["size"], r["frames"], r["input"]["e_v"], line)
    return 0


if __name__ == "__main__":
    main()
