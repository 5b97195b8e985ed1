"""``vst-render INPUT OUTPUT --style NAME``: stylize a video file offline into an H.264 mp4.

The output keeps the input's frame count and frame rate. It is written to a temporary file
beside OUTPUT and renamed at the end, so an interrupted run never leaves a broken OUTPUT.
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from tqdm import tqdm

from vst.cli import check_output_path, parse_size, run_main, setup_logging
from vst.errors import VstError
from vst.stream.blend import DEFAULT_BUDGET, add_budget_option, make_blend
from vst.stream.engine import BACKENDS, make_engine
from vst.stream.sources import AvSource, sample_path
from vst.styles import resolve_style

log = logging.getLogger("vst.render")


@dataclass(frozen=True)
class RenderConfig:
    """What to render and how."""

    style: str | None = None
    """Style name or path; None means the bundled default."""
    size: tuple[int, int] | None = None
    """Fit frames inside this (w, h), aspect kept; None keeps the input size (made even)."""
    backend: str = "auto"
    """Engine backend (see vst.stream.engine)."""
    precision: str = "auto"
    """Engine precision."""
    blend: float = 0.0
    """Temporal blend strength alpha (0 = per-frame)."""
    blend_budget: float | None = DEFAULT_BUDGET
    """The blend's most mean |out − G| per frame, 0..255 levels (None: no budget)."""
    crf: int = 18
    """x264 constant rate factor for the output."""
    progress: bool = True
    """Show a progress bar."""
    overwrite: bool = False
    """Replace an existing OUTPUT (never done silently: it may be the user's work)."""


def render(src: Path, dst: Path, cfg: RenderConfig) -> int:
    """Render ``src`` to ``dst``; returns the number of frames written."""
    import av

    if str(src) == "sample" and not src.exists():
        src = sample_path()
    check_output_path(dst)
    if dst.suffix.lower() not in (".mp4", ".mkv", ".mov"):
        raise VstError(f"output must be .mp4, .mkv or .mov, got {dst.name}")
    if dst.exists() and src.exists() and dst.resolve() == src.resolve():
        raise VstError("output and input are the same file")
    if dst.exists() and not cfg.overwrite:
        raise VstError(f"{dst} exists; pass --overwrite to replace it")
    blend = make_blend(cfg.blend, budget=cfg.blend_budget)  # alpha 0 passes frames through
    style = resolve_style(cfg.style)
    source = AvSource(str(src), cfg.size)  # before the engine: a bad input fails fast
    try:
        engine = make_engine(style, cfg.backend, cfg.precision)
    except BaseException:
        source.close()
        raise
    w, h = source.size
    rate = Fraction(source.fps).limit_denominator(100000)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dst.stem}.", suffix=f".part{dst.suffix}", dir=dst.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    n = 0
    try:
        with av.open(str(tmp), mode="w", format=dst.suffix.lstrip(".").replace("mkv", "matroska")) as out:
            stream = out.add_stream("libx264", rate=rate)
            stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
            stream.codec_context.time_base = 1 / rate
            stream.options = {"crf": str(cfg.crf), "preset": "medium"}
            total = source.frames_hint or None
            for frame in tqdm(source, total=total, unit="frame", disable=not cfg.progress, desc=dst.name):
                styled = blend(frame.image, engine(frame.image))
                vf = av.VideoFrame.from_ndarray(styled, format="rgb24")
                vf.pts, vf.time_base = n, 1 / rate
                out.mux(stream.encode(vf))
                n += 1
            out.mux(stream.encode(None))
        if n == 0:
            raise VstError(f"{src} contains no video frames")
        os.replace(tmp, dst)
    finally:
        source.close()
        tmp.unlink(missing_ok=True)
    log.info("wrote %s: %d frames, %dx%d at %.3f fps", dst, n, w, h, float(rate))
    return n


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vst-render", description="Stylize a video file into an H.264 mp4.")
    p.add_argument("input", type=Path, help="input video file, or 'sample' for the bundled clip")
    p.add_argument("output", type=Path, help="output .mp4 (written atomically)")
    p.add_argument("--style", default=None, help="style name or path (default: the bundled default style)")
    p.add_argument("--size", type=parse_size, default=None, help="fit frames inside WxH, aspect kept")
    p.add_argument("--backend", default="auto", choices=("auto", *BACKENDS))
    p.add_argument("--precision", default="auto", help="auto, fp32, bf16 (torch-cpu), fp16 (cuda)")
    p.add_argument("--blend", type=float, default=0.0, help="temporal blend strength alpha (0 = off, up to 1; 1 measured best)")
    add_budget_option(p)
    p.add_argument("--crf", type=int, default=18, help="x264 quality (lower is better)")
    p.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument("-v", "--verbose", action="count", default=0)
    p.add_argument("-q", "--quiet", action="store_true")
    return p


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    setup_logging(-1 if args.quiet else args.verbose)
    cfg = RenderConfig(args.style, args.size, args.backend, args.precision, args.blend, args.blend_budget, args.crf,
                       not args.no_progress, args.overwrite)  # fmt: skip
    run_main(lambda: render(args.input, args.output, cfg) and 0)


if __name__ == "__main__":
    main()
