"""One encode for all viewers: each pipeline output is encoded once per (codec, picture) and the same
``av.Packet`` goes to every viewer's RTCRtpSender.

    Pipeline.next_output -> SharedEncoder (one codec context, one worker thread)
                              -> EncodedTrack (viewer 1) -> RTCRtpSender.pack -> RTP
                              -> EncodedTrack (viewer 2) -> ...

aiortc's RTCRtpSender takes either a frame (it runs its own encoder) or an ``av.Packet`` from a track:
for a packet it only packetizes (``Encoder.pack``) and adds its own random RTP timestamp origin, SSRC,
sequence numbers and VP8 picture ids. So every sender sees one strictly increasing pts on a 90 kHz
clock, and a viewer that joins late simply starts from a later pts: its RTP timestamps stay
continuous from its first packet on.

What sharing changes, and how it is handled:

- A decoder can only start at a keyframe, and a delta frame it missed corrupts every frame after it.
  A track therefore starts (and restarts after falling behind) at a keyframe, receives every packet
  from there in order, and asks for a keyframe when it starts.
- A viewer's PLI/FIR asks the one encoder for a keyframe, which every viewer then receives. Requests
  are rate-limited (``min_keyframe_interval_s``): one viewer with a lossy link cannot turn the whole
  stream into keyframes. A request inside the interval is deferred, not dropped.
- Bitrate: one encoder has one bitrate. By default it follows the slowest viewer (the lowest REMB
  estimate among active viewers), so nobody's link is flooded; ``fixed_bitrate`` pins it. Changing
  it rebuilds the codec (libvpx/x264 through PyAV cannot retune a running context), which is a
  keyframe for everyone, so changes are limited to one per ``bitrate_change_s`` and to moves of
  more than 25 %. docs/deploy.md explains the choice.

aiortc has no public hook for RTCP feedback on a sender, so ``tap_sender`` wraps the one method the
DTLS transport dispatches RTCP to (``RTCRtpSender._handle_rtcp_packet``) to see PLI/FIR and REMB,
then lets aiortc handle the packet as before (NACK retransmission stays aiortc's).
"""

from __future__ import annotations

import asyncio
import fractions
import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import av
import numpy as np
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError
from aiortc.rtp import RTCP_PSFB_APP, RTCP_PSFB_FIR, RTCP_PSFB_PLI, RtcpPsfbPacket, unpack_remb_fci

if TYPE_CHECKING:
    from aiortc import RTCRtpSender

    from vst.stream.pipeline import Output, Pipeline

log = logging.getLogger("vst.encode")

Codec = Literal["vp8", "h264"]
Picture = Literal["stylized", "original"]
CLOCK = 90000
TIME_BASE = fractions.Fraction(1, CLOCK)


@dataclass(frozen=True)
class EncoderConfig:
    """How a ``SharedEncoder`` encodes. Defaults live here."""

    codec: Codec = "vp8"
    """'vp8' (libvpx) or 'h264' (libx264, constrained baseline, what every browser decodes)."""
    fixed_bitrate: int | None = None
    """Bits per second, fixed (``--bitrate``); None: follow the slowest viewer's REMB estimate."""
    start_bitrate: int = 800_000
    """Before any viewer has reported an estimate (follow mode)."""
    min_bitrate: int = 250_000
    """Floor of the follow mode: below this a 360p picture is mush; the slow viewer drops frames instead."""
    max_bitrate: int = 2_500_000
    """Ceiling of the follow mode (one 720p30 stream looks good at this)."""
    min_keyframe_interval_s: float = 0.5
    """At most one requested keyframe per this many seconds (joins, PLI, FIR, resyncs)."""
    bitrate_change_s: float = 3.0
    """At most one bitrate change (a codec rebuild, so a keyframe) per this many seconds."""
    repeat_s: float = 1.0
    """With no new output for this long (source down, paused), encode the last picture again so
    viewers' decoders and jitter buffers keep running and a keyframe request is still served."""
    max_backlog: int = 60
    """A viewer whose sender is this many packets behind skips to the next keyframe."""

    def __post_init__(self) -> None:
        if self.codec not in ("vp8", "h264"):
            raise ValueError(f"codec must be vp8 or h264, not {self.codec!r}")
        if self.fixed_bitrate is not None and self.fixed_bitrate <= 0:
            raise ValueError("fixed_bitrate must be positive")


def _encoder_threads(width: int, height: int) -> int:
    """libvpx/x264 threads: one per ~640x480 of picture, at most the cores minus one (inference needs the rest)."""
    import os

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(cores - 1, (width * height) // (640 * 480) + 1))


def open_codec(codec: Codec, width: int, height: int, bitrate: int) -> av.video.codeccontext.VideoCodecContext:
    """A real-time encoder context: no lookahead and no B-frames (one packet out per frame in), CBR,
    keyframes only when asked for (the encoder never inserts periodic ones: joins and PLIs ask)."""
    if codec == "vp8":
        ctx = av.CodecContext.create("libvpx", "w")
        ctx.options = {
            "deadline": "realtime",
            "cpu-used": "8",  # fastest real-time speed: this encode competes with inference for the cores
            "lag-in-frames": "0",
            "minrate": str(bitrate),  # minrate = maxrate = bit_rate: libvpx's CBR mode
            "maxrate": str(bitrate),
            "bufsize": str(bitrate),  # a 1 s rate-control buffer
            "undershoot-pct": "100",
            "overshoot-pct": "15",
            "static-thresh": "1",
            "noise-sensitivity": "0",
            "error-resilient": "1",  # partitions decodable after a lost packet (NACK may be late)
        }
        ctx.qmin, ctx.qmax = 2, 56
    else:
        ctx = av.CodecContext.create("libx264", "w")
        ctx.options = {"preset": "veryfast", "tune": "zerolatency", "bf": "0", "scenecut": "0",
                       "vbv-maxrate": str(bitrate // 1000), "vbv-bufsize": str(bitrate // 1000)}  # fmt: skip
        if width * height <= 1280 * 720:
            ctx.options = {**ctx.options, "level": "31"}
        ctx.profile = "Baseline"
    ctx.width, ctx.height = width, height
    ctx.pix_fmt = "yuv420p"
    ctx.bit_rate = bitrate
    ctx.time_base = TIME_BASE
    ctx.framerate = fractions.Fraction(30, 1)
    ctx.gop_size = 1 << 30  # no periodic keyframes
    ctx.thread_count = _encoder_threads(width, height)
    return ctx


@dataclass(frozen=True)
class Encoded:
    """One encoded output frame, shared by every track (never mutated after it is made)."""

    packet: av.Packet
    """All of the frame's bitstream, pts on the 90 kHz clock (what RTCRtpSender.pack reads)."""
    keyframe: bool
    seq: int
    """Encoder frame number (0, 1, ...)."""


class EncodedTrack(MediaStreamTrack):
    """One viewer's view of a ``SharedEncoder``: ``recv`` returns the shared ``av.Packet``s in order,
    starting at a keyframe. Becomes active (and asks for a keyframe) on its first ``recv``, i.e. when
    the viewer's sender starts after DTLS, not when the offer is answered."""

    kind = "video"

    def __init__(self, encoder: SharedEncoder) -> None:
        super().__init__()
        self.encoder = encoder
        self.picture: Picture = encoder.picture
        self.active = False
        self.frames = 0
        self.keyframes = 0
        self.resyncs = 0
        self.errors = 0  # Fanout-compatible counter (nothing here raises per frame)
        self.remb: int | None = None
        """The viewer's latest receiver estimate (REMB), bps."""
        self._queue: deque[Encoded] = deque()
        self._ready = asyncio.Event()
        self._synced = False

    def offer(self, enc: Encoded) -> None:
        """Called by the encoder (event loop) for each frame."""
        if not self.active:
            return
        if not self._synced:
            if not enc.keyframe:
                return
            self._synced = True
        self._queue.append(enc)
        if len(self._queue) > self.encoder.config.max_backlog:  # the sender stalled: skip to a keyframe
            self._queue.clear()
            self._synced = False
            self.resyncs += 1
            self.encoder.request_keyframe("resync")
        self._ready.set()

    async def recv(self) -> av.Packet:
        if self.readyState != "live":
            raise MediaStreamError
        if not self.active:
            self.active = True
            self.encoder.activate(self)
        while not self._queue:
            self._ready.clear()
            await self._ready.wait()
            if self.readyState != "live":
                raise MediaStreamError
        enc = self._queue.popleft()
        self.frames += 1
        self.keyframes += enc.keyframe
        return enc.packet

    def stop(self) -> None:
        super().stop()
        self._ready.set()  # a recv waiting on it sees the ended state
        self.encoder.unsubscribe(self)

    def tap(self, sender: RTCRtpSender) -> None:
        """See PLI/FIR and REMB arriving for ``sender`` (aiortc still handles them as before)."""
        tap_sender(sender, lambda: self.encoder.request_keyframe("PLI/FIR"), self._on_remb)

    def _on_remb(self, bps: int) -> None:
        self.remb = bps  # read by the encode loop (SharedEncoder.target_bitrate)


def tap_sender(sender: RTCRtpSender, on_keyframe_request: Callable[[], None], on_remb: Callable[[int], None]) -> None:
    """Observe ``sender``'s incoming RTCP feedback (see module docstring: aiortc has no public hook)."""
    handle = getattr(sender, "_handle_rtcp_packet", None)  # the bound method the DTLS transport calls
    if handle is None or not hasattr(sender, "_ssrc"):  # another aiortc: joins still get keyframes, PLIs do not
        log.warning("this aiortc's RTCRtpSender has no _handle_rtcp_packet/_ssrc: PLI/FIR and REMB are not seen")
        return

    async def observed(packet: Any) -> None:
        if isinstance(packet, RtcpPsfbPacket):
            if packet.fmt in (RTCP_PSFB_PLI, RTCP_PSFB_FIR):
                on_keyframe_request()
            elif packet.fmt == RTCP_PSFB_APP:
                try:
                    bps, ssrcs = unpack_remb_fci(packet.fci)
                except ValueError:  # an APP packet that is not REMB
                    pass
                else:
                    if sender._ssrc in ssrcs:
                        on_remb(int(bps))
        await handle(packet)

    sender._handle_rtcp_packet = observed  # type: ignore[method-assign]


class SharedEncoder:
    """Encodes one picture of the pipeline's output once per frame for every subscribed track.

    Runs as a task on the event loop while at least one track is active; the encode itself runs on
    one worker thread (a codec context is not thread-safe, and the event loop must not block).
    """

    def __init__(self, pipeline: Pipeline, picture: Picture, config: EncoderConfig) -> None:
        self.pipeline = pipeline
        self.picture: Picture = picture
        self.config = config
        self.tracks: set[EncodedTrack] = set()
        self._ctx: Any = None
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"vst-encode-{config.codec}-{picture}")
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._t0 = time.monotonic()
        self._last_pts = -1
        self._keyframe_wanted = False
        self._last_keyframe = -1e9
        self._bitrate = config.fixed_bitrate or config.start_bitrate
        self._bitrate_changed = -1e9
        # stats
        self.frames_encoded = 0
        self.keyframes = 0
        self.keyframe_requests: dict[str, int] = {}
        self.bitrate_changes = 0
        self.errors = 0
        self.bytes_out = 0
        self._encode_ms: deque[float] = deque(maxlen=120)
        self._ready_ms: deque[float] = deque(maxlen=120)  # capture -> packet ready (wall clock), new outputs only
        self._prefix = f"encoder {config.codec}/{picture}"

    # ------------------------------------------------------------------ tracks

    def subscribe(self) -> EncodedTrack:
        track = EncodedTrack(self)
        self.tracks.add(track)
        return track

    def activate(self, track: EncodedTrack) -> None:
        """A track's sender started: it needs a keyframe; start encoding if this is the first."""
        self.request_keyframe("join")
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name=self._prefix)
        self._wake.set()

    def unsubscribe(self, track: EncodedTrack) -> None:
        self.tracks.discard(track)  # the slowest viewer may have left: the next frame retunes

    def active_tracks(self) -> list[EncodedTrack]:
        return [t for t in self.tracks if t.active and t.readyState == "live"]

    # ------------------------------------------------------------------ control

    def request_keyframe(self, reason: str) -> None:
        """Ask for a keyframe; served at the next frame at least ``min_keyframe_interval_s`` after the last."""
        self.keyframe_requests[reason] = self.keyframe_requests.get(reason, 0) + 1
        self._keyframe_wanted = True

    def target_bitrate(self) -> int:
        """Fixed, or the lowest REMB among active viewers, clamped (the start value before any report)."""
        c = self.config
        if c.fixed_bitrate is not None:
            return c.fixed_bitrate
        estimates = [t.remb for t in self.active_tracks() if t.remb is not None]
        if not estimates:
            return self._bitrate
        return max(c.min_bitrate, min(c.max_bitrate, min(estimates)))

    @property
    def bitrate(self) -> int:
        return self._bitrate

    # ------------------------------------------------------------------ the loop

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        seq = 0
        yuv: np.ndarray | None = None
        log.info("%s: started (%s)", self._prefix,
                 f"fixed {self._bitrate // 1000} kbps" if self.config.fixed_bitrate else "bitrate follows the slowest viewer")  # fmt: skip
        try:
            while True:
                try:
                    seq, yuv = await self._step(loop, seq, yuv)
                except asyncio.CancelledError:
                    raise
                except Exception:  # never let the loop die: every viewer of this encoder would freeze
                    self.errors += 1
                    self._ctx = None
                    if self.errors <= 3 or self.errors % 100 == 0:
                        log.exception("%s: failed (%d errors)", self._prefix, self.errors)
                    await asyncio.sleep(0.05)
        finally:
            self._ctx = None

    async def _step(self, loop: asyncio.AbstractEventLoop, seq: int, yuv: np.ndarray | None) -> tuple[int, np.ndarray | None]:
        """Wait for the next output (or the repeat timeout), encode it and offer it to every track."""
        if not self.active_tracks():
            self._ctx = None  # the next viewer starts a fresh stream (a keyframe anyway)
            self._wake.clear()
            await self._wake.wait()
            return seq, yuv
        out: Output | None = await self.pipeline.next_output(seq, self.config.repeat_s)
        captured = out.captured if out is not None else None
        if out is not None:
            seq = out.seq
            yuv = out.stylized_yuv if self.picture == "stylized" else out.original_yuv
        elif yuv is None:  # nothing published yet: black, so the session starts at once
            yuv = _black(320, 180)
        now = time.monotonic()
        self._maybe_retune(now)
        force = self._keyframe_wanted and now - self._last_keyframe >= self.config.min_keyframe_interval_s
        pts = max(int((now - self._t0) * CLOCK), self._last_pts + 1)
        self._last_pts = pts
        # an encode failure raises into _run: logged, counted, and the next frame gets a new codec
        enc = await loop.run_in_executor(self._executor, self._encode, yuv, pts, force)
        if enc is None:
            return seq, yuv
        if captured is not None:
            self._ready_ms.append((time.time() - captured) * 1e3)
        if enc.keyframe:
            self._keyframe_wanted = False  # any keyframe serves every pending request
            self._last_keyframe = now
        for track in list(self.tracks):
            track.offer(enc)
        return seq, yuv

    def _maybe_retune(self, now: float) -> None:
        target = self.target_bitrate()
        if target == self._bitrate or now - self._bitrate_changed < self.config.bitrate_change_s:
            return
        if abs(target - self._bitrate) / self._bitrate <= 0.25:
            return
        log.info("%s: bitrate %d -> %d kbps (slowest viewer)", self._prefix, self._bitrate // 1000, target // 1000)
        self._bitrate, self._bitrate_changed = target, now
        self.bitrate_changes += 1
        self._ctx = None  # rebuilt at the next frame, which is then a keyframe

    def _encode(self, yuv: np.ndarray, pts: int, force_keyframe: bool) -> Encoded | None:
        """Worker thread: one I420 picture -> one packet (None if the codec held it back)."""
        t0 = time.perf_counter()
        height, width = yuv.shape[0] * 2 // 3, yuv.shape[1]
        ctx = self._ctx
        if ctx is None or ctx.width != width or ctx.height != height:
            ctx = self._ctx = open_codec(self.config.codec, width, height, self._bitrate)
        frame = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
        frame.pts, frame.time_base = pts, TIME_BASE
        if force_keyframe:
            frame.pict_type = av.video.frame.PictureType.I
        packets = ctx.encode(frame)
        if not packets:
            return None
        data = b"".join(bytes(p) for p in packets)
        keyframe = any(p.is_keyframe for p in packets)
        packet = av.Packet(data)
        packet.pts, packet.dts, packet.time_base = pts, pts, TIME_BASE
        enc = Encoded(packet, keyframe, self.frames_encoded)
        self.frames_encoded += 1
        self.keyframes += keyframe
        self.bytes_out += len(data)
        self._encode_ms.append((time.perf_counter() - t0) * 1e3)
        return enc

    # ------------------------------------------------------------------ lifecycle and stats

    def stats(self) -> dict[str, Any]:
        ms = sorted(self._encode_ms)
        return {
            "codec": self.config.codec,
            "picture": self.picture,
            "viewers": len(self.active_tracks()),
            "frames_encoded": self.frames_encoded,
            "keyframes": self.keyframes,
            "keyframe_requests": dict(self.keyframe_requests),
            "encode_ms": round(ms[len(ms) // 2], 2) if ms else None,
            "capture_to_packet_ms": round(sorted(self._ready_ms)[len(self._ready_ms) // 2], 1) if self._ready_ms else None,
            "bitrate_kbps": self._bitrate // 1000,
            "bitrate_mode": "fixed" if self.config.fixed_bitrate else "slowest viewer",
            "bitrate_changes": self.bitrate_changes,
            "resyncs": sum(t.resyncs for t in self.tracks),
            "errors": self.errors,
        }

    async def close(self) -> None:
        for t in list(self.tracks):
            t.stop()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
        self._executor.shutdown(wait=False)


def _black(w: int, h: int) -> np.ndarray:
    """I420 black (Y=16, U=V=128)."""
    yuv = np.full((h * 3 // 2, w), 128, np.uint8)
    yuv[:h] = 16
    return yuv
