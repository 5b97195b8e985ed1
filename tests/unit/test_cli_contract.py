"""The CLI contract (issue 12): every bad argument of every vst command is one ``error:`` line on
stderr and a non-zero exit, never a traceback; --help and argument errors answer without loading
torch, aiortc, onnx or OpenCV; credentials never show; tokens are never empty."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest
from cli_run import one_line_error, run_cli

from vst.errors import VstError
from vst.redact import RedactingFilter, redact_text, redact_url

CLIS = {
    "vst-render": "vst.stream.render",
    "vst-stream": "vst.stream.serve_cli",
    "vst-eval": "vst.stream.eval_cli",
    "vst-styles": "vst.styles_cli",
}


# Each numeric option of each CLI, with values outside its range or not numbers at all. Argument
# errors must come from argparse-level checks, before any model or source is touched.
BAD_NUMBERS = [
    ("vst-render", ["sample", "o.mp4", "--crf", "-5"], "--crf"),
    ("vst-render", ["sample", "o.mp4", "--crf", "52"], "--crf"),
    ("vst-render", ["sample", "o.mp4", "--crf", "1e3"], "--crf"),
    ("vst-render", ["sample", "o.mp4", "--blend", "nan"], "--blend"),
    ("vst-render", ["sample", "o.mp4", "--blend", "-0.5"], "--blend"),
    ("vst-render", ["sample", "o.mp4", "--blend", "inf"], "--blend"),
    ("vst-render", ["sample", "o.mp4", "--blend-budget", "nan"], "--blend-budget"),
    ("vst-render", ["sample", "o.mp4", "--size", "0x0"], "--size"),
    ("vst-render", ["sample", "o.mp4", "--size", "9" * 5000 + "x10"], "--size"),
    ("vst-stream", ["--fps", "-5"], "--fps"),
    ("vst-stream", ["--fps", "nan"], "--fps"),
    ("vst-stream", ["--fps", "0"], "--fps"),
    ("vst-stream", ["--fps", "inf"], "--fps"),
    ("vst-stream", ["--fps", "1e9"], "--fps"),
    ("vst-stream", ["--port", "70000"], "--port"),
    ("vst-stream", ["--port", "-1"], "--port"),
    ("vst-stream", ["--bitrate", "5"], "--bitrate"),
    ("vst-stream", ["--bitrate", "nan"], "--bitrate"),
    ("vst-stream", ["--max-viewers", "0"], "--max-viewers"),
    ("vst-stream", ["--max-viewers", "-3"], "--max-viewers"),
    ("vst-stream", ["--blend", "7"], "--blend"),
    ("vst-stream", ["--connect-timeout", "0"], "--connect-timeout"),
    ("vst-stream", ["--size", "640x"], "--size"),
    ("vst-eval", ["sample", "--frames", "1"], "--frames"),
    ("vst-eval", ["sample", "--frames", "-5"], "--frames"),
    ("vst-eval", ["sample", "--blend", "0.5", "nan"], "--blend"),
    ("vst-eval", ["sample", "--blend", "2"], "--blend"),
    ("vst-eval", ["sample", "--size", "1x1"], "--size"),
    ("vst-styles", ["bogus-command"], "invalid choice"),
]


@pytest.mark.parametrize(("cli", "args", "needle"), BAD_NUMBERS, ids=[f"{c}{' '.join(a)[:40]}" for c, a, _ in BAD_NUMBERS])
def test_every_numeric_option_is_range_checked(cli: str, args: list[str], needle: str) -> None:
    one_line_error(run_cli(CLIS[cli], *args), needle)


@pytest.mark.parametrize("cli", sorted(CLIS))
def test_help_and_argument_errors_load_nothing_heavy(cli: str) -> None:
    """Fast start: building the parser and parsing arguments imports none of the heavy stacks."""
    module = CLIS[cli]
    code = (
        "import sys, importlib; m = importlib.import_module(%r); "
        "p = (getattr(m, 'build_parser', None) or getattr(m, '_parser'))(); p.format_help(); "
        "print(','.join(sorted(x for x in ('torch', 'aiortc', 'aiohttp', 'onnx', 'onnxruntime', 'openvino', 'av', 'cv2') if x in sys.modules)))"
    ) % module
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    heavy = set(filter(None, r.stdout.strip().split(",")))
    allowed = {"cv2"} if cli == "vst-eval" else set()  # --flow choices come from vst.flow (OpenCV, ~0.1 s)
    assert heavy <= allowed, f"{cli} --help imports {sorted(heavy)}"


def test_styles_list_loads_no_torch() -> None:
    code = "import sys; from vst.styles_cli import main; sys.argv = ['vst-styles', 'list']\ntry:\n main()\nexcept SystemExit: pass\nprint('torch' in sys.modules, file=sys.stderr)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.stderr.strip().splitlines()[-1] == "False", r.stderr
    assert "monet" in r.stdout


def test_token_is_never_empty() -> None:
    from vst.stream.serve_cli import resolve_token
    from vst.stream.server import ServerConfig

    for bad in ("", "   "):
        with pytest.raises(VstError, match="empty"):
            resolve_token(bad, "0.0.0.0", False)
        with pytest.raises(VstError, match="empty"):
            ServerConfig(token=bad)
    generated = resolve_token(None, "0.0.0.0", False)
    assert generated and len(generated) >= 16
    assert resolve_token(None, "0.0.0.0", True) is None  # explicit --no-auth
    assert resolve_token(None, "127.0.0.1", False) is None  # loopback: no token by default
    assert resolve_token("s3cret", "0.0.0.0", False) == "s3cret"


def test_empty_token_on_the_command_line() -> None:
    one_line_error(run_cli("vst.stream.serve_cli", "--host", "0.0.0.0", "--token", "", "--source", "testsrc"), "--token")
    one_line_error(run_cli("vst.stream.serve_cli", "--token", "x", "--no-auth"), "--no-auth")


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("rtsp://admin:hunter2@10.0.0.5:554/stream1", "rtsp://admin:***@10.0.0.5:554/stream1"),
        ("http://user:p%40ss@cam.local/video.mjpg", "http://user:***@cam.local/video.mjpg"),
        ("https://ghp_TOKEN123@host/live.m3u8", "https://***@host/live.m3u8"),
        ("http://cam/snap.cgi?user=admin&password=hunter2&res=1", "http://cam/snap.cgi?user=admin&password=***&res=1"),
        ("srt://host:9000?passphrase=hunter2", "srt://host:9000?passphrase=***"),
        ("rtsp://10.0.0.5:554/stream1", "rtsp://10.0.0.5:554/stream1"),
        ("webcam:0", "webcam:0"),
        ("/videos/a:b@c.mp4", "/videos/a:b@c.mp4"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    assert "hunter2" not in redact_text(f"cannot open {url}: Connection refused")


def test_log_records_are_redacted(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("vst.test_redact")
    handler = logging.StreamHandler()
    handler.addFilter(RedactingFilter())
    record = logger.makeRecord("vst.test_redact", logging.WARNING, __file__, 1, "reconnecting to %s", ("rtsp://u:hunter2@cam/x",), None)
    assert handler.filter(record)
    assert record.getMessage() == "reconnecting to rtsp://u:***@cam/x"


def test_device_pins_one_gpu_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """`vst-stream --device cuda:N` (one vst per GPU): CUDA_VISIBLE_DEVICES=N before CUDA starts; bad specs are one line."""
    from vst.stream.serve_cli import pin_device

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    pin_device("cuda:3")
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "3"
    for bad in ("gpu0", "cuda:", "cuda:x", "cpu"):
        with pytest.raises(VstError):
            pin_device(bad)
    one_line_error(run_cli("vst.stream.serve_cli", "--device", "cuda:one", "--source", "testsrc"), "--device")
