"""The shared encoder's parts without a network: the encode step (keyframes, timestamps, size changes)
and the bitrate it picks from the viewers' estimates. End to end: tests/integration/test_shared_encode.py."""

from __future__ import annotations

import fractions

import numpy as np
import pytest

from vst.stream.encode import TIME_BASE, EncoderConfig, SharedEncoder


def _yuv(w: int, h: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h * 3 // 2, w), dtype=np.uint8)


@pytest.mark.parametrize("codec", ["vp8", "h264"])
def test_encode_keyframes_and_timestamps(codec: str) -> None:
    enc = SharedEncoder(None, "stylized", EncoderConfig(codec=codec, fixed_bitrate=500_000))  # type: ignore[arg-type]
    first = enc._encode(_yuv(320, 180, 0), 1000, False)
    assert first is not None and first.keyframe  # a fresh codec starts with one
    second = enc._encode(_yuv(320, 180, 1), 4000, False)
    assert second is not None and not second.keyframe
    forced = enc._encode(_yuv(320, 180, 2), 7000, True)
    assert forced is not None and forced.keyframe
    assert (forced.packet.pts, forced.packet.time_base) == (7000, TIME_BASE) and TIME_BASE == fractions.Fraction(1, 90000)
    resized = enc._encode(_yuv(640, 360, 3), 10000, False)  # a new output size: a new codec, a keyframe
    assert resized is not None and resized.keyframe
    assert enc.frames_encoded == 4 and enc.keyframes == 3
    enc._executor.shutdown()


def test_bitrate_follows_the_slowest_active_viewer() -> None:
    cfg = EncoderConfig(min_bitrate=250_000, max_bitrate=2_500_000, start_bitrate=800_000)
    enc = SharedEncoder(None, "stylized", cfg)  # type: ignore[arg-type]
    a, b, idle = enc.subscribe(), enc.subscribe(), enc.subscribe()
    assert enc.target_bitrate() == 800_000  # nobody has reported yet
    a.active = b.active = True
    a.remb, b.remb, idle.remb = 1_200_000, 600_000, 100_000  # idle: not sending yet, ignored
    assert enc.target_bitrate() == 600_000
    b.remb = 50_000
    assert enc.target_bitrate() == 250_000  # clamped to the floor
    b.stop()  # the slow viewer leaves
    assert enc.target_bitrate() == 1_200_000
    fixed = SharedEncoder(None, "stylized", EncoderConfig(fixed_bitrate=3_000_000))  # type: ignore[arg-type]
    t = fixed.subscribe()
    t.active, t.remb = True, 300_000
    assert fixed.target_bitrate() == 3_000_000
    for e in (enc, fixed):
        e._executor.shutdown()


def test_retune_only_for_big_moves_and_not_too_often() -> None:
    enc = SharedEncoder(None, "stylized", EncoderConfig(start_bitrate=800_000, bitrate_change_s=3.0))  # type: ignore[arg-type]
    t = enc.subscribe()
    t.active = True
    t.remb = 900_000  # +12 %: not worth a keyframe
    enc._maybe_retune(10.0)
    assert enc.bitrate == 800_000
    t.remb = 400_000
    enc._maybe_retune(10.0)
    assert enc.bitrate == 400_000 and enc.bitrate_changes == 1
    t.remb = 2_000_000
    enc._maybe_retune(11.0)  # within 3 s of the last change
    assert enc.bitrate == 400_000
    enc._maybe_retune(13.1)
    assert enc.bitrate == 2_000_000 and enc.bitrate_changes == 2
    enc._executor.shutdown()


def test_bad_config_is_refused() -> None:
    with pytest.raises(ValueError, match="codec"):
        EncoderConfig(codec="vp9")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="positive"):
        EncoderConfig(fixed_bitrate=0)
