"""``vst-styles list | info NAME | import PATH --name N | pull NAME|URL [--name N] [--sha256 HEX]``."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from pathlib import Path

from vst.cli import run_main, setup_logging
from vst.pull import CATALOG, catalog_url, download
from vst.styles import DEFAULT_STYLE, import_style, list_styles, resolve_style, user_dir

log = logging.getLogger("vst.styles")


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")


def cmd_list(args: argparse.Namespace) -> int:
    styles = list_styles()
    if args.json:
        _out(json.dumps([{"name": s.name, "kind": s.kind, "origin": s.origin, "path": str(s.weights)} for s in styles]))
        return 0
    for s in styles:
        mark = "*" if s.name == DEFAULT_STYLE else " "
        desc = s.meta.get("description") or s.meta.get("provenance", "")
        _out(f"{mark} {s.name:<16} {s.kind:<6} {s.origin:<8} {str(desc)[:70]}")
    _out(f"(* = default; user styles live in {user_dir()}; published: {', '.join(CATALOG)})")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    s = resolve_style(args.name)
    info = {"name": s.name, "kind": s.kind, "origin": s.origin, "weights": str(s.weights),
            "bytes": s.weights.stat().st_size, **s.meta}  # fmt: skip
    _out(json.dumps(info, indent=2))
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    style = import_style(args.path, args.name or Path(args.path).stem)
    _out(f"imported {style.name} -> {style.weights}")
    return 0


def cmd_pull(args: argparse.Namespace) -> int:
    if args.source.startswith(("http://", "https://")):
        url, sha = args.source, None
        name = args.name or Path(url.split("?")[0]).stem
    else:
        url, sha = catalog_url(args.source)
        name = args.name or args.source
    sha = args.sha256 or sha
    with tempfile.TemporaryDirectory(prefix="vst-pull-") as tmp:
        local = download(url, Path(tmp) / Path(url.split("?")[0]).name, sha256=sha, progress=not args.no_progress)
        style = import_style(local, name, provenance=f"pulled from {url} (sha256 verified: {bool(sha)})")
    _out(f"pulled {style.name} -> {style.weights}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vst-styles", description="List, inspect, import and download styles.")
    p.add_argument("-v", "--verbose", action="count", default=0)
    sub = p.add_subparsers(dest="command", required=True)
    ls = sub.add_parser("list", help="styles available by name")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_list)
    info = sub.add_parser("info", help="metadata of one style")
    info.add_argument("name")
    info.set_defaults(func=cmd_info)
    imp = sub.add_parser("import", help="import a CycleGAN .pth, a vst .safetensors or an ONNX image model")
    imp.add_argument("path", type=Path)
    imp.add_argument("--name", help="style name (default: the file stem)")
    imp.set_defaults(func=cmd_import)
    pull = sub.add_parser("pull", help="download a published checkpoint and import it")
    pull.add_argument("source", help=f"a published name ({', '.join(CATALOG)}) or an http(s) URL")
    pull.add_argument("--name", help="style name to save as")
    pull.add_argument("--sha256", help="expected sha256 of the download")
    pull.add_argument("--no-progress", action="store_true")
    pull.set_defaults(func=cmd_pull)
    return p


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    run_main(lambda: args.func(args))


if __name__ == "__main__":
    main()
