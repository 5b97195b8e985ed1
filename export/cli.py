"""``vst-export``: a style to ONNX, or to a cached TensorRT engine.

    vst-export --style monet --onnx monet.onnx [--precision fp32|fp16]
    vst-export --style monet --engine --size 1280x720 --size 1920x1080 [--precision fp16]
    vst-export --style monet --engine --torch-tensorrt --size 1280x720
"""

from __future__ import annotations

import argparse
import logging
import shutil
from pathlib import Path

from vst.cli import parse_size, run_main, setup_logging

log = logging.getLogger("vst.export")

DEFAULT_SIZES = [(1280, 720)]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vst-export", description="Export a style to ONNX or build its TensorRT engine.")
    p.add_argument("--style", required=True, help="style name or path (.safetensors/.onnx)")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--onnx", type=Path, metavar="OUT.onnx", help="write the ONNX graph (dynamic H/W) here")
    what.add_argument("--engine", action="store_true", help="build (or find) the cached TensorRT engine")
    p.add_argument("--size", type=parse_size, action="extend", nargs="+", metavar="WxH",
                   help="engine resolution(s), e.g. --size 1280x720 1920x1080 (default 1280x720); one optimization profile each")  # fmt: skip
    p.add_argument("--precision", choices=("fp16", "fp32"), default=None,
                   help="graph precision (default: fp32 for --onnx, fp16 for --engine)")  # fmt: skip
    p.add_argument("--torch-tensorrt", action="store_true", help="with --engine: compile with torch-tensorrt instead")
    p.add_argument("-v", "--verbose", action="count", default=0)
    return p


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)

    def body() -> int:
        from vst.styles import resolve_style

        style = resolve_style(args.style)
        if args.onnx is not None:
            from vst.export.onnx_export import cached_onnx

            src = cached_onnx(style, args.precision or "fp32")
            args.onnx.parent.mkdir(parents=True, exist_ok=True)
            if src.resolve() != args.onnx.resolve():
                shutil.copyfile(src, args.onnx)
            log.info("wrote %s (%s)", args.onnx, args.precision or "fp32")
            return 0
        sizes = args.size or DEFAULT_SIZES
        precision = args.precision or "fp16"
        if args.torch_tensorrt:
            from vst.export.trt_build import compile_torch_tensorrt

            for size in sizes:
                compile_torch_tensorrt(style, size, precision)
            return 0
        from vst.export.trt_build import ensure_engine

        path = ensure_engine(style, sizes, precision)
        log.info("engine: %s", path)
        return 0

    run_main(body)


if __name__ == "__main__":
    main()
