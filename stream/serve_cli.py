"""``vst-stream``: serve a stylized live stream over WebRTC to browsers and WHEP players.

    vst-stream --source webcam --style monet
    vst-stream --source sample --size 320x180 --fps 30   # fixed size (default: auto, adapts to hold the fps)
    vst-stream --source rtsp://127.0.0.1:8554/cam --token secret --max-viewers 4
    vst-stream --source browser          # the viewer's own camera in, stylized back out
    vst-stream --source whip --token T   # OBS/GStreamer/a browser publishes the camera to POST /whip
    vst-stream --host 0.0.0.0            # on the network: a token is generated and printed in the URL
    vst-stream --publish https://sfu.example/whip/ID --publish-token T   # many viewers, via an SFU
"""

from __future__ import annotations

import argparse
import asyncio
import faulthandler
import ipaddress
import logging
import os
import secrets
import signal
import socket
import sys
from typing import TYPE_CHECKING
from urllib.parse import quote, urlsplit

from vst.cli import (ArgumentParser, add_blend_option, add_budget_option, add_clamp_option, float_range, int_range, parse_size, run_main,
                     setup_logging)  # fmt: skip
from vst.errors import VstError

if TYPE_CHECKING:  # aiortc, aiohttp, torch and the engines load when serving starts: --help is instant
    from vst.stream.server import StreamServer

log = logging.getLogger("vst.stream")

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
"""Each stops the server cleanly (peers closed, camera released). SIGHUP is not a reload: a closed
terminal or a supervisor's hang-up must not kill the process without closing its sessions."""


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="vst-stream", description=__doc__.split("\n\n")[0],
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="\n".join(__doc__.split("\n")[2:]))  # fmt: skip
    p.add_argument("--source", default="webcam",
                   help="webcam[:N] | rtsp://... | FILE | browser | whip | testsrc | sample (default: webcam)")  # fmt: skip
    p.add_argument("--style", default=None, help="style name or file (default: the default style; see vst-styles list)")
    p.add_argument("--size", type=_size_or_auto, default="auto",
                   help="auto (default): output fitted into --max-size, processing size adapts to hold the source "
                        "frame rate; or WxH: fit frames into WxH and stylize them at that size")  # fmt: skip
    p.add_argument("--max-size", type=parse_size, default=None, metavar="WxH",
                   help="--size auto: the output size viewers get, and the largest processing size (default 640x360)")
    p.add_argument("--min-size", type=parse_size, default=None, metavar="WxH",
                   help="--size auto: the smallest processing size (default 160x90)")
    p.add_argument("--upscale", choices=("guided", "bicubic"), default="guided",
                   help="--size auto: how a smaller stylization returns to the output size (default guided: "
                        "a guided filter on the full-size input)")  # fmt: skip
    p.add_argument("--fps", type=float_range(0.0, 240.0, lo_open=True), default=None,
                   help="pace files/testsrc at this rate, up to 240 (default: the file's own); camera rate hint")  # fmt: skip
    from vst.stream.engine import BACKENDS  # numpy only: --help stays fast

    p.add_argument("--backend", default="auto", choices=("auto", *BACKENDS), metavar="NAME",
                   help=f"inference backend: {' | '.join(('auto', *BACKENDS))} (default auto: the fastest installed)")  # fmt: skip
    p.add_argument("--device", default=None, metavar="cuda:N",
                   help="pin this process to GPU N (one vst per GPU, docs/deploy.md); sets CUDA_VISIBLE_DEVICES before CUDA starts")  # fmt: skip
    p.add_argument("--device-i420", action="store_true",
                   help="CUDA backends: convert the output to I420 on the GPU and download that (half the bytes, no "
                        "host conversion) for frames published at processing size; off by default until measured on a GPU")  # fmt: skip
    add_blend_option(p, "temporal blend strength 0..1 (0: off; 1 measured best)")
    add_budget_option(p)
    add_clamp_option(p)
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1; 0.0.0.0 for the network)")
    p.add_argument("--port", type=int_range(0, 65535), default=8080, help="TCP port (default 8080; 0 picks a free one)")
    p.add_argument("--codec", choices=("vp8", "h264"), default="vp8", help="video codec sent to viewers")
    p.add_argument("--bitrate", type=int_range(100, 50_000), default=None, metavar="KBPS",
                   help="fixed video bitrate in kbit/s, 100..50000 (default: follow the slowest viewer's "
                        "estimate, 250..2500; docs/deploy.md)")  # fmt: skip
    p.add_argument("--per-viewer-encoder", action="store_true",
                   help="one encoder per viewer (each at its own bitrate) instead of one encode shared by all "
                        "viewers; costs one encode per viewer")  # fmt: skip
    p.add_argument("--ice-server", action="append", default=[], metavar="URL",
                   help="STUN/TURN server, repeatable: stun:HOST:PORT or turn:USER:PASS@HOST:PORT[?transport=tcp]")  # fmt: skip
    auth = p.add_mutually_exclusive_group()
    auth.add_argument("--token", default=None,
                      help="require this token on every API call (generated when --host is not loopback)")  # fmt: skip
    auth.add_argument("--no-auth", action="store_true",
                      help="serve beyond loopback without a token (anyone who reaches the port controls the stream)")  # fmt: skip
    p.add_argument("--allowed-host", action="append", default=[], metavar="NAME",
                   help="also answer requests for this Host name, e.g. a DNS name or a proxy's public name (repeatable)")  # fmt: skip
    p.add_argument("--publish", default=None, metavar="URL",
                   help="also publish the stylized stream to this WHIP endpoint: an SFU (LiveKit, Janus, Cloudflare...) "
                        "serves it to any number of viewers (docs/deploy.md)")  # fmt: skip
    p.add_argument("--publish-token", default=None, metavar="TOKEN",
                   help="bearer token for --publish (default: $VST_PUBLISH_TOKEN)")
    p.add_argument("--max-viewers", type=int_range(1, 1000), default=8, help="concurrent viewers, 1..1000; more get 503 (default 8)")
    p.add_argument("--connect-timeout", type=float_range(1.0, 600.0), default=15.0, metavar="SECONDS",
                   help="close a session that has not connected after this long (default 15)")  # fmt: skip
    p.add_argument("--stamp-latency", action="store_true",
                   help="stamp capture time into the top rows of each frame (glass-to-glass measurement)")  # fmt: skip
    p.add_argument("-v", "--verbose", action="count", default=0)
    p.add_argument("-q", "--quiet", action="store_true")
    return p


def _size_or_auto(text: str) -> str | tuple[int, int]:
    if text.lower() == "auto":
        return "auto"
    try:
        return parse_size(text)
    except argparse.ArgumentTypeError as e:
        raise argparse.ArgumentTypeError(f"{e} (or auto)") from None


def resolve_sizes(args: argparse.Namespace) -> tuple[tuple[int, int], bool, tuple[int, int]]:
    """(output box, adaptive, smallest processing box) from --size/--max-size/--min-size."""
    if args.size != "auto":
        if args.max_size or args.min_size:
            raise VstError("--max-size/--min-size go with --size auto; a fixed --size WxH is both the output and processing size")
        return args.size, False, args.size
    out, low = args.max_size or (640, 360), args.min_size or (160, 90)
    if low[0] > out[0] or low[1] > out[1]:
        raise VstError(f"--min-size {low[0]}x{low[1]} is larger than --max-size {out[0]}x{out[1]}")
    return out, True, low


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    setup_logging(-1 if args.quiet else args.verbose)
    faulthandler.register(signal.SIGUSR1)  # `kill -USR1 PID` dumps every thread's stack
    if args.verbose < 2:  # aioice/aiortc log every ICE check at INFO
        for name in ("aioice", "aiortc"):
            logging.getLogger(name).setLevel(logging.WARNING)
    run_main(lambda: _run(args))


def resolve_token(token: str | None, host: str, no_auth: bool) -> str | None:
    """The token the server requires: the given one (never empty), a generated one when bound beyond
    loopback, or None (loopback, or an explicit ``--no-auth``)."""
    if token is not None:
        if not token.strip():
            raise VstError("--token is empty: give a secret, or leave --token out (a token is generated off loopback)")
        if any(c.isspace() or not c.isprintable() for c in token):
            raise VstError("--token must be printable characters without spaces")
        return token
    if _is_loopback(host):
        return None
    if no_auth:
        log.warning("--host %s with --no-auth: anyone who can reach this port can watch and control the stream", host)
        return None
    log.warning("--host %s is reachable from other machines: generated a token (pass --token to choose it)", host)
    return secrets.token_urlsafe(16)


def pin_device(device: str | None) -> None:
    """``cuda:N`` -> CUDA_VISIBLE_DEVICES=N, so every CUDA user in this process (torch, CuPy,
    TensorRT) sees that one GPU as device 0. Must run before torch initialises CUDA; the CLIs
    import torch lazily, after their arguments are parsed, so that holds here."""
    if device is None:
        return
    index = device.removeprefix("cuda:")
    if not device.startswith("cuda:") or not index.isdigit():
        raise VstError(f"--device must look like cuda:N (N = the GPU's index), got {device!r}")
    import sys

    torch_mod = sys.modules.get("torch")
    if torch_mod is not None and torch_mod.cuda.is_initialized():
        raise VstError("--device: CUDA is already initialised in this process")
    os.environ["CUDA_VISIBLE_DEVICES"] = index
    log.info("pinned to GPU %s (CUDA_VISIBLE_DEVICES=%s)", index, index)


def _run(args: argparse.Namespace) -> int:
    token = resolve_token(args.token, args.host, args.no_auth)
    size, adaptive, min_size = resolve_sizes(args)
    pin_device(args.device)
    from vst.stream.sources import conceal
    from vst.stream.webrtc import parse_ice_server

    for url in args.ice_server:
        parse_ice_server(url)  # fail before opening a camera
    whip_config = None
    if args.publish:
        from vst.stream.whip import WhipConfig, check_whip_url

        check_whip_url(args.publish)
        publish_token = args.publish_token or os.environ.get("VST_PUBLISH_TOKEN") or None
        whip_config = WhipConfig(token=publish_token, ice_servers=tuple(args.ice_server), codec=args.codec)
    elif args.publish_token:
        raise VstError("--publish-token needs --publish URL")
    source = conceal(args.source)  # the password never reaches states, banners, /stats or logs
    from vst.stream.blend_config import BlendConfig
    from vst.stream.pipeline import Pipeline, PipelineConfig
    from vst.stream.server import ServerConfig, StreamServer
    from vst.process import ProcessSettings, configure_process

    config = ServerConfig(host=args.host, port=args.port, token=token, max_viewers=args.max_viewers,
                          codec=args.codec, bitrate=args.bitrate * 1000 if args.bitrate else None,
                          ice_servers=tuple(args.ice_server), allowed_hosts=tuple(args.allowed_host),
                          connect_timeout_s=args.connect_timeout, whip_ingest=source == "whip",
                          per_viewer_encoder=args.per_viewer_encoder)  # fmt: skip
    pipeline = Pipeline(
        # a WHIP publisher feeds the same browser-camera input as the page's camera mode
        PipelineConfig(source="browser" if source == "whip" else source, size=size, fps=args.fps, style=args.style,
                       backend=args.backend, blend=args.blend, blend_budget=args.blend_budget,
                       blend_options=BlendConfig(clamp=args.blend_clamp),
                       stamp=args.stamp_latency, adaptive=adaptive, min_size=min_size, upscale=args.upscale,
                       device_i420=args.device_i420)  # fmt: skip
    )
    check_engine(pipeline, size)
    ice_host: str | None = args.host
    if args.publish and _is_loopback(args.host) and not _is_loopback(urlsplit(args.publish).hostname or ""):
        # the SFU elsewhere must reach our candidates; local viewers still connect over loopback
        log.info("publishing to another host: ICE candidates are not restricted to %s", args.host)
        ice_host = None
    # aiortc's encoder caps matter for per-viewer encoders and a WHIP publish on its own encoder (the shared encoder
    # takes its bitrate from ServerConfig); after pin_device, so CUDA is not started before it
    configure_process(ProcessSettings(ice_host=ice_host, encoder_bitrate=args.bitrate * 1000 if args.bitrate else None))
    pipeline.start()  # opens the source (the engine is built): errors surface here, as one line
    log_setup(pipeline, size, adaptive, min_size)
    try:
        server = StreamServer(pipeline, config)
        if args.publish:
            from vst.stream.whip import WhipPublisher

            # the SFU gets the local viewers' shared encode (its own encoder only with --per-viewer-encoder,
            # or if it answers another codec); the raw track is that fallback and ends the publish on stop
            shared = None if args.per_viewer_encoder else (lambda: server.fanout.subscribe_encoded("stylized"))
            server.publisher = WhipPublisher(args.publish, server.fanout.subscribe("stylized"), whip_config, encoded=shared)
        asyncio.run(_serve(server, args, token))
    finally:
        # A second Ctrl-C (or `timeout`, which signals the child and its group) must not abort the
        # joins half-way: that leaves native threads running at exit. The stop is bounded anyway
        # (faulthandler exits after 15 s).
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
        pipeline.stop()  # releases the camera / RTSP connection
        faulthandler.cancel_dump_traceback_later()
        log.info("stopped")
    return 0


def check_engine(pipeline: object, size: tuple[int, int]) -> None:
    """Build the style's engine and run one frame through it before serving: a style that cannot run
    (wrong graph, NaN weights, one output channel) fails at start with one line, not in every frame."""
    import numpy as np

    from vst.stream.render import stylize_checked
    from vst.styles import check_style

    style = pipeline.style  # type: ignore[attr-defined]
    check_style(style)
    engine = pipeline.build_engine(style)  # type: ignore[attr-defined]  # cached: start() reuses it
    w, h = size
    w, h = max(16, w - w % 2), max(16, h - h % 2)
    yy, xx = np.mgrid[0:h, 0:w]
    probe = np.stack([xx * 255 // max(w - 1, 1), yy * 255 // max(h - 1, 1), (xx + yy) % 256], -1).astype(np.uint8)
    stylize_checked(engine, lambda _x, y: y, probe, style.name, 0)


def log_setup(pipeline: object, size: tuple[int, int], adaptive: bool = False, min_size: tuple[int, int] | None = None) -> None:
    """One line at start: what runs the style (backend, precision, device threads) and at what size."""
    engine = pipeline.build_engine(pipeline.style)  # type: ignore[attr-defined]  # cached: the running one
    threads = engine.threads
    sizing = (f"output {size[0]}x{size[1]}, processing size adaptive down to {min_size[0]}x{min_size[1]} (--size auto)"
              if adaptive and min_size else f"processing size {size[0]}x{size[1]}")  # fmt: skip
    log.info("inference: backend %s, precision %s, device %s, %s; %s (aspect kept)",
             engine.backend, engine.precision, engine.device,
             f"{threads} threads" if threads else "threads n/a", sizing)  # fmt: skip
    if pipeline.config.device_i420 and engine.device != "cuda":  # type: ignore[attr-defined]
        log.warning("--device-i420 applies to the CUDA backends; %s runs on the CPU, so it is ignored", engine.backend)


async def _serve(server: StreamServer, args: argparse.Namespace, token: str | None) -> None:
    from vst.redact import redact_url
    from vst.stream.server import serve

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, stop.set)

    def ready(port: int) -> None:
        host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(args.host, args.host)  # a browsable address
        host = f"[{host}]" if ":" in host else host
        query = f"?token={quote(token, safe='')}" if token else ""
        # the CLI's ready line: scripts and tests wait for it; it carries the token, like Jupyter's
        print(f"vst-stream: {server.pipeline.style.name} from {redact_url(args.source)} at http://{host}:{port}/{query}", flush=True)  # noqa: T201
        print(f"vst-stream: WHEP endpoint http://{host}:{port}/whep", flush=True)  # noqa: T201
        if server.config.whip_ingest:
            print(f"vst-stream: WHIP ingest http://{host}:{port}/whip (one publisher at a time)", flush=True)  # noqa: T201
        if server.publisher is not None:  # the URL without credentials
            print(f"vst-stream: publishing to {server.publisher.stats()['url']}", flush=True)  # noqa: T201
        if not _is_loopback(args.host):  # the address other machines use (answered: it is a served host)
            name = socket.gethostname() if args.host in ("0.0.0.0", "::") else args.host
            name = f"[{name}]" if ":" in name else name
            print(f"vst-stream: on the network: http://{name}:{port}/{query}", flush=True)  # noqa: T201

    await serve(server, stop, ready)
    # a shutdown that hangs dumps every thread's stack instead of hanging silently
    faulthandler.dump_traceback_later(15, exit=True)
    log.info("shutting down: %d sessions closed", server.sessions_total)


if __name__ == "__main__":
    sys.exit(main())
