"""Bad files and inputs (issue 12, "CLI and files"): each is one line on stderr and a non-zero exit,
nothing is lost, nothing is left behind, and nothing blocks forever.

Classes: broken or hostile style sidecars, non-finite weights, ONNX graphs that are not RGB image
-> RGB image, non-regular inputs (FIFOs), dead stream URLs, signals during a render, output
formats checked up front, umask-respecting outputs, imports that would replace a style.
"""

from __future__ import annotations

import http.server
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_run import one_line_error, run_cli

from vst.errors import StyleError
from vst.models import CompactGenerator, GeneratorSpec
from vst.styles import (
    check_style,
    import_style,
    list_styles,
    load_generator,
    resolve_style,
    save_style,
    user_dir,
)


def _tiny_style(directory: Path, name: str, **meta_overrides: object) -> Path:
    spec = GeneratorSpec("compact", {"width": 4, "n_blocks": 1})
    style = save_style(directory, name, CompactGenerator(4, 1), spec, {})
    if meta_overrides:
        meta = dict(style.meta, **meta_overrides)
        style.weights.with_suffix(".json").write_text(json.dumps(meta))
    return style.weights


def _tiny_onnx(path: Path, in_shape: list[object], out_channels: int = 3, fill: float | None = None) -> Path:
    """A one-conv ONNX image model; ``fill`` sets every weight (NaN for a poisoned model)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    cin = in_shape[1] if len(in_shape) == 4 and isinstance(in_shape[1], int) else 3
    w = np.full((out_channels, cin, 1, 1), 0.3 if fill is None else fill, np.float32)
    node = helper.make_node("Conv", ["x", "w"], ["y"], kernel_shape=[1, 1])
    out_shape = ["N", out_channels, "H", "W"] if len(in_shape) == 4 else None
    graph = helper.make_graph(
        [node], "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
        [numpy_helper.from_array(w, "w")],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


# ---------------------------------------------------------------------- sidecars and weights


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        ({"arch": "transformer9000"}, "unknown generator architecture"),
        ({"arch": 5}, "'arch' must be a name"),
        ({"arch_kwargs": {"width": 100000, "n_blocks": 1}}, "out of range"),
        ({"arch_kwargs": {"width": 4, "n_blocks": 10**30}}, "out of range"),
        ({"arch_kwargs": {"width": 1024, "n_blocks": 1024}}, "parameters"),
        ({"arch_kwargs": {"width": "4", "n_blocks": 1}}, "cannot build"),
        ({"arch_kwargs": {"width": 4, "n_blocks": 1, "bogus": 1}}, "cannot build"),
        ({"arch_kwargs": {"width": 4, "n_blocks": 1, "upsample": "magic"}}, "cannot build"),
        ({"arch_kwargs": [1, 2]}, "'arch_kwargs' must be an object"),
        ({"arch": "resnet", "arch_kwargs": {"ngf": 4, "n_blocks": 1, "out_ch": 1}}, "not RGB"),
    ],
)
def test_bad_sidecar_is_refused_before_allocating(tmp_path: Path, overrides: dict[str, object], needle: str) -> None:
    weights = _tiny_style(tmp_path, "bad", **overrides)
    t0 = time.monotonic()
    with pytest.raises(StyleError, match=needle):
        check_style(resolve_style(weights))
    assert time.monotonic() - t0 < 20  # width 100000 would allocate ~10^11 floats if built


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_torch_weights_are_refused(tmp_path: Path, value: float) -> None:
    net = CompactGenerator(4, 1)
    with torch.no_grad():
        net.up[-2].weight.fill_(value)
    style = save_style(tmp_path, "poisoned", net, GeneratorSpec("compact", {"width": 4, "n_blocks": 1}), {})
    with pytest.raises(StyleError, match="not finite"):
        load_generator(style)
    pth = tmp_path / "poisoned.pth"
    torch.save({"model.1.weight": torch.full((4, 3, 7, 7), value)}, pth)
    with pytest.raises(StyleError):
        import_style(pth, "poisoned-import")
    assert not user_dir().exists() or not list(user_dir().iterdir())


@pytest.mark.parametrize(
    ("shape", "channels", "fill", "needle"),
    [
        ([1, 3, 32], 3, None, "rank"),  # wrong input rank
        (["N", 3, "H", "W", 1], 3, None, "rank"),
        (["N", 3, "H", "W"], 1, None, "channels"),  # one output channel
        (["N", 1, "H", "W"], 3, None, "channels"),  # grey input
        (["N", 3, "H", "W"], 3, float("nan"), "not finite"),
    ],
)
def test_bad_onnx_styles(tmp_path: Path, shape: list[object], channels: int, fill: float | None, needle: str) -> None:
    model = _tiny_onnx(tmp_path / "m.onnx", shape, channels, fill)
    with pytest.raises(StyleError, match=needle):
        check_style(resolve_style(model))
    with pytest.raises(StyleError):
        import_style(model, "m")
    assert not user_dir().exists() or not list(user_dir().iterdir())


def test_render_refuses_bad_styles_in_one_line(tmp_path: Path) -> None:
    nan_onnx = _tiny_onnx(tmp_path / "nan.onnx", ["N", 3, "H", "W"], 3, float("nan"))
    one_channel = _tiny_onnx(tmp_path / "grey.onnx", ["N", 3, "H", "W"], 1)
    unknown_arch = _tiny_style(tmp_path, "odd", arch="transformer9000")
    for style, needle in ((nan_onnx, "not finite"), (one_channel, "channels"), (unknown_arch, "architecture")):
        out = tmp_path / f"{style.stem}.mp4"
        one_line_error(run_cli("vst.stream.render", "sample", str(out), "--style", str(style), "--no-progress"), needle)
        assert not out.exists() and not list(tmp_path.glob(".*part*"))
    # vst-stream runs the style once before it serves: the same style fails at start, in one line
    one_line_error(run_cli("vst.stream.serve_cli", "--source", "testsrc", "--port", "0", "--style", str(one_channel)), "channels")
    one_line_error(run_cli("vst.stream.render", "webcam:0", str(tmp_path / "w.mp4")), "vst-stream")


def test_broken_user_sidecar_is_skipped_with_one_warning() -> None:
    d = user_dir()
    d.mkdir(parents=True, exist_ok=True)
    _tiny_style(d, "good")
    (d / "broken.safetensors").write_bytes(b"x")
    (d / "broken.json").write_text("{not json")
    (d / "deep.onnx").write_bytes(b"x")
    (d / "deep.json").write_text("[" * 100000 + "]" * 100000)
    (d / "fifo.safetensors").write_bytes(b"x")
    os.mkfifo(d / "fifo.json")  # reading it would block forever
    names = [s.name for s in list_styles()]
    assert "monet" in names and "good" in names and "broken" not in names and "fifo" not in names
    assert resolve_style("monet").origin == "bundled"
    with pytest.raises(StyleError, match="broken.json"):
        resolve_style("broken")
    r = run_cli("vst.styles_cli", "list", env={"VST_STYLES_DIR": str(d)}, timeout=60)
    assert r.returncode == 0 and "monet" in r.stdout and "good" in r.stdout, r.stderr
    warnings = [line for line in r.stderr.splitlines() if "skipping style" in line]
    assert len(warnings) == 3 and any("broken.safetensors" in w for w in warnings), r.stderr
    r = run_cli("vst.stream.render", "sample", "/nonexistent-dir/o.mp4", env={"VST_STYLES_DIR": str(d)}, timeout=60)
    one_line_error(r, "output directory")  # got as far as the output check: the styles folder did not break it


def test_import_never_replaces_a_style_silently(tmp_path: Path) -> None:
    first = _tiny_onnx(tmp_path / "a.onnx", ["N", 3, "H", "W"])
    import_style(first, "mosaic")
    before = (user_dir() / "mosaic.onnx").read_bytes()
    second = tmp_path / "b.pth"
    torch.save(__import__("vst.models", fromlist=["ResnetGenerator"]).ResnetGenerator(ngf=4, n_blocks=1).state_dict(), second)
    with pytest.raises(StyleError, match="--force"):
        import_style(second, "mosaic")
    assert (user_dir() / "mosaic.onnx").read_bytes() == before
    r = run_cli("vst.styles_cli", "import", str(second), "--name", "mosaic", timeout=60)
    one_line_error(r, "--force")
    r = run_cli("vst.styles_cli", "import", str(second), "--name", "mosaic", "--force", timeout=60)
    assert r.returncode == 0, r.stderr
    assert not (user_dir() / "mosaic.onnx").exists()  # the old kind's weights do not linger
    assert resolve_style("mosaic").kind == "torch"


# ---------------------------------------------------------------------- inputs that block or mislead


def test_fifo_inputs_are_refused_not_waited_on(tmp_path: Path) -> None:
    fifo = tmp_path / "clip.mp4"
    os.mkfifo(fifo)
    one_line_error(run_cli("vst.stream.render", str(fifo), str(tmp_path / "o.mp4"), timeout=60), "FIFO")
    one_line_error(run_cli("vst.stream.eval_cli", str(fifo), timeout=60), "FIFO")
    one_line_error(run_cli("vst.stream.serve_cli", "--source", str(fifo), "--port", "0", timeout=60), "FIFO")
    out_fifo = tmp_path / "strip.png"
    os.mkfifo(out_fifo)
    one_line_error(run_cli("vst.stream.eval_cli", "sample", "--strip", str(out_fifo), timeout=60), "FIFO")
    one_line_error(run_cli("vst.styles_cli", "import", str(fifo), timeout=60), "FIFO")


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens once the block ends


@pytest.fixture
def http_root(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    root = tmp_path / "www"
    root.mkdir()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(Quiet, directory=str(root)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{httpd.server_address[1]}", root
    httpd.shutdown()
    httpd.server_close()


def test_dead_urls_say_what_failed_with_the_url_intact_and_redacted(tmp_path: Path, closed_port: int, http_root: tuple[str, Path]) -> None:
    out = str(tmp_path / "o.mp4")
    for scheme in ("rtsp", "http"):
        url = f"{scheme}://viewer:hunter2@127.0.0.1:{closed_port}/cam"
        line = one_line_error(run_cli("vst.stream.render", url, out, timeout=60), "refused")
        assert f"{scheme}://viewer:***@127.0.0.1:{closed_port}/cam" in line and "hunter2" not in line
    r = run_cli("vst.stream.render", f"http://viewer:hunter2@{http_root[0]}/missing.mp4", out, timeout=60)
    line = one_line_error(r, "404")
    assert "hunter2" not in r.stderr and f"http://viewer:***@{http_root[0]}/missing.mp4" in line
    r = run_cli("vst.stream.eval_cli", f"rtsp://viewer:hunter2@127.0.0.1:{closed_port}/cam", timeout=60)
    assert "hunter2" not in r.stderr
    one_line_error(r, "refused")


def test_strip_format_is_checked_before_any_work(tmp_path: Path) -> None:
    t0 = time.monotonic()
    one_line_error(run_cli("vst.stream.eval_cli", "sample", "--frames", "100", "--strip", str(tmp_path / "out.xyz")), "out.xyz")
    assert time.monotonic() - t0 < 30
    assert not (tmp_path / "out.xyz").exists()


# ---------------------------------------------------------------------- signals and file modes


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_signal_during_render_leaves_no_partial_file(tmp_path: Path, sig: int) -> None:
    out = tmp_path / "out.mp4"
    proc = subprocess.Popen(
        [sys.executable, "-m", "vst.stream.render", "sample", str(out), "--size", "1280x720", "--backend", "torch-cpu",
         "--style", str(_tiny_style(tmp_path, "slow")), "--no-progress"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while not list(tmp_path.glob(".out.*part*")) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert list(tmp_path.glob(".out.*part*")), "the render never started writing"
        time.sleep(0.3)  # mid-encode
        proc.send_signal(sig)
        _out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + sig, err
    assert "Traceback" not in err
    assert not out.exists() and not list(tmp_path.glob(".out.*")), list(tmp_path.iterdir())


def test_outputs_respect_the_umask(tmp_path: Path) -> None:
    from vst.stream.render import RenderConfig, render

    old = os.umask(0o022)
    try:
        out = tmp_path / "o.mp4"
        render("sample", out, RenderConfig(size=(64, 36), progress=False))
        style = import_style(_tiny_onnx(tmp_path / "x.onnx", ["N", 3, "H", "W"]), "umasked")
        torch_style = save_style(tmp_path / "s", "t", CompactGenerator(4, 1), GeneratorSpec("compact", {"width": 4, "n_blocks": 1}), {})
        for path in (out, style.weights, style.weights.with_suffix(".json"), torch_style.weights, torch_style.weights.with_suffix(".json")):
            assert stat.S_IMODE(path.stat().st_mode) == 0o644, (path, oct(path.stat().st_mode))
        os.umask(0o077)
        private = tmp_path / "p.mp4"
        render("sample", private, RenderConfig(size=(64, 36), progress=False))
        assert stat.S_IMODE(private.stat().st_mode) == 0o600
    finally:
        os.umask(old)


# ---------------------------------------------------------------------- vst-styles output


def test_styles_info_is_a_readable_card_and_list_never_cuts_words() -> None:
    d = user_dir()
    d.mkdir(parents=True, exist_ok=True)
    description = ("An impressionist rendering trained on one thousand and seventy two public-domain Monet "
                   "paintings with the temporal loss, so that moving pictures keep their brush strokes steady "
                   "from one frame to the next, at a cost that a two-core laptop can afford in real time")  # fmt: skip
    _tiny_style(d, "carded", description=description, training={
        "data": {"domain_b": "paintings/monet (1072)"}, "config": {"loss": {"cycle": 10, "identity": 0.5}},
        "steps": 5000, "wall_time_s": 4727.7, "training_seconds": 3480, "machine": "2-core EPYC",
        "held_out_eval": {"swd_ratio": 0.61, "e_ratio": 1.4}})  # fmt: skip
    r = run_cli("vst.styles_cli", "info", "carded", timeout=60)
    assert r.returncode == 0, r.stderr
    with pytest.raises(json.JSONDecodeError):
        json.loads(r.stdout)
    for heading in ("Data", "Recipe", "Compute", "Measurements"):
        assert f"\n{heading}\n" in r.stdout, r.stdout
    assert "swd ratio" in r.stdout.lower() and "1 h 19 min" in r.stdout and "3480 s (58 min)" in r.stdout
    assert json.loads(run_cli("vst.styles_cli", "info", "carded", "--json").stdout)["name"] == "carded"

    r = run_cli("vst.styles_cli", "list", env={"COLUMNS": "90"}, timeout=60)
    lines = r.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if " carded " in line)
    shown = lines[start][lines[start].index("user") + len("user") :].split()
    for line in lines[start + 1 :]:
        if not line.startswith(" " * 20):
            break
        shown += line.split()
    words = description.split()
    if shown[-1] == "…":
        shown = shown[:-1]
    assert shown == words[: len(shown)], (shown, words)  # whole words, in order, none cut
    assert all(len(line) <= 90 for line in lines if " carded " in line or line.startswith(" " * 20))


def test_pan_on_frames_too_small_is_a_one_line_error() -> None:
    one_line_error(run_cli("vst.stream.eval_cli", "sample", "--size", "24x16", "--frames", "3", "--pan"), "--pan")
