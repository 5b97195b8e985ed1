"""One encode for all viewers, end to end: real aiortc WHEP players on a real ``vst-stream``.

Each player records the RTP it receives (before aiortc's jitter buffer), rebuilds every frame's VP8
bitstream from the payloads and hashes it. With the shared encoder the second viewer's frames are
byte-identical to frames the first viewer received, its first frame is a keyframe, and the server
encoded each output once, not once per viewer. A burst of PLIs yields rate-limited keyframes.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from .serving import VstServer, make_test_style
from .whep_client import RtpLog, run_in_thread


@dataclass
class Player:
    """A WHEP viewer that keeps the received VP8 frames (hash, keyframe) in arrival order."""

    base: str
    token: str | None
    pc: RTCPeerConnection = field(default_factory=lambda: RTCPeerConnection(RTCConfiguration(iceServers=[])))
    rtp: RtpLog = field(default_factory=RtpLog)
    decoded: int = 0
    location: str = ""

    async def start(self) -> None:
        from vst.stream.webrtc import restrict_ice_to_host

        restrict_ice_to_host("127.0.0.1")
        self.rtp.hook(self.pc.addTransceiver("video", direction="recvonly").receiver)
        got: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.pc.on("track", lambda t: got.done() or got.set_result(t))
        await self.pc.setLocalDescription(await self.pc.createOffer())
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{self.base}/whep", data=self.pc.localDescription.sdp, headers=self._headers()) as r:
                answer = await r.text()
                assert r.status == 201, answer
                self.location = r.headers["Location"]
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        track = await asyncio.wait_for(got, 30)
        asyncio.get_running_loop().create_task(self._decode(track))

    def _headers(self) -> dict[str, str]:
        return {"Content-Type": "application/sdp", **({"Authorization": f"Bearer {self.token}"} if self.token else {})}

    async def _decode(self, track: Any) -> None:
        try:
            while True:
                await track.recv()
                self.decoded += 1
        except Exception:  # the session closed
            return

    def frames(self) -> list[tuple[str, bool]]:
        """(sha1 of the VP8 frame, keyframe) per RTP timestamp, the last (possibly partial) one left out."""
        out = []
        for data in self.rtp.vp8_frames():
            out.append((hashlib.sha1(data).hexdigest(), bool(data) and not data[0] & 0x01))  # VP8: bit 0 clear = key
        return out

    def timestamp_steps(self) -> list[int]:
        """RTP timestamp increments between consecutive frames (mod 2**32)."""
        return [(b - a) % (1 << 32) for a, b in zip(self.rtp.order, self.rtp.order[1:])]

    async def stop(self) -> None:
        async with aiohttp.ClientSession() as http:
            async with http.delete(urllib.parse.urljoin(self.base + "/", self.location.lstrip("/")), headers=self._headers()) as r:
                assert r.status == 200
        await self.pc.close()


async def _until(pred: Any, timeout: float) -> None:
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > end:
            raise AssertionError("timed out")
        await asyncio.sleep(0.05)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VstServer]:
    d = tmp_path_factory.mktemp("styles")
    make_test_style(d, "tiny", width=4)  # near-free inference: this test is about serving
    # a fixed bitrate: a retune to follow the viewers' REMB rebuilds the codec, an extra keyframe that
    # would blur the PLI rate-limit count (the follow mode is tests/unit/test_encode.py's)
    srv = VstServer(["--source", "sample", "--size", "320x180", "--fps", "15", "--style", "tiny", "--bitrate", "600"],
                    env={"VST_STYLES_DIR": str(d)}, log_name="shared_encode")  # fmt: skip
    yield srv
    srv.stop()


def test_two_viewers_receive_one_encoded_stream(server: VstServer) -> None:
    steps: list[list[int]] = []

    async def scenario() -> tuple[list[tuple[str, bool]], list[tuple[str, bool]], dict[str, Any], int, int, int]:
        a, b = Player(server.base, server.token), Player(server.base, server.token)
        await a.start()
        await _until(lambda: a.decoded >= 10, 30)
        await b.start()
        await _until(lambda: b.decoded >= 25, 30)
        stats = await asyncio.get_running_loop().run_in_executor(None, server.stats)
        stats["b_frames"] = b.decoded
        # a burst of PLIs (10 in 1 s) from one viewer: keyframes for everyone, but rate-limited
        kf_before = sum(k for _h, k in a.frames())
        for _ in range(10):
            await a.rtp.send_pli()
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.3)
        kf_burst = sum(k for _h, k in a.frames()) - kf_before
        decoded_b = b.decoded
        steps.extend([a.timestamp_steps(), b.timestamp_steps()])
        await a.stop()
        await b.stop()
        return a.frames(), b.frames(), stats, kf_burst, decoded_b, a.decoded

    frames_a, frames_b, stats, kf_burst, decoded_b, decoded_a = run_in_thread(scenario)
    assert frames_b and frames_b[0][1], "the late viewer's first frame is not a keyframe"
    hashes_a = {h for h, _k in frames_a}
    shared = sum(h in hashes_a for h, _k in frames_b)
    assert shared >= 0.9 * len(frames_b), f"only {shared}/{len(frames_b)} of viewer B's frames are byte-identical to A's"
    assert decoded_b >= 25 and decoded_a >= 35, (decoded_a, decoded_b)  # the shared packets decode
    (enc,) = stats["encoders"]
    assert stats["encoding"] == "shared" and enc["codec"] == "vp8" and enc["bitrate_mode"] == "fixed"
    sent = stats["frames_sent"]["stylized"]
    # each output encoded once: the frames sent to two viewers outnumber the encodes by about B's share
    assert enc["frames_encoded"] <= sent - 0.8 * stats["b_frames"], (enc, sent, stats["b_frames"])
    assert enc["keyframe_requests"].get("join", 0) >= 2 and enc["keyframes"] >= 2, enc
    # RTP timestamps per sender: continuous from each viewer's first frame (the late joiner's too),
    # about 1/15 s (6000 ticks of 90 kHz) apart, never backwards (a wrap would be a step near 2**32)
    for s in steps:
        assert s and all(0 < x < 90000 for x in s), s
        assert 3000 < sorted(s)[len(s) // 2] < 12000, s
    assert 1 <= kf_burst <= 3, f"{kf_burst} keyframes for 10 PLIs in 1 s (at most one per 0.5 s expected)"


def test_per_viewer_encoder_flag(tmp_path: Path) -> None:
    """--per-viewer-encoder: no shared encoder; each viewer's bitstream is its own."""
    make_test_style(tmp_path, "tiny", width=4)
    srv = VstServer(["--source", "sample", "--size", "320x180", "--fps", "15", "--style", "tiny", "--per-viewer-encoder"],
                    env={"VST_STYLES_DIR": str(tmp_path)}, log_name="per_viewer_encode")  # fmt: skip
    try:
        async def scenario() -> tuple[list[tuple[str, bool]], list[tuple[str, bool]], dict[str, Any]]:
            a, b = Player(srv.base, srv.token), Player(srv.base, srv.token)
            await a.start()
            await b.start()
            await _until(lambda: a.decoded >= 15 and b.decoded >= 15, 30)
            stats = await asyncio.get_running_loop().run_in_executor(None, srv.stats)
            await a.stop()
            await b.stop()
            return a.frames(), b.frames(), stats

        frames_a, frames_b, stats = run_in_thread(scenario)
    finally:
        srv.stop()
    assert stats["encoding"] == "per-viewer" and stats["encoders"] == []
    hashes_a = {h for h, _k in frames_a}
    # Two encoders fed the same pictures may emit the same bytes for some frames (VP8 is
    # deterministic; 4 of 15 seen once): a shared encode gives all of them, separate ones do not.
    assert sum(h in hashes_a for h, _k in frames_b) <= 0.6 * len(frames_b)


def test_chromium_decodes_the_shared_h264_stream(chromium: Any, tmp_path: Path) -> None:
    """--codec h264: two Chromium pages decode the one shared H.264 encode (and H.264 is what they get:
    the offer's VP8-first rtpmap order used to win over --codec)."""
    from .serving import frames_decoded, open_viewer

    make_test_style(tmp_path, "tiny", width=4)
    srv = VstServer(["--source", "sample", "--size", "320x180", "--fps", "15", "--style", "tiny", "--codec", "h264"],
                    env={"VST_STYLES_DIR": str(tmp_path)}, log_name="shared_encode_h264")  # fmt: skip
    try:
        pages = [open_viewer(chromium, srv.url) for _ in range(2)]
        # the overlay shows the processing size (the page polls /stats every 2 s)
        pages[0].wait_for_function("document.getElementById('overlay').textContent.includes('processing 320x180 (fixed)')",
                                   timeout=15000)  # fmt: skip
        before = [frames_decoded(p) for p in pages]
        time.sleep(2.0)
        assert all(frames_decoded(p) > b + 10 for p, b in zip(pages, before))
        codecs = [p.evaluate("vst.stats.codec") for p in pages]
        stats = srv.stats()
        for p in pages:
            p.close()
    finally:
        srv.stop()
    assert codecs == ["H264", "H264"], codecs
    (enc,) = stats["encoders"]
    assert enc["codec"] == "h264" and enc["viewers"] == 2 and enc["errors"] == 0, enc
