"""A real WHEP player built on aiortc (for tests and the churn run): POST an offer, receive, DELETE; and
``RtpLog``, the RTP an aiortc receiver gets, for the tests that compare what went over the wire
(tests/unit/test_whip.py imports it as ``integration.whep_client``: tests/ is on sys.path as the rootdir
of tests/conftest.py under pytest's default prepend import mode)."""

from __future__ import annotations

import asyncio
import urllib.parse
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription


T = TypeVar("T")


def run_in_thread(main: Callable[[], Awaitable[T]]) -> T:
    """``asyncio.run(main())`` in a fresh thread: Playwright's sync API owns this thread's event loop."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(main())).result()  # type: ignore[arg-type]


class RtpLog:
    """The RTP each hooked aiortc receiver gets, kept as it arrives (before aiortc's jitter buffer): the
    payloads by RTP timestamp (one video frame each)."""

    def __init__(self) -> None:
        self.packets: dict[int, list[tuple[int, bytes]]] = {}
        """RTP timestamp -> (sequence number, payload) of each packet received with it."""
        self.order: list[int] = []
        """The RTP timestamps, in the order their first packet arrived."""
        self.media_ssrc: int | None = None
        self.receivers: list[Any] = []

    def hook(self, receiver: Any) -> None:
        """Keep each RTP packet ``receiver`` gets, then hand it on (a private hook: aiortc has no public one)."""
        handle = receiver._handle_rtp_packet
        self.receivers.append(receiver)

        async def record(packet: Any, arrival_time_ms: int) -> None:
            self.media_ssrc = packet.ssrc
            if packet.timestamp not in self.packets:
                self.packets[packet.timestamp] = []
                self.order.append(packet.timestamp)
            self.packets[packet.timestamp].append((packet.sequence_number, packet.payload))
            await handle(packet, arrival_time_ms)

        receiver._handle_rtp_packet = record

    def vp8_frames(self) -> list[bytes]:
        """The VP8 frames received, in order, the last (maybe partial) one left out."""
        from aiortc.codecs.vpx import vp8_depayload

        return [b"".join(vp8_depayload(p) for _, p in sorted(self.packets[ts])) for ts in self.order[:-1]]

    async def send_pli(self) -> None:
        """Ask the sender for a keyframe (RTCP PLI) on the last hooked receiver."""
        assert self.media_ssrc is not None and self.receivers
        await self.receivers[-1]._send_rtcp_pli(self.media_ssrc)


@dataclass
class WhepResult:
    status: int
    location: str
    answer: str
    frames: int


async def whep_session(base: str, token: str | None, frames: int = 5, timeout: float = 30.0) -> WhepResult:
    """Play ``frames`` decoded frames from ``base``/whep, then DELETE the session."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("video", direction="recvonly")
    got: asyncio.Future[object] = asyncio.get_running_loop().create_future()

    @pc.on("track")
    def _on_track(track: object) -> None:
        if not got.done():
            got.set_result(track)

    headers = {"Content-Type": "application/sdp"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        await pc.setLocalDescription(await pc.createOffer())
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{base}/whep", data=pc.localDescription.sdp, headers=headers) as r:
                status, answer = r.status, await r.text()
                location = r.headers.get("Location", "")
            if status != 201:
                return WhepResult(status, location, answer, 0)
            await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
            track = await asyncio.wait_for(got, timeout)
            n = 0
            while n < frames:
                await asyncio.wait_for(track.recv(), timeout)  # type: ignore[attr-defined]
                n += 1
            async with http.delete(urllib.parse.urljoin(base + "/", location.lstrip("/")), headers=headers) as r:
                assert r.status == 200, await r.text()
            return WhepResult(status, location, answer, n)
    finally:
        await pc.close()


async def play_forever(base: str, token: str | None) -> None:
    """Connect and keep receiving until killed; prints 'playing <location>' once frames arrive.

    Tests SIGKILL this process to make a viewer vanish the way a crashed tab or a dropped laptop
    does: no DELETE, no DTLS close, nothing.
    """
    import sys

    from vst.stream.webrtc import restrict_ice_to_host

    restrict_ice_to_host("127.0.0.1")
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("video", direction="recvonly")
    got: asyncio.Future[object] = asyncio.get_running_loop().create_future()
    pc.on("track", lambda track: got.done() or got.set_result(track))
    await pc.setLocalDescription(await pc.createOffer())
    headers = {"Content-Type": "application/sdp", **({"Authorization": f"Bearer {token}"} if token else {})}
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{base}/whep", data=pc.localDescription.sdp, headers=headers) as r:
            answer, location = await r.text(), r.headers.get("Location", "")
            if r.status != 201:
                sys.exit(f"WHEP {r.status}: {answer}")
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    track = await asyncio.wait_for(got, 30)
    await track.recv()  # type: ignore[attr-defined]
    print(f"playing {location}", flush=True)  # noqa: T201
    while True:
        await track.recv()  # type: ignore[attr-defined]


if __name__ == "__main__":
    import sys

    asyncio.run(play_forever(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None))
