"""The aiortc adapter: pipeline outputs as WebRTC tracks, fan-out, codec and bitrate settings.

aiortc's camelCase API stays inside this module and ``vst.stream.encode``. Fan-out: the
pipeline's one-slot output is shared by every viewer. By default one ``SharedEncoder`` per picture
encodes it once and every viewer's sender, and a ``--publish`` to an SFU, packetizes the same packets
(``vst.stream.encode``). With ``--per-viewer-encoder`` (and for a WHIP publish whose SFU answers
another codec) each viewer gets its own light
``PipelineTrack`` that wraps the shared I420 planes in a fresh ``av.VideoFrame``. We do not use ``MediaRelay`` because it hands
one frame object to every viewer's encoder, and those encoders run in parallel executor threads
and mutate the frame (``pict_type``; ``reformat`` when it is not I420): with two viewers that
crashed the server (SIGSEGV) here. Encoding stays in aiortc's executor (or the shared encoder's
worker thread), off the event loop.
"""

from __future__ import annotations

import asyncio
import fractions
import logging
import re
import time
from typing import Literal

import av
import numpy as np
from aiortc import MediaStreamTrack, RTCConfiguration, RTCIceServer
from aiortc.mediastreams import MediaStreamError

from vst.errors import VstError
from vst.process import raise_encoder_caps, restrict_ice_to_host
from vst.stream.encode import EncodedTrack, EncoderConfig, SharedEncoder
from vst.stream.pipeline import Pipeline

log = logging.getLogger("vst.webrtc")

__all__ = ["Fanout", "PipelineTrack", "add_bitrate_fmtp", "negotiated_video_codec", "parse_ice_server",
           "prefer_codec_in_offer", "raise_encoder_caps", "restrict_ice_to_host", "rtc_configuration"]  # fmt: skip
"""``raise_encoder_caps`` and ``restrict_ice_to_host`` live in ``vst.process`` (one copy); the CLI and
the tests import them from here too."""

Picture = Literal["stylized", "original"]
CLOCK = 90000
TIME_BASE = fractions.Fraction(1, CLOCK)


class PipelineTrack(MediaStreamTrack):
    """A video track that sends the pipeline's newest output (one picture of it).

    ``recv`` never raises except MediaStreamError when stopped: an exception escaping it would stop
    the relay and freeze every viewer (GUIDE), so failures are counted, logged and the last good
    frame is sent again.
    """

    kind = "video"

    def __init__(self, pipeline: Pipeline, picture: Picture, repeat_s: float = 1.0) -> None:
        super().__init__()
        self.pipeline = pipeline
        self.picture: Picture = picture
        self.repeat_s = repeat_s
        self.errors = 0
        self.frames = 0
        self._seq = 0
        self._t0 = time.monotonic()
        self._last_pts = -1
        # until the pipeline publishes: black (Y=16, U=V=128), so the session starts at once
        self._yuv = np.full((270, 320), 128, np.uint8)
        self._yuv[:180] = 16

    def _stamp(self, frame: av.VideoFrame) -> av.VideoFrame:
        pts = int((time.monotonic() - self._t0) * CLOCK)
        self._last_pts = pts = max(pts, self._last_pts + 1)
        frame.pts, frame.time_base = pts, TIME_BASE
        return frame

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        try:
            out = await self.pipeline.next_output(self._seq, self.repeat_s)
            if out is not None:
                self._seq = out.seq
                self._yuv = out.stylized_yuv if self.picture == "stylized" else out.original_yuv
            # a new frame object per send: the encoder mutates it (see module docstring)
            frame = av.VideoFrame.from_ndarray(self._yuv, format="yuv420p")
            self.frames += 1
            return self._stamp(frame)
        except asyncio.CancelledError:
            raise
        except Exception:
            self.errors += 1
            if self.errors <= 3 or self.errors % 100 == 0:
                log.exception("%s track: recv failed (%d errors)", self.picture, self.errors)
            await asyncio.sleep(0.05)
            return self._stamp(av.VideoFrame.from_ndarray(self._yuv, format="yuv420p"))


class Fanout:
    """Hands every viewer a track on the one pipeline output: N viewers cost one inference.

    Two kinds of track:

    - ``subscribe_encoded`` (the default for viewers): an ``EncodedTrack`` on the one
      ``SharedEncoder`` per picture, so N viewers also cost one encode (``vst.stream.encode``).
    - ``subscribe`` (``--per-viewer-encoder``, and a WHIP publish whose SFU answers another codec): a ``PipelineTrack``
      of raw frames, encoded by the viewer's own RTCRtpSender, with its own bitrate from its own REMB.

    A viewer whose sender is slow skips to the newest output (raw) or to the next keyframe (encoded).
    """

    def __init__(self, pipeline: Pipeline, encoder: EncoderConfig | None = None) -> None:
        self.pipeline = pipeline
        self.encoder_config = encoder or EncoderConfig()
        self.encoders: dict[Picture, SharedEncoder] = {}
        self.tracks: set[PipelineTrack | EncodedTrack] = set()
        self.frames_sent = {"stylized": 0, "original": 0}
        self.errors = 0

    def subscribe(self, picture: Picture) -> PipelineTrack:
        """A raw-frame track: its sender runs its own encoder."""
        track = PipelineTrack(self.pipeline, picture)
        self._add(track)
        return track

    def subscribe_encoded(self, picture: Picture) -> EncodedTrack:
        """A track of the shared encoder's packets for ``picture`` (call ``track.tap(sender)`` once added)."""
        if picture not in self.encoders:
            self.encoders[picture] = SharedEncoder(self.pipeline, picture, self.encoder_config)
        track = self.encoders[picture].subscribe()
        self._add(track)
        return track

    def _add(self, track: PipelineTrack | EncodedTrack) -> None:
        self.tracks.add(track)
        track.on("ended", lambda: self._retire(track))

    def _retire(self, track: PipelineTrack | EncodedTrack) -> None:
        if track in self.tracks:
            self.tracks.discard(track)
            self.frames_sent[track.picture] += track.frames
            self.errors += track.errors

    @property
    def track_errors(self) -> int:
        return self.errors + sum(t.errors for t in self.tracks) + sum(e.errors for e in self.encoders.values())

    def sent(self) -> dict[str, int]:
        out = dict(self.frames_sent)
        for t in self.tracks:
            out[t.picture] += t.frames
        return out

    def encoder_stats(self) -> list[dict[str, object]]:
        return [e.stats() for e in self.encoders.values()]

    def stop(self) -> None:
        for t in list(self.tracks):
            t.stop()

    async def close(self) -> None:
        """Stop every track and the shared encoders' tasks and threads."""
        self.stop()
        for e in self.encoders.values():
            await e.close()


# ---------------------------------------------------------------------- configuration


def rtc_configuration(ice_urls: list[str]) -> RTCConfiguration:
    """ICE servers from ``--ice-server`` URLs; an explicit empty list, because aiortc's default
    adds a public STUN server."""
    return RTCConfiguration(iceServers=[parse_ice_server(u) for u in ice_urls])


def parse_ice_server(url: str) -> RTCIceServer:
    """'stun:host:port', 'turn:host:port?transport=tcp' or 'turn:user:pass@host:port'."""
    m = re.match(r"^(stuns?|turns?):(?:([^:@/]+):([^@/]+)@)?([^@/?]+)(\?transport=(udp|tcp))?$", url)
    if not m:
        raise VstError(f"bad --ice-server {url!r}: use stun:HOST:PORT or turn:USER:PASS@HOST:PORT[?transport=tcp]")
    scheme, user, password, hostport, query = m.group(1), m.group(2), m.group(3), m.group(4), m.group(5) or ""
    if scheme.startswith("turn") and not user:
        raise VstError(f"--ice-server {url!r}: a TURN server needs USER:PASS@")
    return RTCIceServer(urls=f"{scheme}:{hostport}{query}", username=user, credential=password)


def prefer_codec_in_offer(sdp: str, codec: str) -> str:
    """Move ``codec``'s payload types (vp8|h264) to the front of each video m-line of an offer, and
    its ``a=rtpmap`` lines ahead of the section's other rtpmap lines.

    aiortc answers with the first codec common to both sides in the offer's order, and the
    answerer's transceivers only exist once the offer is applied, so the order is set here. aiortc
    reads that order from the rtpmap lines, not from the m-line (moving only the m-line left a
    VP8-first offer answered with VP8 under ``--codec h264``).
    Raises VstError when the offer has no video codec of that name.
    """
    name = {"vp8": "VP8", "h264": "H264"}[codec]
    sections = re.split(r"(?m)^(?=m=)", sdp)
    found = False
    for i, sec in enumerate(sections):
        if not sec.startswith("m=video"):
            continue
        pts = re.findall(rf"(?m)^a=rtpmap:(\d+) {name}/", sec)
        if not pts:
            continue
        found = True
        head, _, rest = sec.partition("\n")
        fields = head.rstrip("\r").split(" ")
        fmts = [f for f in fields[3:] if f in pts] + [f for f in fields[3:] if f not in pts]
        lines = rest.split("\n")
        rtpmaps = [j for j, line in enumerate(lines) if line.startswith("a=rtpmap:")]
        preferred = [lines[j] for j in rtpmaps if line_pt(lines[j]) in pts]
        others = [lines[j] for j in rtpmaps if line_pt(lines[j]) not in pts]
        for j, line in zip(rtpmaps, preferred + others):  # the same slots, preferred first
            lines[j] = line
        sections[i] = " ".join(fields[:3] + fmts) + ("\r" if head.endswith("\r") else "") + "\n" + "\n".join(lines)
    if not found:
        raise VstError(f"the offer has no {name} video codec (server runs --codec {codec})")
    return "".join(sections)


def line_pt(line: str) -> str:
    """'a=rtpmap:96 VP8/90000' -> '96'."""
    return line.split(":", 1)[1].split(" ", 1)[0]


def negotiated_video_codec(sdp: str) -> str | None:
    """'vp8' | 'h264' | another lower-case name: the first payload type of the first video m-line of
    an answer (the codec a sender uses); None when there is no video."""
    m = re.search(r"(?m)^m=video \S+ \S+ (\d+)", sdp)
    if not m:
        return None
    name = re.search(rf"(?m)^a=rtpmap:{m.group(1)} ([^/\s]+)/", sdp)
    return name.group(1).lower() if name else None


def add_bitrate_fmtp(sdp: str, kbps: int) -> str:
    """Add x-google-{min,start,max}-bitrate to every video codec's fmtp line of ``sdp``.

    Chrome reads them from the remote description: they lift its send-side estimate for the
    ``--source browser`` upload and its initial receive estimate for our stream.
    """
    params = f"x-google-min-bitrate={max(kbps // 4, 100)};x-google-start-bitrate={kbps};x-google-max-bitrate={kbps}"
    lines = sdp.splitlines()
    out: list[str] = []
    in_video = False
    fmtp_done: set[str] = set()
    video_pts: list[str] = []
    for line in lines:
        if line.startswith("m="):
            if in_video:
                out.extend(f"a=fmtp:{pt} {params}" for pt in video_pts if pt not in fmtp_done)
            in_video = line.startswith("m=video")
            video_pts, fmtp_done = [], set()
        if in_video and (m := re.match(r"^a=rtpmap:(\d+) (VP8|H264|VP9|AV1)/", line)):
            video_pts.append(m.group(1))
        if in_video and (m := re.match(r"^a=fmtp:(\d+) (.*)$", line)) and m.group(1) in video_pts:
            if "x-google-" not in line:
                line = f"{line};{params}"
            fmtp_done.add(m.group(1))
        out.append(line)
    if in_video:
        out.extend(f"a=fmtp:{pt} {params}" for pt in video_pts if pt not in fmtp_done)
    return "\r\n".join(out) + "\r\n"
