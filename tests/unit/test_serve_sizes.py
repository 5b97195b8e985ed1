"""vst-stream's size options (--size auto|WxH, --max-size, --min-size) and the negotiated-codec check."""

from __future__ import annotations

import pytest

from vst.stream.serve_cli import build_parser, resolve_sizes

from cli_run import one_line_error, run_cli


def sizes(*argv: str) -> tuple[tuple[int, int], bool, tuple[int, int]]:
    return resolve_sizes(build_parser().parse_args(list(argv)))


def test_auto_is_the_default_with_its_bounds() -> None:
    assert sizes() == ((640, 360), True, (160, 90))
    assert sizes("--max-size", "1280x720", "--min-size", "320x180") == ((1280, 720), True, (320, 180))
    assert sizes("--size", "AUTO") == ((640, 360), True, (160, 90))
    assert sizes("--size", "320x180") == ((320, 180), False, (320, 180))


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--size", "320x180", "--min-size", "160x90"], "go with --size auto"),
        (["--min-size", "800x600"], "larger than --max-size"),
        (["--size", "big"], "(or auto)"),
        (["--max-size", "10x10"], "out of range"),
    ],
)
def test_bad_sizes_are_one_line_errors(argv: list[str], needle: str) -> None:
    one_line_error(run_cli("vst.stream.serve_cli", "--source", "testsrc", *argv, timeout=60), needle)


def test_negotiated_video_codec() -> None:
    from vst.stream.webrtc import negotiated_video_codec

    answer = ("v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\n"
              "m=video 9 UDP/TLS/RTP/SAVPF 102 97\r\na=rtpmap:97 rtx/90000\r\na=rtpmap:102 H264/90000\r\n")  # fmt: skip
    assert negotiated_video_codec(answer) == "h264"
    assert negotiated_video_codec(answer.replace("H264", "VP8")) == "vp8"
    assert negotiated_video_codec("v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n") is None


def test_setup_line_reads_the_engine_contract(caplog: pytest.LogCaptureFixture) -> None:
    """The start-up line names backend, precision, device and threads from the Engine protocol, and
    --device-i420 on a CPU engine says it is ignored instead of silently doing nothing."""
    import logging
    from types import SimpleNamespace

    from vst.stream.engine import EngineBase
    from vst.stream.serve_cli import log_setup

    class CpuEngine(EngineBase):
        backend, precision, device, threads = "openvino", "bf16", "cpu", 2

    assert build_parser().parse_args(["--device-i420"]).device_i420 is True
    assert build_parser().parse_args([]).device_i420 is False
    for flag in (False, True):
        caplog.clear()
        pipeline = SimpleNamespace(style="monet", build_engine=lambda _s: CpuEngine(),
                                   config=SimpleNamespace(device_i420=flag))  # fmt: skip
        with caplog.at_level(logging.INFO, logger="vst"):
            log_setup(pipeline, (640, 360), adaptive=True, min_size=(160, 90))
        text = caplog.text
        assert "backend openvino, precision bf16, device cpu, 2 threads" in text
        assert "adaptive down to 160x90" in text
        assert ("--device-i420 applies to the CUDA backends" in text) is flag
