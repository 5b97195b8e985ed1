"""vst-eval: measure temporal consistency of a style on a clip, per-frame vs blended.

    vst-eval bikes.mp4 --style candy --blend 0.5 0.7 --size 320x180 --frames 60 [--json]
    vst-eval ../shared/data/frames/corridor_neuflow --style candy --blend 0.6 --strip strip.png

INPUT is a video file, a source spec (``sample``, ``testsrc``) or a folder of consecutive
frames (PNG/JPEG, sorted by name). The generator runs once per frame, through the processor
vst-stream runs for the backend (``make_processor``, α 0); each ``--blend`` α is then applied to
those outputs by the host processor's blend stage (``BlendStage.from_config``, the same
``BlendConfig``), so on the CPU backends the blended frames are exactly what vst-stream serves
(on CUDA, vst-stream blends on the GPU with the CuPy kernels, which follow the same reference).
E(V), E_warp, sharpness retained and mean |Δ| are computed with the metric's own flow (Farnebäck)
on the input frames.

Every E(V) is also given as an "E ratio": over the input video's own E(V) with the same flow and
mask. A fixed per-pixel function scores about its contrast gain; well below 1 means blur, far
above 1 means flicker. ``--paintings DIR`` adds style strength: the Laplacian-pyramid patch
sliced Wasserstein distance (Karras et al. 2018) of the per-frame outputs to the paintings, as a
ratio to that of the unstylized input (1 = no move towards them), per level, and the periodic
(checkerboard) artefact index.

Warping resamples, and resampling loses fine detail, so E(V) also charges texture: a sharply
painted output that moves exactly with the scene scores above the soft input. ``--pan`` measures
that floor for this style (``vst.metrics.pan_consistency``: a synthetic sub-pixel pan of three of
the clip's frames, the first frame's output panned the same way) and the style's flicker beyond it,
the excess (1 = as steady as a painting fixed to the scene).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, get_args

from vst.cli import (ArgumentParser, add_budget_option, add_clamp_option, check_output_path, float_range, int_range, parse_size, run_main,
                     setup_logging)  # fmt: skip
from vst.errors import SourceError, VstError
from vst.fileio import is_regular_file
from vst.process import configure_process
from vst.stream.blend_config import BlendConfig, BlendMode

if TYPE_CHECKING:  # numpy, OpenCV, torch (metrics) and the blend stage load when work starts: --help is instant
    import numpy as np

    from vst.metrics import PairGeometry
    from vst.stream.blend import BlendStage
    from vst.stream.engine import Engine
    from vst.stream.processor import Processed

log = logging.getLogger("vst.eval")

_BLEND = BlendConfig()  # the defaults of every blend setting
DEFAULT_BUDGET = _BLEND.budget

_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


def load_frames(spec: str, size: tuple[int, int] | None, limit: int) -> list[np.ndarray]:
    """Up to ``limit`` RGB frames from a video/source spec or a folder of images, fitted to ``size``."""
    import cv2

    from vst.imaging import fit_size

    path = Path(spec)
    if path.is_dir():
        # regular files only: cv2.imread on a FIFO named x.png would block forever
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES and is_regular_file(p))[:limit]
        if not files:
            raise SourceError(f"no images (.png/.jpg) in folder {spec}")
        frames = []
        for p in files:
            bgr = cv2.imread(str(p), cv2.IMREAD_COLOR)
            if bgr is None:
                raise SourceError(f"cannot read image {p}")
            w, h = fit_size(bgr.shape[1], bgr.shape[0], size)
            frames.append(cv2.cvtColor(cv2.resize(bgr, (w, h), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB))
        if len({f.shape for f in frames}) != 1:
            raise SourceError(f"images in {spec} differ in size")
        return frames
    from vst.stream.sources import open_source

    src = open_source(spec, size)
    frames = []
    try:
        for frame in src:
            frames.append(frame.image)
            if len(frames) >= limit:
                break
    finally:
        src.close()
    return frames


@dataclass(frozen=True)
class BlendResult:
    alpha: float
    e_v: float
    e_warp: float
    e_v_reduction: float
    """1 − E(V)_blend / E(V)_per-frame."""
    sharpness: float
    mean_abs_delta: float
    e_ratio: float
    """E(V) over the input video's own E(V)."""
    blend_ms: float
    """Mean wall time of one BlendStage call (flow + warp + mask + blend), CPU."""
    blend_share: float
    """blend_ms / (engine_ms + blend_ms)."""
    scene_cuts: int


def score_blend(
    frames: list[np.ndarray], stylized: list[np.ndarray], geometry: list[PairGeometry], base_e_v: float,
    stage: BlendStage, engine_ms: float = 0.0, input_e_v: float = 0.0,
) -> tuple[BlendResult, list[np.ndarray]]:  # fmt: skip
    """Run ``stage`` over the clip (a fresh stage: it keeps history) and score its outputs against the
    per-frame ones (E(V) ``base_e_v``) with the metric's ``geometry``. Returns the scores and the frames."""
    import numpy as np

    from vst.metrics import mean_abs_delta, sharpness_retained, temporal_error

    outs, times = [], []
    for x, g in zip(frames, stylized, strict=True):
        t0 = time.perf_counter()
        outs.append(stage(x, g))
        times.append(time.perf_counter() - t0)
    blend_ms = 1e3 * float(np.mean(times[1:])) if len(times) > 1 else 0.0
    err = temporal_error(outs, geometry)
    result = BlendResult(
        stage.alpha, err.e_v, err.e_warp, 1.0 - err.e_v / base_e_v if base_e_v > 0 else 0.0,
        sharpness_retained(outs, stylized), mean_abs_delta(outs, stylized),
        err.e_v / input_e_v if input_e_v > 0 else float("nan"), blend_ms, blend_ms / (engine_ms + blend_ms) if engine_ms + blend_ms > 0 else 0.0, stage.cuts,
    )  # fmt: skip
    return result, outs


def evaluate(
    frames: list[np.ndarray],
    stylized: list[np.ndarray],
    alphas: list[float],
    engine_ms: float,
    flow: str,
    metric_flow: str,
    mode: str,
    budget: float | None = DEFAULT_BUDGET,
    clamp: int = _BLEND.clamp,
) -> tuple[dict[str, float], list[BlendResult], dict[float, list[np.ndarray]]]:
    """Metrics of the per-frame outputs and of each blend; also returns the blended frames.

    Each α runs the host processor's blend stage (``BlendStage.from_config``) over the per-frame outputs."""
    from vst.flow import make_flow
    from vst.metrics import temporal_error, video_geometry
    from vst.stream.blend import BlendStage

    geometry = video_geometry(frames, make_flow(metric_flow))
    base = temporal_error(stylized, geometry)
    own = temporal_error(frames, geometry).e_v
    results, outputs = [], {}
    for alpha in alphas:
        stage = BlendStage.from_config(blend_config(alpha, mode, budget, clamp), flow)
        result, outputs[alpha] = score_blend(frames, stylized, geometry, base.e_v, stage, engine_ms, own)
        results.append(result)
    per_frame = {"e_v": base.e_v, "e_warp": base.e_warp, "valid": base.valid, "input_e_v": own,
                 "e_ratio": base.e_v / own if own > 0 else float("nan")}  # fmt: skip
    return per_frame, results, outputs


def blend_config(alpha: float, mode: str, budget: float | None, clamp: int = _BLEND.clamp) -> BlendConfig:
    """The validated blend for one α (BlendConfig's defaults otherwise); a bad setting is a one-line VstError."""
    try:
        return BlendConfig(alpha=alpha, mode=mode, budget=budget, clamp=clamp)  # type: ignore[arg-type]
    except ValueError as e:
        raise VstError(f"--blend: {e}") from None


def stylize(engine: Engine, frames: list[np.ndarray], style: str) -> tuple[list[np.ndarray], float]:
    """Per-frame outputs (no blend) through the processor vst-stream runs for ``engine``, every frame in
    order, and the mean ms per frame (the first frame is a warm-up, not timed)."""
    from vst.stream.processor import make_processor
    from vst.stream.render import submit_checked

    outs: list[np.ndarray] = []

    def keep(p: Processed) -> None:
        outs.append(p.stylized if p.owned else p.stylized.copy())  # a CUDA processor reuses its buffers

    processor = make_processor(engine, BlendConfig(alpha=0.0), keep, ordered=True)
    try:
        submit_checked(processor, frames[0], style, 0)  # warm-up (shape check, first-size compile)
        processor.flush()
        outs.clear()
        t0 = time.perf_counter()
        for i, frame in enumerate(frames):
            submit_checked(processor, frame, style, i)
        processor.flush()
        engine_ms = 1e3 * (time.perf_counter() - t0) / len(frames)
    finally:
        processor.close()
    return outs, engine_ms


def write_strip(path: Path, frames: list[np.ndarray], stylized: list[np.ndarray], blended: list[np.ndarray], count: int = 4) -> None:
    """PNG: rows input / per-frame / blended, ``count`` consecutive frames from the middle of the clip."""
    import cv2
    import numpy as np

    start = max(0, len(frames) // 2 - count // 2)
    sl = slice(start, start + count)
    rows = [np.concatenate(seq[sl], axis=1) for seq in (frames, stylized, blended)]
    grid = np.concatenate(rows, axis=0)
    if not cv2.imwrite(str(path), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR)):
        raise VstError(f"cannot write {path}")


def check_image_output(path: Path) -> None:
    """Refuse up front an image path OpenCV cannot write (it would fail after all the work)."""
    import cv2

    check_output_path(path)
    if not path.suffix or not cv2.haveImageWriter(str(path)):
        raise VstError(f"cannot write an image as {path.name!r}: use .png or .jpg")


def _parser() -> argparse.ArgumentParser:
    from vst.flow import FLOW_NAMES

    p = ArgumentParser(prog="vst-eval", description="Temporal consistency of a style: E(V) per-frame vs blended.")
    p.add_argument("input", help="video file, source spec (sample, testsrc) or folder of frames")
    p.add_argument("--style", default=None, help="style name or path (default: the bundled default style)")
    p.add_argument("--blend", type=float_range(0.0, 1.0), nargs="+", default=None, metavar="ALPHA",
                   help="blend strengths to evaluate (default: the strongest the mode allows, BlendConfig.alpha_limit: "
                        "1, or 0.95 without a budget or in mode full/restore)")  # fmt: skip
    p.add_argument("--size", type=parse_size, default=(320, 180), help="fit frames inside WxH (default 320x180)")
    p.add_argument("--frames", type=int_range(2, 100_000), default=60, help="at most this many frames, 2..100000 (default 60)")
    p.add_argument("--backend", default="auto", help="engine backend (default auto)")
    p.add_argument("--flow", default="dis", choices=FLOW_NAMES, help="the blend's flow (default dis)")
    p.add_argument("--metric-flow", default="farneback", choices=FLOW_NAMES, help="the metric's flow (default farneback)")
    add_budget_option(p)
    add_clamp_option(p)
    p.add_argument("--mode", default=_BLEND.mode, choices=get_args(BlendMode), help=f"blend mode (default {_BLEND.mode})")
    p.add_argument("--paintings", type=Path, default=None, metavar="DIR",
                   help="also measure style strength against this folder of paintings (SWD ratio, artefact index)")  # fmt: skip
    p.add_argument("--pan", action="store_true",
                   help="also measure the E ratio of a perfectly steady output with this style's texture on a synthetic pan, "
                        "and the style's flicker beyond it (excess)")  # fmt: skip
    p.add_argument("--strip", type=Path, default=None, help="write a PNG strip (input/per-frame/first blend)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument("-v", "--verbose", action="count", default=0)
    p.add_argument("-q", "--quiet", action="store_true")
    return p


def _body() -> int:
    args = _parser().parse_args()
    setup_logging(-1 if args.quiet or args.json else args.verbose)
    configure_process()  # cuDNN flags for the CUDA backends; no WebRTC here
    if args.blend is None:  # the strongest setting that cannot freeze the picture
        args.blend = [blend_config(0.0, args.mode, args.blend_budget).alpha_limit]
    if args.strip:
        check_image_output(args.strip)
    from vst.flow import make_flow
    from vst.metrics import PaintingSet, load_paintings, pan_consistency, pan_crop, pan_sources, style_strength

    for alpha in args.blend:  # ranges are argparse's; the mode-specific limit is BlendConfig's
        blend_config(alpha, args.mode, args.blend_budget)  # a bad alpha/mode fails before any work
    paintings = None
    if args.paintings is not None:
        try:
            paintings = load_paintings(args.paintings)
        except (OSError, ValueError) as e:
            raise VstError(f"--paintings: {e}") from None
    from vst.stream.engine import make_engine
    from vst.styles import check_style, resolve_style

    style = resolve_style(args.style)
    check_style(style)
    frames = load_frames(args.input, args.size, args.frames)  # before the engine: bad input fails fast
    if len(frames) < 2:
        raise SourceError(f"{args.input} has fewer than 2 frames")
    if args.pan:
        try:
            pan_crop(*frames[0].shape[:2])
        except ValueError as e:
            raise VstError(f"--pan: {e}") from None
    engine = make_engine(style, args.backend)
    stylized, engine_ms = stylize(engine, frames, style.name)
    base, results, outputs = evaluate(frames, stylized, args.blend, engine_ms, args.flow, args.metric_flow, args.mode,
                                      args.blend_budget, args.blend_clamp)  # fmt: skip
    h, w = frames[0].shape[:2]
    report = {
        "input": args.input, "style": style.name, "backend": engine.backend, "size": f"{w}x{h}",
        "frames": len(frames), "engine_ms": engine_ms, "flow": args.flow, "metric_flow": args.metric_flow,
        "mode": args.mode, "blend_budget": args.blend_budget, "blend_clamp": args.blend_clamp, "per_frame": base, "blends": [asdict(r) for r in results],
    }  # fmt: skip
    if paintings is not None:
        report["style_strength"] = style_strength(PaintingSet(paintings), stylized, frames) | {"paintings": str(args.paintings)}
    if args.pan:
        try:
            pan = pan_consistency(lambda fs: stylize(engine, fs, style.name)[0], pan_sources(frames),
                                  flow=make_flow(args.metric_flow))  # fmt: skip
        except ValueError as e:
            raise VstError(f"--pan: {e}") from None
        report["pan"] = {"floor": pan.floor, "e_ratio": pan.generator, "excess": pan.excess}
    if args.strip and results:
        write_strip(args.strip, frames, stylized, outputs[results[0].alpha])
    if args.json:
        sys.stdout.write(json.dumps(report) + "\n")
        return 0
    lines = [
        f"{args.input}: {len(frames)} frames {w}x{h}, style {style.name} ({engine.backend}, {engine_ms:.1f} ms/frame), "
        f"blend flow {args.flow}, metric flow {args.metric_flow}, mode {args.mode}, budget {args.blend_budget}, clamp {args.blend_clamp}",
        f"input video's own E(V) {base['input_e_v']:.5f}",
        f"{'alpha':>5} {'E(V)':>9} {'E ratio':>7} {'E_warp':>9} {'E(V) cut':>8} {'sharp':>6} {'|Δ|':>6} {'blend ms':>8} {'share':>6} {'cuts':>4}",
        f"{0.0:5.2f} {base['e_v']:9.5f} {base['e_ratio']:7.2f} {base['e_warp']:9.5f} {'-':>8} {1.0:6.2f} {0.0:6.3f} {0.0:8.2f} {0.0:6.1%} {0:4d}",
    ]
    for r in results:
        lines.append(
            f"{r.alpha:5.2f} {r.e_v:9.5f} {r.e_ratio:7.2f} {r.e_warp:9.5f} {r.e_v_reduction:8.0%} {r.sharpness:6.2f} "
            f"{r.mean_abs_delta:6.3f} {r.blend_ms:8.2f} {r.blend_share:6.1%} {r.scene_cuts:4d}"
        )
    if "style_strength" in report:
        s = report["style_strength"]
        levels = " ".join(f"{x:.2f}" for x in s["swd_level_ratios"])
        lines.append(f"style strength vs {args.paintings}: SWD ratio {s['swd_ratio']:.3f} (per level, 256->16 px: {levels}), "
                     f"periodic artefact index {s['periodic_artefact_index']:.2f}")  # fmt: skip
    if "pan" in report:
        pan_r = report["pan"]
        lines.append(f"synthetic pan: E ratio {pan_r['e_ratio']:.2f}; a perfectly steady output with this texture scores "
                     f"{pan_r['floor']:.2f}; excess {pan_r['excess']:.2f} (1 = no flicker beyond the texture's floor)")  # fmt: skip
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


def main() -> None:
    run_main(_body)


if __name__ == "__main__":
    main()
