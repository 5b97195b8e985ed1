"""vst-stream without a browser: one-line errors for bad flags, WHEP with a real aiortc player,
clean SIGINT/SIGTERM shutdown."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vst.stream.webrtc import restrict_ice_to_host

from .serving import VstServer, wait_until
from .whep_client import run_in_thread, whep_session


@pytest.mark.parametrize(
    ("args", "expect"),
    [
        (["--source", "/nonexistent/clip.mp4"], "input not found"),
        (["--source", "sample", "--style", "no-such-style"], "unknown style"),
        (["--source", "sample", "--ice-server", "http://x"], "--ice-server"),
        (["--source", "sample", "--bitrate", "5"], "--bitrate"),
        (["--source", "sample", "--max-viewers", "0"], "--max-viewers"),
    ],
)
def test_bad_flags_one_line_error(args: list[str], expect: str) -> None:
    r = subprocess.run([sys.executable, "-m", "vst.stream.serve_cli", "--port", "0", *args],
                       capture_output=True, text=True, timeout=120)  # fmt: skip
    assert r.returncode == 2, r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and expect in last, r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_whep_player_and_clean_shutdown(sig: int, styles_dir: Path) -> None:
    restrict_ice_to_host("127.0.0.1")  # this process is the WHEP player: loopback candidates only
    codec = "h264" if sig == signal.SIGINT else "vp8"
    srv = VstServer(["--source", "testsrc", "--size", "320x180", "--style", "compact-test", "--codec", codec,
                     "--token", "tok", "--bitrate", "2500"],
                    env={"VST_STYLES_DIR": str(styles_dir)}, log_name=f"test_serve_cli_{codec}")  # fmt: skip
    try:
        res = run_in_thread(lambda: whep_session(srv.base, "tok", frames=8))
        assert res.status == 201 and res.location.startswith("/whep/"), res
        assert f"{codec.upper()}/90000" in res.answer
        assert "x-google-max-bitrate=2500" in res.answer
        assert res.frames == 8
        assert wait_until(lambda: srv.stats()["viewers"] == 0, 10)
        assert srv.stats()["sessions_total"] == 1
        status, headers, _b = srv.request("OPTIONS", "/whep", token=None)  # CORS preflight of a web WHEP player
        assert status == 204 and "POST" in headers["Access-Control-Allow-Methods"]
        assert headers["Access-Control-Allow-Origin"] == "*"
        # still serving requests after the session ended
        status, _h, _b = srv.request("POST", "/whep", b"v=0\r\n", "application/sdp")
        assert status == 400
    finally:
        t = time.monotonic()
        code = srv.stop(sig)
    assert code == 0, srv.log_path.read_text()[-2000:]
    assert time.monotonic() - t < 15
    log = srv.log_path.read_text()
    assert "stopped" in log and "Traceback" not in log
