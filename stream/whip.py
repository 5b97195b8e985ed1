"""WHIP client (RFC 9725): publish one video track to any WHIP ingest (Janus, LiveKit, Cloudflare…).

One publish is one HTTP exchange and one peer connection:

    POST url            application/sdp offer (non-trickle: ICE gathering done)  -> 201, Location, SDP answer
    DELETE Location     on stop, and before every re-publish (so one-publisher endpoints free their slot)

``WhipPublisher`` keeps publishing in a background task: when the connection drops (aiortc reports
failed/closed, or the server stops sending RTCP/STUN for ``silence_timeout_s``, which is how a
killed or restarted SFU shows up long before ICE consent expires) it tears the session down and
POSTs a fresh offer, with capped exponential backoff. That task never raises: every failure becomes
``stats()["last_error"]`` and one log line. ICE restarts over PATCH (optional in the RFC) are not
used: a new POST also survives a server that lost all its state.

What is sent. With ``encoded`` (what ``vst-stream --publish`` passes), each connection subscribes a
fresh ``EncodedTrack`` of the server's one ``SharedEncoder`` (``vst.stream.encode``): the SFU gets
the same ``av.Packet``s as the local viewers, the publish adds no encoder, and the SFU's PLI/FIR and
REMB reach the shared encoder through ``EncodedTrack.tap`` (a keyframe for everyone, rate-limited;
the SFU's estimate counts as one more viewer's for the bitrate). The offer puts the shared codec
first; if the server still answers with another codec, that connection falls back to its own
aiortc encoder on the raw ``track`` (logged, counted in ``stats()``). Without ``encoded``, the raw
``track`` is always encoded by the connection's own sender.

aiortc stops a sender's track when its connection closes, so the raw track is never handed to
aiortc directly: each connection gets a ``_Forward`` track reading from it, and the source outlives
every re-publish. The caller owns the source and stops it. Encoded tracks are per connection and
stopped with it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import re
import time
from dataclasses import dataclass
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urljoin, urlsplit, urlunsplit

import aiohttp
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from vst.errors import VstError
from vst.redact import MASK, redact_url
from vst.redact import redact_text as _redact_text

if TYPE_CHECKING:
    from vst.stream.encode import EncodedTrack

log = logging.getLogger("vst.whip")

State = Literal["idle", "connecting", "publishing", "retrying", "ended", "stopped"]
STABLE_S = 10.0
"""A publish that lasted this long resets the backoff; one that dies at once (a sender that fails on
every frame) keeps backing off instead of re-publishing in a tight loop."""


class WhipError(VstError):
    """A WHIP publish failed: an HTTP error answer, an unreachable server, or a connection that
    never came up. The message is one line and carries no credentials."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        """The HTTP status of the server's answer, None when there was no answer."""


@dataclass(frozen=True)
class WhipConfig:
    """How a ``WhipPublisher`` talks to its WHIP endpoint."""

    token: str | None = None
    """Sent as ``Authorization: Bearer TOKEN`` on POST and DELETE; None sends no header."""
    ice_servers: tuple[str, ...] = ()
    """STUN/TURN URLs (``--ice-server`` syntax). Empty means none at all, not aiortc's default public
    STUN server: an SFU with a public address is reached from host candidates."""
    codec: Literal["vp8", "h264"] | None = None
    """Offer only this video codec (plus RTX); None offers aiortc's list (VP8 first)."""
    request_timeout_s: float = 10.0
    """Upper bound on one HTTP request (POST or DELETE)."""
    gather_timeout_s: float = 10.0
    """Upper bound on ICE gathering before the offer is sent."""
    connect_timeout_s: float = 15.0
    """The connection must reach 'connected' this long after the answer, or the attempt fails."""
    silence_timeout_s: float = 5.0
    """A publishing connection that receives nothing (RTCP reports, STUN) this long is dead.
    SFUs send receiver reports about every second; ICE consent alone would take ~30 s."""
    backoff_initial_s: float = 0.5
    """First wait before re-publishing; doubles after each failed attempt."""
    backoff_max_s: float = 8.0
    """Cap on the wait between attempts: a restarted server is found again within this."""
    poll_interval_s: float = 1.0
    """How often the connection's stats (bytes sent, packets received) are read."""

    def __post_init__(self) -> None:
        if self.token is not None and not self.token.strip():
            raise VstError("the WHIP token is empty: pass a non-empty --publish-token or leave it out")
        if self.token is not None and any(c in self.token for c in "\r\n"):
            raise VstError("the WHIP token must be one line")
        if self.codec not in (None, "vp8", "h264"):
            raise VstError(f"WHIP codec must be vp8 or h264, not {self.codec!r}")
        for name in ("request_timeout_s", "gather_timeout_s", "connect_timeout_s", "silence_timeout_s",
                     "backoff_initial_s", "backoff_max_s", "poll_interval_s"):  # fmt: skip
            value = getattr(self, name)
            if not value > 0 or value == float("inf"):
                raise VstError(f"{name} must be a positive number of seconds, got {value}")


class _Forward(MediaStreamTrack):
    """Hands the source track's frames to one peer connection (see module docstring).

    ``recv`` only ends when the source ends (MediaStreamError) or this forwarder is stopped: any
    other error from the source is counted, logged and retried, because an exception escaping
    ``recv`` silently stops aiortc's sender while the connection stays up.
    """

    def __init__(self, source: MediaStreamTrack) -> None:
        super().__init__()
        self.kind = source.kind
        self.source = source
        self.frames = 0
        self.errors = 0

    async def recv(self) -> Any:
        while True:
            if self.readyState != "live":
                raise MediaStreamError
            try:
                frame = await self.source.recv()
            except (asyncio.CancelledError, MediaStreamError):
                raise
            except Exception:
                self.errors += 1
                if self.errors <= 3 or self.errors % 100 == 0:
                    log.exception("source track recv failed (%d errors)", self.errors)
                await asyncio.sleep(0.05)
                continue
            self.frames += 1
            return frame


class WhipPublisher:
    """Publishes ``track`` to the WHIP endpoint ``url`` and keeps it published until ``stop()``.

    ``track`` gives raw frames (each connection's own aiortc encoder sends them). ``encoded``, when
    given, makes a fresh ``EncodedTrack`` of a shared encode for each connection: those packets are
    sent instead, and ``track`` is only the fallback for a server that answers another codec (module
    docstring). ``track`` ending ends the publish in both cases.

    ``start()`` returns at once; publishing, re-publishing and errors happen in a background task.
    ``publish_once()`` is one attempt that raises ``WhipError`` (the background task is built on it).
    ``stats()`` is a JSON-ready dict: state, bytes/packets/frames sent, encoding, reconnects, last error.
    """

    def __init__(self, url: str, track: MediaStreamTrack, config: WhipConfig | None = None, *,
                 encoded: Callable[[], EncodedTrack] | None = None) -> None:  # fmt: skip
        self.url = check_whip_url(url)
        self.track = track
        self.config = config or WhipConfig()
        self.encoded = encoded
        self.encoding: Literal["shared", "own"] | None = None
        """What the current (or last) connection sends: the shared encode's packets, or its own encode."""
        self.fallbacks = 0
        """Connections that wanted the shared encode but run their own encoder (another codec answered)."""
        self.state: State = "idle"
        self.last_error: str | None = None
        self.attempts = 0
        self.publishes = 0
        self._safe = safe_url(url)
        self._rtc = self._rtc_configuration()
        self._http: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None
        self._pc: RTCPeerConnection | None = None
        self._sending: _Forward | EncodedTrack | None = None  # the current connection's track
        self._lost: asyncio.Event | None = None
        self._resource: str | None = None
        self._since: float | None = None
        self._done = {"bytes": 0, "packets": 0, "frames": 0}  # totals of finished connections
        self._live = {"bytes": 0, "packets": 0}
        self._rx = -1
        self._rng = random.Random()

    # ------------------------------------------------------------------ public API

    def start(self) -> None:
        """Begin publishing in the background (call from the event loop that serves the track)."""
        if self._task is not None:
            raise RuntimeError("WhipPublisher.start() called twice")
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"whip {self._safe}")

    async def stop(self) -> None:
        """Stop re-publishing, DELETE the session on the server and close the connection."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        await self._teardown()
        if self._http is not None:
            await self._http.close()
            self._http = None
        self.state = "stopped"
        log.info("%s: stopped (%d publishes, %d bytes sent)", self._prefix, self.publishes, self.stats()["bytes_sent"])

    async def publish_once(self) -> None:
        """One publish: offer, POST, answer, connected. Raises WhipError (the session is torn down).

        For a caller that wants the first error at once; not while ``start()``'s task runs."""
        if self._task is not None and not self._task.done() and asyncio.current_task() is not self._task:
            raise RuntimeError("publish_once() while the background task publishes")
        self.attempts += 1
        self.state = "connecting"
        try:
            await self._publish()
        except BaseException:
            await self._teardown()
            raise
        self.publishes += 1
        self.state = "publishing"
        self._since = time.monotonic()
        self.last_error = None
        log.info("%s: publishing%s", self._prefix, f" (re-publish {self.publishes - 1})" if self.publishes > 1 else "")

    async def wait_publishing(self, timeout: float) -> bool:
        """True once the state is 'publishing' (polls; for CLIs and tests), False after ``timeout``."""
        deadline = time.monotonic() + timeout
        while self.state != "publishing":
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.05)
        return True

    def stats(self) -> dict[str, Any]:
        """``{url, state, bytes_sent, packets_sent, frames_sent, encoding, own_encoder_fallbacks,
        reconnects, attempts, last_error, publishing_s}``: the URL without credentials, totals over
        every connection so far; ``encoding`` is 'shared' or 'own' for the current connection."""
        frames = self._done["frames"] + (self._sending.frames if self._sending is not None else 0)
        return {
            "url": self._safe,
            "state": self.state,
            "bytes_sent": self._done["bytes"] + self._live["bytes"],
            "packets_sent": self._done["packets"] + self._live["packets"],
            "frames_sent": frames,
            "encoding": self.encoding,
            "own_encoder_fallbacks": self.fallbacks,
            "reconnects": max(self.publishes - 1, 0),
            "attempts": self.attempts,
            "last_error": self.last_error,
            "publishing_s": round(time.monotonic() - self._since, 1) if self.state == "publishing" and self._since else None,
        }

    # ------------------------------------------------------------------ one publish

    @property
    def _prefix(self) -> str:
        return f"whip {self._safe}"

    def _rtc_configuration(self) -> RTCConfiguration:
        if not self.config.ice_servers:
            return RTCConfiguration(iceServers=[])  # explicit: aiortc's default adds a public STUN server
        from vst.stream.webrtc import parse_ice_server  # the one --ice-server parser (webrtc imports the pipeline)

        return RTCConfiguration(iceServers=[parse_ice_server(u) for u in self.config.ice_servers])

    def _headers(self, **extra: str) -> dict[str, str]:
        headers = dict(extra)
        if self.config.token:
            headers["Authorization"] = f"Bearer {self.config.token}"
        return headers

    async def _publish(self) -> None:
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.config.request_timeout_s))
        pc = RTCPeerConnection(self._rtc)
        lost = asyncio.Event()
        self._pc, self._lost, self._rx = pc, lost, -1
        shared = self._shared_track()
        self._sending = shared if shared is not None else _Forward(self.track)
        self.encoding = "shared" if shared is not None else "own"
        transceiver = pc.addTransceiver(self._sending, direction="sendonly")
        if self.config.codec:
            transceiver.setCodecPreferences(_codecs(self.config.codec))
        elif shared is not None:  # the shared codec first: the server takes it if it can
            first = _codecs(shared.encoder.config.codec)
            transceiver.setCodecPreferences(first + [c for c in RTCRtpSender.getCapabilities("video").codecs if c not in first])

        @pc.on("connectionstatechange")
        def _on_state() -> None:
            log.debug("%s: connection %s", self._prefix, pc.connectionState)
            if pc.connectionState in ("failed", "closed"):
                lost.set()

        # aiortc gathers every candidate inside setLocalDescription: the offer is complete (non-trickle)
        try:
            await asyncio.wait_for(pc.setLocalDescription(await pc.createOffer()), self.config.gather_timeout_s)
        except asyncio.TimeoutError:
            raise WhipError(f"WHIP publish to {self._safe}: ICE gathering took over {self.config.gather_timeout_s:g} s") from None
        answer = await self._post(pc.localDescription.sdp)
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        except Exception as e:  # aiortc raises ValueError/KeyError/... on SDP it cannot use
            raise WhipError(f"WHIP publish to {self._safe}: unusable SDP answer ({type(e).__name__}: {str(e)[:160]})") from None
        if shared is not None:  # the sender starts after ICE/DTLS: nothing was sent or received yet
            self._use_shared_or_fall_back(shared, transceiver, answer)
        deadline = time.monotonic() + self.config.connect_timeout_s
        while pc.connectionState != "connected":
            if lost.is_set():
                raise WhipError(f"WHIP publish to {self._safe}: the connection {pc.connectionState} during ICE/DTLS setup")
            if time.monotonic() > deadline:
                raise WhipError(
                    f"WHIP publish to {self._safe}: not connected within {self.config.connect_timeout_s:g} s "
                    f"(ICE {pc.iceConnectionState}); the server's candidates may be unreachable (--ice-server)"
                )
            await asyncio.sleep(0.05)

    def _shared_track(self) -> EncodedTrack | None:
        """A fresh track of the shared encode for one connection; None without one, or when the offer
        may only carry another codec (``WhipConfig.codec``)."""
        if self.encoded is None:
            return None
        track = self.encoded()
        shared_codec = track.encoder.config.codec
        if self.config.codec not in (None, shared_codec):
            track.stop()
            log.warning("%s: the publish codec is %s, the shared encode %s: publishing with its own encoder",
                        self._prefix, self.config.codec, shared_codec)  # fmt: skip
            self.fallbacks += 1
            return None
        return track

    def _use_shared_or_fall_back(self, shared: EncodedTrack, transceiver: Any, answer: str) -> None:
        """After the answer: tap the sender when the server took the shared codec (PLI/FIR and REMB
        reach the shared encoder), else swap in the raw track for this connection's own encoder."""
        sender = transceiver.sender
        chosen = _sent_codec(transceiver, answer)
        shared_codec = shared.encoder.config.codec
        if chosen == shared_codec:
            shared.tap(sender)
            return
        log.warning("%s: the server answered %s, the shared encode is %s: this connection runs its own encoder",
                    self._prefix, chosen or "no known codec", shared_codec)  # fmt: skip
        forward = _Forward(self.track)
        sender.replaceTrack(forward)
        self._sending = forward
        self.encoding = "own"
        self.fallbacks += 1
        shared.stop()

    async def _post(self, offer: str) -> str:
        """POST the offer; return the SDP answer and remember the session's resource URL."""
        assert self._http is not None
        try:
            async with self._http.post(self.url, data=offer.encode(), headers=self._headers(**{"Content-Type": "application/sdp"})) as r:
                body = await r.text(errors="replace")
                status, reason, final = r.status, r.reason or "", str(r.url)
                location = r.headers.get("Location")
        except asyncio.TimeoutError:
            raise WhipError(f"WHIP publish to {self._safe}: no answer within {self.config.request_timeout_s:g} s") from None
        except aiohttp.ClientConnectorError as e:
            raise WhipError(f"WHIP publish to {self._safe}: cannot connect ({_os_reason(e)})") from None
        except aiohttp.ClientError as e:
            raise WhipError(f"WHIP publish to {self._safe}: {type(e).__name__}: {redact_text(str(e))[:160]}") from None
        if status not in (200, 201):
            raise WhipError(_status_message(self._safe, status, reason, body), status)
        if location:
            self._resource = urljoin(final, location)
        else:  # RFC 9725 requires it; without it the server cannot be told that we left
            log.warning("%s: the answer has no Location header: the session cannot be deleted on stop", self._prefix)
        if not body.lstrip().startswith("v=0"):
            raise WhipError(f"WHIP publish to {self._safe}: the {status} answer is not SDP ({_first_line(body)!r})", status)
        return body

    # ------------------------------------------------------------------ background

    async def _run(self) -> None:
        delay = self.config.backoff_initial_s
        while True:
            try:
                await self.publish_once()
                reason = await self._watch()
                if time.monotonic() - (self._since or 0.0) >= STABLE_S:
                    delay = self.config.backoff_initial_s  # only a publish that lasted resets the backoff
                if reason == "ended":
                    await self._teardown()
                    self.state = "ended"
                    log.info("%s: the source track ended; not re-publishing", self._prefix)
                    return
                self.last_error = f"connection lost: {reason}"
                log.warning("%s: connection lost (%s); re-publishing", self._prefix, reason)
            except asyncio.CancelledError:
                raise
            except WhipError as e:
                self.last_error = str(e)
                log.warning("%s", e)
            except Exception as e:  # never let the task die: log with traceback and retry
                self.last_error = f"{type(e).__name__}: {redact_text(str(e))[:200]}"
                log.exception("%s: publish failed", self._prefix)
            await self._teardown()
            self.state = "retrying"
            wait = delay * self._rng.uniform(0.8, 1.2)  # jitter: many vst processes do not retry in lockstep
            log.info("%s: retrying in %.1f s", self._prefix, wait)
            await asyncio.sleep(wait)
            delay = min(delay * 2, self.config.backoff_max_s)

    async def _watch(self) -> str:
        """Wait until the publishing connection is lost; return why ('ended' when the source ended)."""
        assert self._pc is not None and self._lost is not None
        quiet_since = time.monotonic()
        while True:
            try:
                await asyncio.wait_for(self._lost.wait(), self.config.poll_interval_s)
                return f"connection {self._pc.connectionState}"
            except asyncio.TimeoutError:
                pass
            if self.track.readyState == "ended":
                return "ended"
            if self._sending is not None and self._sending.readyState == "ended":
                # aiortc ends a sender's track when its encoder raises; the connection would stay up
                # and send nothing
                return "the video sender stopped (see the aiortc warning above)"
            if await self._poll_stats(self._pc):
                quiet_since = time.monotonic()
            elif (quiet := time.monotonic() - quiet_since) > self.config.silence_timeout_s:
                return f"nothing received from the server for {quiet:.0f} s"

    async def _poll_stats(self, pc: RTCPeerConnection) -> bool:
        """Refresh bytes/packets sent; True when the server sent us anything since the last poll."""
        try:
            report = await pc.getStats()
        except Exception:  # a transport closing under us: no news
            return False
        rx = self._rx
        for stat in report.values():
            kind = getattr(stat, "type", "")
            if kind == "outbound-rtp":
                self._live = {"bytes": int(stat.bytesSent or 0), "packets": int(stat.packetsSent or 0)}
            elif kind == "transport":
                rx = int(getattr(stat, "packetsReceived", 0) or 0)
        heard, self._rx = rx != self._rx, rx
        return heard

    async def _teardown(self) -> None:
        """DELETE the server's session and close the connection; never raises."""
        pc, sending, resource = self._pc, self._sending, self._resource
        self._pc, self._sending, self._resource, self._lost = None, None, None, None
        if pc is not None:
            await self._poll_stats(pc)  # the last byte counts of this connection
        self._done["bytes"] += self._live["bytes"]
        self._done["packets"] += self._live["packets"]
        self._done["frames"] += sending.frames if sending is not None else 0
        self._live = {"bytes": 0, "packets": 0}
        if resource is not None and self._http is not None:
            try:
                async with self._http.delete(resource, headers=self._headers(),
                                             timeout=aiohttp.ClientTimeout(total=min(self.config.request_timeout_s, 5.0))) as r:  # fmt: skip
                    if r.status >= 300:  # e.g. 404 after a server restart: nothing left to delete
                        log.info("%s: DELETE %s answered %d", self._prefix, safe_url(resource), r.status)
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as e:
                log.info("%s: DELETE %s failed (%s)", self._prefix, safe_url(resource), type(e).__name__)
        if sending is not None:
            sending.stop()  # a shared-encode track also leaves its encoder
        if pc is not None:
            try:
                await pc.close()
            except Exception:
                log.exception("%s: closing the peer connection failed", self._prefix)


# ---------------------------------------------------------------------- helpers


def check_whip_url(url: str) -> str:
    """``url`` when it can be a WHIP endpoint (http or https with a host), else VstError (for CLIs:
    call it before opening a camera)."""
    try:
        parts = urlsplit(url)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname)
        parts.port  # noqa: B018 (raises ValueError on a bad port)
    except ValueError:
        ok = False
    if not ok:
        raise VstError(f"bad WHIP URL {safe_url(url)!r}: use http(s)://HOST[:PORT]/PATH")
    return url


def _codecs(name: str) -> list[Any]:
    mime = {"vp8": "video/VP8", "h264": "video/H264"}[name]
    caps = RTCRtpSender.getCapabilities("video").codecs
    return [c for c in caps if c.mimeType == mime] + [c for c in caps if c.mimeType == "video/rtx"]


def _sent_codec(transceiver: Any, answer: str) -> str | None:
    """'vp8' | 'h264' | ...: the codec the transceiver's sender will use once the answer is applied
    (aiortc's negotiated list, first entry; the answer's first video codec if that is not there)."""
    codecs = getattr(transceiver, "_codecs", None)  # aiortc's result of the negotiation
    if codecs:
        return str(codecs[0].mimeType).split("/")[-1].lower()
    from vst.stream.webrtc import negotiated_video_codec  # once per connection; the SDP helpers live there

    return negotiated_video_codec(answer)


_HINTS = {
    400: "the server refused the offer",
    401: "check the token (--publish-token)",
    403: "check the token (--publish-token), or the endpoint already has a publisher",
    404: "no such WHIP endpoint: check the URL",
    405: "this URL does not take WHIP POSTs",
    406: "the server refused application/sdp",
    409: "the endpoint already has a publisher",
    415: "the server refused application/sdp",
    429: "rate limited by the server",
    503: "the server is not ready",
}


def _status_message(safe: str, status: int, reason: str, body: str) -> str:
    detail = _first_line(body)
    hint = _HINTS.get(status) or ("server error" if status >= 500 else "")
    text = f"WHIP publish to {safe} failed: {status} {reason}".rstrip()
    if detail and detail.lower() != reason.lower():
        text += f": {detail}"
    return f"{text} ({hint})" if hint else text


def _first_line(body: str) -> str:
    for line in body.splitlines():
        if line.strip():
            return redact_text(line.strip())[:200]
    return ""


def _os_reason(e: aiohttp.ClientConnectorError) -> str:
    err = e.os_error
    if err.errno:
        return os.strerror(err.errno).lower()
    return redact_text(str(err))[:160] or type(err).__name__


# Credentials in URLs never reach logs or stats: vst.redact masks passwords and secret query values
# (as everywhere in vst); WHIP URLs add one kind of secret on top of that.
_URL = re.compile(r"\bhttps?://[^\s'\"<>]+")
# A path segment that is a key, not a name: Cloudflare Stream's WHIP URLs carry the live input's
# secret as /<32+ hex chars>/webRTC/publish. Long runs of letters and digits mixed are masked.
_KEY_SEGMENT = re.compile(r"^(?=[A-Za-z0-9_-]*\d)(?=[A-Za-z0-9_-]*[A-Za-z])[A-Za-z0-9_-]{24,}$")


def safe_url(url: str) -> str:
    """``url`` as ``vst.redact.redact_url`` shows it (password, secret query values masked), with
    key-like path segments replaced by *** as well."""
    clean = redact_url(url)
    try:
        parts = urlsplit(clean)
    except ValueError:
        return clean
    path = "/".join(MASK if _KEY_SEGMENT.match(seg) else seg for seg in parts.path.split("/"))
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, parts.fragment))


def redact_text(text: str) -> str:
    """``text`` with every URL in it redacted (``vst.redact.redact_text``), http(s) ones as ``safe_url``."""
    return _URL.sub(lambda m: safe_url(m.group(0)), _redact_text(text))
