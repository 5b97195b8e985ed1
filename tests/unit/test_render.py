"""vst-render end to end on real clips, and the one-line error contract of the CLIs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest

from vst.stream.render import RenderConfig, render


def _decode(path: Path) -> tuple[list[np.ndarray], float]:
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        return [f.to_ndarray(format="rgb24") for f in c.decode(s)], float(s.average_rate)


def test_render_keeps_count_rate_and_changes_pixels(tmp_path: Path, data) -> None:  # noqa: ANN001
    src = data("videos", "carphone_pristine.mp4")
    out = tmp_path / "out.mp4"
    n = render(src, out, RenderConfig(size=(128, 128), progress=False))
    frames, fps = _decode(out)
    ins, in_fps = _decode(src)
    assert n == len(frames) == len(ins) == 120
    assert abs(fps - in_fps) < 1e-3
    assert frames[0].shape == (104, 128, 3)  # 176x144 fitted into 128x128, even
    small_in = av.VideoFrame.from_ndarray(ins[5], format="rgb24").to_ndarray(width=128, height=104, format="rgb24")
    assert np.abs(frames[5].astype(int) - small_in).mean() > 20  # stylized, not a copy
    assert not list(tmp_path.glob("*.part*"))


def test_render_refuses_to_clobber(tmp_path: Path, data) -> None:  # noqa: ANN001
    out = tmp_path / "mine.mp4"
    out.write_bytes(b"user's precious file")
    r = _cli("vst.stream.render", str(data("videos", "carphone_pristine.mp4")), str(out))
    assert r.returncode != 0 and "--overwrite" in r.stderr
    assert out.read_bytes() == b"user's precious file"


def _cli(module: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, timeout=120)


def _assert_one_line_error(r: subprocess.CompletedProcess[str], needle: str) -> None:
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and needle in errors[0], r.stderr


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["{tmp}/missing.mp4", "{tmp}/o.mp4"], "not found"),
        (["{tmp}/junk.mp4", "{tmp}/o.mp4"], "cannot open"),
        (["{bikes}", "{tmp}/no/such/dir/o.mp4"], "output directory does not exist"),
        (["{bikes}", "{tmp}/o.mp4", "--style", "no-such-style"], "unknown style"),
        (["{bikes}", "{tmp}/o.mp4", "--backend", "torch-cuda", "--style", "{tmp}/tiny.safetensors"], "CUDA"),
    ],
    ids=["missing", "not-a-video", "missing-dir", "unknown-style", "no-cuda"],
)
def test_render_bad_input_is_one_line(tmp_path: Path, data, args: list[str], needle: str) -> None:  # noqa: ANN001
    import torch

    if needle == "CUDA" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    (tmp_path / "junk.mp4").write_text("junk\n" * 100)
    from vst.models import CompactGenerator, GeneratorSpec
    from vst.styles import save_style

    save_style(tmp_path, "tiny", CompactGenerator(4, 1), GeneratorSpec("compact", {"width": 4, "n_blocks": 1}), {})
    subst = {"tmp": str(tmp_path), "bikes": str(data("videos", "bikes.mp4"))}
    r = _cli("vst.stream.render", *[a.format(**subst) for a in args])
    _assert_one_line_error(r, needle)
    assert not (tmp_path / "o.mp4").exists()


def test_styles_cli_errors(tmp_path: Path) -> None:
    _assert_one_line_error(_cli("vst.styles_cli", "info", "nope"), "unknown style")
    _assert_one_line_error(_cli("vst.styles_cli", "import", str(tmp_path / "x.pth")), "no such file")
    (tmp_path / "x.txt").write_text("hello")
    _assert_one_line_error(_cli("vst.styles_cli", "import", str(tmp_path / "x.txt")), "cannot import")
