#!/usr/bin/python3
"""A real RTSP camera for the tests: GStreamer's RTSP server with a moving test pattern.

Run with the system python3 (it has ``gi``): ``/usr/bin/python3 rtsp_server.py --port 8554``.
Prints ``ready rtsp://127.0.0.1:PORT/cam`` once listening; SIGTERM stops it. Binds to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--size", default="320x180")
    ap.add_argument("--fps", type=int, default=30)
    args = ap.parse_args()
    w, h = (int(v) for v in args.size.split("x"))
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(
        f"( videotestsrc is-live=true pattern=ball ! video/x-raw,width={w},height={h},framerate={args.fps}/1 "
        "! timeoverlay ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=15 bitrate=800 "
        "! rtph264pay name=pay0 pt=96 config-interval=1 )"
    )
    factory.set_shared(True)  # one encoder for every client, like a camera
    server.get_mount_points().add_factory("/cam", factory)
    if server.attach(None) == 0:
        sys.stderr.write(f"cannot listen on 127.0.0.1:{args.port}\n")
        return 1
    loop = GLib.MainLoop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, sig, loop.quit)
    sys.stdout.write(f"ready rtsp://127.0.0.1:{args.port}/cam\n")
    sys.stdout.flush()
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
