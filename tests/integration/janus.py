"""A real SFU for the WHIP tests: Janus 1.1.2 (VideoRoom) behind simple-whip-server, on 127.0.0.1.

``JanusStack`` writes its own configs into a temp dir and starts, kills and restarts both services
on free ports; ``JanusSubscriber`` joins the VideoRoom through Janus's HTTP API the way any viewer
of an SFU would, and hands back the decoded frames. Nothing here is mocked.

Staying on 127.0.0.1. Janus gathers ICE candidates on every interface except those flagged
IFF_LOOPBACK, a hard-coded test in janus_ice_setup_local (src/ice.c, still there in 1.x) that no
option changes: ``ice_enforce_list = "127.0.0.1"`` alone gives it no candidate at all. The fix we
use is a ten-line ``getifaddrs()`` wrapper, compiled here and loaded into the Janus process only
(LD_PRELOAD), that clears that one flag; ``ice_enforce_list`` then keeps 127.0.0.1 as Janus's only
candidate, so its media sockets bind to loopback and nothing listens on a real interface. Rejected:
``nat_1_1_mapping = "127.0.0.1"`` only rewrites the SDP (the sockets stay on eth0, media still
flows through it); a network namespace with a dummy interface needs CAP_NET_ADMIN and a dummy
driver (absent on the CI VMs) and would have to hold the test process too; accepting the eth0
candidate leaves the test depending on, and exposing ports on, the machine's network.
The aiortc side is kept on loopback by ``loopback_ice`` (aioice skips 127.0.0.1 by default).

simple-whip-server comes from Debian's .deb unpacked into /opt/simple-whip-server by .ci/run (its
package conflicts with the node.js on these machines), with its npm dependencies beside it. It only
talks to Janus over websockets, keeps its endpoints in memory (a restart forgets them: re-create),
answers 403 for a bad token, and takes one publisher per endpoint.
"""

from __future__ import annotations

import asyncio
import glob
import json
import logging
import os
import secrets
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .serving import free_port
from .whep_client import RtpLog

log = logging.getLogger("tests.janus")

ROOM = 1234
ROOM_BITRATE = 2_000_000
"""The stock room caps publishers at 128 kbit/s (REMB); aiortc would crawl at its 250k floor."""
WHIP_SERVER_DIR = Path(os.environ.get("VST_WHIP_SERVER_DIR", "/opt/simple-whip-server"))
"""server.js + whip-janus.js from the Debian package under src/, npm dependencies in node_modules/."""

_LOOPBACK_SHIM = r"""
/* Janus skips IFF_LOOPBACK interfaces for ICE (see tests/integration/janus.py): clear the flag. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <ifaddrs.h>
#include <net/if.h>
int getifaddrs(struct ifaddrs **ifap) {
    static int (*real)(struct ifaddrs **);
    if (!real) real = (int (*)(struct ifaddrs **))dlsym(RTLD_NEXT, "getifaddrs");
    int rc = real(ifap);
    if (rc == 0)
        for (struct ifaddrs *i = *ifap; i; i = i->ifa_next) i->ifa_flags &= ~IFF_LOOPBACK;
    return rc;
}
"""

# Binds every server node starts to 127.0.0.1: simple-whip-server calls listen(port) (all
# interfaces) and has no option for the address.
_NODE_LOOPBACK = """
const net = require('net');
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  if (typeof args[0] === 'number' && typeof args[1] !== 'string') args.splice(1, 0, '127.0.0.1');
  return listen.apply(this, args);
};
"""


def janus_lib_dir() -> Path | None:
    """The folder holding Janus's plugins/ and transports/ (Debian: /usr/lib/<multiarch>/janus)."""
    for pattern in ("/usr/lib/*/janus", "/usr/lib/janus", "/usr/local/lib/janus", "/opt/janus/lib/janus"):
        for d in sorted(glob.glob(pattern)):
            if Path(d, "plugins", "libjanus_videoroom.so").exists():
                return Path(d)
    return None


def missing_parts() -> str | None:
    """None when Janus and simple-whip-server can run here, else why not (the skip reason)."""
    if shutil.which("janus") is None or janus_lib_dir() is None:
        return "Janus is not installed (apt-get install janus; .ci/run does it)"
    if not (WHIP_SERVER_DIR / "src" / "server.js").exists() or not (WHIP_SERVER_DIR / "node_modules").is_dir():
        return f"simple-whip-server is not set up in {WHIP_SERVER_DIR} (.ci/run unpacks it; VST_WHIP_SERVER_DIR overrides)"
    if shutil.which("node") is None:
        return "node.js is not installed (simple-whip-server runs on it)"
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        return "no C compiler to build the loopback-ICE shim for Janus (apt-get install gcc)"
    return None


def _get_json(url: str, body: Any = None, timeout: float = 5.0) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"} if data else {})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        text = r.read().decode()
    return json.loads(text) if text.strip().startswith(("{", "[")) else text


class JanusStack:
    """Janus (HTTP + websockets transports, VideoRoom room ``ROOM``) and simple-whip-server in front.

    Ports are picked once and kept across ``restart()``: a WHIP URL stays valid, as with a real SFU
    whose process restarts.
    """

    def __init__(self, workdir: Path) -> None:
        self.dir = workdir
        self.http_port, self.ws_port, self.whip_port = free_port(), free_port(), free_port()
        self.janus: subprocess.Popen[bytes] | None = None
        self.whip: subprocess.Popen[bytes] | None = None
        self.endpoints: dict[str, dict[str, Any]] = {}
        self._write_configs()

    @property
    def api(self) -> str:
        """Janus's HTTP API root."""
        return f"http://127.0.0.1:{self.http_port}/janus"

    @property
    def whip_base(self) -> str:
        return f"http://127.0.0.1:{self.whip_port}/whip"

    def whip_url(self, endpoint: str) -> str:
        return f"{self.whip_base}/endpoint/{endpoint}"

    # ------------------------------------------------------------------ configs

    def _write_configs(self) -> None:
        lib = janus_lib_dir()
        assert lib is not None
        conf = self.dir / "janus-conf"
        conf.mkdir(parents=True, exist_ok=True)
        keep = {"plugins": {"libjanus_videoroom.so"}, "transports": {"libjanus_http.so", "libjanus_websockets.so"}}
        disable = {kind: ",".join(sorted(p.name for p in (lib / kind).glob("*.so") if p.name not in names))
                   for kind, names in keep.items()}  # fmt: skip
        (conf / "janus.jcfg").write_text(f"""
general: {{
    configs_folder = "{conf}"
    plugins_folder = "{lib}/plugins"
    transports_folder = "{lib}/transports"
    events_folder = "{lib}/events"
    loggers_folder = "{lib}/loggers"
    debug_level = 4
    debug_timestamps = true
    server_name = "vst-test"
    interface = "127.0.0.1"  # the address Janus writes into its SDP c= lines
    session_timeout = 60
}}
media: {{
    rtp_port_range = "20000-60000"
}}
nat: {{
    # Loopback only: see the module docstring (the getifaddrs shim makes lo eligible).
    ice_enforce_list = "127.0.0.1"
    ignore_mdns = true
}}
plugins: {{ disable = "{disable['plugins']}" }}
transports: {{ disable = "{disable['transports']}" }}
events: {{ broadcast = false }}
loggers: {{ disable = "{','.join(p.name for p in (lib / 'loggers').glob('*.so'))}" }}
""")
        (conf / "janus.transport.http.jcfg").write_text(f"""
general: {{ json = "plain"  base_path = "/janus"  http = true  port = {self.http_port}  ip = "127.0.0.1"  https = false }}
admin: {{ admin_http = false  admin_https = false }}
""")
        (conf / "janus.transport.websockets.jcfg").write_text(f"""
general: {{ json = "plain"  ws = true  ws_port = {self.ws_port}  ws_ip = "127.0.0.1"  wss = false }}
admin: {{ admin_ws = false  admin_wss = false }}
""")
        (conf / "janus.plugin.videoroom.jcfg").write_text(f"""
general: {{ }}
room-{ROOM}: {{
    description = "vst WHIP test room"
    publishers = 4
    bitrate = {ROOM_BITRATE}
    fir_freq = 2
    videocodec = "vp8,h264"
    audiocodec = "opus"
    record = false
}}
""")
        # simple-whip-server: its code beside our config.js (it requires ./config.js from its own folder)
        src = self.dir / "whip" / "src"
        src.mkdir(parents=True, exist_ok=True)
        for name in ("server.js", "whip-janus.js"):
            shutil.copy(WHIP_SERVER_DIR / "src" / name, src / name)
        (src / "config.js").write_text(f"""module.exports = {{
    janus: {{ address: 'ws://127.0.0.1:{self.ws_port}' }},
    port: {self.whip_port},
    rest: '/whip',
    allowTrickle: true,
    strictETags: false,
    iceServers: []
}};
""")
        (self.dir / "whip" / "loopback.js").write_text(_NODE_LOOPBACK)
        shim_c = self.dir / "loopback_ice.c"
        shim_c.write_text(_LOOPBACK_SHIM)
        self.shim = self.dir / "libloopback_ice.so"
        cc = shutil.which("cc") or shutil.which("gcc")
        assert cc is not None
        subprocess.run([cc, "-shared", "-fPIC", "-O2", "-o", str(self.shim), str(shim_c), "-ldl"], check=True,
                       capture_output=True)  # fmt: skip

    # ------------------------------------------------------------------ processes

    def start(self, timeout: float = 30.0) -> None:
        """Start Janus, then simple-whip-server once Janus answers; re-create known endpoints."""
        t0 = time.monotonic()
        self.janus = subprocess.Popen(
            ["janus", "-F", str(self.dir / "janus-conf"), "-C", str(self.dir / "janus-conf" / "janus.jcfg"), "-o"],
            stdout=(self.dir / "janus.log").open("ab"), stderr=subprocess.STDOUT,
            env={**os.environ, "LD_PRELOAD": str(self.shim)},
        )  # fmt: skip
        self._wait(lambda: _get_json(f"{self.api}/info")["janus"] == "server_info", self.janus, "janus.log", timeout)
        self._wait_port(self.ws_port, self.janus, "janus.log", timeout)
        self.whip = subprocess.Popen(
            ["node", "-r", str(self.dir / "whip" / "loopback.js"), "src/server.js"],
            cwd=self.dir / "whip", stdout=(self.dir / "whip.log").open("ab"), stderr=subprocess.STDOUT,
            env={**os.environ, "NODE_PATH": str(WHIP_SERVER_DIR / "node_modules"), "NODE_ENV": "production",
                 "DEBUG": "whip:*,-whip:debug,janus:*,-janus:debug,-janus:vdebug", "DEBUG_COLORS": "no"},
        )  # fmt: skip
        # the REST API only listens once its websocket session with Janus is up
        self._wait(lambda: _get_json(f"{self.whip_base}/healthcheck") == "OK", self.whip, "whip.log", timeout)
        for endpoint in list(self.endpoints.values()):
            _get_json(f"{self.whip_base}/create", endpoint)
        log.info("janus + simple-whip-server up in %.1f s (http %d, ws %d, whip %d)",
                 time.monotonic() - t0, self.http_port, self.ws_port, self.whip_port)  # fmt: skip

    def _wait(self, probe: Any, proc: subprocess.Popen[bytes], logname: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{logname[:-4]} exited ({proc.returncode}): {self.log_tail(logname)}")
            try:
                if probe():
                    return
            except (OSError, urllib.error.URLError, ValueError, KeyError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{logname[:-4]} not ready in {timeout:.0f} s: {self.log_tail(logname)}")
            time.sleep(0.1)

    def _wait_port(self, port: int, proc: subprocess.Popen[bytes], logname: str, timeout: float) -> None:
        import socket

        def probe() -> bool:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True

        self._wait(probe, proc, logname, timeout)

    def log_tail(self, name: str, chars: int = 3000) -> str:
        path = self.dir / name
        return path.read_text(errors="replace")[-chars:] if path.exists() else "(no log)"

    def kill(self) -> None:
        """SIGKILL both services (a crash, not a clean shutdown)."""
        for proc in (self.whip, self.janus):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait(10)
        self.whip = self.janus = None

    def stop(self) -> None:
        for proc in (self.whip, self.janus):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
        self.whip = self.janus = None

    # ------------------------------------------------------------------ WHIP endpoints

    def create_endpoint(self, token: str | None = None) -> str:
        """A fresh WHIP endpoint on ``ROOM`` (its Janus display name is its id); returns the id."""
        eid = "vst-" + secrets.token_hex(4)
        body: dict[str, Any] = {"id": eid, "room": ROOM, "label": eid}
        if token:
            body["token"] = token
        _get_json(f"{self.whip_base}/create", body)
        self.endpoints[eid] = body
        return eid

    def endpoint_enabled(self, eid: str) -> bool:
        """Whether simple-whip-server has a publisher on ``eid`` right now."""
        return any(e["id"] == eid and e.get("enabled") for e in _get_json(f"{self.whip_base}/endpoints"))


@pytest.fixture(scope="module")
def janus_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JanusStack]:
    """Janus + simple-whip-server for this module, or a skip that says what is missing."""
    reason = missing_parts()
    if reason:
        pytest.skip(reason)
    stack = JanusStack(tmp_path_factory.mktemp("janus"))
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()


@pytest.fixture
def loopback_ice(monkeypatch: pytest.MonkeyPatch) -> None:
    """aiortc offers only 127.0.0.1 (aioice skips loopback by default), as vst-stream does on --host 127.0.0.1."""
    import aioice.ice

    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])


# ---------------------------------------------------------------------- VideoRoom subscriber


class JanusSubscriber:
    """Joins ``ROOM`` as a subscriber to one publisher over Janus's HTTP API and receives its video.

    create session -> attach videoroom -> listparticipants (find the feed) -> join as subscriber ->
    Janus's offer arrives as an event (long poll) -> aiortc answers -> start. A long-poll loop keeps
    the session alive for as long as we watch.
    """

    def __init__(self, api: str, record_rtp: bool = False) -> None:
        self.api = api
        self.record_rtp = record_rtp
        self.rtp = RtpLog()
        """With ``record_rtp``: the video RTP as it arrives."""
        self.session: int | None = None
        self.handle: int | None = None
        self.pc: Any = None
        self.track: Any = None
        self._http: Any = None
        self._events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._poller: asyncio.Task[None] | None = None

    async def _send(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        body = {**body, "transaction": secrets.token_hex(6)}
        async with self._http.post(f"{self.api}{path}", json=body) as r:
            reply: dict[str, Any] = await r.json(content_type=None)
        if reply.get("janus") == "error":
            raise RuntimeError(f"janus {body.get('janus')} failed: {reply['error']}")
        return reply

    async def _poll(self) -> None:
        while True:
            try:
                async with self._http.get(f"{self.api}/{self.session}?maxev=5") as r:
                    events = await r.json(content_type=None)
            except asyncio.CancelledError:
                raise
            except Exception:  # Janus went away (restart test): stop polling
                return
            for ev in events if isinstance(events, list) else [events]:
                if ev.get("janus") != "keepalive":
                    await self._events.put(ev)

    async def _event(self, pred: Any, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            ev = await asyncio.wait_for(self._events.get(), max(deadline - time.monotonic(), 0.01))
            if pred(ev):
                return ev

    async def feed_id(self, display: str, timeout: float = 10.0) -> int:
        """The VideoRoom id of the publisher shown as ``display`` (waits for it to appear)."""
        deadline = time.monotonic() + timeout
        while True:
            reply = await self._send(f"/{self.session}/{self.handle}", {"janus": "message", "body": {"request": "listparticipants", "room": ROOM}})
            for p in reply["plugindata"]["data"].get("participants", []):
                if p.get("display") == display and p.get("publisher"):
                    return int(p["id"])
            if time.monotonic() > deadline:
                raise RuntimeError(f"no publisher {display!r} in room {ROOM}: {reply['plugindata']['data']}")
            await asyncio.sleep(0.2)

    async def join(self, display: str, timeout: float = 20.0) -> Any:
        """Subscribe to the publisher ``display``; returns the remote video track once it arrives."""
        import aiohttp
        from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=40))
        self.session = int((await self._send("", {"janus": "create"}))["data"]["id"])
        self._poller = asyncio.create_task(self._poll())
        self.handle = int((await self._send(f"/{self.session}", {"janus": "attach", "plugin": "janus.plugin.videoroom"}))["data"]["id"])
        feed = await self.feed_id(display, timeout)
        await self._send(f"/{self.session}/{self.handle}",
                         {"janus": "message", "body": {"request": "join", "ptype": "subscriber", "room": ROOM, "streams": [{"feed": feed}]}})  # fmt: skip
        ev = await self._event(lambda e: e.get("jsep", {}).get("type") == "offer", timeout)
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        got: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        @self.pc.on("track")
        def _on_track(track: Any) -> None:
            if track.kind == "video" and not got.done():
                got.set_result(track)

        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=ev["jsep"]["sdp"], type="offer"))
        if self.record_rtp:
            for transceiver in self.pc.getTransceivers():
                if transceiver.kind == "video":
                    self.rtp.hook(transceiver.receiver)
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        await self._send(f"/{self.session}/{self.handle}",
                         {"janus": "message", "body": {"request": "start"},
                          "jsep": {"type": "answer", "sdp": self.pc.localDescription.sdp}})  # fmt: skip
        self.track = await asyncio.wait_for(got, timeout)
        return self.track

    async def close(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
        if self.pc is not None:
            await self.pc.close()
        if self._http is not None:
            if self.session is not None:
                try:
                    await self._send(f"/{self.session}", {"janus": "destroy"})
                except Exception:  # Janus already gone
                    pass
            await self._http.close()
