"""vst.train.soup: the weighted average of generators fine-tuned from one style, and its refusals."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from vst.train.soup import average_states, config_changes, make_soup

from vst.errors import StyleError, VstError
from vst.models import GeneratorSpec, build_generator, init_weights
from vst.styles import Style, load_generator, save_style

SPEC = GeneratorSpec("compact", {"width": 4, "n_blocks": 1, "affine": True, "upsample": "bilinear", "pad": "reflect"})


def _ingredient(tmp_path: Path, name: str, seed: int, init: str = "base.safetensors", sha: str | None = "abc",
                spec: GeneratorSpec = SPEC, shift: float = 10.0, run: str = "", machine: str = "cpu A") -> Style:  # fmt: skip
    card = {"steps": 100 * seed, "machine": machine, "wall_time_s": 10.0 * seed, "initialised_from": init, "initialised_from_sha256": sha,
            "config": {"loss": {"shift": shift, "noise": 0.0}, "optim": {"steps": 2000}}, "data": {"domain_b": "p"}}  # fmt: skip
    net = init_weights(build_generator(spec), gain=0.2, seed=seed)
    return save_style(tmp_path / "in", name, net, spec, {"provenance": f"run {run or name}", "training": card})


def test_soup_is_the_weighted_mean_and_lists_its_ingredients(tmp_path: Path) -> None:
    a = _ingredient(tmp_path, "a", 1)
    b = _ingredient(tmp_path, "b", 2, shift=25.0)
    soup = make_soup([(a.weights, 3.0), (b.weights, 1.0)], tmp_path / "out", "mix")  # weights normalised: 0.75 / 0.25
    sa, sb, ss = (load_file(str(s.weights)) for s in (a, b, soup))
    for k in sa:
        want = 0.75 * sa[k].float() + 0.25 * sb[k].float()
        assert torch.allclose(ss[k].float(), want, atol=2e-3, rtol=1e-3), k
    assert any(not torch.equal(sa[k], sb[k]) for k in sa)  # the ingredients really differ
    card = json.loads(soup.weights.with_suffix(".json").read_text())["training"]
    assert [i["weight"] for i in card["ingredients"]] == [0.75, 0.25]
    assert card["ingredients"][1]["config_changes"] == {"loss.shift": 25.0}
    assert card["ingredients"][0]["config_changes"] == {}
    assert card["wall_time_s"] == 30.0 and card["initialised_from_sha256"] == "abc"
    assert card["machine"] == "cpu A"  # one machine named once
    c = _ingredient(tmp_path, "c", 3, machine="gpu B")
    mixed = make_soup([(a.weights, 1.0), (b.weights, 1.0), (c.weights, 1.0)], tmp_path / "out", "mixed")
    assert json.loads(mixed.weights.with_suffix(".json").read_text())["training"]["machine"] == "cpu A; gpu B"
    frame = torch.rand(1, 3, 24, 32) * 2 - 1
    with torch.no_grad():
        out = load_generator(soup)(frame)
    assert out.shape == frame.shape and bool(torch.isfinite(out).all())


def test_snapshots_of_one_run_count_its_training_time_once(tmp_path: Path) -> None:
    """Two snapshots of one run (steps 100 and 300) cost what the later one records; another run adds its own."""
    early, late = _ingredient(tmp_path, "s1", 1, run="r"), _ingredient(tmp_path, "s3", 3, run="r")
    other = _ingredient(tmp_path, "o", 2, shift=25.0, run="r")  # same run name, other config: another run
    card = json.loads(make_soup([(early.weights, 1), (late.weights, 1)], tmp_path / "o1", "x").weights.with_suffix(".json").read_text())
    assert card["training"]["wall_time_s"] == 30.0
    card = json.loads(make_soup([(early.weights, 1), (late.weights, 1), (other.weights, 1)], tmp_path / "o2", "y")
                      .weights.with_suffix(".json").read_text())  # fmt: skip
    assert card["training"]["wall_time_s"] == 50.0
    twin = save_style(tmp_path / "elsewhere" / "snapshots", "s3", load_generator(late), SPEC, late.meta)  # a rerun elsewhere
    card = json.loads(make_soup([(late.weights, 1), (twin.weights, 1)], tmp_path / "o3", "z").weights.with_suffix(".json").read_text())
    assert card["training"]["wall_time_s"] == 60.0


def test_soup_refuses_ingredients_from_different_starts_or_networks(tmp_path: Path) -> None:
    a = _ingredient(tmp_path, "a", 1)
    with pytest.raises(StyleError, match="same weights"):
        make_soup([(a.weights, 1), (_ingredient(tmp_path, "b", 2, sha="def").weights, 1)], tmp_path / "o", "x")
    # without a sha on every card the path decides
    with pytest.raises(StyleError, match="same weights"):
        make_soup([(a.weights, 1), (_ingredient(tmp_path, "c", 2, init="other", sha=None).weights, 1)], tmp_path / "o", "x")
    assert make_soup([(a.weights, 1), (tmp_path / "in" / "c.safetensors", 1)], tmp_path / "ok", "x", check_start=False).weights.exists()
    wide = GeneratorSpec("compact", {**SPEC.kwargs, "width": 8})
    with pytest.raises(StyleError, match="architectures"):
        make_soup([(a.weights, 1), (_ingredient(tmp_path, "d", 2, spec=wide).weights, 1)], tmp_path / "o", "x")
    assert not (tmp_path / "o").exists() or not list((tmp_path / "o").iterdir())
    with pytest.raises(StyleError, match="architectures"):  # not skipped by check_start=False
        make_soup([(a.weights, 1), (tmp_path / "in" / "d.safetensors", 1)], tmp_path / "o", "x", check_start=False)


def test_average_states_checks_weights_and_shapes() -> None:
    s = {"w": torch.ones(2)}
    assert torch.equal(average_states([s, {"w": torch.full((2,), 3.0)}], [1, 1])["w"], torch.full((2,), 2.0))
    with pytest.raises(VstError, match="positive"):
        average_states([s, s], [1, 0])
    with pytest.raises(StyleError, match="shapes"):
        average_states([s, {"w": torch.ones(3)}], [1, 1])
    with pytest.raises(StyleError, match="other tensors"):
        average_states([s, {"v": torch.ones(2)}], [1, 1])


def test_config_changes_flattens_sections() -> None:
    base = {"loss": {"shift": 10.0, "noise": 0.0}, "run": {"seed": 11}}
    assert config_changes(base, {"loss": {"shift": 10.0, "noise": 10.0}, "run": {"seed": 12}}) == {"loss.noise": 10.0, "run.seed": 12}
    assert config_changes(base, {"loss": {"shift": 10.0}, "run": {"seed": 11}}) == {"loss.noise": "(not set)"}


@pytest.mark.parametrize("args, message", [
    (["missing.safetensors=1", "--name", "x"], "missing.safetensors"),
    (["{a}=0", "--name", "x"], "out of range"),
    (["{a}", "--name", "x"], "STYLE=WEIGHT"),
])  # fmt: skip
def test_cli_errors_are_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    a = _ingredient(tmp_path, "a", 1)
    argv = [x.format(a=a.weights) for x in args] + ["--out", str(tmp_path / "o")]
    r = subprocess.run([sys.executable, "-m", "vst.train.soup", *argv], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert message in r.stderr and len(r.stderr.strip().splitlines()) <= 3


def test_cli_writes_the_soup(tmp_path: Path) -> None:
    a, b = _ingredient(tmp_path, "a", 1), _ingredient(tmp_path, "b", 2)
    r = subprocess.run([sys.executable, "-m", "vst.train.soup", f"{a.weights}=0.5", f"{b.weights}=0.5", "--name", "mix",
                        "--out", str(tmp_path / "o")], capture_output=True, text=True, timeout=60)  # fmt: skip
    assert r.returncode == 0, r.stderr
    sa, sb, ss = (load_file(str(p)) for p in (a.weights, b.weights, tmp_path / "o" / "mix.safetensors"))
    k = next(iter(sa))
    np.testing.assert_allclose(ss[k].float().numpy(), (0.5 * (sa[k].float() + sb[k].float())).numpy(), atol=2e-3)
