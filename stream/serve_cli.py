"""``vst-stream``: serve a stylized live stream over WebRTC to browsers and WHEP players.

    vst-stream --source webcam --style monet
    vst-stream --source sample --size 320x180 --fps 30
    vst-stream --source rtsp://127.0.0.1:8554/cam --token secret --max-viewers 4
    vst-stream --source browser          # the viewer's own camera in, stylized back out
"""

from __future__ import annotations

import argparse
import asyncio
import faulthandler
import ipaddress
import logging
import secrets
import signal
import sys

from vst.cli import parse_size, run_main, setup_logging
from vst.errors import VstError
from vst.stream.blend import add_budget_option
from vst.stream.pipeline import Pipeline, PipelineConfig
from vst.stream.server import ServerConfig, StreamServer, serve
from vst.stream.webrtc import parse_ice_server, raise_encoder_caps, restrict_ice_to_host

log = logging.getLogger("vst.stream")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vst-stream", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n".join(__doc__.split("\n")[2:]))  # fmt: skip
    p.add_argument("--source", default="webcam",
                   help="webcam[:N] | rtsp://... | FILE | browser | testsrc | sample (default: webcam)")  # fmt: skip
    p.add_argument("--style", default=None, help="style name or file (default: the default style; see vst-styles list)")
    p.add_argument("--size", type=parse_size, default=(640, 360), help="fit frames into WxH (default 640x360)")
    p.add_argument("--fps", type=float, default=None, help="pace files/testsrc at this rate (default: the file's own); camera rate hint")
    p.add_argument("--backend", default="auto", help="auto | torch-cpu | torch-cuda | onnxruntime | tensorrt")
    p.add_argument("--blend", type=float, default=0.0, help="temporal blend strength 0..1 (0: off; 1 measured best)")
    add_budget_option(p)
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="TCP port (default 8080; 0 picks a free one)")
    p.add_argument("--codec", choices=("vp8", "h264"), default="vp8", help="video codec sent to viewers")
    p.add_argument("--bitrate", type=int, default=None, metavar="KBPS",
                   help="target video bitrate in kbit/s (aiortc defaults: VP8 500, capped at 1500)")  # fmt: skip
    p.add_argument("--ice-server", action="append", default=[], metavar="URL",
                   help="STUN/TURN server, repeatable: stun:HOST:PORT or turn:USER:PASS@HOST:PORT[?transport=tcp]")  # fmt: skip
    p.add_argument("--token", default=None,
                   help="require this token on every API call (generated when --host is not loopback)")  # fmt: skip
    p.add_argument("--max-viewers", type=int, default=8, help="concurrent viewers; more get 503 (default 8)")
    p.add_argument("--stamp-latency", action="store_true",
                   help="stamp capture time into the top rows of each frame (glass-to-glass measurement)")  # fmt: skip
    p.add_argument("-v", "--verbose", action="count", default=0)
    p.add_argument("-q", "--quiet", action="store_true")
    return p


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


def _run(args: argparse.Namespace) -> int:
    for url in args.ice_server:
        parse_ice_server(url)  # fail before opening a camera
    if args.max_viewers < 1:
        raise VstError("--max-viewers must be at least 1")
    if args.bitrate is not None and not 100 <= args.bitrate <= 50_000:
        raise VstError("--bitrate is in kbit/s: use 100..50000")
    if not 0 <= args.port <= 65535:
        raise VstError(f"--port {args.port} is out of range")
    token = args.token
    if token is None and not _is_loopback(args.host):
        token = secrets.token_urlsafe(12)
        log.warning("--host %s is reachable from other machines: generated a token", args.host)
    if args.bitrate:
        raise_encoder_caps(args.bitrate * 1000)
    restrict_ice_to_host(args.host)

    pipeline = Pipeline(
        PipelineConfig(source=args.source, size=args.size, fps=args.fps, style=args.style,
                       backend=args.backend, blend=args.blend, blend_budget=args.blend_budget,
                       stamp=args.stamp_latency)  # fmt: skip
    )
    pipeline.start()  # opens the source and builds the engine: errors surface here, as one line
    try:
        server = StreamServer(
            pipeline,
            ServerConfig(host=args.host, port=args.port, token=token, max_viewers=args.max_viewers,
                         codec=args.codec, bitrate=args.bitrate * 1000 if args.bitrate else None,
                         ice_servers=tuple(args.ice_server)),  # fmt: skip
        )
        asyncio.run(_serve(server, args, token))
    finally:
        # A second Ctrl-C (or `timeout`, which signals the child and its group) must not abort the
        # joins half-way: that leaves native threads running at exit. The stop is bounded anyway
        # (faulthandler exits after 15 s).
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)
        pipeline.stop()  # releases the camera / RTSP connection
        faulthandler.cancel_dump_traceback_later()
        log.info("stopped")
    return 0


async def _serve(server: StreamServer, args: argparse.Namespace, token: str | None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    def ready(port: int) -> None:
        host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(args.host, args.host)  # a browsable address
        host = f"[{host}]" if ":" in host else host
        query = f"?token={token}" if token else ""
        # the CLI's ready line: scripts and tests wait for it
        print(f"vst-stream: {server.pipeline.style.name} from {args.source} at http://{host}:{port}/{query}", flush=True)  # noqa: T201
        print(f"vst-stream: WHEP endpoint http://{host}:{port}/whep", flush=True)  # noqa: T201

    await serve(server, stop, ready)
    # a shutdown that hangs dumps every thread's stack instead of hanging silently
    faulthandler.dump_traceback_later(15, exit=True)
    log.info("shutting down: %d sessions closed", server.sessions_total)


if __name__ == "__main__":
    sys.exit(main())
