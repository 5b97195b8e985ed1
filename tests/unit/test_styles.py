"""Styles: resolution order, import of real third-party checkpoints, refusal of unsafe files."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from vst.errors import StyleError
from vst.models import ResnetGenerator
from vst.stream.engine import make_engine
from vst.styles import DEFAULT_STYLE, import_style, list_styles, load_generator, load_pth_state, resolve_style, user_dir


def test_default_style_is_bundled_and_runs() -> None:
    style = resolve_style(None)
    assert style.name == DEFAULT_STYLE and style.origin == "bundled"
    frame = np.random.default_rng(0).integers(0, 256, (36, 64, 3), dtype=np.uint8)
    out = make_engine(style)(frame)
    assert out.shape == frame.shape and out.dtype == np.uint8
    assert np.abs(out.astype(int) - frame).mean() > 5


def test_unknown_style_names_the_known_ones() -> None:
    with pytest.raises(StyleError, match="unknown style 'nope'.*available"):
        resolve_style("nope")


def test_user_dir_follows_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VST_STYLES_DIR", str(tmp_path / "s"))
    assert user_dir() == tmp_path / "s"
    monkeypatch.delenv("VST_STYLES_DIR")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert user_dir() == tmp_path / "xdg" / "vst" / "styles"


def test_reference_layout_pth_imports_and_resolves_by_name(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = ResnetGenerator(ngf=8, n_blocks=6)
    state = net.state_dict()
    # Old PyTorch saved stale running stats for InstanceNorm: the importer must drop them.
    state["model.2.running_mean"] = torch.zeros(8)
    torch.save(state, tmp_path / "latest_net_G.pth")
    style = import_style(tmp_path / "latest_net_G.pth", "tiny")
    assert style.meta["arch_kwargs"] == {"ngf": 8, "n_blocks": 6, "affine": False}
    assert resolve_style("tiny").weights == style.weights
    assert "tiny" in [s.name for s in list_styles()]
    loaded = load_generator(resolve_style("tiny"))
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        assert torch.allclose(loaded(x), net.eval()(x), atol=2e-3)  # fp16 storage


def test_vintage_checkpoint_imports_and_matches_float64(tmp_path: Path, data) -> None:  # noqa: ANN001
    pth = data("models", "cyclegan_vintage", "G_A2B_epoch33.pth")
    frame_path = data("frames", "sintel_market", "frame_0016.png")
    style = import_style(pth, "vintage")
    assert style.meta["source_layout"] == "cyclegan-block"
    assert style.meta["arch_kwargs"] == {"ngf": 64, "n_blocks": 9, "affine": True}
    assert style.weights.stat().st_size < 24e6  # fp16

    rgb = cv2.cvtColor(cv2.imread(str(frame_path)), cv2.COLOR_BGR2RGB)
    rgb = cv2.resize(rgb, (128, 56), interpolation=cv2.INTER_AREA)
    out = make_engine(style, "torch-cpu", "fp32")(rgb)

    ref_net = ResnetGenerator(64, 9, affine=True).double().eval()
    ref_net.load_state_dict({k.replace(".block.", ".conv_block."): v.double() for k, v in load_pth_state(pth).items()})
    x = torch.from_numpy(rgb).permute(2, 0, 1)[None].double() / 127.5 - 1
    with torch.no_grad():
        ref = ((ref_net(x)[0].permute(1, 2, 0).numpy() + 1) * 127.5).round().clip(0, 255)

    assert out.std() > 10, "output is (nearly) constant"
    err = np.abs(out.astype(np.float64) - ref)
    assert err.mean() < 1.0 and err.max() <= 12, (err.mean(), err.max())  # fp16 weights vs float64 reference


def test_pickle_with_code_is_refused_and_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self) -> tuple:
            return (os.system, (f"touch {marker}",))

    bad = tmp_path / "evil.pth"
    bad.write_bytes(pickle.dumps(Payload()))
    with pytest.raises(StyleError, match="refused"):
        import_style(bad, "evil")
    torch.save({"model.1.weight": Payload()}, tmp_path / "evil2.pth")
    with pytest.raises(StyleError, match="refused"):
        import_style(tmp_path / "evil2.pth", "evil2")
    assert not marker.exists()
    assert not list(user_dir().glob("evil*"))


@pytest.mark.parametrize("content", [b"", b"not a zip at all", b"PK\x03\x04garbage"])
def test_corrupt_checkpoint_is_a_clear_error(tmp_path: Path, content: bytes) -> None:
    bad = tmp_path / "broken.pth"
    bad.write_bytes(content)
    with pytest.raises(StyleError, match="cannot read checkpoint|refused"):
        import_style(bad, "broken")


def test_corrupt_safetensors_style(tmp_path: Path) -> None:
    (tmp_path / "x.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{}garbage")
    (tmp_path / "x.json").write_text(json.dumps({"arch": "compact", "arch_kwargs": {}}))
    with pytest.raises(StyleError, match="corrupt style weights"):
        load_generator(resolve_style(tmp_path / "x.safetensors"))


def test_onnx_fast_neural_style_imports_with_free_size(data) -> None:  # noqa: ANN001
    style = import_style(data("models", "fast_neural_style", "mosaic.onnx"), "mosaic")
    assert style.meta["onnx_value_range"] == 255.0
    assert style.meta["onnx_channel_order"] == "bgr"  # VGG mean subtracted in BGR order
    assert style.meta["onnx_fixed_hw"] is None  # output_shape rewritten: any size runs
    frame = np.random.default_rng(1).integers(0, 256, (90, 160, 3), dtype=np.uint8)
    out = make_engine(resolve_style("mosaic"))(frame)
    assert out.shape == frame.shape and out.std() > 10


def test_onnx_multistyle_detects_unit_range(data) -> None:  # noqa: ANN001
    style = import_style(data("models", "multistyle26", "multistyle26.onnx"), "ms26")
    assert style.meta["onnx_value_range"] == 1.0
    assert style.meta["onnx_extra_inputs"] == {"style_weights": {"length": 26, "index": 0}}
    frame = np.random.default_rng(2).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    assert make_engine(style)(frame).shape == frame.shape


def test_import_under_a_bundled_name_is_refused(data) -> None:  # noqa: ANN001
    with pytest.raises(StyleError, match="bundled style"):
        import_style(data("models", "fast_neural_style", "candy.onnx"), "monet")
    assert not list(user_dir().glob("monet*")) if user_dir().exists() else True


def test_failed_imports_leave_nothing(tmp_path: Path) -> None:
    (tmp_path / "bad.onnx").write_bytes(b"\x08\x07" + b"\x00" * 64)  # parses as an empty ModelProto
    with pytest.raises(StyleError):
        import_style(tmp_path / "bad.onnx", "bad")
    (tmp_path / "w.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{}garbage")
    (tmp_path / "w.json").write_text(json.dumps({"arch": "compact", "arch_kwargs": {}}))
    with pytest.raises(StyleError, match="corrupt"):
        import_style(tmp_path / "w.safetensors", "w")
    leftovers = list(user_dir().iterdir()) if user_dir().exists() else []
    assert leftovers == []
