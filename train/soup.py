"""A weighted average of generators fine-tuned from the same weights (a "model soup").

    python -m vst.train.soup runs/v_n10/snapshots/step_0001500.safetensors=0.7 \
        runs/v_s25/snapshots/step_0001500.safetensors=0.3 --name vangogh --out runs/soup

Two runs continued from one style stay in one basin of the loss, so the weighted mean of their
generators is itself a working generator whose style strength and steadiness lie between theirs
(Wortsman et al. 2022; measured in docs/training.md, "Session 8"). One run trained for steadiness and
one for strength can so be traded off after training, without another run. Generators trained apart
(a monet and a vangogh from scratch) do not average into anything useful: the ingredients must name
the same `initialised_from` in their cards, or the soup is refused.

The sidecar's card lists the ingredients (file, weight, steps, training seconds, and each one's
config changes against the first), and takes the data and config of the first.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from vst.cli import float_range, run_main, setup_logging
from vst.errors import StyleError, VstError
from vst.styles import Style, load_generator, resolve_style, save_style

log = logging.getLogger("vst.train.soup")


def _flat(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, Mapping):
            out |= _flat(v, f"{prefix}{k}.")
        else:
            out[f"{prefix}{k}"] = v
    return out


def config_changes(base: Mapping[str, Any], other: Mapping[str, Any]) -> dict[str, Any]:
    """``section.key: value`` of ``other``'s config where it differs from ``base``'s."""
    a, b = _flat(base), _flat(other)
    unset = "(not set)"  # an older run's config may lack a newer option
    return {k: b.get(k, unset) for k in sorted(a.keys() | b.keys()) if a.get(k, unset) != b.get(k, unset)}


def average_states(states: Sequence[Mapping[str, torch.Tensor]], weights: Sequence[float]) -> dict[str, torch.Tensor]:
    """sum_i w_i * state_i in fp32, with the weights normalised to sum 1; every state has the same keys and shapes."""
    if not states or len(states) != len(weights):
        raise VstError("a soup needs one weight per ingredient, and at least one ingredient")
    if any(w <= 0 for w in weights):
        raise VstError(f"soup weights must be positive, got {list(weights)}")
    total = float(sum(weights))
    keys = set(states[0])
    out: dict[str, torch.Tensor] = {}
    for i, s in enumerate(states[1:], 1):
        if set(s) != keys:
            missing = sorted(keys ^ set(s))[:3]
            raise StyleError(f"ingredient {i + 1} has other tensors than the first ({', '.join(missing)} …): not the same network")
    for k in sorted(keys):
        shapes = {tuple(s[k].shape) for s in states}
        if len(shapes) != 1:
            raise StyleError(f"tensor {k} has different shapes across ingredients ({sorted(shapes)}): not the same network")
        out[k] = sum((w / total) * s[k].float() for s, w in zip(states, weights, strict=True))  # type: ignore[misc]
    return out


def _check_same_init(cards: Sequence[Mapping[str, Any]]) -> None:
    """The ingredients' cards must name one starting point: by its sha256 where every card records it
    (a bundled path's bytes change when the style is re-bundled), else by its path."""
    key = "initialised_from_sha256" if all(c.get("initialised_from_sha256") for c in cards) else "initialised_from"
    inits = {str(c.get(key)) for c in cards}
    if len(inits) != 1 or inits == {"None"}:
        raise StyleError(f"ingredients must be fine-tuned from the same weights (one {key!r} in their cards); "
                         f"these name {sorted(inits)}")  # fmt: skip


def training_seconds(styles: Sequence[Style], cards: Sequence[Mapping[str, Any]]) -> float | None:
    """The ingredients' training seconds, each run once: snapshots of one run (same provenance and
    config, in one run folder: RUN/snapshots/ or RUN/style/) are points on one trajectory, so that
    run cost what its latest snapshot records."""
    runs: dict[str, float] = {}
    for style, card in zip(styles, cards, strict=True):
        seconds = card.get("wall_time_s")
        if not isinstance(seconds, int | float):
            return None
        run_dir = str(Path(style.weights).resolve().parent.parent)
        key = json.dumps([run_dir, style.meta.get("provenance", ""), card.get("config")], sort_keys=True)
        runs[key] = max(runs.get(key, 0.0), float(seconds))
    return round(sum(runs.values()), 1)


def make_soup(items: Sequence[tuple[str | Path, float]], directory: Path, name: str, check_start: bool = True) -> Style:
    """Average the styles ``items`` (path or name, weight) into ``directory/name`` with a card that lists them.
    ``check_start=False`` skips the same-start check (cards that name one file by two paths)."""
    styles = [resolve_style(p) for p, _ in items]
    weights = [w for _, w in items]
    specs = {(s.spec.arch, repr(sorted(s.spec.kwargs.items()))) for s in styles}
    if len(specs) != 1:
        raise StyleError(f"ingredients have different architectures ({len(specs)} kinds): they cannot be averaged")
    cards = [s.meta.get("training") or {} for s in styles]
    if check_start:
        _check_same_init(cards)
    state = average_states([load_generator(s).state_dict() for s in styles], weights)  # checked as any style is
    total = sum(weights)
    base_config = cards[0].get("config") or {}
    ingredients = [
        {"weights": str(s.weights), "weight": round(w / total, 4), "provenance": s.meta.get("provenance", ""),
         "steps": c.get("steps"), "wall_time_s": c.get("wall_time_s"),
         "config_changes": config_changes(base_config, c.get("config") or {})}  # fmt: skip
        for s, c, w in zip(styles, cards, weights, strict=True)
    ]
    card = {
        "trainer": "weighted average of vst-train generators fine-tuned from the same weights (a model soup)",
        "ingredients": ingredients,
        "wall_time_s": training_seconds(styles, cards),
        "machine": "; ".join(dict.fromkeys(str(c["machine"]) for c in cards if c.get("machine"))) or None,
        "data": cards[0].get("data"),
        "config": base_config,
        "initialised_from": cards[0].get("initialised_from"),
        "initialised_from_sha256": cards[0].get("initialised_from_sha256"),
    }
    meta = {"provenance": f"weighted average of {len(styles)} vst-train generators", "training": card}
    out = save_style(directory, name, state, styles[0].spec, meta)
    log.info("soup of %d ingredients written to %s", len(styles), out.weights)
    return out


def _item(text: str) -> tuple[str, float]:
    path, sep, weight = text.rpartition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected STYLE=WEIGHT, got {text!r}")
    return path, float_range(0.0, 1e6, lo_open=True)(weight)


def body(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("items", nargs="+", type=_item, metavar="STYLE=WEIGHT", help="a style file or name and its weight (normalised to sum 1)")
    p.add_argument("--name", required=True, help="the new style's name")
    p.add_argument("--out", type=Path, required=True, help="directory for NAME.safetensors and NAME.json")
    p.add_argument("--same-start", action="store_true",
                   help="trust that the ingredients share their starting weights when their cards name it differently "
                        "(e.g. a bundled path and a copy of that file)")  # fmt: skip
    p.add_argument("-v", "--verbose", action="count", default=0)
    args = p.parse_args(argv)
    setup_logging(args.verbose)
    make_soup(args.items, args.out, args.name, check_start=not args.same_start)
    return 0


if __name__ == "__main__":
    run_main(body)
