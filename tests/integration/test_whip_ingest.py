"""`vst-stream --source whip`: an aiortc WHIP publisher (standing in for OBS) feeds the pipeline, and
the stylized output reaches a WHEP viewer. One publisher at a time; a vanished one frees the slot.

The publisher's frames never carry the latency stamp; ``--stamp-latency`` stamps every stylized
output. A stamp in the WHEP viewer's frames therefore shows that it receives the stylized stream of
the published camera (the pipeline has no other input: it waits for a camera until one publishes).
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from vst.stream.whip import WhipConfig, WhipError, WhipPublisher

from .janus import loopback_ice  # noqa: F401  (fixture)
from .serving import VstServer, wait_until
from .test_whip_janus import PatternTrack
from .whep_client import run_in_thread

TOKEN = "ingest-t0ken"


@pytest.fixture(scope="module")
def server(styles_dir: Path) -> Iterator[VstServer]:
    srv = VstServer(["--source", "whip", "--size", "320x180", "--style", "compact-test", "--stamp-latency", "--token", TOKEN],
                    env={"VST_STYLES_DIR": str(styles_dir)}, log_name="test_whip_ingest")  # fmt: skip
    yield srv
    assert srv.stop() == 0, srv.log_path.read_text()[-2000:]


async def _whep_stamps(base: str, seconds: float) -> tuple[int, int]:
    """Watch ``base``/whep for ``seconds``: (frames carrying the latency stamp, frames)."""
    from vst.stream.overlay import read_stamp

    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("video", direction="recvonly")
    got: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    pc.on("track", lambda track: got.done() or got.set_result(track))
    stamped = total = 0
    try:
        await pc.setLocalDescription(await pc.createOffer())
        headers = {"Content-Type": "application/sdp", "Authorization": f"Bearer {TOKEN}"}
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{base}/whep", data=pc.localDescription.sdp, headers=headers) as r:
                assert r.status == 201, await r.text()
                answer = await r.text()
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        track = await asyncio.wait_for(got, 20)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            rgb = (await asyncio.wait_for(track.recv(), 10)).to_ndarray(format="rgb24")
            total += 1
            stamped += read_stamp(rgb) is not None
    finally:
        await pc.close()
    return stamped, total


def test_published_camera_is_stylized_for_whep_viewers(server: VstServer, loopback_ice: None) -> None:
    # The ingest line follows the ready line the fixture waits for: give the reader thread a moment.
    assert wait_until(lambda: any("WHIP ingest" in line for line in server.lines), 10), server.lines
    assert server.stats()["state"].startswith("waiting")
    status, _h, body = server.request("POST", "/whip", b"v=0\r\n", "application/sdp", token=False)
    assert status == 401, body
    source = PatternTrack()

    async def main() -> tuple[tuple[int, int], dict[str, Any], WhipError]:
        url = f"{server.base}/whip"
        pub = WhipPublisher(url, source, WhipConfig(token=TOKEN))
        await pub.publish_once()
        try:
            # a second publisher is refused while the first holds the input
            second = WhipPublisher(url, PatternTrack(), WhipConfig(token=TOKEN))
            with pytest.raises(WhipError) as info:
                await second.publish_once()
            await second.stop()
            seen = await _whep_stamps(server.base, 4.0)
            stats = server.stats()
        finally:
            await pub.stop()  # DELETE /whip/{id}
        return seen, stats, info.value

    (stamped, total), stats, conflict = run_in_thread(main)
    source.stop()
    assert conflict.status == 409 and "one at a time" in str(conflict), str(conflict)
    assert stats["publishers"] == 1 and stats["state"] == "running" and stats["frames_in"] > 10, stats
    assert stats["viewers"] == 0 or stats["viewers"] == 1, stats  # the publisher is not a viewer
    assert total >= 20 and stamped >= 0.9 * total, f"{stamped}/{total} WHEP frames carry the stylized output's stamp"
    assert wait_until(lambda: server.stats()["publishers"] == 0, 5), "DELETE did not end the WHIP publish"


PUBLISHER = """
import asyncio, sys, aioice.ice
aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]
from vst.stream.whip import WhipConfig, WhipPublisher
from tests.integration.test_whip_janus import PatternTrack

async def main():
    pub = WhipPublisher(sys.argv[1], PatternTrack(), WhipConfig(token=sys.argv[2]))
    await pub.publish_once()
    print("publishing", flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


def test_vanished_publisher_frees_the_slot_within_10_s(server: VstServer, loopback_ice: None) -> None:
    """SIGKILL: no DELETE, no DTLS close. The server notices the silence and takes the next publisher."""
    repo = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen([sys.executable, "-c", PUBLISHER, f"{server.base}/whip", TOKEN], cwd=repo,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "publishing" in line, line + proc.stdout.read()
        assert wait_until(lambda: server.stats()["frames_in"] > 0 and server.stats()["publishers"] == 1, 20)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    t_kill = time.monotonic()

    async def republish() -> float:
        while True:
            pub = WhipPublisher(f"{server.base}/whip", PatternTrack(), WhipConfig(token=TOKEN))
            try:
                await pub.publish_once()
                return time.monotonic() - t_kill
            except WhipError as e:
                assert e.status == 409, str(e)
                assert time.monotonic() - t_kill < 15, "the vanished publisher still holds the slot"
                await asyncio.sleep(0.5)
            finally:
                await pub.stop()

    freed = run_in_thread(republish)
    assert freed <= 10.0, f"the slot was freed {freed:.1f} s after the publisher vanished"
