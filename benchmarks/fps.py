#!/usr/bin/env python3
"""End-to-end frame-rate benchmark: the optimized path against a naive baseline, in one run.

    python benchmarks/fps.py --backend onnxruntime --model compact --size 640x360 --frames 60
    python benchmarks/fps.py --backend torch-cuda --model resnet9 compact --size 1280x720 1920x1080 \
        --frames 300 --json runs.json --plot runs.png

For each (model, backend, size):
  naive      eager fp32 torch, synchronous, new tensors every frame: decode -> to_tensor ->
             net -> to_frame -> encode, one after another.
  optimized  what vst-stream runs. CPU backends (torch-cpu, onnxruntime, openvino): decode and
             encode threads around vst.stream.processor.HostProcessor (the engine's frame API +
             BlendStage). CUDA backends (torch-cuda, tensorrt): vst.stream.cuda_processor
             (pinned double buffers, copy/compute streams, encode workers), stage times from CUDA events.
Reported: fps, naive fps and the ratio, per-stage mean ms (decode, upload, preprocess, infer,
flow, blend, download, encode; null where a stage does not exist on that path), latency
p50/p95/p99 (frame read -> encoded), and the compute floor: the model's conv FLOPs divided by
this device's measured matmul rate (fp32 on CPU, the engine's dtype on GPU).

Models are the generator architectures with seeded random weights (timing does not depend on
the weights), saved once as styles under the cache so that the ONNX/engine caches apply; a
style name or path benchmarks that style instead.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import queue
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vst.cli import parse_size, setup_logging
from vst.errors import VstError
from vst.flow import TimedFlow, make_flow
from vst.hardware import cpu_model
from vst.imaging import pad_to_multiple, to_frame, to_tensor
from vst.models import GeneratorSpec, build_generator, count_macs, init_weights
from vst.stream.engine import EngineBase
from vst.styles import Style, load_generator, resolve_style, save_style

log = logging.getLogger("vst.bench.fps")

STAGES = ("decode", "upload", "preprocess", "infer", "flow", "blend", "download", "encode")
MODELS: dict[str, GeneratorSpec] = {
    "resnet9": GeneratorSpec("resnet", {"ngf": 64, "n_blocks": 9}),
    "resnet6": GeneratorSpec("resnet", {"ngf": 64, "n_blocks": 6}),
    "johnson": GeneratorSpec("johnson", {}),
    "compact": GeneratorSpec("compact", {"width": 16, "n_blocks": 5}),
}
CUDA_BACKENDS = ("torch-cuda", "tensorrt")


# ---------------------------------------------------------------- models, device, floor


def bench_style(model: str) -> Style:
    """A benchmark style: seeded random weights for a named architecture, or a real style by name/path."""
    if model not in MODELS:
        return resolve_style(model)
    from vst.styles import cache_root

    directory = cache_root() / "bench-styles"
    path = directory / f"bench-{model}.safetensors"
    if path.exists():
        return resolve_style(str(path))
    net = init_weights(build_generator(MODELS[model]), gain=0.2, seed=0)
    return save_style(directory, f"bench-{model}", net, MODELS[model], {"provenance": "benchmarks/fps.py: random weights, timing only"})


def device_name(cuda: bool) -> str:
    if cuda:
        return f"{torch.cuda.get_device_name()} (torch {torch.__version__}, CUDA {torch.version.cuda})"
    model = cpu_model()
    return f"{model}, {os.cpu_count()} logical cores (torch {torch.__version__})"


def matmul_tflops(cuda: bool, dtype: torch.dtype) -> float:
    """Measured dense matmul rate (TFLOP/s): the denominator of the compute floor."""
    if cuda:
        n = 8192
        a = torch.randn(n, n, device="cuda", dtype=dtype)
        b = torch.randn(n, n, device="cuda", dtype=dtype)
        for _ in range(3):
            a @ b
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        reps = 20
        start.record()
        for _ in range(reps):
            a @ b
        end.record()
        end.synchronize()
        return 2 * n**3 * reps / (start.elapsed_time(end) / 1e3) / 1e12
    n = 1024
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = 0.0
    for _ in range(5):  # the best of several short trials: the rate the device can give, not a busy moment's
        reps, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < 0.2:
            a @ b
            reps += 1
        best = max(best, 2 * n**3 * reps / (time.perf_counter() - t0) / 1e12)
    return best


def macs_at(net: torch.nn.Module, h: int, w: int) -> int:
    """Conv MACs at (h, w), multiples of 4: every layer's output is c*(H/s)*(W/s) with s in {1, 2, 4},
    so MACs scale exactly with H*W. Counting at 64x64 avoids a full-size CPU forward pass."""
    return count_macs(net, 64, 64) * (h * w) // (64 * 64)


# ---------------------------------------------------------------- sources and encoders


def frame_source(kind: str, size: tuple[int, int], path: str | None) -> Callable[[], Iterator[np.ndarray]]:
    """A factory of endless frame iterators. 'synthetic' cycles 16 pre-rendered frames (decode ~ a copy);
    'file' decodes a real video with PyAV, looping, scaled to ``size``."""
    if kind == "synthetic":
        from vst.stream.sources import TestSource

        src = TestSource(size, frames=16)
        ring = [f.image for f in src]

        def synthetic() -> Iterator[np.ndarray]:
            i = 0
            while True:
                yield ring[i % len(ring)].copy()  # a fresh array per frame, as a decoder delivers
                i += 1

        return synthetic
    from vst.stream.sources import AvSource, sample_path

    video = path or str(sample_path())

    def decoded() -> Iterator[np.ndarray]:
        src = AvSource(video, size, loop=True)
        try:
            for f in src:
                img = f.image
                if (img.shape[1], img.shape[0]) != size:  # aspect differs: fit_size kept it; crop/pad to the box
                    import cv2

                    img = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
                yield img
        finally:
            src.close()

    return decoded


class Encoder:
    """H.264 (libx264 ultrafast, zerolatency) into memory, one encoder per thread; JPEG where PyAV is missing."""

    def __init__(self, kind: str, size: tuple[int, int]) -> None:
        self.kind, self.size = kind, size
        self._local = threading.local()

    def __call__(self, frame: np.ndarray) -> int:
        if self.kind == "none":
            return 0
        if self.kind == "jpeg":
            import cv2

            ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 85])
            return len(buf)
        import av

        ctx = getattr(self._local, "ctx", None)
        if ctx is None:
            ctx = av.CodecContext.create("libx264", "w")
            ctx.width, ctx.height = self.size
            ctx.pix_fmt = "yuv420p"
            ctx.time_base = Fraction(1, 30)
            ctx.options = {"preset": "ultrafast", "tune": "zerolatency"}
            ctx.thread_count = 1
            self._local.ctx = ctx
            self._local.pts = 0
        vf = av.VideoFrame.from_ndarray(frame, format="rgb24")
        vf.pts = self._local.pts
        self._local.pts += 1
        return sum(p.size for p in ctx.encode(vf))


def default_encoder() -> str:
    try:
        import av

        av.codec.Codec("libx264", "w")
        return "h264"
    except Exception:  # no PyAV or no libx264 in its build: JPEG via OpenCV is always there
        return "jpeg"


# ---------------------------------------------------------------- runs


def _percentiles(lat: list[float]) -> dict[str, float]:
    a = np.asarray(lat)
    return {f"p{p}": round(float(np.percentile(a, p)), 2) for p in (50, 95, 99)}


def _mean(xs: list[float]) -> float | None:
    return round(statistics.fmean(xs), 3) if xs else None


def run_naive(style: Style, frames: Callable[[], Iterator[np.ndarray]], n: int, warmup: int,
              encode: Encoder, cuda: bool, blend: float) -> dict[str, Any]:  # fmt: skip
    """Eager fp32, synchronous, per-frame allocation: the baseline everyone writes first."""
    device = torch.device("cuda" if cuda else "cpu")
    net = load_generator(style).to(device)
    stage: dict[str, list[float]] = {k: [] for k in ("decode", "infer", "encode", "flow_blend")}
    blender, _ = _blender(blend)
    lat = []
    it = frames()
    with torch.inference_mode():
        for i in range(warmup + n):
            t0 = time.perf_counter()
            frame = next(it)
            t1 = time.perf_counter()
            x, (h, w) = pad_to_multiple(to_tensor(frame, device))
            out = to_frame(net(x)[..., :h, :w])  # .cpu() inside: the host waits for the GPU every frame
            t2 = time.perf_counter()
            if blender is not None:
                out = blender(frame, out)
            t3 = time.perf_counter()
            encode(out)
            t4 = time.perf_counter()
            if i >= warmup:
                stage["decode"].append((t1 - t0) * 1e3)
                stage["infer"].append((t2 - t1) * 1e3)
                stage["flow_blend"].append((t3 - t2) * 1e3)
                stage["encode"].append((t4 - t3) * 1e3)
                lat.append((t4 - t0) * 1e3)
                if i == warmup:
                    t_start = t0
    wall = time.perf_counter() - t_start
    return {"fps": n / wall, "stages": {k: _mean(v) for k, v in stage.items()}, "latency": _percentiles(lat)}


def _blender(alpha: float) -> tuple[Any, TimedFlow]:
    """The blend stage (None when alpha is 0) and the flow estimator it times."""
    from vst.stream.blend import make_blend

    flow = TimedFlow(make_flow("dis"))
    return (make_blend(alpha, flow=flow) if alpha > 0 else None), flow


def run_cpu_optimized(style: Style, backend: str, precision: str, frames: Callable[[], Iterator[np.ndarray]],
                      n: int, warmup: int, encode: Encoder, blend: float) -> dict[str, Any]:  # fmt: skip
    """What the server runs on a CPU: decode thread -> HostProcessor (engine + blend) -> encode thread.

    The processor is ``vst.stream.processor.HostProcessor``, the one ``vst-stream`` builds for CPU
    backends; only the timing wrappers around its engine and flow are added here.
    """
    from vst.stream.blend_config import BlendConfig
    from vst.stream.engine import make_engine
    from vst.stream.processor import HostProcessor, Processed

    engine = make_engine(style, backend, precision)
    infer_ms: list[float] = []

    class TimedEngine(EngineBase):  # the engine's frame API (pre/post-processing included), timed
        backend, precision, device, threads = engine.backend, engine.precision, engine.device, engine.threads

        def __call__(self, frame: np.ndarray) -> np.ndarray:
            t0 = time.perf_counter()
            out = engine(frame)
            infer_ms.append((time.perf_counter() - t0) * 1e3)
            return out

    timed_flow = TimedFlow(make_flow("dis"))
    total = warmup + n
    it = frames()
    # One slot each way: decode runs one frame ahead, no more, so latency stays ~2 frame times (as serving's one-slot queue).
    decoded: queue.Queue[tuple[float, float, np.ndarray] | None] = queue.Queue(maxsize=1)
    to_encode: queue.Queue[tuple[int, float, np.ndarray] | None] = queue.Queue(maxsize=1)
    stage: dict[str, list[float]] = {k: [] for k in ("decode", "process", "encode")}
    lat: list[float] = []
    done_at: list[float] = []
    errors: list[BaseException] = []
    started: dict[int, float] = {}

    def on_output(p: Processed) -> None:
        to_encode.put((p.index, started.pop(p.index), p.stylized))  # host results are owned: no copy

    processor = HostProcessor(TimedEngine(), BlendConfig(alpha=blend), on_output, flow=timed_flow)
    # The decoder starts frame t+1 when frame t is taken, never earlier: a frame's latency clock starts
    # when the pipeline could actually use it, not while it sits in a backlog.
    token = threading.Semaphore(1)

    def decoder() -> None:
        try:
            for _ in range(total):
                token.acquire()
                t0 = time.perf_counter()
                frame = next(it)
                decoded.put((t0, (time.perf_counter() - t0) * 1e3, frame))
        except BaseException as e:  # surface in the main thread
            errors.append(e)
        decoded.put(None)

    def encoder() -> None:
        try:
            while (item := to_encode.get()) is not None:
                i, t0, out = item
                t1 = time.perf_counter()
                encode(out)
                t2 = time.perf_counter()
                if i >= warmup:
                    stage["encode"].append((t2 - t1) * 1e3)
                    lat.append((t2 - t0) * 1e3)
                done_at.append(t2)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=decoder, daemon=True), threading.Thread(target=encoder, daemon=True)]
    for t in threads:
        t.start()
    t_start = 0.0
    for i in range(total):
        item = decoded.get()
        if item is None:
            break
        token.release()
        t0, dec_ms, frame = item
        if i == warmup:
            t_start = t0
        started[i] = t0
        t1 = time.perf_counter()
        processor.submit(frame, t0)
        if i >= warmup:
            stage["decode"].append(dec_ms)
            stage["process"].append((time.perf_counter() - t1) * 1e3)
    to_encode.put(None)
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    wall = done_at[-1] - t_start
    flow_ms = timed_flow.ms[-n:] if blend else []
    infer = _mean(infer_ms[-n:])
    stages = {
        "decode": _mean(stage["decode"]), "upload": None, "preprocess": None, "infer": infer,
        "flow": _mean(flow_ms) if blend else None,
        "blend": round((_mean(stage["process"]) or 0) - (infer or 0) - (_mean(flow_ms) or 0), 3) if blend else None,
        "download": None, "encode": _mean(stage["encode"]),
    }  # fmt: skip
    return {"fps": n / wall, "stages": stages, "latency": _percentiles(lat), "precision": engine.precision}


def run_cuda_optimized(style: Style, backend: str, precision: str, frames: Callable[[], Iterator[np.ndarray]],
                       n: int, warmup: int, encode: Encoder, blend: float, size: tuple[int, int],
                       encode_workers: int, depth: int) -> dict[str, Any]:  # fmt: skip
    """The CUDA-stream pipeline fed by a decode thread; stage times from its CUDA events."""
    from vst.stream.blend_config import BlendConfig
    from vst.stream.cuda_processor import CudaConfig, CudaProcessor
    from vst.stream.engine import make_engine
    from vst.stream.processor import Processed

    engine = make_engine(style, backend, precision)
    if backend == "tensorrt":
        engine.prepare([size])  # type: ignore[attr-defined]  # build/load outside the timed loop
    enc_ms: list[float] = []
    done_at: list[float] = []

    def sink(p: Processed) -> None:
        t0 = time.perf_counter()
        encode(p.stylized)
        t1 = time.perf_counter()
        if p.index >= warmup:
            enc_ms.append((t1 - t0) * 1e3)
            done_at.append(t1)

    cfg = CudaConfig(BlendConfig(alpha=blend), size=size, depth=depth, encode_workers=encode_workers, timing=True)
    pipe = CudaProcessor(engine, cfg, sink)  # the processor vst-stream runs for CUDA backends
    decoded: queue.Queue[tuple[float, np.ndarray] | None] = queue.Queue(maxsize=4)
    dec_ms: list[float] = []
    it = frames()

    def decoder() -> None:
        for _ in range(warmup + n):
            t0 = time.perf_counter()
            frame = next(it)
            dec_ms.append((time.perf_counter() - t0) * 1e3)
            decoded.put((t0, frame))
        decoded.put(None)

    threading.Thread(target=decoder, daemon=True).start()
    t_start = 0.0
    i = 0
    while (item := decoded.get()) is not None:
        if i == warmup:
            pipe.flush()
            for v in pipe.stage_ms.values():
                v.clear()
            pipe.latency_ms.clear()
            t_start = time.perf_counter()
        pipe.submit(item[1], item[0])
        i += 1
    pipe.flush()
    wall = max(done_at) - t_start  # encode workers finish out of order
    pipe.close()
    st = {k: _mean(v[-n:]) for k, v in pipe.stage_ms.items()}
    stages = {"decode": _mean(dec_ms[warmup:]), "upload": st["upload"], "preprocess": st["preprocess"],
              "infer": st["infer"], "flow": _mean(pipe.flow_ms[-n:]) if blend else None,
              "blend": st["blend"] if blend else None, "download": st["download"], "encode": _mean(enc_ms)}  # fmt: skip
    return {"fps": n / wall, "stages": stages, "latency": _percentiles(pipe.latency_ms), "precision": engine.precision}


def run_one(model: str, backend: str, size: tuple[int, int], args: argparse.Namespace, tflops: dict[str, float]) -> dict[str, Any]:
    cuda = backend in CUDA_BACKENDS
    style = bench_style(model)
    frames = frame_source(args.source, size, args.file)
    encode = Encoder(args.encode, size)
    log.info("%s %s %dx%d: naive baseline (%d frames)", model, backend, *size, args.naive_frames)
    naive = run_naive(style, frames, args.naive_frames, 1, encode, cuda, args.blend)
    log.info("%s %s %dx%d: optimized (%d frames)", model, backend, *size, args.frames)
    if cuda:
        opt = run_cuda_optimized(style, backend, args.precision, frames, args.frames, args.warmup, encode,
                                 args.blend, size, args.encode_workers, args.depth)  # fmt: skip
    else:
        opt = run_cpu_optimized(style, backend, args.precision, frames, args.frames, args.warmup, encode, args.blend)
    hp, wp = size[1] + (-size[1]) % 4, size[0] + (-size[0]) % 4
    macs = macs_at(load_generator(style), hp, wp) if style.kind == "torch" else None
    dkey = "cuda-" + opt["precision"] if cuda else "cpu-fp32"
    floor_ms = 2 * macs / (tflops[dkey] * 1e12) * 1e3 if macs else None
    infer_ms = opt["stages"]["infer"]
    return {
        "model": model, "backend": backend, "precision": opt["precision"], "size": f"{size[0]}x{size[1]}",
        "frames": args.frames, "source": args.source, "encode": args.encode, "blend": args.blend,
        "depth": args.depth if cuda else None,
        "fps": round(opt["fps"], 2), "naive_fps": round(naive["fps"], 2), "speedup": round(opt["fps"] / naive["fps"], 2),
        "infer_only_fps": round(1e3 / infer_ms, 2) if infer_ms else None,
        "stages_ms": opt["stages"], "latency_ms": opt["latency"],
        "naive_stages_ms": naive["stages"], "naive_latency_ms": naive["latency"],
        "gmacs": round(macs / 1e9, 2) if macs else None, "matmul_tflops": round(tflops[dkey], 3),
        "floor_ms": round(floor_ms, 3) if floor_ms else None,
        "floor_fps": round(1e3 / floor_ms, 1) if floor_ms else None,
        "infer_over_floor": round(infer_ms / floor_ms, 2) if floor_ms and infer_ms else None,
        "device": device_name(cuda),
    }  # fmt: skip


def print_table(runs: list[dict[str, Any]]) -> None:
    hdr = f"{'model':10} {'backend':12} {'prec':5} {'size':10} {'fps':>8} {'naive':>7} {'x':>6} {'infer':>7} {'floor':>7} {'p50':>7} {'p99':>7}  stages ms"
    print(hdr)  # noqa: T201 - a benchmark script prints its table
    for r in runs:
        st = " ".join(f"{k}={v:.1f}" for k, v in r["stages_ms"].items() if v is not None)
        floor = f"{r['floor_ms']:.2f}" if r["floor_ms"] else "-"
        infer = r["stages_ms"]["infer"]
        print(  # noqa: T201
            f"{r['model']:10} {r['backend']:12} {r['precision']:5} {r['size']:10} {r['fps']:8.2f} {r['naive_fps']:7.2f} "
            f"{r['speedup']:6.2f} {infer:7.1f} {floor:>7} {r['latency_ms']['p50']:7.1f} {r['latency_ms']['p99']:7.1f}  {st}"
        )


def plot(runs: list[dict[str, Any]], out: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise VstError("--plot needs matplotlib: pip install 'vst[plot]'") from None
    labels = [f"{r['model']}\n{r['backend']}\n{r['size']}" for r in runs]
    xs = np.arange(len(runs))
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(runs)), 4))
    ax.bar(xs - 0.2, [r["naive_fps"] for r in runs], 0.4, label="naive (eager fp32, sync)")
    ax.bar(xs + 0.2, [r["fps"] for r in runs], 0.4, label="optimized")
    ax.set_xticks(xs, labels, fontsize=7)
    ax.set_ylabel("frames / s")
    ax.set_yscale("log")
    ax.legend()
    ax.set_title(runs[0]["device"][:80], fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=120)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--backend", nargs="+", default=["onnxruntime"],
                   choices=("torch-cpu", "onnxruntime", "openvino", "torch-cuda", "tensorrt"))  # fmt: skip
    p.add_argument("--model", nargs="+", default=["compact"], help=f"{', '.join(MODELS)} or a style name/path")
    p.add_argument("--size", nargs="+", type=parse_size, default=[(640, 360)], metavar="WxH")
    p.add_argument("--frames", type=int, default=60, help="timed frames of the optimized run")
    p.add_argument("--naive-frames", type=int, default=None, help="timed frames of the naive run (default: frames/4, >= 5)")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--precision", default="auto", help="engine precision (auto: fp32 on CPU, fp16 on CUDA)")
    p.add_argument("--blend", nargs="?", type=float, const=0.5, default=0.0, metavar="ALPHA",
                   help="add the temporal blend (flow + warp + blend), alpha 0.5 if no value")  # fmt: skip
    p.add_argument("--source", choices=("synthetic", "file"), default="synthetic")
    p.add_argument("--file", help="video for --source file (default: the bundled sample clip)")
    p.add_argument("--encode", choices=("h264", "jpeg", "none"), default=None, help="default: h264 if PyAV has libx264, else jpeg")
    p.add_argument("--encode-workers", type=int, default=max(1, min(4, (os.cpu_count() or 2) // 2)))
    p.add_argument("--depth", type=int, default=4,
                   help="CUDA pipeline buffer sets in flight (2 = double buffering). A slot is reused only after its "
                        "frame is encoded, so with a CPU encoder slower than the GPU, more slots keep the GPU busy")  # fmt: skip
    p.add_argument("--json", type=Path, help="write {'runs': [...]} here")
    p.add_argument("--plot", type=Path, help="write a bar chart (needs matplotlib)")
    p.add_argument("-v", "--verbose", action="count", default=0)
    args = p.parse_args(argv)
    setup_logging(args.verbose - 1)
    args.encode = args.encode or default_encoder()
    args.naive_frames = args.naive_frames or max(5, args.frames // 4)
    if any(b in CUDA_BACKENDS for b in args.backend) and not torch.cuda.is_available():
        raise SystemExit(f"error: {', '.join(b for b in args.backend if b in CUDA_BACKENDS)} needs a CUDA GPU; none found")
    tflops: dict[str, float] = {}
    if any(b not in CUDA_BACKENDS for b in args.backend):
        tflops["cpu-fp32"] = matmul_tflops(False, torch.float32)
    if any(b in CUDA_BACKENDS for b in args.backend):
        tflops["cuda-fp16"] = matmul_tflops(True, torch.float16)
        tflops["cuda-fp32"] = matmul_tflops(True, torch.float32)
    runs = []
    for model in args.model:
        for backend in args.backend:
            for size in args.size:
                try:
                    runs.append(run_one(model, backend, size, args, tflops))
                except VstError as e:
                    print(f"error: {model} {backend} {size[0]}x{size[1]}: {e}", file=sys.stderr)  # noqa: T201
                    return 2
                log.info("%s %s %s: %.1f fps (naive %.1f)", model, backend, runs[-1]["size"], runs[-1]["fps"], runs[-1]["naive_fps"])
    print_table(runs)
    meta = {"command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]), "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "load_avg": os.getloadavg(), "matmul_tflops": tflops}  # fmt: skip
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"runs": runs, "meta": meta}, indent=2) + "\n")
    if args.plot:
        try:
            plot(runs, args.plot)
        except VstError as e:
            print(f"error: {e}", file=sys.stderr)  # noqa: T201
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
