#!/usr/bin/env python3
"""Serving benchmark: vst-stream on a real clip, N real viewers, one JSON and one PNG.

    python benchmarks/serve.py                                  # the default comparison, ~3 min
    python benchmarks/serve.py --seconds 8 --settle 2           # shorter
    python benchmarks/serve.py --size 640x360 --only backend    # fixed size: the backends' inference ratio
    python benchmarks/serve.py --viewer chromium                # headless Chromium viewers (Playwright)

Each run starts ``vst-stream`` (the real CLI, ``--stamp-latency``) on the clip, connects the viewers,
lets them settle, then measures for ``--seconds``:

  decoded fps per viewer   aiortc: frames its decoder returned; Chromium: getStats framesDecoded
  server CPU %             the server's /stats cpu_percent (its own process, 100 = one core), mean
  inference ms             /stats inference_ms (median of the last 120 frames: engine + blend)
  processing size          /stats processing_size, sampled every second (the most frequent one)
  glass-to-glass p50/p95   the frame-id method of the tests: the server stamps each frame's capture
                           time (wall ms) into its top rows; the viewer reads it from the decoded
                           frame and subtracts it from its own clock (same machine, same clock)

The comparison (one factor changed at a time from the base run: openvino, 1 viewer, blend off):

  backend   openvino against onnxruntime
  viewers   1 against ``--many`` (4) viewers, and 4 viewers with --per-viewer-encoder (the cost of
            one encode per viewer, which the shared encoder avoids)
  blend     --blend 0 against --blend 1

``--upscale-quality`` (writes upscale.json and upscale.jpg) instead compares the two ways ``--size auto`` returns a smaller stylization to
the output size (bicubic, and the guided filter on the full-size input) against stylizing at the full
size, on frames of the clip: PSNR and ms per frame, with the engine's ms at each size, so a smaller
size plus the guided filter can be compared with a larger size plus bicubic at equal time.

The viewers run in this process, on the same cores as the server (as a browser on the same laptop
would). Timings depend on the load of the machine: compare runs of one invocation; the JSON records
``uptime``'s load averages before and after.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import statistics
import sys
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # tests.integration.serving: the server subprocess and Chromium helpers

from tests.integration.serving import CHROMIUM, CHROMIUM_ARGS, VstServer, frames_decoded, open_viewer  # noqa: E402

log = logging.getLogger("bench.serve")

DEFAULT_CLIP = Path("/work/shared/data/videos/bigbuckbunny.mp4")


@dataclass(frozen=True)
class Run:
    """One server configuration."""

    name: str
    backend: str = "openvino"
    viewers: int = 1
    blend: float = 0.0
    per_viewer_encoder: bool = False


@dataclass
class Result:
    run: Run
    size_arg: str
    decoded_fps: list[float] = field(default_factory=list)
    server_cpu_percent: float | None = None
    inference_ms: float | None = None
    processing_size: str | None = None
    processing_sizes_seen: dict[str, int] = field(default_factory=dict)
    processing_size_timeline: list[str] = field(default_factory=list)
    """The processing size at each 1 s stats sample, in order (the controller's steps)."""
    output_fps: float | None = None
    source_fps: float | None = None
    frames_encoded_per_s: float | None = None
    capture_to_packet_ms: float | None = None
    """Server side of glass-to-glass: source frame read -> encoded packet ready (median, shared encoder)."""
    glass_to_glass_ms_p50: float | None = None
    glass_to_glass_ms_p95: float | None = None
    latency_samples: int = 0
    seconds: float = 0.0
    error: str | None = None


def comparison(many: int, only: str | None) -> list[Run]:
    base = Run("base: openvino, 1 viewer, blend 0")
    runs = {
        "backend": [Run("onnxruntime", backend="onnxruntime")],
        "viewers": [Run(f"{many} viewers", viewers=many),
                    Run(f"{many} viewers, per-viewer encoders", viewers=many, per_viewer_encoder=True)],
        "blend": [Run("blend 1", blend=1.0)],
    }
    if only:
        return [base, *runs[only]]
    return [base, *(r for group in runs.values() for r in group)]


# ---------------------------------------------------------------------- aiortc viewers


class AiortcViewer:
    """A WHEP player: counts decoded frames and reads each frame's latency stamp from its Y plane."""

    def __init__(self, base: str, token: str | None) -> None:
        self.base, self.token = base, token
        self.decoded = 0
        self.latencies: list[float] = []
        self.recording = False
        self._pc: Any = None
        self._task: asyncio.Task[None] | None = None

    async def start(self, timeout: float = 30) -> None:
        import aiohttp
        from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

        self._pc = pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        pc.addTransceiver("video", direction="recvonly")
        got: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        pc.on("track", lambda t: got.done() or got.set_result(t))
        await pc.setLocalDescription(await pc.createOffer())
        headers = {"Content-Type": "application/sdp", **({"Authorization": f"Bearer {self.token}"} if self.token else {})}
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{self.base}/whep", data=pc.localDescription.sdp, headers=headers) as r:
                answer = await r.text()
                if r.status != 201:
                    raise RuntimeError(f"WHEP {r.status}: {answer.strip()}")
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        track = await asyncio.wait_for(got, timeout)
        self._task = asyncio.get_running_loop().create_task(self._play(track))

    async def _play(self, track: Any) -> None:
        import numpy as np

        from vst.stream.overlay import STAMP_BITS, STAMP_HEIGHT, read_stamp

        while True:
            try:
                frame = await track.recv()
            except Exception:  # closed
                return
            self.decoded += 1
            if not self.recording:
                continue
            now_ms = time.time() * 1000
            y = frame.to_ndarray()[: STAMP_HEIGHT * 2]  # yuv420p: the first rows are luma
            stamp = read_stamp(np.repeat(y[..., None], 3, axis=2))
            if stamp is not None:
                self.latencies.append((int(now_ms) - stamp) % (1 << STAMP_BITS))

    async def close(self) -> None:
        if self._pc is not None:
            await self._pc.close()
        if self._task is not None:
            self._task.cancel()


def _measure_aiortc(srv: VstServer, n: int, settle: float, seconds: float) -> tuple[list[float], list[float], list[dict[str, Any]], float]:
    """Run n aiortc viewers in a fresh event-loop thread; returns (fps per viewer, latencies, stats samples, span)."""

    async def main() -> tuple[list[float], list[float], list[dict[str, Any]], float]:
        from vst.stream.webrtc import restrict_ice_to_host

        restrict_ice_to_host("127.0.0.1")
        viewers = [AiortcViewer(srv.base, srv.token) for _ in range(n)]
        loop = asyncio.get_running_loop()
        try:
            for v in viewers:
                await v.start()
            await asyncio.sleep(settle)
            for v in viewers:
                v.recording = True
            d0, t0 = [v.decoded for v in viewers], time.monotonic()
            samples = []
            while time.monotonic() - t0 < seconds:
                await asyncio.sleep(1.0)
                samples.append(await loop.run_in_executor(None, srv.stats))
            span = time.monotonic() - t0
            fps = [round((v.decoded - a) / span, 1) for v, a in zip(viewers, d0)]
            return fps, [x for v in viewers for x in v.latencies], samples, span
        finally:
            for v in viewers:
                await v.close()

    box: list[Any] = []
    t = threading.Thread(target=lambda: box.append(asyncio.run(main())))
    t.start()
    t.join()
    if not box:
        raise RuntimeError("the viewers failed (see the log above)")
    return box[0]


def _measure_chromium(srv: VstServer, n: int, settle: float, seconds: float) -> tuple[list[float], list[float], list[dict[str, Any]], float]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            pages = [open_viewer(browser, srv.url) for _ in range(n)]
            time.sleep(settle)
            for pg in pages:
                pg.evaluate("vst.latencies.length = 0")
            d0, t0 = [frames_decoded(pg) for pg in pages], time.monotonic()
            samples = []
            while time.monotonic() - t0 < seconds:
                time.sleep(1.0)
                samples.append(srv.stats())
            span = time.monotonic() - t0
            fps = [round((frames_decoded(pg) - a) / span, 1) for pg, a in zip(pages, d0)]
            lat = [float(x) for pg in pages for x in pg.evaluate("vst.latencies")]
        finally:
            browser.close()
    return fps, lat, samples, span


# ---------------------------------------------------------------------- one run


def run_one(run: Run, args: argparse.Namespace) -> Result:
    res = Result(run, args.size)
    cmd = ["--source", str(args.clip), "--fps", str(args.fps), "--backend", run.backend, "--blend", str(run.blend),
           "--stamp-latency", "--max-viewers", str(max(run.viewers, 1)), "--size", args.size]  # fmt: skip
    if args.max_size and args.size == "auto":
        cmd += ["--max-size", args.max_size]
    if args.style:
        cmd += ["--style", args.style]
    if run.per_viewer_encoder:
        cmd += ["--per-viewer-encoder"]
    log.info("run %s: vst-stream %s", run.name, " ".join(cmd))
    tag = f"{run.backend}_{run.viewers}v_blend{run.blend:g}{'_pve' if run.per_viewer_encoder else ''}_{args.size}_{args.viewer}"
    srv = VstServer(cmd, log_name=f"bench_serve_{tag}")
    try:
        measure = _measure_chromium if args.viewer == "chromium" else _measure_aiortc
        fps, lat, samples, span = measure(srv, run.viewers, args.settle, args.seconds)
    except Exception as e:  # one failed configuration must not lose the others' numbers
        res.error = f"{type(e).__name__}: {e}"
        log.error("run %s failed: %s (server log: %s)", run.name, res.error, srv.log_path)
        return res
    finally:
        srv.stop()
    first, last = samples[0], samples[-1]
    res.seconds = round(span, 1)
    res.decoded_fps = fps
    res.server_cpu_percent = round(statistics.mean(s["cpu_percent"] for s in samples), 1)
    res.inference_ms = last.get("inference_ms")
    sizes = Counter("x".join(map(str, s["processing_size"])) for s in samples if s.get("processing_size"))
    res.processing_sizes_seen = dict(sizes)
    res.processing_size_timeline = ["x".join(map(str, s["processing_size"])) for s in samples if s.get("processing_size")]
    res.processing_size = sizes.most_common(1)[0][0] if sizes else None
    res.output_fps = round(statistics.mean(s["output_fps"] for s in samples), 1)
    res.source_fps = round(statistics.mean(s["source_fps"] for s in samples), 1)
    enc0 = sum(e["frames_encoded"] for e in first.get("encoders", []))
    enc1 = sum(e["frames_encoded"] for e in last.get("encoders", []))
    res.frames_encoded_per_s = round((enc1 - enc0) / max(span - 1.0, 1e-3), 1) if last.get("encoders") else None
    res.capture_to_packet_ms = next((e["capture_to_packet_ms"] for e in last.get("encoders", []) if e["picture"] == "stylized"), None)
    lat.sort()
    if lat:
        res.glass_to_glass_ms_p50 = lat[len(lat) // 2]
        res.glass_to_glass_ms_p95 = lat[min(len(lat) - 1, int(0.95 * len(lat)))]
    res.latency_samples = len(lat)
    log.info("run %s: %s", run.name, json.dumps({k: v for k, v in asdict(res).items() if k != "run"}))
    return res


# ---------------------------------------------------------------------- upscale quality


def upscale_quality(args: argparse.Namespace) -> dict[str, Any]:
    """PSNR against the full-size stylization, per processing scale and upscaler; ms of each step."""
    import cv2
    import numpy as np

    from vst.stream.engine import make_engine
    from vst.stream.sizing import guided_upscale, ladder, upscale
    from vst.stream.sources import open_source
    from vst.styles import resolve_style

    w, h = (int(v) for v in args.max_size.split("x"))
    src = open_source(str(args.clip), (w, h), loop=False, realtime=False)
    frames = []
    try:
        for i, f in enumerate(src):
            if i % 10 == 0:
                frames.append(f.image)
            if len(frames) >= args.quality_frames:
                break
    finally:
        src.close()
    engine = make_engine(resolve_style(args.style), "openvino" if args.backend == "auto" else args.backend)
    full = frames[0].shape[1::-1]

    def med_ms(fn: Any, n: int = 9) -> float:
        fn()
        ts = []
        for _ in range(n):
            t = time.perf_counter()
            fn()
            ts.append((time.perf_counter() - t) * 1e3)
        return round(statistics.median(ts), 2)

    def psnr(a: Any, b: Any) -> float:
        mse = float(np.mean((a.astype(np.float32) - b.astype(np.float32)) ** 2))
        return 10 * np.log10(255**2 / max(mse, 1e-9))

    truths = [engine(f) for f in frames]
    rows = []
    for size in ladder(full, (160, 90)):
        smalls = [cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in frames]
        styl = [engine(x) for x in smalls]
        row: dict[str, Any] = {"size": f"{size[0]}x{size[1]}", "engine_ms": med_ms(lambda: engine(smalls[0]))}
        if size != full:
            row["bicubic_psnr"] = round(statistics.mean(psnr(upscale(s, full), t) for s, t in zip(styl, truths)), 2)
            row["guided_psnr"] = round(statistics.mean(psnr(guided_upscale(s, f), t) for s, f, t in zip(styl, frames, truths)), 2)
            row["bicubic_ms"] = med_ms(lambda: upscale(styl[0], full))
            row["guided_ms"] = med_ms(lambda: guided_upscale(styl[0], frames[0]))
        rows.append(row)
        log.info("%s", row)
        last = (frames[0], truths[0], upscale(styl[0], full), guided_upscale(styl[0], frames[0]))
    # the floor, seen: input | full-size stylization (top), bicubic | guided from the floor (bottom)
    grid = np.concatenate([np.concatenate(last[:2], 1), np.concatenate(last[2:], 1)], 0)
    args.out.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.out / "upscale.jpg"), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85])
    return {"clip": str(args.clip), "frames": len(frames), "backend": engine.backend, "precision": engine.precision,
            "style": args.style, "output": f"{full[0]}x{full[1]}", "load": [round(x, 2) for x in os.getloadavg()],
            "rows": rows}  # fmt: skip


# ---------------------------------------------------------------------- plot (OpenCV: no extra dependency)


def plot(results: list[Result], out: Path, title: str) -> None:
    import cv2
    import numpy as np

    panels = [
        ("decoded fps (mean per viewer)", [statistics.mean(r.decoded_fps) if r.decoded_fps else 0 for r in results], None),
        ("server CPU %", [r.server_cpu_percent or 0 for r in results], None),
        ("inference ms", [r.inference_ms or 0 for r in results], None),
        ("glass-to-glass ms p50 / p95", [r.glass_to_glass_ms_p50 or 0 for r in results],
         [r.glass_to_glass_ms_p95 or 0 for r in results]),
    ]  # fmt: skip
    pw, ph, top = 460, 300, 40
    img = np.full((top + ph * 2 + 150, pw * 2, 3), 255, np.uint8)
    colours = [(180, 119, 31), (14, 127, 255), (44, 160, 44), (40, 39, 214), (189, 103, 148)]
    cv2.putText(img, title[:90], (10, 26), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    for k, (name, values, second) in enumerate(panels):
        x0, y0 = (k % 2) * pw, top + (k // 2) * ph
        cv2.putText(img, name, (x0 + 10, y0 + 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
        vmax = max([*values, *(second or []), 1e-6])
        base_y, height = y0 + ph - 20, ph - 60
        bw = (pw - 40) // max(len(values), 1)
        for i, v in enumerate(values):
            bx = x0 + 20 + i * bw
            if second:  # p95 as a lighter bar behind p50
                h2 = int(height * second[i] / vmax)
                cv2.rectangle(img, (bx + 4, base_y - h2), (bx + bw - 4, base_y), (210, 210, 210), -1)
            h = int(height * v / vmax)
            cv2.rectangle(img, (bx + 4, base_y - h), (bx + bw - 4, base_y), colours[i % len(colours)], -1)
            label = f"{v:.0f}" + (f"/{second[i]:.0f}" if second else "")
            cv2.putText(img, label, (bx + 6, base_y - h - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
        cv2.line(img, (x0 + 20, base_y), (x0 + pw - 20, base_y), (0, 0, 0), 1)
    for i, r in enumerate(results):  # legend
        y = top + ph * 2 + 20 + i * 24
        cv2.rectangle(img, (20, y - 12), (36, y + 2), colours[i % len(colours)], -1)
        text = f"{r.run.name}  (processing {r.processing_size or '?'})" + (f"  FAILED: {r.error[:60]}" if r.error else "")
        cv2.putText(img, text, (44, y), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out), img)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n".join(__doc__.split("\n")[2:]))  # fmt: skip
    p.add_argument("--clip", type=Path, default=DEFAULT_CLIP if DEFAULT_CLIP.exists() else "sample",
                   help="video file served as the camera (default: bigbuckbunny.mp4 from the shared data, else the bundled sample)")  # fmt: skip
    p.add_argument("--fps", type=float, default=30.0, help="source pacing (default 30)")
    p.add_argument("--size", default="auto", help="vst-stream --size: auto (default) or WxH (fixed: compares inference at one size)")
    p.add_argument("--max-size", default="640x360", help="with --size auto: the output size (default 640x360)")
    p.add_argument("--style", default=None, help="style (default: the default style)")
    p.add_argument("--seconds", type=float, default=20.0, help="measured seconds per run (default 20)")
    p.add_argument("--settle", type=float, default=4.0, help="seconds after the viewers connect before measuring (default 4)")
    p.add_argument("--many", type=int, default=4, help="viewer count of the 'many viewers' run (default 4)")
    p.add_argument("--only", choices=("backend", "viewers", "blend"), default=None, help="only the base run and this comparison")
    p.add_argument("--viewer", choices=("aiortc", "chromium"), default="aiortc",
                   help="aiortc WHEP players (default) or headless Chromium pages via Playwright")  # fmt: skip
    p.add_argument("--upscale-quality", action="store_true",
                   help="instead of serving: PSNR and cost of bicubic vs guided upscaling (writes upscale.json)")  # fmt: skip
    p.add_argument("--quality-frames", type=int, default=12, help="frames for --upscale-quality (default 12)")
    p.add_argument("--backend", default="auto", help="engine for --upscale-quality (default openvino)")
    p.add_argument("--out", type=Path, default=REPO / "artifacts" / "bench_serve", help="folder for serve.json and serve.png")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for name in ("aioice", "aiortc"):  # every ICE check at INFO
        logging.getLogger(name).setLevel(logging.WARNING)
    if args.seconds < 2 or args.settle < 0 or not 1 <= args.many <= 16:
        p.error("--seconds must be >= 2, --settle >= 0 and --many 1..16")
    if str(args.clip) != "sample" and not Path(args.clip).is_file():
        p.error(f"--clip {args.clip}: no such file")
    if args.viewer == "chromium" and not Path(CHROMIUM).exists():
        p.error(f"--viewer chromium needs {CHROMIUM}")
    if args.upscale_quality:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "upscale.json").write_text(json.dumps(upscale_quality(args), indent=2) + "\n")
        log.info("wrote %s", args.out / "upscale.json")
        return 0
    load0 = os.getloadavg()
    results = [run_one(r, args) for r in comparison(args.many, args.only)]
    load1 = os.getloadavg()
    report = {
        "clip": str(args.clip), "fps": args.fps, "size": args.size, "max_size": args.max_size, "style": args.style,
        "viewer": args.viewer, "seconds": args.seconds, "cpus": os.cpu_count(),
        "load_before": [round(x, 2) for x in load0], "load_after": [round(x, 2) for x in load1],
        "runs": [{**asdict(r), "run": asdict(r.run)} for r in results],
    }  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "serve.json").write_text(json.dumps(report, indent=2) + "\n")
    plot(results, args.out / "serve.png",
         f"vst-stream --size {args.size}, {args.viewer} viewers, load {load0[0]:.1f}->{load1[0]:.1f} on {os.cpu_count()} CPUs")  # fmt: skip
    log.info("wrote %s and %s", args.out / "serve.json", args.out / "serve.png")
    return 1 if any(r.error for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
