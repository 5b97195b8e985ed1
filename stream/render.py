"""``vst-render INPUT OUTPUT --style NAME``: stylize a video file offline into an H.264 mp4.

    source (AvSource) -> processor (make_processor, as vst-stream runs) -> Mp4Sink (libx264)

The frames go through the processor the server runs for the same backend (host: engine + CPU
blend; CUDA: streams + CuPy blend), with ``ordered=True`` so that every frame arrives, in order.
The output keeps the input's frame count and frame rate. It is written to a temporary file
beside OUTPUT and renamed at the end, so an interrupted run (Ctrl-C, SIGTERM, SIGHUP, an error)
never leaves a broken OUTPUT or a stray partial file. INPUT may also be a stream URL (rtsp://,
http://…), rendered until it ends.
"""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vst.cli import (ArgumentParser, add_blend_option, add_budget_option, add_clamp_option, check_output_path, int_range, parse_size,
                     run_main, setup_logging)  # fmt: skip
from vst.errors import VstError
from vst.process import configure_process
from vst.stream.blend_config import BlendConfig

if TYPE_CHECKING:
    import numpy as np

    from vst.stream.processor import Processed, Processor

log = logging.getLogger("vst.render")

_BLEND = BlendConfig()  # the defaults of every blend setting

OUTPUT_SUFFIXES = (".mp4", ".mkv", ".mov")


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
    blend: float = _BLEND.alpha
    """Temporal blend strength alpha (0 = per-frame)."""
    blend_budget: float | None = _BLEND.budget
    """The blend's most mean |out − G| per frame, 0..255 levels (None: no budget)."""
    blend_clamp: int = _BLEND.clamp
    """The blend's history clamp radius (0 = off)."""
    crf: int = 18
    """x264 constant rate factor for the output, 0 (lossless) .. 51."""
    progress: bool = True
    """Show a progress bar."""
    overwrite: bool = False
    """Replace an existing OUTPUT (never done silently: it may be the user's work)."""

    def __post_init__(self) -> None:
        if isinstance(self.crf, bool) or not isinstance(self.crf, int) or not 0 <= self.crf <= 51:
            raise VstError(f"crf must be an integer in 0..51, got {self.crf!r}")

    @property
    def blend_config(self) -> BlendConfig:
        """The validated blend (BlendConfig's defaults for everything but α and the budget); VstError if out of range."""
        try:
            return BlendConfig(alpha=self.blend, budget=self.blend_budget, clamp=self.blend_clamp)
        except ValueError as e:
            raise VstError(f"--blend: {e}") from None


def stylize_checked(engine: Any, blend: Any, image: np.ndarray, style: str, index: int) -> np.ndarray:
    """One frame through engine and blend; a failure or a wrong-shaped result is a one-line VstError
    (a model that returns one channel, or raises on real frames, must not end in a traceback)."""
    from vst.stream.processor import check_output

    try:
        return blend(image, check_output(engine(image), image, engine.backend))
    except VstError:
        raise
    except Exception as e:
        raise VstError(f"style {style!r} failed on frame {index}: {type(e).__name__}: {str(e).strip()[:160]}") from None


def submit_checked(processor: Processor, image: np.ndarray, style: str, index: int) -> None:
    """``processor.submit`` with the CLI contract: what the engine raises is one line naming style and frame."""
    try:
        processor.submit(image, time.time())
    except VstError:
        raise
    except Exception as e:
        raise VstError(f"style {style!r} failed on frame {index}: {type(e).__name__}: {str(e).strip()[:160]}") from None


class Mp4Sink:
    """The processor's output callback for a file: each stylized frame into the encoder, in order."""

    def __init__(self, container: Any, stream: Any, rate: Fraction) -> None:
        self.container, self.stream, self.rate = container, stream, rate
        self.count = 0

    def __call__(self, p: Processed) -> None:
        import av

        if p.index != self.count:  # ordered processors never skip: a gap would shift the whole video
            raise VstError(f"frame {self.count} was lost (got frame {p.index})")
        vf = av.VideoFrame.from_ndarray(p.stylized, format="rgb24")  # copies: the processor may reuse the array
        vf.pts, vf.time_base = self.count, 1 / self.rate
        self.container.mux(self.stream.encode(vf))
        self.count += 1


def render(src: Path | str, dst: Path, cfg: RenderConfig) -> int:
    """Render ``src`` (a file, 'sample' or a stream URL) to ``dst``; returns the number of frames written."""
    import av
    from tqdm import tqdm

    from vst.fileio import atomic_output
    from vst.stream.engine import make_engine
    from vst.stream.processor import make_processor
    from vst.stream.sources import AvSource, is_stream_url, sample_path
    from vst.styles import check_style, resolve_style

    src = str(src)  # never a Path: Path("rtsp://cam/x") is "rtsp:/cam/x"
    if src == "sample" and not Path(src).exists():
        src = str(sample_path())
    elif src in ("testsrc", "browser") or src.startswith("webcam") and not Path(src).exists():
        raise VstError(f"vst-render renders a file or a stream URL; {src!r} is a live source (serve it with vst-stream)")
    dst = Path(dst)
    if dst.suffix.lower() not in OUTPUT_SUFFIXES:
        raise VstError(f"output must be .mp4, .mkv or .mov, got {dst.name}")
    check_output_path(dst)
    if not is_stream_url(src) and dst.exists() and Path(src).exists() and dst.resolve() == Path(src).resolve():
        raise VstError("output and input are the same file")
    if dst.exists() and not cfg.overwrite:
        raise VstError(f"{dst} exists; pass --overwrite to replace it")
    blend = cfg.blend_config  # a bad alpha/budget fails before any work
    style = resolve_style(cfg.style)
    check_style(style)  # bad sizes, unknown architectures, NaN weights, non-RGB graphs: one line, no frames
    source = AvSource(src, cfg.size)  # before the engine: a bad input fails fast
    n = 0
    try:
        engine = make_engine(style, cfg.backend, cfg.precision)
        w, h = source.size
        rate = Fraction(source.fps).limit_denominator(100000)
        with atomic_output(dst) as tmp:
            with av.open(str(tmp), mode="w", format=dst.suffix.lower().lstrip(".").replace("mkv", "matroska")) as out:
                stream = out.add_stream("libx264", rate=rate)
                stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
                stream.codec_context.time_base = 1 / rate
                stream.options = {"crf": str(cfg.crf), "preset": "medium"}
                sink = Mp4Sink(out, stream, rate)
                processor = make_processor(engine, blend, sink, ordered=True)
                try:
                    total = source.frames_hint or None
                    for frame in tqdm(source, total=total, unit="frame", disable=not cfg.progress, desc=dst.name):
                        submit_checked(processor, frame.image, style.name, n)
                        n += 1
                    processor.flush()
                finally:
                    processor.close()
                n = sink.count
                out.mux(stream.encode(None))
            if n == 0:
                raise VstError(f"{source.name} contains no video frames")
    finally:
        source.close()
    log.info("wrote %s: %d frames, %dx%d at %.3f fps", dst, n, w, h, float(rate))
    return n


def build_parser() -> argparse.ArgumentParser:
    from vst.stream.engine import BACKENDS

    p = ArgumentParser(prog="vst-render", description="Stylize a video file into an H.264 mp4.")
    p.add_argument("input", help="input video file, a stream URL, or 'sample' for the bundled clip")
    p.add_argument("output", type=Path, help="output .mp4/.mkv/.mov (written atomically)")
    p.add_argument("--style", default=None, help="style name or path (default: the bundled default style)")
    p.add_argument("--size", type=parse_size, default=None, help="fit frames inside WxH, aspect kept")
    p.add_argument("--backend", default="auto", choices=("auto", *BACKENDS))
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16", "fp16"),
                   help="auto, fp32, bf16 (torch-cpu, openvino), fp16 (cuda)")  # fmt: skip
    add_blend_option(p, "temporal blend strength alpha, 0 (off) to 1 (measured best)")
    add_budget_option(p)
    add_clamp_option(p)
    p.add_argument("--crf", type=int_range(0, 51), default=18, help="x264 quality 0..51 (lower is better; default 18)")
    p.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument("-v", "--verbose", action="count", default=0)
    p.add_argument("-q", "--quiet", action="store_true")
    return p


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    setup_logging(-1 if args.quiet else args.verbose)
    cfg = RenderConfig(args.style, args.size, args.backend, args.precision, args.blend, args.blend_budget,
                       args.blend_clamp, args.crf, not args.no_progress, args.overwrite)  # fmt: skip

    def body() -> int:
        configure_process()  # cuDNN flags for the CUDA backends; no WebRTC here
        render(args.input, args.output, cfg)
        return 0

    run_main(body)


if __name__ == "__main__":
    main()
