#!/usr/bin/env python3
"""Bundle a trained style into vst/assets/styles with its model card.

    python benchmarks/style_strength.py --style runs/monet/style/monet.safetensors=../shared/data/paintings/monet/testA --json monet_scores.json
    python benchmarks/bundle_style.py runs/monet/style/monet.safetensors --name monet --scores monet_scores.json \
        --description "Monet (vst-trained, compact CPU real-time)" --grid docs/img/monet_grid.png

The card (the sidecar's ``training`` and ``measurements`` fields) holds facts: the data, the recipe
(the full training config), the compute (steps, training seconds, machine) and the held-out
measurements from benchmarks/style_strength.py with the command that gives them. Working notes
from the run (``note``, ``last_losses``) are left out.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import subprocess
from pathlib import Path

from vst.cli import run_main, setup_logging
from vst.errors import VstError
from vst.styles import resolve_style

log = logging.getLogger("vst.bench.bundle")

ASSETS = Path(__file__).resolve().parents[1] / "vst" / "assets" / "styles"
_CARD_FIELDS = ("trainer", "steps", "wall_time_s", "machine", "data", "config", "initialised_from", "initialised_from_sha256",
                "distilled_from", "ingredients")


def _pin_bundled(init: str) -> str:
    """A run initialised from a bundled style names that file's path, which bundling overwrites: add
    the commit that last changed it, so the card still says which weights it continued."""
    path = Path(init).resolve()
    if path.parent != ASSETS.resolve():
        return init
    try:
        commit = subprocess.run(["git", "log", "-1", "--format=%h", "--", str(path)], cwd=ASSETS, capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return init
    return f"{init} as of commit {commit}" if commit else init


def body() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("weights", type=Path, help="the run's exported style (.safetensors with its .json)")
    p.add_argument("--name", required=True)
    p.add_argument("--description", required=True, help="one line for `vst-styles list`")
    p.add_argument("--scores", type=Path, required=True, help="benchmarks/style_strength.py --json output for this style")
    p.add_argument("--scores-command", default="", help="the command that produced --scores (recorded on the card)")
    p.add_argument("--grid", default="", help="path of the sample grid in docs/ (recorded on the card)")
    p.add_argument("--provenance", default="", help="one sentence: how it was trained (default: from the run)")
    p.add_argument("--out", type=Path, default=ASSETS)
    args = p.parse_args()
    setup_logging(0)
    style = resolve_style(args.weights)
    run_card = style.meta.get("training") or {}
    if not run_card:
        raise VstError(f"{args.weights} has no training card: bundle a style exported by vst-train")
    scores = json.loads(args.scores.read_text())
    card = {k: run_card[k] for k in _CARD_FIELDS if run_card.get(k) is not None}
    if init := card.get("initialised_from"):
        card["initialised_from"] = _pin_bundled(str(init))
    card["training_seconds"] = card.pop("wall_time_s", None)
    measurements = {
        "what": "per-frame output (no blend) at 320x180, torch fp32: SWD ratio = Laplacian-pyramid patch sliced "
                "Wasserstein distance to the paintings over that of the input (1 = no move towards them; levels "
                "256->16 px); E ratio = E(V) over the input video's own E(V); pan floor = the E ratio of a perfectly "
                "steady output with this texture on a synthetic sub-pixel pan, pan excess = the style's E ratio there over "
                "that floor (1 = no flicker beyond what the metric charges the texture); periodic-artefact index = peaks "
                "at periods 2 and 4 px, output over input",  # fmt: skip
        "command": args.scores_command,
        "held_out_clips": {
            r["clip"]: {"paintings": r["paintings"], "size": r["size"], "swd_ratio": round(r["swd_ratio"], 3),
                        "swd_level_ratios": [round(x, 3) for x in r["swd_level_ratios"]], "e_ratio": round(r["e_ratio"], 3),
                        **{k: round(r[k], 3) for k in ("pan_floor", "pan_excess") if k in r},
                        "periodic_artefact_index": round(r["periodic_artefact_index"], 3)}  # fmt: skip
            for r in scores
        },
    }
    meta = {k: v for k, v in style.meta.items() if k not in ("training", "name")}
    meta |= {
        "name": args.name,
        "description": args.description,
        "provenance": args.provenance or "trained from scratch by vst-train; model card below; see docs/training.md",
        "license": "weights trained by vst on public-domain paintings; see vst/assets/ATTRIBUTION.md",
        "training": card,
        "measurements": measurements,
    }
    if args.grid:
        meta["sample_grid"] = args.grid
    args.out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(style.weights, args.out / f"{args.name}.safetensors")
    (args.out / f"{args.name}.json").write_text(json.dumps(meta, indent=2) + "\n")
    log.info("bundled %s as %s", args.weights, args.out / f"{args.name}.safetensors")
    return 0


if __name__ == "__main__":
    run_main(body)
