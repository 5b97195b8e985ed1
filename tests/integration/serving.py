"""Helpers for the serving tests: a vst-stream subprocess, headless Chromium, a GStreamer RTSP camera.

Nothing here is mocked: the server is the real CLI, the browser is Debian's Chromium driven by
Playwright, and the RTSP camera is GStreamer's RTSP server run by the system python3.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any


REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "artifacts"
CHROMIUM = "/usr/bin/chromium"
SYSTEM_PYTHON = "/usr/bin/python3"
# GUIDE.md's recipe, plus --allow-loopback-in-peer-connection so Chrome also offers a 127.0.0.1
# candidate (the server only offers 127.0.0.1 when bound there).
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream=fps=30",
    "--autoplay-policy=no-user-gesture-required", "--allow-loopback-in-peer-connection",
]  # fmt: skip
TOKEN = "t0k3n-for-tests"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_test_style(directory: Path, name: str, seed: int = 0, width: int = 16) -> None:
    """An untrained 'compact' style (the architecture the trained monet style uses): real cost, random look."""
    from vst.models import GeneratorSpec, build_generator, init_weights
    from vst.styles import save_style

    spec = GeneratorSpec("compact", {"width": width, "n_blocks": 5})
    net = init_weights(build_generator(spec), gain=0.2, seed=seed)
    save_style(directory, name, net, spec, {"provenance": "random init, tests only"})


class VstServer:
    """``vst-stream`` as a subprocess; ``url`` is the ready line's viewer URL."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None, log_name: str = "vst-stream") -> None:
        ARTIFACTS.mkdir(exist_ok=True)
        self.log_path = ARTIFACTS / f"{log_name}.log"
        self._log = self.log_path.open("w")
        cmd = [sys.executable, "-m", "vst.stream.serve_cli", "--host", "127.0.0.1", "--port", "0", *args]
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=self._log, text=True, env={**os.environ, **(env or {})}, cwd=REPO
        )
        self.url = ""
        self.lines: list[str] = []
        ready = threading.Event()

        def read() -> None:
            assert self.proc.stdout is not None
            for line in self.proc.stdout:
                self.lines.append(line)
                if m := re.search(r" at (http://\S+)", line):  # not the source's URL, which may be http:// too
                    if not self.url:
                        self.url = m.group(1)
                        ready.set()
            ready.set()

        threading.Thread(target=read, daemon=True).start()
        if not ready.wait(90) or not self.url:
            self.stop()
            raise RuntimeError(f"vst-stream did not start: {self.log_path.read_text()[-2000:]}")
        self.base = re.sub(r"/\?.*$|/$", "", self.url)
        self.token = (re.search(r"token=([^&\s]+)", self.url) or [None, None])[1]

    def request(self, method: str, path: str, body: bytes | None = None, ctype: str | None = None,
                token: str | None | bool = True, timeout: float = 30) -> tuple[int, dict[str, str], bytes]:  # fmt: skip
        """One HTTP call; returns (status, headers, body) for 2xx and 4xx/5xx alike."""
        headers = {"Content-Type": ctype} if ctype else {}
        tok = self.token if token is True else token or None
        if tok:
            headers["Authorization"] = f"Bearer {tok}"
        req = urllib.request.Request(self.base + path, data=body, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, dict(r.headers), r.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()

    def json(self, method: str, path: str, obj: Any = None, **kw: Any) -> tuple[int, Any]:
        body = json.dumps(obj).encode() if obj is not None else None
        status, _h, data = self.request(method, path, body, "application/json" if body else None, **kw)
        return status, json.loads(data) if data else None

    def stats(self) -> dict[str, Any]:
        status, data = self.json("GET", "/stats")
        assert status == 200, data
        return data

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
        return int(self.proc.returncode)


class RtspCamera:
    """GStreamer's RTSP server on 127.0.0.1:port, restartable on the same port."""

    def __init__(self, port: int, size: str = "320x180") -> None:
        self.port, self.size = port, size
        self.proc: subprocess.Popen[str] | None = None
        self.url = f"rtsp://127.0.0.1:{port}/cam"

    def start(self) -> None:
        script = str(Path(__file__).with_name("rtsp_server.py"))
        self.proc = subprocess.Popen([SYSTEM_PYTHON, script, "--port", str(self.port), "--size", self.size],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("ready"):
            err = self.proc.stderr.read() if self.proc.stderr else ""
            raise RuntimeError(f"RTSP server did not start: {line} {err[-500:]}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None


def have_rtsp_server() -> str | None:
    """None when the GStreamer RTSP server is usable, else the reason it is not."""
    if not Path(SYSTEM_PYTHON).exists():
        return f"{SYSTEM_PYTHON} not found"
    r = subprocess.run([SYSTEM_PYTHON, "-c", "import gi; gi.require_version('GstRtspServer', '1.0'); "
                        "from gi.repository import GstRtspServer"], capture_output=True, text=True)  # fmt: skip
    return None if r.returncode == 0 else "GStreamer RTSP server (gir1.2-gst-rtsp-server-1.0, python3-gi) not installed"



def open_viewer(browser: Any, url: str, timeout_s: float = 60) -> Any:
    """A new page on the viewer, returned once it has decoded its first frames."""
    page = browser.new_page(viewport={"width": 1280, "height": 600})
    page.goto(url)
    page.wait_for_function("window.vst && vst.stats && vst.stats.framesDecoded > 3", timeout=timeout_s * 1000)
    return page


def frames_decoded(page: Any) -> int:
    """framesDecoded straight from getStats (not the page's 1 s poll)."""
    return int(page.evaluate("""async () => {
        let n = 0; const r = await vst.pc.getStats();
        r.forEach(s => { if (s.type === 'inbound-rtp' && s.kind === 'video') n = Math.max(n, s.framesDecoded || 0); });
        return n; }"""))



def wait_until(pred: Any, timeout: float, interval: float = 0.25) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(interval)
    return bool(pred())
