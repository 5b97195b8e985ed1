"""Pure parts of the serving path: SDP munging, latency stamps, the one-slot mailbox, ICE URLs."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from vst.errors import VstError
from vst.stream.engine import EngineBase
from vst.stream.pipeline import OneSlot, read_stamp, stamp_time
from vst.stream.webrtc import add_bitrate_fmtp, parse_ice_server, prefer_codec_in_offer

OFFER = (
    "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
    "m=video 9 UDP/TLS/RTP/SAVPF 96 97 102 103\r\n"
    "a=rtpmap:96 VP8/90000\r\na=rtpmap:97 rtx/90000\r\na=fmtp:97 apt=96\r\n"
    "a=rtpmap:102 H264/90000\r\na=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f\r\n"
    "a=rtpmap:103 rtx/90000\r\na=fmtp:103 apt=102\r\n"
)


def test_prefer_codec_moves_payloads_first() -> None:
    out = prefer_codec_in_offer(OFFER, "h264")
    assert "m=video 9 UDP/TLS/RTP/SAVPF 102 96 97 103\r\n" in out
    # aiortc negotiates in rtpmap order: H264's rtpmap now comes first
    assert out.index("a=rtpmap:102 H264") < out.index("a=rtpmap:96 VP8") < out.index("a=rtpmap:97 rtx")
    assert sorted(out.split("\r\n")) == sorted(OFFER.replace("96 97 102 103", "102 96 97 103").split("\r\n"))
    assert prefer_codec_in_offer(OFFER, "vp8").count("m=video 9 UDP/TLS/RTP/SAVPF 96 97 102 103") == 1
    with pytest.raises(VstError, match="no H264"):
        prefer_codec_in_offer(OFFER.replace("H264", "VP9"), "h264")


def test_bitrate_fmtp_on_every_video_codec() -> None:
    out = add_bitrate_fmtp(OFFER, 2500)
    assert "a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f;x-google-min-bitrate=625;x-google-start-bitrate=2500;x-google-max-bitrate=2500" in out
    assert "a=fmtp:96 x-google-min-bitrate=625;x-google-start-bitrate=2500;x-google-max-bitrate=2500" in out
    assert "a=fmtp:97 apt=96\r\n" in out  # rtx untouched
    assert add_bitrate_fmtp(out, 2500).count("x-google-max-bitrate") == 2  # idempotent


@pytest.mark.parametrize("size", [(320, 180), (640, 360), (854, 480)])
def test_stamp_round_trip(size: tuple[int, int]) -> None:
    img = np.random.default_rng(0).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    for ms in (0, 1, 123456, (1 << 24) - 1):
        stamp_time(img, ms)
        assert read_stamp(img) == ms
    assert read_stamp(np.zeros_like(img)) is None


def test_one_slot_keeps_newest_and_counts_drops() -> None:
    slot = OneSlot()
    assert slot.put(1) is False
    assert slot.put(2) is True  # 1 was never read: dropped
    assert slot.take(0.01) == 2
    assert slot.take(0.01) is None
    t = threading.Timer(0.05, slot.put, args=(3,))
    t.start()
    assert slot.take(2.0) == 3


def test_ice_server_urls() -> None:
    s = parse_ice_server("turn:alice:secret@127.0.0.1:3478?transport=tcp")
    assert (s.urls, s.username, s.credential) == ("turn:127.0.0.1:3478?transport=tcp", "alice", "secret")
    assert parse_ice_server("stun:127.0.0.1:3478").urls == "stun:127.0.0.1:3478"
    for bad in ("http://x", "turn:127.0.0.1:3478", "stun:"):
        with pytest.raises(VstError):
            parse_ice_server(bad)


class _FlakyEngine(EngineBase):
    """An Engine (the Protocol) that fails on every third frame, like a backend hitting a bad input."""

    backend, precision, device = "flaky", "fp32", "cpu"

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        self.calls += 1
        if self.calls % 3 == 0:
            raise RuntimeError("simulated backend failure")
        return 255 - frame


def test_engine_errors_are_counted_shown_and_recovered() -> None:
    import time

    from vst.stream.pipeline import Pipeline, PipelineConfig

    p = Pipeline(PipelineConfig(source="testsrc", size=(160, 90), fps=30))
    p.start()
    try:
        p.set_engine(_FlakyEngine())
        time.sleep(2.0)
        s = p.stats()
        assert s["engine_errors"] >= 3 and s["frames_inferred"] >= 6, s
        assert "simulated backend failure" in s["last_error"]
        seq = p.latest.seq if p.latest else 0
        time.sleep(0.5)
        assert p.latest is not None and p.latest.seq > seq, "output froze after engine errors"
    finally:
        p.stop()
    assert p.stats()["state"] == "stopped"
