"""WhipPublisher against a real SFU: Janus 1.1.2's VideoRoom behind simple-whip-server, on 127.0.0.1.

The publisher sends a synthetic pattern whose every frame carries its own number (a 16-bit barcode
and its complement) above colour bars that scroll with the number. A VideoRoom subscriber, joined
through Janus's HTTP API, decodes the frames; each decoded frame is read back to its number and
compared with the pattern the publisher made for that number, so the test checks that the
published pictures arrive, not just that some frame did.
"""

from __future__ import annotations

import asyncio
import fractions
import hashlib
import logging
import signal
import time
from dataclasses import dataclass, field
from typing import Any

import av
import numpy as np
import pytest
from aiortc import MediaStreamTrack

from vst.stream.pipeline import Output
from vst.stream.whip import WhipConfig, WhipError, WhipPublisher

from . import janus
from .janus import JanusStack, JanusSubscriber
from .serving import free_port
from .test_shared_encode import Player
from .whep_client import run_in_thread

janus_stack = janus.janus_stack  # fixtures, by name
loopback_ice = janus.loopback_ice

log = logging.getLogger("tests.whip")

W, H, FPS = 320, 240, 30
BITS, CELL_W, CELL_H = 16, W // 16, 24
BARCODE_H = 2 * CELL_H
PALETTE = np.array([[255, 255, 255], [255, 230, 0], [0, 230, 255], [0, 220, 0],
                    [255, 0, 255], [240, 0, 0], [0, 0, 255], [255, 140, 0]], np.uint8)  # fmt: skip
PUBLISH_TIMEOUT_S = 20.0


def pattern(n: int) -> np.ndarray:
    """Frame ``n``: (H, W, 3) uint8 RGB; barcode of n (and ~n) on top, bars scrolled by 4n px below."""
    img = np.empty((H, W, 3), np.uint8)
    img[:] = PALETTE[((np.arange(W) + 4 * n) % W) * len(PALETTE) // W][None]
    for i in range(BITS):
        bit = (n >> i) & 1
        img[:CELL_H, i * CELL_W : (i + 1) * CELL_W] = 255 * bit
        img[CELL_H:BARCODE_H, i * CELL_W : (i + 1) * CELL_W] = 255 * (1 - bit)
    return img


def read_number(rgb: np.ndarray) -> int | None:
    """The frame number in a decoded frame, or None when the barcode and its complement disagree."""
    luma = rgb.mean(axis=2)
    n = comp = 0
    for i in range(BITS):
        x0 = i * CELL_W + CELL_W // 4
        x1 = (i + 1) * CELL_W - CELL_W // 4
        n |= int(luma[CELL_H // 4 : 3 * CELL_H // 4, x0:x1].mean() > 128) << i
        comp |= int(luma[CELL_H + CELL_H // 4 : CELL_H + 3 * CELL_H // 4, x0:x1].mean() > 128) << i
    return n if n ^ comp == (1 << BITS) - 1 else None


class FrameClock:
    """Frame n is due ``n / FPS`` s after the first wait."""

    def __init__(self) -> None:
        self._t0: float | None = None

    async def wait_for(self, n: int) -> None:
        now = time.monotonic()
        if self._t0 is None:
            self._t0 = now
        wait = self._t0 + n / FPS - now
        if wait > 0:
            await asyncio.sleep(wait)


class PatternTrack(MediaStreamTrack):
    """``pattern(n)`` at ``FPS``, n = 0, 1, 2...; remembers when each frame was handed out."""

    kind = "video"

    def __init__(self) -> None:
        super().__init__()
        self.n = 0
        self.sent: dict[int, float] = {}
        self._clock = FrameClock()

    async def recv(self) -> av.VideoFrame:
        await self._clock.wait_for(self.n)
        frame = av.VideoFrame.from_ndarray(pattern(self.n % (1 << BITS)), format="rgb24")
        frame.pts, frame.time_base = self.n * (90000 // FPS), fractions.Fraction(1, 90000)
        self.sent[self.n] = time.monotonic()
        self.n += 1
        return frame


class PatternPipeline:
    """What a ``SharedEncoder`` reads from a pipeline: ``pattern(n)`` as I420 at ``FPS``."""

    def __init__(self) -> None:
        self.n = 0
        self._clock = FrameClock()

    async def next_output(self, seq: int, timeout: float) -> Output:
        import cv2

        await self._clock.wait_for(self.n)
        rgb = pattern(self.n % (1 << BITS))
        self.n += 1
        return Output(self.n, rgb, rgb, cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420), time.time())


@dataclass
class Received:
    """What a subscriber decoded: frame number -> (arrival time, mean |error| vs the pattern)."""

    frames: dict[int, tuple[float, float]] = field(default_factory=dict)
    unreadable: int = 0
    sizes: set[tuple[int, int]] = field(default_factory=set)


async def watch(track: Any, seconds: float, out: Received) -> None:
    """Decode ``track`` for ``seconds``: read each frame's number and compare it with its pattern."""
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        try:
            frame = await asyncio.wait_for(track.recv(), left)
        except asyncio.TimeoutError:
            break
        rgb = frame.to_ndarray(format="rgb24")
        out.sizes.add((frame.width, frame.height))
        n = read_number(rgb) if rgb.shape == (H, W, 3) else None
        if n is None:
            out.unreadable += 1
            continue
        err = float(np.abs(rgb[BARCODE_H:].astype(np.int16) - pattern(n)[BARCODE_H:]).mean())
        out.frames.setdefault(n, (time.monotonic(), err))


async def subscribe(stack: JanusStack, eid: str, seconds: float) -> Received:
    sub = JanusSubscriber(stack.api)
    out = Received()
    try:
        track = await sub.join(eid)
        await watch(track, seconds, out)
    finally:
        await sub.close()
    return out


def test_pattern_round_trip() -> None:
    for n in (0, 1, 0x5A5A, (1 << BITS) - 1):
        assert read_number(pattern(n)) == n
    assert read_number(np.zeros((H, W, 3), np.uint8)) is None


# ---------------------------------------------------------------------- against Janus


@pytest.mark.parametrize("seconds", [10, pytest.param(60, marks=pytest.mark.slow)])
def test_publish_reaches_videoroom_subscriber(janus_stack: JanusStack, loopback_ice: None, seconds: int) -> None:
    """vst's publisher -> simple-whip-server -> Janus VideoRoom -> an HTTP-API subscriber, frame by frame."""
    token = "whip-t0ken"
    eid = janus_stack.create_endpoint(token=token)
    source = PatternTrack()

    async def main() -> tuple[Received, dict[str, Any], bool]:
        pub = WhipPublisher(janus_stack.whip_url(eid), source, WhipConfig(token=token))
        pub.start()
        try:
            assert await pub.wait_publishing(PUBLISH_TIMEOUT_S), pub.stats()
            got = await subscribe(janus_stack, eid, seconds)
            stats = pub.stats()
        finally:
            await pub.stop()
        return got, stats, janus_stack.endpoint_enabled(eid)

    t0 = time.monotonic()
    got, stats, still_enabled = run_in_thread(main)
    source.stop()
    assert got.frames, f"nothing decoded ({got.unreadable} unreadable frames, sizes {got.sizes})\n{janus_stack.log_tail('janus.log')}"
    first, last = min(got.frames), max(got.frames)
    # frames handed out while the subscriber was watching, except the last second's (still in flight)
    t_end = max(t for t, _ in got.frames.values())
    window = [n for n, t in source.sent.items() if n >= first and t <= t_end - 1.0]
    decoded = sum(n in got.frames for n in window)
    fraction = decoded / max(len(window), 1)
    latency = sorted(t - source.sent[n] for n, (t, _) in got.frames.items())
    errors = sorted(err for _, err in got.frames.values())
    newest_sent_before_last = max(n for n, t in source.sent.items() if t <= t_end)
    lag_s = (newest_sent_before_last - last) / FPS
    log.info("%d s publish: %d/%d frames decoded (%.1f %%), %d unreadable, latency median %.0f ms max %.0f ms, "
             "last frame %.2f s behind, content error median %.1f max %.1f levels, %d bytes sent, %.1f s total",
             seconds, decoded, len(window), 100 * fraction, got.unreadable, 1000 * latency[len(latency) // 2],
             1000 * latency[-1], lag_s, errors[len(errors) // 2], errors[-1], stats["bytes_sent"],
             time.monotonic() - t0)  # fmt: skip
    assert got.sizes == {(W, H)}
    assert fraction >= 0.9, f"only {decoded}/{len(window)} frames decoded"
    assert got.unreadable <= 0.02 * len(got.frames), f"{got.unreadable} frames without a readable number"
    assert errors[len(errors) // 2] < 12 and errors[-1] < 40, f"decoded pictures differ from what was sent: {errors[-5:]}"
    assert lag_s <= 1.0, f"the newest decoded frame is {lag_s:.2f} s behind the newest sent"
    assert stats["state"] == "publishing" and stats["reconnects"] == 0 and stats["bytes_sent"] > 10_000, stats
    assert not still_enabled, "stop() did not DELETE the WHIP session"


def test_bad_token_is_a_clear_403(janus_stack: JanusStack, loopback_ice: None) -> None:
    eid = janus_stack.create_endpoint(token="right-token")
    source = PatternTrack()

    async def main() -> tuple[WhipError, dict[str, Any]]:
        pub = WhipPublisher(janus_stack.whip_url(eid), source, WhipConfig(token="wrong-token", backoff_initial_s=0.2))
        with pytest.raises(WhipError) as info:
            await pub.publish_once()
        pub.start()  # the background task reports the same error and keeps retrying, never raising
        await asyncio.sleep(1.0)
        stats = pub.stats()
        await pub.stop()
        return info.value, stats

    err, stats = run_in_thread(main)
    source.stop()
    assert err.status == 403
    assert "403" in str(err) and "Unauthorized" in str(err) and "--publish-token" in str(err), str(err)
    assert "\n" not in str(err) and "wrong-token" not in str(err)
    assert stats["state"] in ("retrying", "connecting") and stats["attempts"] >= 2, stats
    assert "403" in (stats["last_error"] or ""), stats
    assert not janus_stack.endpoint_enabled(eid)


def test_dead_url_is_a_clear_error(loopback_ice: None) -> None:
    """No Janus needed: nothing listens on the port."""
    url = f"http://127.0.0.1:{free_port()}/whip/endpoint/x"

    async def main() -> WhipError:
        pub = WhipPublisher(url, PatternTrack())
        with pytest.raises(WhipError) as info:
            await pub.publish_once()
        await pub.stop()
        return info.value

    err = run_in_thread(main)
    assert err.status is None
    assert "connection refused" in str(err) and url in str(err), str(err)


@pytest.mark.parametrize("encoding", ["own", "shared"])
def test_republishes_after_janus_and_whip_server_restart(janus_stack: JanusStack, loopback_ice: None, encoding: str) -> None:
    """Kill -9 both services mid-publish, start them again on the same ports: the publisher notices,
    re-publishes within 10 s of the services being back, and a new subscriber sees the pattern.
    'shared': the publish sends a SharedEncoder's packets, as ``vst-stream --publish`` does."""
    from vst.stream.encode import EncoderConfig, SharedEncoder

    eid = janus_stack.create_endpoint()
    source = PatternTrack()
    shared = SharedEncoder(PatternPipeline(), "stylized", EncoderConfig()) if encoding == "shared" else None  # type: ignore[arg-type]

    async def main() -> tuple[float, float, dict[str, Any], Received, bool]:
        pub = WhipPublisher(janus_stack.whip_url(eid), source, encoded=shared.subscribe if shared else None)
        pub.start()
        try:
            assert await pub.wait_publishing(PUBLISH_TIMEOUT_S), pub.stats()
            await asyncio.sleep(2.0)
            t_kill = time.monotonic()
            janus_stack.kill()
            await asyncio.sleep(1.0)  # down for a moment, as a crashed service under a supervisor
            await asyncio.get_running_loop().run_in_executor(None, janus_stack.start)
            t_up = time.monotonic()
            deadline = t_up + 10.0
            while not (pub.stats()["reconnects"] >= 1 and pub.state == "publishing") and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            t_back = time.monotonic()
            stats = pub.stats()
            got = await subscribe(janus_stack, eid, 3.0) if stats["reconnects"] >= 1 else Received()
            alive = pub._task is not None and not pub._task.done()
        finally:
            await pub.stop()
            if shared is not None:
                await shared.close()
        return t_back - t_kill, t_back - t_up, stats, got, alive

    since_kill, since_up, stats, got, alive = run_in_thread(main)
    source.stop()
    log.info("re-published %.1f s after the kill, %.1f s after the services were back; %s", since_kill, since_up, stats)
    assert alive, "the publisher's background task died"
    assert stats["reconnects"] >= 1 and stats["state"] == "publishing" and stats["encoding"] == encoding, stats
    assert since_up <= 10.0
    good = [n for n, (_, err) in got.frames.items() if err < 40]
    assert len(good) >= 30, f"after the restart a subscriber decoded only {len(got.frames)} frames"


def test_silent_server_is_detected_and_republished(janus_stack: JanusStack, loopback_ice: None) -> None:
    """SIGSTOP Janus: a hung SFU or a black-holed path sends no close and no ICMP, so only silence
    shows it (ICE consent would take ~30 s). The publisher gives up on the connection after
    ``silence_timeout_s`` and re-publishes once Janus runs again."""
    eid = janus_stack.create_endpoint()
    source = PatternTrack()
    proc = janus_stack.janus
    assert proc is not None

    async def main() -> tuple[float, dict[str, Any]]:
        pub = WhipPublisher(janus_stack.whip_url(eid), source, WhipConfig(silence_timeout_s=3.0))
        pub.start()
        try:
            assert await pub.wait_publishing(PUBLISH_TIMEOUT_S), pub.stats()
            await asyncio.sleep(1.0)
            t0 = time.monotonic()
            proc.send_signal(signal.SIGSTOP)
            try:
                while pub.state == "publishing" and time.monotonic() - t0 < 10:
                    await asyncio.sleep(0.1)
                noticed = time.monotonic() - t0
            finally:
                proc.send_signal(signal.SIGCONT)
            deadline = time.monotonic() + 15
            while not (pub.stats()["reconnects"] >= 1 and pub.state == "publishing") and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            return noticed, pub.stats()
        finally:
            await pub.stop()

    noticed, stats = run_in_thread(main)
    source.stop()
    log.info("silence noticed after %.1f s; %s", noticed, stats)
    assert 2.5 <= noticed <= 6.0, f"silence noticed after {noticed:.1f} s (silence_timeout_s=3)"
    assert stats["reconnects"] >= 1 and stats["state"] == "publishing", stats


def test_pipeline_stylized_track_reaches_subscriber(janus_stack: JanusStack, loopback_ice: None) -> None:
    """What ``vst-stream --publish`` does: the pipeline's stylized output, as the shared encode of the
    same Fanout local viewers use (the raw track as its fallback), published to Janus. Each subscriber frame is matched to
    the pipeline output it came from by the latency stamp, and must be that stylized picture, not
    its source."""
    from vst.stream.overlay import STAMP_BITS, read_stamp
    from vst.stream.pipeline import Pipeline, PipelineConfig
    from vst.stream.webrtc import Fanout

    eid = janus_stack.create_endpoint()
    pipeline = Pipeline(PipelineConfig(source="sample", size=(320, 180), stamp=True))
    pipeline.start()
    fanout = Fanout(pipeline)

    async def main() -> tuple[list[tuple[float, float]], int, dict[str, Any]]:
        outputs: dict[int, Output] = {}

        async def tap() -> None:  # every output the pipeline published, by its stamp
            seq = 0
            while True:
                out = await pipeline.next_output(seq, 1.0)
                if out is not None:
                    seq = out.seq
                    outputs[int(out.captured * 1000) % (1 << STAMP_BITS)] = out

        tapping = asyncio.create_task(tap())
        pub = WhipPublisher(janus_stack.whip_url(eid), fanout.subscribe("stylized"),
                            encoded=lambda: fanout.subscribe_encoded("stylized"))  # fmt: skip
        pub.start()
        sub = JanusSubscriber(janus_stack.api)
        pairs: list[tuple[float, float]] = []  # per matched frame: mean |error| vs stylized, vs original
        unmatched = 0
        try:
            assert await pub.wait_publishing(PUBLISH_TIMEOUT_S), pub.stats()
            track = await sub.join(eid)
            end = time.monotonic() + 6.0
            while time.monotonic() < end:
                rgb = (await asyncio.wait_for(track.recv(), 5.0)).to_ndarray(format="rgb24")
                ms = read_stamp(rgb)
                out = outputs.get(ms) if ms is not None else None
                if out is None or out.stylized.shape != rgb.shape:
                    unmatched += 1
                    continue
                body = slice(16, None)  # below the stamp rows
                pairs.append(tuple(float(np.abs(rgb[body].astype(np.int16) - ref[body]).mean())  # type: ignore[misc]
                                   for ref in (out.stylized, out.original)))  # fmt: skip
            return pairs, unmatched, pub.stats()
        finally:
            tapping.cancel()
            await sub.close()
            await pub.stop()
            await fanout.close()  # the shared encoder's task and thread live on this loop

    try:
        pairs, unmatched, stats = run_in_thread(main)
    finally:
        fanout.stop()
        pipeline.stop()
    to_stylized = sorted(a for a, _ in pairs)
    to_original = sorted(b for _, b in pairs)
    log.info("%d frames matched by stamp (%d not), |error| vs stylized median %.1f, vs original median %.1f; %s",
             len(pairs), unmatched, to_stylized[len(pairs) // 2] if pairs else -1,
             to_original[len(pairs) // 2] if pairs else -1, stats)  # fmt: skip
    assert len(pairs) >= 15, f"only {len(pairs)} subscriber frames matched a pipeline output ({unmatched} did not)"
    closer = sum(a < 0.5 * b for a, b in pairs)
    assert closer >= 0.95 * len(pairs), f"frames not clearly the stylized picture: {pairs[:5]}"
    assert to_stylized[len(pairs) // 2] < 8, to_stylized[-5:]
    assert stats["encoding"] == "shared", stats


def _cli_publishes() -> bool:
    from vst.stream.serve_cli import build_parser

    return "--publish" in build_parser().format_help()


def test_vst_stream_publish_reaches_janus(janus_stack: JanusStack, loopback_ice: None) -> None:
    """The issue's done-when: ``vst-stream --source sample --publish URL`` shows the stylized stream
    to a Janus subscriber. The stylized frames carry the latency stamp (the source never does), so a
    stamp in the subscriber's frames shows that it receives the stylized output. SIGTERM DELETEs the
    WHIP session.

    The publish shares the local viewers' encode (issue 11): with a local WHEP viewer watching too,
    the VP8 frames Janus forwards are byte-identical to frames the local viewer received (Janus
    relays the payloads unchanged), and /stats lists one encoder, feeding both."""
    if not _cli_publishes():
        pytest.skip("vst-stream has no --publish yet (serve_cli wiring pending; docs/deploy.md)")
    from vst.stream.overlay import read_stamp

    from .serving import VstServer

    token = "cli-t0ken"
    eid = janus_stack.create_endpoint(token=token)
    server = VstServer(["--source", "sample", "--size", "320x180", "--stamp-latency", "--publish", janus_stack.whip_url(eid)],
                       env={"VST_PUBLISH_TOKEN": token}, log_name="vst-stream-publish")  # fmt: skip
    try:
        deadline = time.monotonic() + PUBLISH_TIMEOUT_S
        while (server.stats().get("publish") or {}).get("state") != "publishing":
            assert time.monotonic() < deadline, server.stats().get("publish")
            time.sleep(0.2)
        assert token not in "".join(server.lines), "the publish token leaked into the ready lines"

        async def watch_stamps() -> tuple[int, int, list[str], list[str], dict[str, Any]]:
            local = Player(server.base, server.token)  # a local WHEP viewer of the same server
            await local.start()
            sub = JanusSubscriber(janus_stack.api, record_rtp=True)
            stamped = total = 0
            try:
                track = await sub.join(eid)
                end = time.monotonic() + 4.0
                while time.monotonic() < end:
                    rgb = (await asyncio.wait_for(track.recv(), 5.0)).to_ndarray(format="rgb24")
                    total += 1
                    stamped += read_stamp(rgb) is not None
                stats = server.stats()  # while both watch
            finally:
                await sub.close()
                await local.stop()
            return stamped, total, [hashlib.sha1(f).hexdigest() for f in sub.rtp.vp8_frames()], [h for h, _ in local.frames()], stats

        stamped, total, forwarded, local_frames, stats = run_in_thread(watch_stamps)
        publish = stats["publish"]
        assert total >= 20 and stamped >= 0.9 * total, f"{stamped}/{total} subscriber frames carry the stamp"
        assert publish["state"] == "publishing" and publish["bytes_sent"] > 0 and token not in str(publish), publish
        # one encode for the local viewer and the SFU: no second encoder, the same bytes
        assert publish["encoding"] == "shared" and publish["own_encoder_fallbacks"] == 0, publish
        encoders = stats["encoders"]
        assert len(encoders) == 1 and encoders[0]["viewers"] == 2, encoders  # the WHEP viewer and the publish
        assert stats["viewers"] == 1, stats["viewers"]
        local_set = set(local_frames)
        same = sum(f in local_set for f in forwarded)
        # where the two streams first meet: the local viewer's first frame, or (when Janus's recording
        # started after it, as seen once in a full-suite run) the first forwarded frame it also got
        first_local = next((i for i, f in enumerate(forwarded) if f in local_set), None)
        log.info("%d of %d VP8 frames Janus forwarded are byte-identical to the local viewer's (%d frames; others at "
                 "positions %s, the local viewer's first frame at %s); encoders %s", same, len(forwarded), len(local_frames),
                 [i for i, f in enumerate(forwarded) if f not in local_set], first_local, encoders)  # fmt: skip
        # Janus's subscriber may start before the local viewer's first keyframe: from there on, every frame
        assert first_local is not None, "no frame of the local viewer's reached Janus's subscriber"
        tail = forwarded[first_local:]
        same_tail = sum(f in local_set for f in tail)
        assert len(tail) >= 20 and same_tail >= 0.95 * len(tail), f"only {same_tail}/{len(tail)} forwarded frames are the shared encode's"
        assert janus_stack.endpoint_enabled(eid)
    finally:
        rc = server.stop()
    assert rc == 0, server.log_path.read_text()[-2000:]
    assert not janus_stack.endpoint_enabled(eid), "SIGTERM did not DELETE the WHIP session"
