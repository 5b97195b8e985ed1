"""``vst-styles list | info NAME | import PATH --name N [--force] | pull NAME|URL [--name N] [--sha256 HEX] [--force]``.

Listing and ``info`` read only the JSON sidecars: they answer in well under a second (no torch).
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import tempfile
import textwrap
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from vst.cli import ArgumentParser, run_main, setup_logging
from vst.styles import DEFAULT_STYLE, Style, list_styles, resolve_style, user_dir

log = logging.getLogger("vst.styles")

LIST_DESCRIPTION_LINES = 2


def _out(text: str = "") -> None:
    sys.stdout.write(text + "\n")


def _width() -> int:
    return max(60, min(120, shutil.get_terminal_size((100, 24)).columns))


def wrap_words(text: str, width: int, max_lines: int | None = None) -> list[str]:
    """``text`` in lines of at most ``width`` characters, broken only between words.

    With ``max_lines``, what does not fit ends in ' …' after the last whole word that does; a
    single word longer than ``width`` keeps its own line whole (a URL or path stays copyable).
    """
    lines = textwrap.wrap(" ".join(str(text).split()), width, break_long_words=False, break_on_hyphens=False)
    if max_lines is None or len(lines) <= max_lines:
        return lines
    kept = lines[:max_lines]
    words = kept[-1].split(" ")
    while len(words) > 1 and len(" ".join(words)) + 2 > width:
        words.pop()
    kept[-1] = " ".join(words) + " …"
    return kept


def cmd_list(args: argparse.Namespace) -> int:
    from vst.pull import CATALOG

    styles = list_styles()
    if args.json:
        _out(json.dumps([{"name": s.name, "kind": s.kind, "origin": s.origin, "path": str(s.weights),
                          "description": _description(s)} for s in styles]))  # fmt: skip
        return 0
    indent = 2 + 16 + 1 + 6 + 1 + 8 + 1
    for s in styles:
        mark = "*" if s.name == DEFAULT_STYLE else " "
        lines = wrap_words(_description(s), _width() - indent, LIST_DESCRIPTION_LINES) or [""]
        _out(f"{mark} {s.name:<16} {s.kind:<6} {s.origin:<8} {lines[0]}".rstrip())
        for line in lines[1:]:
            _out(" " * indent + line)
    _out(f"(* = default; user styles live in {user_dir()}; published: {', '.join(CATALOG)})")
    return 0


def _description(s: Style) -> str:
    return str(s.meta.get("description") or s.meta.get("provenance") or "")


# ---------------------------------------------------------------------- info: the model card, readable

_HEADER_KEYS = ("name", "arch", "arch_kwargs", "description", "provenance", "license", "licence", "normalization", "dtype")
_SECTIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Data", ("data", "dataset", "domain", "paintings", "clips", "frames")),
    ("Recipe", ("recipe", "trainer", "config", "loss", "objective", "protocol", "note", "initialised", "init", "distill", "schedule",
                "ingredient")),
    ("Compute", ("compute", "steps", "wall", "cpu", "gpu", "machine", "device", "seconds", "time", "threads")),
    ("Measurements", ("measure", "eval", "held_out", "swd", "e_v", "ratio", "metric", "score", "loss", "psnr", "artefact", "artifact", "periodic")),
)
_CARD_KEYS = ("card", "model_card", "training")


def _section_of(key: str) -> str:
    k = key.lower()
    if any(word in k for word in ("eval", "held_out", "swd", "e_v", "ratio", "measure", "metric", "psnr", "losses", "periodic")):
        return "Measurements"  # before 'Recipe': 'last_losses' is a measurement, 'loss' weights a recipe
    if k.startswith(("wall", "cpu", "gpu")) or k in ("steps", "machine", "device", "compute", "threads"):
        return "Compute"
    for title, words in _SECTIONS:
        if any(word in k for word in words):
            return title
    return "Other"


def _scalar(v: Any, key: str = "") -> str:
    if isinstance(v, bool) or v is None:
        return {True: "yes", False: "no", None: "-"}[v]
    if isinstance(v, int | float) and key.endswith(("_s", "_seconds")) and v >= 120:
        minutes = round(v / 60)
        return f"{v:.0f} s ({minutes // 60} h {minutes % 60} min)" if minutes >= 60 else f"{v:.0f} s ({minutes} min)"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _label(key: str) -> str:
    for unit in ("_s", "_ms"):  # the unit goes with the value (see _scalar)
        if key.endswith(unit) and len(key) > len(unit):
            key = key[: -len(unit)]
    return key.replace("_", " ")


def _is_flat(d: dict[str, Any]) -> bool:
    """Short scalar settings only: they read best as one 'k=v, …' paragraph."""
    return all(
        (not isinstance(v, dict | list) and len(_scalar(v)) <= 40)
        or (isinstance(v, list) and all(not isinstance(x, dict | list) for x in v))
        for v in d.values()
    )


def _render(key: str, value: Any, indent: int, width: int) -> Iterable[str]:
    pad = " " * indent
    label = _label(key)
    if isinstance(value, dict):
        if not value:
            return
        if _is_flat(value) and len(value) > 4:  # a group of settings: one wrapped "k=v, …" paragraph
            text = ", ".join(f"{k}={_scalar(v) if not isinstance(v, list) else '[' + ', '.join(map(_scalar, v)) + ']'}" for k, v in value.items())
            yield f"{pad}{label}:"
            yield from (pad + "  " + line for line in wrap_words(text, width - indent - 2))
            return
        yield f"{pad}{label}:"
        for k, v in value.items():
            yield from _render(k, v, indent + 2, width)
    elif isinstance(value, list):
        if all(not isinstance(x, dict | list) for x in value):
            text = ", ".join(_scalar(x) for x in value) or "-"
            lines = wrap_words(text, width - indent - len(label) - 2)
            yield f"{pad}{label}: {lines[0] if lines else ''}"
            yield from (pad + " " * (len(label) + 2) + line for line in lines[1:])
        else:
            yield f"{pad}{label}:"
            for i, item in enumerate(value):
                yield from _render(f"[{i}]", item, indent + 2, width)
    else:
        text = _scalar(value, key)
        if text == "":
            return
        lines = wrap_words(text, width - indent - len(label) - 2) or [""]
        yield f"{pad}{label}: {lines[0]}"
        yield from (pad + " " * (len(label) + 2) + line for line in lines[1:])


def card_summary(s: Style, width: int = 100) -> list[str]:
    """The style's sidecar as a readable model card: identity, then data, recipe, compute, measurements."""
    meta = s.meta
    default = ", the default" if s.name == DEFAULT_STYLE and s.origin == "bundled" else ""
    size = s.weights.stat().st_size if s.weights.exists() else 0
    out = [f"{s.name} ({s.origin} {s.kind} style{default})"]
    out.append(f"  weights: {s.weights} ({size / 1024:.0f} KiB)")
    if s.kind == "torch":
        kwargs = ", ".join(f"{k}={_scalar(v)}" for k, v in (meta.get("arch_kwargs") or {}).items())
        out.append(f"  network: {meta.get('arch', 'resnet')}" + (f" ({kwargs})" if kwargs else ""))
    else:
        fixed = meta.get("onnx_fixed_hw")
        out.append(f"  network: ONNX, input {meta.get('onnx_input') or '(first)'}, "
                   f"{'fixed ' + 'x'.join(map(str, fixed[::-1])) if fixed else 'any size'}, "
                   f"{meta.get('onnx_channel_order', 'rgb')}, values 0..{_scalar(meta.get('onnx_value_range', 255))}")  # fmt: skip
    for key in ("description", "provenance", "license", "licence", "normalization", "dtype"):
        if meta.get(key) not in (None, ""):
            out.extend(_render(key, meta[key], 2, width))

    sections: dict[str, list[tuple[str, Any]]] = {}
    for key, value in meta.items():
        if key in _HEADER_KEYS or key.startswith("onnx_"):
            continue
        if key in _CARD_KEYS and isinstance(value, dict):
            for k, v in value.items():
                sections.setdefault(_section_of(k), []).append((k, v))
        else:
            sections.setdefault(_section_of(key), []).append((key, value))
    card = False
    for title in [t for t, _ in _SECTIONS] + ["Other"]:
        lines = [line for k, v in sections.get(title, []) for line in _render(k, v, 2, width)]
        if lines:
            out += ["", title, *lines]
            card = True
    if not card:
        out += ["", "(no model card: the sidecar records no training data, recipe, compute or measurements)"]
    return out


def cmd_info(args: argparse.Namespace) -> int:
    s = resolve_style(args.name)
    if args.json:
        info = {"name": s.name, "kind": s.kind, "origin": s.origin, "weights": str(s.weights),
                "bytes": s.weights.stat().st_size, **s.meta}  # fmt: skip
        _out(json.dumps(info, indent=2))
        return 0
    for line in card_summary(s, _width()):
        _out(line)
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from vst.styles import import_style

    style = import_style(args.path, args.name or Path(args.path).stem, force=args.force)
    _out(f"imported {style.name} -> {style.weights}")
    return 0


def cmd_pull(args: argparse.Namespace) -> int:
    from vst.pull import catalog_url, download
    from vst.styles import import_style

    if args.source.startswith(("http://", "https://")):
        url, sha = args.source, None
        name = args.name or Path(url.split("?")[0]).stem
    else:
        url, sha = catalog_url(args.source)
        name = args.name or args.source
    sha = args.sha256 or sha
    if sha is not None and (len(sha) != 64 or any(c not in "0123456789abcdefABCDEF" for c in sha)):
        from vst.errors import StyleError

        raise StyleError(f"--sha256 must be 64 hex digits, got {sha[:80]!r}")
    with tempfile.TemporaryDirectory(prefix="vst-pull-") as tmp:
        local = download(url, Path(tmp) / (Path(url.split("?")[0]).name or "download"), sha256=sha, progress=not args.no_progress)
        style = import_style(local, name, provenance=f"pulled from {url} (sha256 verified: {bool(sha)})", force=args.force)
    _out(f"pulled {style.name} -> {style.weights}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="vst-styles", description="List, inspect, import and download styles.")
    p.add_argument("-v", "--verbose", action="count", default=0)
    sub = p.add_subparsers(dest="command", required=True)
    ls = sub.add_parser("list", help="styles available by name")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_list)
    info = sub.add_parser("info", help="the model card of one style (data, recipe, compute, measurements)")
    info.add_argument("name")
    info.add_argument("--json", action="store_true", help="print the sidecar as JSON instead")
    info.set_defaults(func=cmd_info)
    imp = sub.add_parser("import", help="import a CycleGAN .pth, a vst .safetensors or an ONNX image model")
    imp.add_argument("path", type=Path)
    imp.add_argument("--name", help="style name (default: the file stem)")
    imp.add_argument("--force", action="store_true", help="replace a user style of the same name")
    imp.set_defaults(func=cmd_import)
    pull = sub.add_parser("pull", help="download a published checkpoint and import it")
    pull.add_argument("source", help="a published name (see `vst-styles list`) or an http(s) URL")
    pull.add_argument("--name", help="style name to save as")
    pull.add_argument("--sha256", help="expected sha256 of the download")
    pull.add_argument("--force", action="store_true", help="replace a user style of the same name")
    pull.add_argument("--no-progress", action="store_true")
    pull.set_defaults(func=cmd_pull)
    return p


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    run_main(lambda: args.func(args))


if __name__ == "__main__":
    main()
