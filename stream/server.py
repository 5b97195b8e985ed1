"""The aiohttp app: viewer page, JSON offer/answer, WHEP, live controls and /stats.

Endpoints (all but the static page and /health need the token when one is set, as
``Authorization: Bearer TOKEN`` or ``?token=TOKEN``):

    GET  /                 viewer page (index.html, viewer.js, viewer.css)
    GET  /config           styles, codec, ICE servers, source kind (what the page needs)
    POST /offer            JSON {sdp, type: "offer", original?: bool, publish?: bool} -> {sdp, type, id}
    DELETE /session/{id}   end a page session
    POST /whep             application/sdp offer -> 201, Location: /whep/{id}, SDP answer
    DELETE /whep/{id}      end a WHEP session
    POST /whip             (--source whip) application/sdp offer with a camera -> 201, Location: /whip/{id};
                           one publisher at a time (409 for a second); it becomes the pipeline input
    DELETE /whip/{id}      end the WHIP publish
    POST /style            JSON {style: name} -> switch style for everyone (400 for unknown)
    POST /blend            JSON {alpha: float} -> temporal blend strength
    GET  /stats            JSON: source fps, inference ms, viewers, dropped frames, errors, CPU, RSS
    GET  /health           {"ok": true} (no token: for liveness probes)

Hardening (docs/reliability.md, "Threat model"):
- Host: only names this server serves (localhost, loopback, the bound/interface addresses,
  ``--allowed-host``) are answered: a DNS-rebinding page gets 421.
- Cross-site: state-changing requests must carry JSON (or SDP for WHEP), so browsers preflight
  them, and a foreign ``Origin`` is refused (403). WHEP stays open cross-origin when a token guards it.
- Sessions: a session not connected within ``connect_timeout_s`` is closed; half-open sessions have
  their own small cap (``max_pending``; the oldest is dropped for a new offer), so they never hold a
  viewer slot; a viewer whose peer goes silent (no RTCP/DTLS for ``viewer_timeout_s``) is closed.
- Bodies are read within ``body_timeout_s``; request headers must arrive within ``header_timeout_s``.
- Source URLs are shown with their credentials redacted.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import logging
import math
import os
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from aiohttp import web
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from vst.errors import VstError
from vst.redact import redact_text, redact_url
from vst.stream.pipeline import Pipeline
from vst.stream.encode import EncodedTrack, EncoderConfig
from vst.stream.webrtc import Fanout, add_bitrate_fmtp, negotiated_video_codec, prefer_codec_in_offer, rtc_configuration
from vst.styles import check_style, list_styles, resolve_style

if TYPE_CHECKING:
    from vst.stream.whip import WhipPublisher

log = logging.getLogger("vst.server")


@dataclass(frozen=True)
class ServerConfig:
    """How the server listens and admits viewers."""

    host: str = "127.0.0.1"
    """Bind address (HTTP and ICE host candidates when it is a loopback address)."""
    port: int = 8080
    """TCP port; 0 picks a free one."""
    token: str | None = None
    """Shared secret every API call must carry; None disables the check (never an empty string)."""
    max_viewers: int = 8
    """Concurrent connected viewers; one more gets 503."""
    max_pending: int = 4
    """Sessions answered but not yet connected (ICE/DTLS in progress). A new offer beyond this drops
    the oldest half-open one, so offers that never connect cannot lock real viewers out."""
    connect_timeout_s: float = 15.0
    """A session not connected this long after its answer is closed."""
    viewer_timeout_s: float = 6.0
    """A connected viewer that sends nothing (RTCP, DTLS, ICE-over-DTLS) this long has left: closed.
    Browsers and aiortc send RTCP about every second; ICE consent alone would take ~30 s."""
    codec: str = "vp8"
    """'vp8' or 'h264': what the server sends."""
    bitrate: int | None = None
    """Video bitrate in bps: fixed for the shared encoder; the start/ceiling of per-viewer encoders.
    None: the shared encoder follows the slowest viewer's estimate (per-viewer: aiortc's defaults)."""
    per_viewer_encoder: bool = False
    """Give every viewer its own encoder (its own bitrate from its own estimate, N times the encode
    CPU) instead of one shared encode per codec (``vst.stream.encode``)."""
    ice_servers: tuple[str, ...] = ()
    """STUN/TURN URLs handed to aiortc and to the page."""
    whip_ingest: bool = False
    """Take the input camera over WHIP (``POST /whip``, ``--source whip``); needs a pipeline with a
    browser source. The viewer page then only watches."""
    allowed_hosts: tuple[str, ...] = ()
    """Extra Host names (and trusted page origins' host names) to answer, besides localhost, the
    loopback addresses and the bound address (every interface address when bound to 0.0.0.0)."""
    max_body: int = 64 * 1024
    """Largest request body accepted (413 above it); a browser offer is ~5-10 KB."""
    body_timeout_s: float = 10.0
    """A request body must arrive within this (408 otherwise): slow clients cannot hold handlers."""
    header_timeout_s: float = 10.0
    """A connection must send its request headers within this, and is closed after this long idle."""
    offer_timeout_s: float = 15.0
    """Upper bound on answering one offer (ICE gathering included)."""

    def __post_init__(self) -> None:
        if self.token is not None and not self.token.strip():
            raise VstError("the token is empty: pass a non-empty --token, or leave it out (and use --no-auth off loopback)")
        for name in ("max_viewers", "max_pending", "max_body"):
            if getattr(self, name) < 1:
                raise VstError(f"{name} must be at least 1")
        for name in ("connect_timeout_s", "viewer_timeout_s", "body_timeout_s", "header_timeout_s", "offer_timeout_s"):
            value = getattr(self, name)
            if not math.isfinite(value) or value <= 0:
                raise VstError(f"{name} must be a positive number of seconds, got {value}")


@dataclass
class Session:
    """One viewer's peer connection."""

    id: str
    pc: RTCPeerConnection
    kind: str
    """'page' (JSON offer) or 'whep'."""
    publisher: bool = False
    peer: str = ""
    """The client's address, for logs."""
    created: float = field(default_factory=time.monotonic)
    connected: asyncio.Event = field(default_factory=asyncio.Event)
    """Set once ICE and DTLS completed: only then does the session hold a viewer slot."""
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    tracks: list[Any] = field(default_factory=list)


class ClientGone(Exception):
    """The client went away while we read its request: nothing to answer, nothing to log loudly."""


def _error(status: int, message: str, *, sdp: bool = False) -> web.Response:
    if sdp:
        return web.Response(status=status, text=message + "\n", content_type="text/plain")
    return web.json_response({"error": message}, status=status)


class StreamServer:
    """Owns the sessions, the fan-out and the HTTP app around one running ``Pipeline``."""

    def __init__(self, pipeline: Pipeline, config: ServerConfig) -> None:
        self.pipeline = pipeline
        self.config = config
        self.fanout = Fanout(pipeline, EncoderConfig(codec=config.codec, fixed_bitrate=config.bitrate))  # type: ignore[arg-type]
        self.rtc_config = rtc_configuration(list(config.ice_servers))
        self.sessions: dict[str, Session] = {}
        self.rejected: dict[str, int] = {}
        self.sessions_total = 0
        self.closed_reasons: dict[str, int] = {}
        self._admitting = 0  # offers being answered, counted as half-open
        self._whip_publisher: str | None = None  # the WHIP ingest session holding the input ("" while answered)
        self._switching = False  # one style switch at a time: each builds an engine
        self._hosts, self._host_ips = served_hosts(config.host, config.allowed_hosts)
        self._cpu: tuple[float, float] = (time.monotonic(), _cpu_seconds())
        self.cpu_percent = 0.0
        self._sampler: asyncio.Task[None] | None = None
        self.publisher: WhipPublisher | None = None
        """Publishes the stylized output to an SFU over WHIP (``--publish``); set before serving."""
        self.app = self._build_app()

    # ------------------------------------------------------------------ app

    def _build_app(self) -> web.Application:
        app = web.Application(
            client_max_size=self.config.max_body, middlewares=[self._headers, self._errors, self._guard, self._auth]
        )
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
        if self.config.whip_ingest:
            app.router.add_post("/whip", self._whip)
            app.router.add_delete("/whip/{id}", self._delete)
            app.router.add_patch("/whip/{id}", self._whep_patch)
            app.router.add_route("OPTIONS", "/whip", self._whep_options)
            app.router.add_route("OPTIONS", "/whip/{id}", self._whep_options)
        app.router.add_route("OPTIONS", "/whep/{id}", self._whep_options)
        app.router.add_post("/style", self._style)
        app.router.add_post("/blend", self._blend)
        app.on_startup.append(self._on_startup)
        app.on_shutdown.append(self._on_shutdown)
        return app

    async def _on_startup(self, _app: web.Application) -> None:
        self._sampler = asyncio.create_task(self._sample_cpu())
        if self.publisher is not None:
            self.publisher.start()

    async def _on_shutdown(self, _app: web.Application) -> None:
        await self.close_all()

    async def close_all(self) -> None:
        """Close every peer connection (clean shutdown)."""
        if self._sampler is not None:
            self._sampler.cancel()
        if self.publisher is not None:
            await self.publisher.stop()  # DELETEs the WHIP session
        await asyncio.gather(*(self.close_session(sid) for sid in list(self.sessions)), return_exceptions=True)
        await self.fanout.close()

    # ------------------------------------------------------------------ middlewares

    @web.middleware
    async def _errors(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """Every failure is a 4xx/5xx with a one-line message; nothing reaches a viewer's session."""
        sdp = request.path.startswith(("/whep", "/whip"))
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
            for k in ("Retry-After", "Allow", "Connection"):
                if k in e.headers:
                    resp.headers[k] = e.headers[k]
            if e.status == 408:
                resp.force_close()
            return resp
        except VstError as e:
            self._count("400")
            return _error(400, redact_text(str(e)), sdp=sdp)
        except ClientGone as e:  # one debug line, not a traceback per slow or vanished client
            self._count("client_gone")
            log.debug("%s %s: client went away mid-request (%s)", request.method, request.path, e)
            resp = _error(400, "request body incomplete", sdp=sdp)
            resp.force_close()
            return resp
        except (RecursionError, OverflowError, UnicodeError) as e:  # hostile input deep inside a parser
            self._count("400")
            return _error(400, f"malformed request: {type(e).__name__}", sdp=sdp)
        except Exception:
            log.exception("%s %s failed", request.method, request.path)
            self._count("500")
            return _error(500, "internal error (see the server log)", sdp=sdp)

    @web.middleware
    async def _headers(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """WHEP players may live on another origin: let them read Location (the token still guards).
        Every response: no sniffing, no referrer (the page URL carries the token), no framing
        (a framed viewer page would be clickjackable into same-origin style switches)."""
        resp = await handler(request)
        if request.path.startswith(("/whep", "/whip")):
            resp.headers["Access-Control-Allow-Origin"] = "*"
            resp.headers["Access-Control-Expose-Headers"] = "Location, ETag"
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        resp.headers.setdefault("Referrer-Policy", "no-referrer")
        resp.headers.setdefault("X-Frame-Options", "DENY")
        resp.headers.setdefault("Content-Security-Policy", "frame-ancestors 'none'")
        return resp

    @web.middleware
    async def _guard(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """Host allow-list (DNS rebinding), foreign-Origin refusal and content types (cross-site requests)."""
        host = request.headers.get("Host")
        if host is not None and not self._host_allowed(host):
            raise web.HTTPMisdirectedRequest(
                text=f"this server does not answer for host {host[:100]!r}; start vst-stream with --allowed-host NAME to allow it"
            )
        if request.method not in ("GET", "HEAD", "OPTIONS"):
            origin = request.headers.get("Origin")
            whep = request.path.startswith(("/whep", "/whip"))
            if origin is not None and not self._same_origin(origin, host) and not (whep and self.config.token):
                hint = " (cross-origin WHEP/WHIP clients need a server started with --token)" if whep else ""
                raise web.HTTPForbidden(text=f"cross-origin request from {origin[:100]!r} refused{hint}")
            expected = _BODY_TYPES.get((request.method, request.path.split("/")[1] if "/" in request.path else ""))
            if expected and request.content_type != expected:
                raise web.HTTPUnsupportedMediaType(
                    text=f"{request.method} {request.path} needs Content-Type: {expected}, not {request.content_type!r}"
                )
        return await handler(request)

    def _host_allowed(self, host: str) -> bool:
        name = _host_name(host)
        if name in self._hosts:
            return True
        try:
            return ipaddress.ip_address(name) in self._host_ips
        except ValueError:
            return False

    def _same_origin(self, origin: str, host: str | None) -> bool:
        """The page that sent this is served here: its origin's host:port is the request's Host, or an
        --allowed-host (a trusted front end, e.g. a reverse proxy's public name)."""
        try:
            parts = urlsplit(origin)
            port = parts.port
        except ValueError:
            return False
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return False  # 'null' (sandboxed frames, file://) and anything odd
        default = 443 if parts.scheme == "https" else 80
        origin_hostport = f"{parts.hostname}:{port or default}"
        if host is not None:
            name, _, hport = _split_host(host)
            if origin_hostport == f"{name}:{hport or default}":
                return True
        return parts.hostname.rstrip(".") in {h.lower().rstrip(".") for h in self.config.allowed_hosts}

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
        # open to anyone who can reach the port: the state must not carry a camera password
        return web.json_response({"ok": True, "state": redact_text(self.pipeline.state)})

    async def _config(self, _request: web.Request) -> web.Response:
        return web.json_response(
            {
                "styles": [s.name for s in list_styles()],
                "style": self.pipeline.style.name,
                "source": ("whip" if self.config.whip_ingest else "browser") if self.pipeline.browser is not None
                          else redact_url(self.pipeline.config.source),  # fmt: skip
                "codec": self.config.codec,
                "bitrate": self.config.bitrate,
                "blend": self.pipeline.blend_alpha,
                # TURN credentials are for the page's own peer connection: every token holder is a viewer
                "ice_servers": list(self.config.ice_servers),
                "max_viewers": self.config.max_viewers,
                "stamp": self.pipeline.config.stamp,
            },
            headers={"Cache-Control": "no-store"},
        )

    def connected_sessions(self) -> list[Session]:
        """Connected viewers (what --max-viewers counts); a WHIP ingest publisher is not one."""
        return [s for s in self.sessions.values() if s.connected.is_set() and s.kind != "whip"]

    def pending_sessions(self) -> list[Session]:
        """Answered, not connected yet, oldest first."""
        return sorted((s for s in self.sessions.values() if not s.connected.is_set()), key=lambda s: s.created)

    async def _stats(self, _request: web.Request) -> web.Response:
        stats = self.pipeline.stats()
        for key in ("source", "state", "last_error"):
            if isinstance(stats.get(key), str):
                stats[key] = redact_text(stats[key])
        connected = self.connected_sessions()
        stats.update(
            viewers=len(connected),
            connecting=len(self.pending_sessions()) + self._admitting,
            publishers=sum(s.publisher and s.connected.is_set() for s in self.sessions.values()),
            sessions_total=self.sessions_total,
            sessions_closed=self.closed_reasons,
            frames_sent=self.fanout.sent(),
            encoding="per-viewer" if self.config.per_viewer_encoder else "shared",
            encoders=self.fanout.encoder_stats(),
            track_errors=self.fanout.track_errors,
            rejected=self.rejected,
            cpu_percent=round(self.cpu_percent, 1),
            rss_mb=round(_rss_bytes() / 2**20, 1),
            asyncio_tasks=len(asyncio.all_tasks()),
            publish=self.publisher.stats() if self.publisher is not None else None,
        )
        return web.json_response(stats, headers={"Cache-Control": "no-store"})

    async def _read_body(self, request: web.Request) -> bytes:
        """The whole body, within ``body_timeout_s`` (408) and ``max_body`` (413); a client that
        vanishes mid-body is ``ClientGone``."""
        try:
            return await asyncio.wait_for(request.read(), self.config.body_timeout_s)
        except asyncio.TimeoutError:
            raise web.HTTPRequestTimeout(text=f"request body not received within {self.config.body_timeout_s:g} s") from None
        except (ConnectionError, web.RequestPayloadError, asyncio.IncompleteReadError) as e:
            raise ClientGone(f"{type(e).__name__}: {e}") from None

    async def _json(self, request: web.Request) -> dict[str, Any]:
        raw = await self._read_body(request)
        try:
            body = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
        except UnicodeDecodeError:
            raise web.HTTPBadRequest(text="body is not UTF-8 text") from None
        except RecursionError:
            raise web.HTTPBadRequest(text="body is nested too deeply") from None
        except ValueError as e:  # JSONDecodeError, NaN/Infinity, and the int-digits limit
            raise web.HTTPBadRequest(text=f"body is not valid JSON: {str(e)[:120]}") from None
        if not isinstance(body, dict):
            raise web.HTTPBadRequest(text="body must be a JSON object")
        return body

    async def _offer(self, request: web.Request) -> web.Response:
        body = await self._json(request)
        sdp, kind = body.get("sdp"), body.get("type")
        if not isinstance(sdp, str) or kind != "offer":
            raise web.HTTPBadRequest(text='expected {"sdp": "<offer SDP>", "type": "offer"}')
        flags = {}
        for name in ("original", "publish"):
            value = body.get(name, False)
            if not isinstance(value, bool):
                raise web.HTTPBadRequest(text=f'"{name}" must be true or false')
            flags[name] = value
        session, answer = await self._answer(sdp, "page", original=flags["original"], publish=flags["publish"], peer=request.remote)
        return web.json_response({"sdp": answer, "type": "answer", "id": session.id})

    async def _whep(self, request: web.Request) -> web.Response:
        if request.content_type != "application/sdp":
            raise web.HTTPUnsupportedMediaType(text="WHEP offers must be Content-Type: application/sdp")
        try:
            sdp = (await self._read_body(request)).decode("utf-8")
        except UnicodeDecodeError:
            raise web.HTTPBadRequest(text="the SDP offer is not UTF-8 text") from None
        session, answer = await self._answer(sdp, "whep", original=False, publish=False, peer=request.remote)
        return web.Response(
            status=201,
            text=answer,
            content_type="application/sdp",
            headers={"Location": f"/whep/{session.id}", "ETag": f'"{session.id}"'},
        )

    async def _whip(self, request: web.Request) -> web.Response:
        """WHIP ingest (RFC 9725): the offer's video becomes the pipeline input. One publisher at a time."""
        if self._whip_publisher is not None:
            holder = self.sessions.get(self._whip_publisher)
            since = f" for {time.monotonic() - holder.created:.0f} s" if holder is not None else ""
            raise web.HTTPConflict(text=f"this server already has a WHIP publisher (connected{since}); one at a time: "
                                        f"it must DELETE its session first (a vanished one is dropped within "
                                        f"{self.config.viewer_timeout_s + 2:.0f} s)")  # fmt: skip
        self._whip_publisher = ""  # reserved before the first await: two POSTs at once cannot both pass
        try:
            try:
                sdp = (await self._read_body(request)).decode("utf-8")
            except UnicodeDecodeError:
                raise web.HTTPBadRequest(text="the SDP offer is not UTF-8 text") from None
            session, answer = await self._answer(sdp, "whip", original=False, publish=True, peer=request.remote,
                                                 subscribe=False)  # fmt: skip
        except BaseException:
            self._whip_publisher = None
            raise
        self._whip_publisher = session.id
        return web.Response(
            status=201,
            text=answer,
            content_type="application/sdp",
            headers={"Location": f"/whip/{session.id}", "ETag": f'"{session.id}"'},
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
            raise web.HTTPNotFound(text=f"no session {sid[:40]}")
        await self.close_session(sid, "deleted")
        return web.Response(status=200, text="")

    async def _style(self, request: web.Request) -> web.Response:
        body = await self._json(request)
        name = body.get("style")
        if not isinstance(name, str) or not name or len(name) > 200:
            raise web.HTTPBadRequest(text='expected {"style": "<name>"}')
        known = {s.name for s in list_styles()}
        if name not in known:  # names only: a viewer may not point the server at arbitrary files
            raise web.HTTPBadRequest(text=f"unknown style {name[:80]!r}; available: {', '.join(sorted(known))}")
        if self._switching:
            raise web.HTTPTooManyRequests(text="a style switch is already in progress", headers={"Retry-After": "2"})
        self._switching = True
        try:
            loop = asyncio.get_running_loop()

            def switch() -> Any:  # engine builds are slow: off the event loop
                check_style(resolve_style(name))  # a broken style is a 400 here, not errors in every frame
                return self.pipeline.set_style(name)

            style = await loop.run_in_executor(None, switch)
        finally:
            self._switching = False
        return web.json_response({"style": style.name})

    async def _blend(self, request: web.Request) -> web.Response:
        body = await self._json(request)
        alpha = body.get("alpha")
        if not isinstance(alpha, int | float) or isinstance(alpha, bool):
            raise web.HTTPBadRequest(text='expected {"alpha": <number>}')
        try:
            value = float(alpha)
        except OverflowError:
            raise web.HTTPBadRequest(text="alpha is out of range (0..1)") from None
        if not math.isfinite(value):
            raise web.HTTPBadRequest(text="alpha must be a finite number")
        self.pipeline.set_blend(value)
        return web.json_response({"alpha": self.pipeline.blend_alpha})

    # ------------------------------------------------------------------ sessions

    async def _answer(self, offer: str, kind: str, *, original: bool, publish: bool, peer: str | None = None,
                      subscribe: bool = True) -> tuple[Session, str]:  # fmt: skip
        """Answer ``offer``: a session that receives the stylized stream (``subscribe``) and/or sends
        its camera as the input (``publish``)."""
        if subscribe and len(self.connected_sessions()) >= self.config.max_viewers:
            raise web.HTTPServiceUnavailable(
                text=f"server is full ({self.config.max_viewers} viewers, --max-viewers)", headers={"Retry-After": "10"}
            )
        if not offer.lstrip().startswith("v=0") or "\nm=" not in offer:
            raise web.HTTPBadRequest(text="malformed SDP: an offer starts with v=0 and has m= lines")
        if "\nm=video" not in offer:
            raise web.HTTPBadRequest(text="the offer has no video m-line: add a video transceiver")
        if offer.count("\nm=") > MAX_MEDIA_SECTIONS:  # each costs a transceiver and, unbundled, an ICE transport
            raise web.HTTPBadRequest(text=f"the offer has more than {MAX_MEDIA_SECTIONS} media sections")
        if publish and self.pipeline.browser is None:
            raise web.HTTPBadRequest(text="this server does not take a browser camera (start it with --source browser)")
        if publish and kind != "whip" and self.config.whip_ingest:
            raise web.HTTPBadRequest(text="this server takes its camera over WHIP only (POST /whip)")
        offer = prefer_codec_in_offer(offer, self.config.codec)
        await self._make_room_for_pending()
        self._admitting += 1
        pc = RTCPeerConnection(self.rtc_config)
        session = Session(secrets.token_urlsafe(9), pc, kind, publisher=publish, peer=peer or "")

        @pc.on("connectionstatechange")
        async def _on_state() -> None:
            log.info("session %s: %s", session.id, pc.connectionState)
            if pc.connectionState == "connected":
                session.connected.set()
            elif pc.connectionState in ("failed", "closed"):
                await self.close_session(session.id, pc.connectionState)

        try:
            if publish:  # aiortc fires "track" inside setRemoteDescription: listen first
                self._take_camera(session)
            try:
                await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
            except Exception as e:  # aiortc raises ValueError/KeyError/... on bad SDP
                raise web.HTTPBadRequest(text=f"malformed SDP offer: {type(e).__name__}: {str(e)[:160]}") from None
            video = [t for t in pc.getTransceivers() if t.kind == "video"]
            subscribe_to = self.fanout.subscribe if self.config.per_viewer_encoder else self.fanout.subscribe_encoded
            if subscribe:
                session.tracks.append(subscribe_to("stylized"))
            if subscribe and original and len(video) > 1:
                session.tracks.append(subscribe_to("original"))
            senders = [pc.addTrack(track) for track in session.tracks]
            answer = await asyncio.wait_for(pc.createAnswer(), self.config.offer_timeout_s)
            await asyncio.wait_for(pc.setLocalDescription(answer), self.config.offer_timeout_s)
            negotiated = negotiated_video_codec(pc.localDescription.sdp)
            for i, (track, sender) in enumerate(zip(session.tracks, senders)):
                if not isinstance(track, EncodedTrack):
                    continue
                if negotiated == self.config.codec:
                    track.tap(sender)  # PLI/FIR -> keyframe, REMB -> bitrate
                else:  # cannot happen after prefer_codec_in_offer; a raw track is always safe
                    log.warning("session %s negotiated %s, not %s: it gets its own encoder", session.id, negotiated, self.config.codec)
                    track.stop()
                    session.tracks[i] = self.fanout.subscribe(track.picture)
                    sender.replaceTrack(session.tracks[i])
        except BaseException:
            for track in session.tracks:
                track.stop()
            await pc.close()
            raise
        finally:
            self._admitting -= 1
        self.sessions[session.id] = session
        self.sessions_total += 1
        session.tasks.append(asyncio.create_task(self._watch(session)))

        sdp = pc.localDescription.sdp
        if self.config.bitrate:
            sdp = add_bitrate_fmtp(sdp, self.config.bitrate // 1000)
        log.info("session %s (%s%s) answered for %s; %d connected, %d connecting", session.id, kind,
                 ", camera" if publish else "", session.peer or "?", len(self.connected_sessions()),
                 len(self.pending_sessions()))  # fmt: skip
        return session, sdp

    async def _make_room_for_pending(self) -> None:
        """Keep half-open sessions under ``max_pending``: the oldest gives way to a new offer.

        Offers whose ICE never completes (no candidates, a client that vanished) would otherwise
        hold their place until the connect timeout and, with a flood, keep every real viewer out.
        """
        while True:
            pending = self.pending_sessions()
            if len(pending) + self._admitting < self.config.max_pending:
                return
            if not pending:  # every half-open slot is an offer being answered right now
                raise web.HTTPServiceUnavailable(text="too many sessions are being set up at once; retry", headers={"Retry-After": "2"})
            log.info("session %s: dropped, still not connected after %.1f s (too many half-open sessions)",
                     pending[0].id, time.monotonic() - pending[0].created)  # fmt: skip
            await self.close_session(pending[0].id, "evicted (half-open)")

    async def _watch(self, session: Session) -> None:
        """Close ``session`` when it does not connect in time, or when its peer goes silent."""
        try:
            await asyncio.wait_for(session.connected.wait(), self.config.connect_timeout_s)
        except asyncio.TimeoutError:
            log.info("session %s: not connected within %.0f s; closed", session.id, self.config.connect_timeout_s)
            await self.close_session(session.id, "connect timeout")
            return
        if session.kind != "whip" and len(self.connected_sessions()) > self.config.max_viewers:  # several half-open ones connected at once
            log.info("session %s: connected, but the server is full; closed", session.id)
            await self.close_session(session.id, "full")
            return
        log.info("session %s connected (%s); %d viewers", session.id, session.peer or "?", len(self.connected_sessions()))
        last_rx, last_change = -1, time.monotonic()
        poll = min(1.0, self.config.viewer_timeout_s / 3)
        while session.id in self.sessions:
            await asyncio.sleep(poll)
            rx = await _packets_received(session.pc)
            now = time.monotonic()
            if rx is None or rx != last_rx:
                last_rx, last_change = (rx if rx is not None else last_rx), now
            elif now - last_change > self.config.viewer_timeout_s:
                log.info("session %s: nothing received for %.0f s; the %s left", session.id, now - last_change,
                         "WHIP publisher" if session.kind == "whip" else "viewer")  # fmt: skip
                await self.close_session(session.id, "viewer silent")
                return

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
                self.pipeline.camera_released()
                log.info("session %s: camera gone; waiting for another", session.id)

    async def close_session(self, sid: str, reason: str = "closed") -> None:
        session = self.sessions.pop(sid, None)
        if session is None:
            return
        self.closed_reasons[reason] = self.closed_reasons.get(reason, 0) + 1
        if self._whip_publisher == sid:
            self._whip_publisher = None
        current = asyncio.current_task()
        for t in session.tasks:
            if t is not current:  # the watchdog may be the one closing: it must finish pc.close()
                t.cancel()
        for track in session.tracks:
            track.stop()
        await session.pc.close()
        log.info("session %s closed (%s); %d viewers", sid, reason, len(self.connected_sessions()))

    # ------------------------------------------------------------------ background

    async def _sample_cpu(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            t, c = time.monotonic(), _cpu_seconds()
            t0, c0 = self._cpu
            self.cpu_percent = 100.0 * (c - c0) / max(t - t0, 1e-6)
            self._cpu = (t, c)


MAX_MEDIA_SECTIONS = 4
"""The page offers at most two videos (stylized, original or camera); WHEP players one or two."""

_BODY_TYPES: dict[tuple[str, str], str] = {
    ("POST", "offer"): "application/json",
    ("POST", "style"): "application/json",
    ("POST", "blend"): "application/json",
    ("POST", "whep"): "application/sdp",
    ("POST", "whip"): "application/sdp",
}
"""What each state-changing endpoint reads. Neither type is CORS-safelisted, so a browser must
preflight a cross-site request (which we never grant outside WHEP): a text/plain form post is refused."""


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


def _split_host(value: str) -> tuple[str, str, str]:
    """'Host' header -> (name, ':', port), the name lower-case without brackets or a trailing dot."""
    v = value.strip().lower()
    if v.startswith("["):
        end = v.find("]")
        name, rest = v[1:end] if end > 0 else v[1:], v[end + 1 :] if end > 0 else ""
        _, sep, port = rest.partition(":")
    elif v.count(":") == 1:
        name, sep, port = v.partition(":")
    else:
        name, sep, port = v, "", ""
    return name.rstrip("."), sep, port


def _host_name(value: str) -> str:
    return _split_host(value)[0]


def served_hosts(bind: str, extra: tuple[str, ...] = ()) -> tuple[set[str], set[Any]]:
    """Host names and addresses this server answers for: localhost, loopback, the bound address
    (each interface's address when bound to all), the machine's name off loopback, and ``extra``."""
    names = {"localhost"} | {_host_name(h) for h in extra if h.strip()}
    ips: set[Any] = {ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")}
    wildcard = bind in ("", "0.0.0.0", "::")
    try:
        addr = ipaddress.ip_address(bind)
        ips.add(addr)
    except ValueError:
        if not wildcard:
            names.add(_host_name(bind))
    if wildcard or (bind not in ("localhost",) and not _is_loopback_text(bind)):
        names |= {socket.gethostname().lower(), socket.gethostname().lower() + ".local"}
    if wildcard:
        ips |= _interface_addresses()
    return names, ips


def _is_loopback_text(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _interface_addresses() -> set[Any]:
    try:
        import ifaddr  # aioice's own dependency: what ICE gathers on

        raw = [ip.ip if isinstance(ip.ip, str) else ip.ip[0] for a in ifaddr.get_adapters() for ip in a.ips]
    except Exception:  # no ifaddr or no interfaces API: the name's addresses
        try:
            raw = [info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None)]
        except OSError:
            raw = []
    out = set()
    for text in raw:
        try:
            out.add(ipaddress.ip_address(text.split("%")[0]))
        except ValueError:
            pass
    return out


async def _packets_received(pc: RTCPeerConnection) -> int | None:
    """Datagrams the peer's transport has received (RTCP reports, DTLS): stops when the viewer is gone."""
    for sender in pc.getSenders():
        if sender.transport is None:
            continue
        try:
            report = await sender.getStats()
        except Exception:  # a transport closing under us
            return None
        for stat in report.values():
            if getattr(stat, "type", "") == "transport":
                return int(getattr(stat, "packetsReceived", 0))
    return None


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
    # keepalive_timeout: aiohttp closes a connection that has not sent a whole request this long
    # after connecting or after its last response (slow-header clients); lingering_time bounds how
    # long an unread body is drained after an early answer (401, 413, 408...).
    runner = web.AppRunner(server.app, access_log=None, handle_signals=False,
                           keepalive_timeout=server.config.header_timeout_s, lingering_time=2.0)  # fmt: skip
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
