"""A real WHEP player built on aiortc (for tests and the churn run): POST an offer, receive, DELETE."""

from __future__ import annotations

import asyncio
import urllib.parse
from dataclasses import dataclass

import aiohttp
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription


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
