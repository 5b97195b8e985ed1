"""The aiohttp app: viewer page, JSON offer/answer, WHEP, live controls and /stats.

Endpoints (all but the static page and /health need the token when one is set, as
``Authorization: Bearer TOKEN`` or ``?token=TOKEN``):

    GET  /                 viewer page (index.html, viewer.js, viewer.css)
    GET  /config           styles, codec, ICE servers, source kind (what the page needs)
    POST /offer            JSON {sdp, type: "offer", original?: bool, publish?: bool} -> {sdp, type, id}
    DELETE /session/{id}   end a page session
    POST /whep             application/sdp offer -> 201, Location: /whep/{id}, SDP answer
    DELETE /whep/{id}      end a WHEP session
    POST /style            JSON {style: name} -> switch style for everyone (400 for unknown)
    POST /blend            JSON {alpha: float} -> temporal blend strength
    GET  /stats            JSON: source fps, inference ms, viewers, dropped frames, errors, CPU, RSS
    GET  /health           {"ok": true} (no token: for liveness probes)
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from aiohttp import web
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from vst.errors import VstError
from vst.stream.pipeline import Pipeline
from vst.stream.webrtc import Fanout, add_bitrate_fmtp, prefer_codec_in_offer, rtc_configuration
from vst.styles import list_styles

log = logging.getLogger("vst.server")


@dataclass(frozen=True)
class ServerConfig:
    """How the server listens and admits viewers."""

    host: str = "127.0.0.1"
    """Bind address (HTTP and ICE host candidates when it is a loopback address)."""
    port: int = 8080
    """TCP port; 0 picks a free one."""
    token: str | None = None
    """Shared secret every API call must carry; None disables the check."""
    max_viewers: int = 8
    """Concurrent WebRTC sessions; one more gets 503."""
    codec: str = "vp8"
    """'vp8' or 'h264': what the server sends."""
    bitrate: int | None = None
    """Target video bitrate in bps (None: aiortc's defaults)."""
    ice_servers: tuple[str, ...] = ()
    """STUN/TURN URLs handed to aiortc and to the page."""
    max_body: int = 64 * 1024
    """Largest request body accepted (413 above it); a browser offer is ~5-10 KB."""
    offer_timeout_s: float = 15.0
    """Upper bound on answering one offer (ICE gathering included)."""


@dataclass
class Session:
    """One viewer's peer connection."""

    id: str
    pc: RTCPeerConnection
    kind: str
    """'page' (JSON offer) or 'whep'."""
    publisher: bool = False
    created: float = field(default_factory=time.monotonic)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    tracks: list[Any] = field(default_factory=list)


def _error(status: int, message: str, *, sdp: bool = False) -> web.Response:
    if sdp:
        return web.Response(status=status, text=message + "\n", content_type="text/plain")
    return web.json_response({"error": message}, status=status)


class StreamServer:
    """Owns the sessions, the fan-out and the HTTP app around one running ``Pipeline``."""

    def __init__(self, pipeline: Pipeline, config: ServerConfig) -> None:
        self.pipeline = pipeline
        self.config = config
        self.fanout = Fanout(pipeline)
        self.rtc_config = rtc_configuration(list(config.ice_servers))
        self.sessions: dict[str, Session] = {}
        self.rejected: dict[str, int] = {}
        self.sessions_total = 0
        self._admitting = 0  # offers being answered, counted against max_viewers
        self._cpu: tuple[float, float] = (time.monotonic(), _cpu_seconds())
        self.cpu_percent = 0.0
        self._sampler: asyncio.Task[None] | None = None
        self.app = self._build_app()

    # ------------------------------------------------------------------ app

    def _build_app(self) -> web.Application:
        app = web.Application(client_max_size=self.config.max_body, middlewares=[self._cors, self._errors, self._auth])
        viewer = resources.files("vst.stream.viewer")
        self._static = {name: viewer.joinpath(name).read_text() for name in ("index.html", "viewer.js", "viewer.css")}
        app.router.add_get("/", self._page)
        app.router.add_get("/viewer.js", self._page)
        app.router.add_get("/viewer.css", self._page)
        app.router.add_get("/health", self._health)
        app.router.add_get("/favicon.ico", self._health)
        app.router.add_get("/config", self._config)
        app.router.add_get("/stats", self._stats)
        app.router.add_post("/offer", self._offer)
        app.router.add_delete("/session/{id}", self._delete)
        app.router.add_post("/whep", self._whep)
        app.router.add_delete("/whep/{id}", self._delete)
        app.router.add_patch("/whep/{id}", self._whep_patch)
        app.router.add_route("OPTIONS", "/whep", self._whep_options)
        app.router.add_route("OPTIONS", "/whep/{id}", self._whep_options)
        app.router.add_post("/style", self._style)
        app.router.add_post("/blend", self._blend)
        app.on_startup.append(self._on_startup)
        app.on_shutdown.append(self._on_shutdown)
        return app

    async def _on_startup(self, _app: web.Application) -> None:
        self._sampler = asyncio.create_task(self._sample_cpu())

    async def _on_shutdown(self, _app: web.Application) -> None:
        await self.close_all()

    async def close_all(self) -> None:
        """Close every peer connection (clean shutdown)."""
        if self._sampler is not None:
            self._sampler.cancel()
        await asyncio.gather(*(self.close_session(sid) for sid in list(self.sessions)), return_exceptions=True)
        self.fanout.stop()

    # ------------------------------------------------------------------ middlewares

    @web.middleware
    async def _errors(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """Every failure is a 4xx/5xx with a one-line message; nothing reaches a viewer's session."""
        sdp = request.path.startswith("/whep")
        try:
            return await handler(request)
        except web.HTTPException as e:
            if e.status < 400:
                raise
            self._count(str(e.status))
            text = e.text or e.reason
            if e.status == 413:
                text = f"request body too large (limit {self.config.max_body} bytes)"
            resp = _error(e.status, text.removeprefix(f"{e.status}: "), sdp=sdp)
            for k in ("Retry-After", "Allow"):
                if k in e.headers:
                    resp.headers[k] = e.headers[k]
            return resp
        except VstError as e:
            self._count("400")
            return _error(400, str(e), sdp=sdp)
        except Exception:
            log.exception("%s %s failed", request.method, request.path)
            self._count("500")
            return _error(500, "internal error (see the server log)", sdp=sdp)

    @web.middleware
    async def _cors(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """WHEP players may live on another origin: let them read Location (the token still guards)."""
        resp = await handler(request)
        if request.path.startswith("/whep"):
            resp.headers["Access-Control-Allow-Origin"] = "*"
            resp.headers["Access-Control-Expose-Headers"] = "Location, ETag"
        return resp

    @web.middleware
    async def _auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        token = self.config.token
        if token and request.method != "OPTIONS" and request.path not in ("/", "/viewer.js", "/viewer.css", "/health", "/favicon.ico"):
            given = request.query.get("token", "")
            auth = request.headers.get("Authorization", "")
            if auth.lower().startswith("bearer "):
                given = auth[7:].strip()
            if not hmac.compare_digest(given.encode(), token.encode()):
                raise web.HTTPUnauthorized(text="wrong or missing token: open the URL vst-stream printed (it carries ?token=)")
        return await handler(request)

    def _count(self, key: str) -> None:
        self.rejected[key] = self.rejected.get(key, 0) + 1

    # ------------------------------------------------------------------ handlers

    async def _page(self, request: web.Request) -> web.Response:
        name = request.path.strip("/") or "index.html"
        ctype = {"html": "text/html", "js": "application/javascript", "css": "text/css"}[name.rsplit(".", 1)[1]]
        return web.Response(text=self._static[name], content_type=ctype, headers={"Cache-Control": "no-cache"})

    async def _health(self, request: web.Request) -> web.Response:
        if request.path == "/favicon.ico":
            return web.Response(status=204)
        return web.json_response({"ok": True, "state": self.pipeline.state})

    async def _config(self, _request: web.Request) -> web.Response:
        return web.json_response(
            {
                "styles": [s.name for s in list_styles()],
                "style": self.pipeline.style.name,
                "source": "browser" if self.pipeline.browser is not None else self.pipeline.config.source,
                "codec": self.config.codec,
                "bitrate": self.config.bitrate,
                "blend": self.pipeline.blend_alpha,
                "blend_available": self.pipeline.stats()["blend_available"],
                "ice_servers": list(self.config.ice_servers),
                "max_viewers": self.config.max_viewers,
                "stamp": self.pipeline.config.stamp,
            }
        )

    async def _stats(self, _request: web.Request) -> web.Response:
        stats = self.pipeline.stats()
        stats.update(
            viewers=len(self.sessions),
            publishers=sum(s.publisher for s in self.sessions.values()),
            sessions_total=self.sessions_total,
            frames_sent=self.fanout.sent(),
            track_errors=self.fanout.track_errors,
            rejected=self.rejected,
            cpu_percent=round(self.cpu_percent, 1),
            rss_mb=round(_rss_bytes() / 2**20, 1),
            asyncio_tasks=len(asyncio.all_tasks()),
        )
        return web.json_response(stats)

    async def _json(self, request: web.Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise web.HTTPBadRequest(text=f"body is not valid JSON: {e}") from None
        if not isinstance(body, dict):
            raise web.HTTPBadRequest(text="body must be a JSON object")
        return body

    async def _offer(self, request: web.Request) -> web.Response:
        body = await self._json(request)
        sdp, kind = body.get("sdp"), body.get("type")
        if not isinstance(sdp, str) or kind != "offer":
            raise web.HTTPBadRequest(text='expected {"sdp": "<offer SDP>", "type": "offer"}')
        session, answer = await self._answer(
            sdp, "page", original=bool(body.get("original")), publish=bool(body.get("publish"))
        )
        return web.json_response({"sdp": answer, "type": "answer", "id": session.id})

    async def _whep(self, request: web.Request) -> web.Response:
        if request.content_type != "application/sdp":
            raise web.HTTPUnsupportedMediaType(text="WHEP offers must be Content-Type: application/sdp")
        try:
            sdp = (await request.read()).decode("utf-8")
        except UnicodeDecodeError:
            raise web.HTTPBadRequest(text="the SDP offer is not UTF-8 text") from None
        session, answer = await self._answer(sdp, "whep", original=False, publish=False)
        return web.Response(
            status=201,
            text=answer,
            content_type="application/sdp",
            headers={"Location": f"/whep/{session.id}", "ETag": f'"{session.id}"'},
        )

    async def _whep_options(self, _request: web.Request) -> web.Response:
        return web.Response(status=204, headers={
            "Access-Control-Allow-Methods": "POST, DELETE, OPTIONS",
            "Access-Control-Allow-Headers": "Authorization, Content-Type",
        })  # fmt: skip

    async def _whep_patch(self, _request: web.Request) -> web.Response:
        # aiortc does not trickle ICE: the answer already carries every candidate.
        raise web.HTTPMethodNotAllowed("PATCH", ["DELETE"], text="trickle ICE is not supported; the answer has all candidates")

    async def _delete(self, request: web.Request) -> web.Response:
        sid = request.match_info["id"]
        if sid not in self.sessions:
            raise web.HTTPNotFound(text=f"no session {sid}")
        await self.close_session(sid)
        return web.Response(status=200, text="")

    async def _style(self, request: web.Request) -> web.Response:
        body = await self._json(request)
        name = body.get("style")
        if not isinstance(name, str) or not name:
            raise web.HTTPBadRequest(text='expected {"style": "<name>"}')
        known = {s.name for s in list_styles()}
        if name not in known:  # names only: a viewer may not point the server at arbitrary files
            raise web.HTTPBadRequest(text=f"unknown style {name!r}; available: {', '.join(sorted(known))}")
        loop = asyncio.get_running_loop()
        style = await loop.run_in_executor(None, self.pipeline.set_style, name)  # engine build is slow
        return web.json_response({"style": style.name})

    async def _blend(self, request: web.Request) -> web.Response:
        body = await self._json(request)
        alpha = body.get("alpha")
        if not isinstance(alpha, int | float) or isinstance(alpha, bool):
            raise web.HTTPBadRequest(text='expected {"alpha": <number>}')
        self.pipeline.set_blend(float(alpha))
        return web.json_response({"alpha": self.pipeline.blend_alpha, "available": self.pipeline.stats()["blend_available"]})

    # ------------------------------------------------------------------ sessions

    async def _answer(self, offer: str, kind: str, *, original: bool, publish: bool) -> tuple[Session, str]:
        if len(self.sessions) + self._admitting >= self.config.max_viewers:
            raise web.HTTPServiceUnavailable(
                text=f"server is full ({self.config.max_viewers} viewers, --max-viewers)", headers={"Retry-After": "10"}
            )
        if not offer.lstrip().startswith("v=0") or "\nm=" not in offer:
            raise web.HTTPBadRequest(text="malformed SDP: an offer starts with v=0 and has m= lines")
        if "\nm=video" not in offer:
            raise web.HTTPBadRequest(text="the offer has no video m-line: add a video transceiver")
        if publish and self.pipeline.browser is None:
            raise web.HTTPBadRequest(text="this server does not take a browser camera (start it with --source browser)")
        offer = prefer_codec_in_offer(offer, self.config.codec)
        self._admitting += 1
        pc = RTCPeerConnection(self.rtc_config)
        session = Session(secrets.token_urlsafe(9), pc, kind, publisher=publish)
        try:
            if publish:  # aiortc fires "track" inside setRemoteDescription: listen first
                self._take_camera(session)
            try:
                await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
            except Exception as e:  # aiortc raises ValueError/KeyError/... on bad SDP
                raise web.HTTPBadRequest(text=f"malformed SDP offer: {type(e).__name__}: {str(e)[:160]}") from None
            video = [t for t in pc.getTransceivers() if t.kind == "video"]
            session.tracks.append(self.fanout.subscribe("stylized"))
            if original and len(video) > 1:
                session.tracks.append(self.fanout.subscribe("original"))
            for track in session.tracks:
                pc.addTrack(track)
            answer = await asyncio.wait_for(pc.createAnswer(), self.config.offer_timeout_s)
            await asyncio.wait_for(pc.setLocalDescription(answer), self.config.offer_timeout_s)
        except BaseException:
            for track in session.tracks:
                track.stop()
            await pc.close()
            raise
        finally:
            self._admitting -= 1
        self.sessions[session.id] = session
        self.sessions_total += 1

        @pc.on("connectionstatechange")
        async def _on_state() -> None:
            log.info("session %s: %s", session.id, pc.connectionState)
            if pc.connectionState in ("failed", "closed"):
                await self.close_session(session.id)

        sdp = pc.localDescription.sdp
        if self.config.bitrate:
            sdp = add_bitrate_fmtp(sdp, self.config.bitrate // 1000)
        log.info("session %s (%s%s) opened; %d viewers", session.id, kind, ", camera" if publish else "", len(self.sessions))
        return session, sdp

    def _take_camera(self, session: Session) -> None:
        """Make this session's incoming video the pipeline input (the newest publisher wins)."""
        browser = self.pipeline.browser
        assert browser is not None

        @session.pc.on("track")
        def _on_track(track: Any) -> None:
            if track.kind != "video":
                return
            browser.publisher = session.id
            log.info("session %s: camera track is now the input", session.id)
            session.tasks.append(asyncio.create_task(self._pump(session, track)))

    async def _pump(self, session: Session, track: Any) -> None:
        browser = self.pipeline.browser
        assert browser is not None
        try:
            while True:
                try:
                    frame = await track.recv()
                except MediaStreamError:  # the viewer left
                    break
                if browser.publisher == session.id:
                    browser.push(frame)
        finally:  # also when close_session cancels us
            if browser.release(session.id):
                self.pipeline.state = "waiting for a browser camera"
                log.info("session %s: camera gone; waiting for another", session.id)

    async def close_session(self, sid: str) -> None:
        session = self.sessions.pop(sid, None)
        if session is None:
            return
        for t in session.tasks:
            t.cancel()
        for track in session.tracks:
            track.stop()
        await session.pc.close()
        log.info("session %s closed; %d viewers", sid, len(self.sessions))

    # ------------------------------------------------------------------ background

    async def _sample_cpu(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            t, c = time.monotonic(), _cpu_seconds()
            t0, c0 = self._cpu
            self.cpu_percent = 100.0 * (c - c0) / max(t - t0, 1e-6)
            self._cpu = (t, c)


def _cpu_seconds() -> float:
    """User+system CPU seconds of this process, all threads (100% = one core)."""
    t = os.times()
    return t.user + t.system


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return 0


async def serve(server: StreamServer, stop: asyncio.Event, on_ready: Callable[[int], None]) -> None:
    """Run ``server`` until ``stop`` is set (``on_ready(port)`` once listening), then close peers and the site."""
    runner = web.AppRunner(server.app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, server.config.host, server.config.port)
        try:
            await site.start()
        except OSError as e:
            raise VstError(f"cannot listen on {server.config.host}:{server.config.port}: {e.strerror or e}") from None
        on_ready(_bound_port(runner))
        await stop.wait()
    finally:
        await runner.cleanup()


def _bound_port(runner: web.AppRunner) -> int:
    for site in runner.sites:
        server = getattr(site, "_server", None)
        if server is not None and server.sockets:
            return int(server.sockets[0].getsockname()[1])
    raise RuntimeError("HTTP site has no socket")
