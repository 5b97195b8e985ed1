"""WhipPublisher's HTTP side against a small in-process WHIP server (aiohttp + a real aiortc answerer).

The server records every request, so the tests check what goes on the wire: the offer's content
type, the bearer token, Location resolution, the DELETE on stop, errors as one line, and the
background task's backoff and re-publish. With a shared encode, the server's RTP carries the very
packets a local viewer of that encode gets, its PLI reaches the shared encoder, and a server that
answers another codec gets the publisher's own encode. Janus itself is in
tests/integration/test_whip_janus.py.
"""

from __future__ import annotations

import asyncio
import fractions
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import av
import cv2
import numpy as np
import pytest
from aiohttp import web
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from integration.whep_client import RtpLog

from vst.errors import VstError
from vst.stream.encode import EncodedTrack, EncoderConfig, SharedEncoder
from vst.stream.pipeline import Output
from vst.stream.whip import WhipConfig, WhipError, WhipPublisher, safe_url

FAST = WhipConfig(backoff_initial_s=0.05, backoff_max_s=0.2, connect_timeout_s=10.0)


class Gray(MediaStreamTrack):
    """A 64x48 mid-gray video at ~30 fps."""

    kind = "video"

    def __init__(self) -> None:
        super().__init__()
        self.n = 0

    async def recv(self) -> av.VideoFrame:
        await asyncio.sleep(1 / 30)
        frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 128, np.uint8), format="rgb24")
        frame.pts, frame.time_base = self.n * 3000, fractions.Fraction(1, 90000)
        self.n += 1
        return frame


@dataclass
class FakeWhip:
    """A WHIP endpoint at ``/whip/ep`` that answers with a real aiortc peer (or with ``fail``)."""

    location: str = "/whip/res/{id}"
    fail: list[tuple[int, str]] = field(default_factory=list)
    """Answers to give, in order, before answering normally: (status, body)."""
    answer_body: str | None = None
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    peers: dict[str, RTCPeerConnection] = field(default_factory=dict)
    frames: int = 0
    sessions: int = 0
    base: str = ""
    only_codec: str | None = None
    """Strip every other video codec from the offer before answering (an SFU that takes one codec)."""
    rtp: RtpLog = field(default_factory=RtpLog)
    """The RTP received, as it arrives (every session's)."""

    async def post(self, request: web.Request) -> web.Response:
        self.requests.append(("POST", request.path, dict(request.headers)))
        if self.fail:
            status, body = self.fail.pop(0)
            return web.Response(status=status, text=body)
        if self.answer_body is not None:
            return web.Response(status=201, text=self.answer_body, headers={"Location": "/whip/res/x"})
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        sid = str(self.sessions)
        self.sessions += 1
        self.peers[sid] = pc

        @pc.on("track")
        def _on_track(track: Any) -> None:
            async def pump() -> None:
                try:
                    while True:
                        await track.recv()
                        self.frames += 1
                except MediaStreamError:  # the publisher left
                    pass

            asyncio.ensure_future(pump())

        offer = await request.text()
        if self.only_codec:
            offer = only_video_codec(offer, self.only_codec)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        for transceiver in pc.getTransceivers():
            self.rtp.hook(transceiver.receiver)
        await pc.setLocalDescription(await pc.createAnswer())
        loc = self.location.format(id=sid, base=self.base)
        return web.Response(status=201, text=pc.localDescription.sdp, content_type="application/sdp", headers={"Location": loc})

    async def delete(self, request: web.Request) -> web.Response:
        self.requests.append(("DELETE", request.path, dict(request.headers)))
        pc = self.peers.pop(request.match_info["id"], None)
        if pc is None:
            return web.Response(status=404, text="no such resource")
        await pc.close()
        return web.Response(status=200)

    async def redirect(self, request: web.Request) -> web.Response:
        self.requests.append(("POST", request.path, dict(request.headers)))
        raise web.HTTPTemporaryRedirect("/whip/ep")

    def deletes(self) -> list[str]:
        return [path for method, path, _ in self.requests if method == "DELETE"]


Run = Callable[[FakeWhip, Callable[[str], Awaitable[None]]], None]


def only_video_codec(sdp: str, name: str) -> str:
    """``sdp`` with the video m-line's payload types cut to ``name``'s (and their RTX)."""
    keep = set(re.findall(rf"(?m)^a=rtpmap:(\d+) {name}/", sdp))
    keep |= {pt for pt, apt in re.findall(r"(?m)^a=fmtp:(\d+) apt=(\d+)", sdp) if apt in keep}
    out = []
    for line in sdp.splitlines():
        if line.startswith("m=video"):
            fields = line.split(" ")
            line = " ".join(fields[:3] + [f for f in fields[3:] if f in keep])
        elif (m := re.match(r"a=(?:rtpmap|fmtp|rtcp-fb):(\d+)", line)) and m.group(1) not in keep:
            continue
        out.append(line)
    return "\r\n".join(out) + "\r\n"


class FakePipeline:
    """What a ``SharedEncoder`` reads: a new 160x96 I420 picture every 1/30 s (moving noise)."""

    def __init__(self) -> None:
        self.seq = 0
        self.rng = np.random.default_rng(0)

    async def next_output(self, seq: int, timeout: float) -> Output:
        await asyncio.sleep(1 / 30)
        self.seq += 1
        yuv = np.full((144, 160), 128, np.uint8)
        yuv[:96] = self.rng.integers(0, 256, (96, 160), dtype=np.uint8) // 4 + 100
        rgb = cv2.cvtColor(yuv, cv2.COLOR_YUV2RGB_I420)  # the encoder reads only the I420
        return Output(self.seq, rgb, rgb, yuv, time.time())


class Collect:
    """A local viewer of the shared encode: keeps every packet's bytes."""

    def __init__(self, track: EncodedTrack) -> None:
        self.track = track
        self.packets: list[bytes] = []
        self.task = asyncio.ensure_future(self._pump())

    async def _pump(self) -> None:
        try:
            while True:
                self.packets.append(bytes(await self.track.recv()))
        except MediaStreamError:
            pass


def shared_vp8() -> tuple[SharedEncoder, list[EncodedTrack], Callable[[], EncodedTrack]]:
    """A VP8 ``SharedEncoder`` of ``FakePipeline`` at a fixed 300 kb/s, the tracks a publisher took from it,
    and the ``encoded=`` callback it takes them with."""
    enc = SharedEncoder(FakePipeline(), "stylized", EncoderConfig(codec="vp8", fixed_bitrate=300_000))  # type: ignore[arg-type]
    made: list[EncodedTrack] = []

    def subscribe() -> EncodedTrack:
        made.append(enc.subscribe())
        return made[-1]

    return enc, made, subscribe


@pytest.fixture
def loopback_ice(monkeypatch: pytest.MonkeyPatch) -> None:
    """Both peers on 127.0.0.1 (aioice skips loopback by default)."""
    import aioice.ice

    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])


@pytest.fixture
def run(loopback_ice: None) -> Run:
    """``run(server, body)``: serve ``server`` on a free port and await ``body(base_url)``."""

    def _run(server: FakeWhip, body: Callable[[str], Awaitable[None]]) -> None:
        async def main() -> None:
            app = web.Application()
            app.router.add_post("/whip/ep", server.post)
            app.router.add_post("/whip/old", server.redirect)
            app.router.add_delete("/whip/res/{id}", server.delete)
            runner = web.AppRunner(app)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            server.base = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
            try:
                await asyncio.wait_for(body(server.base), 60)
            finally:
                for pc in list(server.peers.values()):
                    await pc.close()
                await runner.cleanup()

        asyncio.run(main())

    return _run


async def until(pred: Callable[[], bool], timeout: float = 10.0) -> bool:
    end = asyncio.get_running_loop().time() + timeout
    while not pred():
        if asyncio.get_running_loop().time() > end:
            return False
        await asyncio.sleep(0.05)
    return True


# ---------------------------------------------------------------------- one publish


@pytest.mark.parametrize("location", ["/whip/res/{id}", "{base}/whip/res/{id}", "res/{id}"])
def test_publish_sends_sdp_and_token_and_deletes_location(run: Run, location: str) -> None:
    server = FakeWhip(location=location)
    source = Gray()

    async def body(base: str) -> None:
        pub = WhipPublisher(f"{base}/whip/ep", source, WhipConfig(token="s3cret"))
        await pub.publish_once()
        assert pub.state == "publishing"
        assert await until(lambda: server.frames >= 5), "the server received no frames"
        await pub.stop()
        stats = pub.stats()
        assert stats["state"] == "stopped" and stats["frames_sent"] >= 5 and stats["bytes_sent"] > 0, stats

    run(server, body)
    (method, path, headers), *rest = server.requests
    assert (method, path) == ("POST", "/whip/ep")
    assert headers["Content-Type"] == "application/sdp"  # exactly: simple-whip-server compares the string
    assert headers["Authorization"] == "Bearer s3cret"
    assert server.deletes() == ["/whip/res/0"], server.requests  # relative, absolute, and path-relative Locations
    assert rest[-1][2]["Authorization"] == "Bearer s3cret"
    assert source.readyState == "live", "stopping the publisher must not stop the caller's track"


def test_redirect_is_followed_and_location_resolved_against_it(run: Run) -> None:
    server = FakeWhip(location="res/{id}")

    async def body(base: str) -> None:
        pub = WhipPublisher(f"{base}/whip/old", Gray())
        await pub.publish_once()
        await pub.stop()

    run(server, body)
    assert [p for _, p, _ in server.requests] == ["/whip/old", "/whip/ep", "/whip/res/0"]


@pytest.mark.parametrize(
    ("status", "text", "expect"),
    [
        (401, "Unauthorized", "401 Unauthorized (check the token (--publish-token))"),
        (404, "Invalid endpoint ID", "404 Not Found: Invalid endpoint ID (no such WHIP endpoint: check the URL)"),
        (409, "busy\nsecond line", "409 Conflict: busy (the endpoint already has a publisher)"),
        (500, "", "500 Internal Server Error (server error)"),
    ],
)
def test_http_errors_are_one_line(run: Run, status: int, text: str, expect: str) -> None:
    server = FakeWhip(fail=[(status, text)])

    async def body(base: str) -> None:
        pub = WhipPublisher(f"{base}/whip/ep?token=abc", Gray(), WhipConfig(token="hidden"))
        with pytest.raises(WhipError) as info:
            await pub.publish_once()
        await pub.stop()
        msg = str(info.value)
        assert info.value.status == status
        assert msg == f"WHIP publish to {base}/whip/ep?token=*** failed: {expect}"
        assert "hidden" not in msg and "abc" not in msg and "\n" not in msg

    run(server, body)


def test_an_answer_that_is_not_sdp_is_an_error(run: Run) -> None:
    server = FakeWhip(answer_body="<html>login</html>")

    async def body(base: str) -> None:
        pub = WhipPublisher(f"{base}/whip/ep", Gray())
        with pytest.raises(WhipError, match="not SDP"):
            await pub.publish_once()
        await pub.stop()

    run(server, body)
    assert server.deletes() == ["/whip/res/x"]  # the server made a session: it is told to drop it


def test_connection_refused(loopback_ice: None) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again before the publish: nothing listens there

    async def main() -> None:
        pub = WhipPublisher(f"http://user:pw@127.0.0.1:{port}/whip", Gray())
        with pytest.raises(WhipError) as info:
            await pub.publish_once()
        await pub.stop()
        assert str(info.value) == f"WHIP publish to http://user:***@127.0.0.1:{port}/whip: cannot connect (connection refused)"

    asyncio.run(main())


# ---------------------------------------------------------------------- the shared encode


def test_publish_sends_the_shared_encode(run: Run) -> None:
    """The server receives the shared encoder's packets byte for byte (what a local viewer gets), the
    publish adds no encoder, and the server's PLI reaches the shared encoder."""
    server = FakeWhip()
    source = Gray()  # the fallback: never read while the shared encode is sent
    enc, made, subscribe = shared_vp8()

    async def body(base: str) -> None:
        local = Collect(enc.subscribe())
        pub = WhipPublisher(f"{base}/whip/ep", source, WhipConfig(codec="vp8"), encoded=subscribe)
        await pub.publish_once()
        assert await until(lambda: server.frames >= 15 and len(server.rtp.order) >= 15), (server.frames, pub.stats())
        assert pub.stats()["encoding"] == "shared" and len(enc.active_tracks()) == 2, pub.stats()
        before = enc.keyframe_requests.get("PLI/FIR", 0)
        await server.rtp.send_pli()
        assert await until(lambda: enc.keyframe_requests.get("PLI/FIR", 0) > before), enc.stats()
        await pub.stop()
        stats = pub.stats()
        assert stats["frames_sent"] >= 15 and stats["own_encoder_fallbacks"] == 0, stats
        assert made[0].readyState == "ended" and made[0] not in enc.tracks, "the publish's track must leave the encoder"
        local.track.stop()
        await enc.close()

        received = server.rtp.vp8_frames()
        assert received and not received[0][0] & 0x01, "the server's first frame is not a keyframe"
        packets = set(local.packets)
        same = sum(f in packets for f in received)
        assert same >= len(received) - 1, f"only {same}/{len(received)} received frames are the shared encoder's packets"
        assert enc.frames_encoded <= len(local.packets) + 3, "more encodes than frames: the publish encoded on its own"
        assert source.n == 0, "the raw track was read: the publish ran its own encoder"

    run(server, body)


def test_a_republish_subscribes_afresh_and_starts_at_a_keyframe(run: Run) -> None:
    """The server drops the publish: the next connection gets a new track of the shared encode (the
    old one has left the encoder) and the server's first frame on it is a keyframe."""
    server = FakeWhip()
    enc, made, subscribe = shared_vp8()

    async def body(base: str) -> None:
        pub = WhipPublisher(f"{base}/whip/ep", Gray(), FAST, encoded=subscribe)
        pub.start()
        assert await pub.wait_publishing(10), pub.stats()
        assert await until(lambda: server.frames >= 5)
        frames_before = len(server.rtp.order)
        await server.peers["0"].close()
        assert await until(lambda: pub.stats()["reconnects"] == 1 and pub.state == "publishing"), pub.stats()
        assert await until(lambda: len(server.rtp.order) >= frames_before + 10), pub.stats()
        stats = pub.stats()
        await pub.stop()
        await enc.close()
        assert len(made) == 2 and made[0].readyState == "ended" and made[0] not in enc.tracks
        assert stats["encoding"] == "shared" and stats["frames_sent"] >= 15, stats
        second = server.rtp.vp8_frames()[frames_before:]
        assert second and not second[0][0] & 0x01, "the re-published stream does not start at a keyframe"
        assert enc.keyframe_requests.get("join", 0) == 2, enc.keyframe_requests

    run(server, body)


def test_another_codec_answered_falls_back_to_its_own_encoder(run: Run, caplog: pytest.LogCaptureFixture) -> None:
    """The shared encode is H.264, the server takes VP8 only: this connection encodes on its own."""
    server = FakeWhip(only_codec="VP8")
    source = Gray()
    enc = SharedEncoder(FakePipeline(), "stylized", EncoderConfig(codec="h264", fixed_bitrate=300_000))  # type: ignore[arg-type]
    caplog.set_level(logging.INFO, "vst.whip")

    async def body(base: str) -> None:
        pub = WhipPublisher(f"{base}/whip/ep", source, encoded=enc.subscribe)
        await pub.publish_once()
        assert await until(lambda: server.frames >= 5), pub.stats()
        stats = pub.stats()
        await pub.stop()
        await enc.close()
        assert stats["encoding"] == "own" and stats["own_encoder_fallbacks"] == 1, stats
        assert not enc.tracks and enc.frames_encoded == 0, enc.stats()
        assert source.n >= 5

    run(server, body)
    assert any("answered vp8, the shared encode is h264" in r.getMessage() for r in caplog.records)


def test_a_publish_codec_other_than_the_shared_one_uses_its_own_encoder(run: Run) -> None:
    server = FakeWhip()
    enc = SharedEncoder(FakePipeline(), "stylized", EncoderConfig(codec="h264"))  # type: ignore[arg-type]

    async def body(base: str) -> None:
        pub = WhipPublisher(f"{base}/whip/ep", Gray(), WhipConfig(codec="vp8"), encoded=enc.subscribe)
        await pub.publish_once()
        assert await until(lambda: server.frames >= 3)
        assert pub.stats()["encoding"] == "own" and not enc.tracks
        await pub.stop()
        await enc.close()

    run(server, body)


# ---------------------------------------------------------------------- background task


def test_background_task_backs_off_then_publishes_and_republishes(run: Run, caplog: pytest.LogCaptureFixture) -> None:
    server = FakeWhip(fail=[(503, "Janus unavailable"), (503, "Janus unavailable")])
    caplog.set_level(logging.INFO, "vst.whip")

    async def body(base: str) -> None:
        pub = WhipPublisher(f"{base}/whip/ep", Gray(), FAST)
        pub.start()
        assert await pub.wait_publishing(10), pub.stats()
        assert pub.stats()["attempts"] == 3 and pub.stats()["reconnects"] == 0
        await server.peers["0"].close()  # the server drops us
        assert await until(lambda: pub.stats()["reconnects"] == 1 and pub.state == "publishing"), pub.stats()
        assert await until(lambda: server.frames > 10)
        await pub.stop()

    run(server, body)
    assert server.deletes()[-1] == "/whip/res/1"
    assert any("503 Service Unavailable: Janus unavailable (the server is not ready)" in r.getMessage() for r in caplog.records)
    assert any("re-publish 1" in r.getMessage() for r in caplog.records)


def test_background_task_never_raises_and_stops_when_the_source_ends(run: Run) -> None:
    server = FakeWhip()
    source = Gray()

    async def body(base: str) -> None:
        pub = WhipPublisher(f"{base}/whip/ep", source, FAST)
        pub.start()
        assert await pub.wait_publishing(10)
        source.stop()
        assert await until(lambda: pub.state == "ended"), pub.stats()
        assert pub._task is not None and pub._task.done() and pub._task.exception() is None
        await pub.stop()

    run(server, body)
    assert server.deletes() == ["/whip/res/0"]


class Broken(Gray):
    """Hands out something that is not a frame: aiortc's encoder raises and ends the sender's track."""

    async def recv(self) -> Any:
        await asyncio.sleep(1 / 30)
        return "not a frame"


def test_a_dead_sender_is_republished_with_backoff(run: Run, caplog: pytest.LogCaptureFixture) -> None:
    server = FakeWhip()
    caplog.set_level(logging.INFO, "vst.whip")

    async def body(base: str) -> None:
        pub = WhipPublisher(f"{base}/whip/ep", Broken(), WhipConfig(backoff_initial_s=0.1, backoff_max_s=0.8, poll_interval_s=0.1))
        pub.start()
        assert await until(lambda: pub.stats()["reconnects"] >= 2, 15), pub.stats()
        await pub.stop()

    run(server, body)
    waits = [float(r.getMessage().split("retrying in ")[1].split(" s")[0]) for r in caplog.records if "retrying in" in r.getMessage()]
    assert any("the video sender stopped" in r.getMessage() for r in caplog.records)
    assert waits[1] > waits[0], f"the backoff did not grow: {waits}"  # 0.1 s x0.8..1.2, then 0.2 s x0.8..1.2


def test_publish_once_refuses_to_race_the_background_task(run: Run) -> None:
    async def body(base: str) -> None:
        pub = WhipPublisher(f"{base}/whip/ep", Gray(), FAST)
        pub.start()
        with pytest.raises(RuntimeError, match="background task"):
            await pub.publish_once()
        await pub.stop()

    run(FakeWhip(), body)


# ---------------------------------------------------------------------- config and redaction


def test_config_is_checked() -> None:
    with pytest.raises(VstError, match="empty"):
        WhipConfig(token=" ")
    with pytest.raises(VstError, match="codec"):
        WhipConfig(codec="av1")  # type: ignore[arg-type]
    with pytest.raises(VstError, match="backoff_max_s"):
        WhipConfig(backoff_max_s=0)
    for bad in ("rtsp://cam/x", "http:///x", "http://host:99999/x", "sfu.example.org/whip"):
        with pytest.raises(VstError, match="bad WHIP URL"):
            WhipPublisher(bad, Gray())


def test_safe_url_hides_credentials() -> None:
    assert safe_url("https://user:pw@sfu.example/whip/x?token=abc&room=1") == "https://user:***@sfu.example/whip/x?token=***&room=1"
    assert safe_url("https://s3cret@sfu.example/whip/x") == "https://***@sfu.example/whip/x"
    assert safe_url("http://127.0.0.1:7080/whip/endpoint/vst-1a2b3c4d") == "http://127.0.0.1:7080/whip/endpoint/vst-1a2b3c4d"
    key = "b236bde30eb07b9d01318940e5fc3edake34a3efb3896e18f2dc277ce6cc993ad"  # Cloudflare's documented example
    assert safe_url(f"https://customer-x.cloudflarestream.com/{key}/webRTC/publish") == (
        "https://customer-x.cloudflarestream.com/***/webRTC/publish"
    )
