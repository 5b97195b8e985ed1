"""vst.train: losses, synthetic motion, config, a few-step CPU run, resume, CLI errors."""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import torch
from tiny_train import flow_cache_in_tmp  # noqa: F401  (an autouse fixture)
from tiny_train import tiny_config as _tiny
from vst.train.config import ConfigError, TrainConfig, load_config, parse_override
from vst.train.data import DomainA, ImageFolder, smooth_flow, synthetic_pair
from vst.train.losses import ImagePool, edge_loss, temporal_loss

from vst.styles import file_sha256, load_generator, resolve_style
from vst.warp import backward_warp

if TYPE_CHECKING:
    from vst.train.trainer import CycleGANTrainer


def _smooth_pair(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    img = torch.rand(2, 3, 24, 32, generator=gen) * 2 - 1
    return img, smooth_flow(2, 24, 32, 2.0, gen)


# ------------------------------------------------------------------------------ losses


def test_temporal_loss_is_zero_for_a_perfect_warp() -> None:
    earlier, flow = _smooth_pair()
    cur = backward_warp(earlier, flow)
    mask = torch.ones(2, 1, 24, 32)
    assert float(temporal_loss(cur, earlier, flow, mask)) == pytest.approx(0.0, abs=1e-10)


def test_temporal_loss_is_positive_otherwise_and_ignores_masked_pixels() -> None:
    earlier, flow = _smooth_pair()
    cur = backward_warp(earlier, flow)
    mask = torch.ones(2, 1, 24, 32)
    noisy = cur + 0.1 * torch.randn(cur.shape, generator=torch.Generator().manual_seed(1))
    assert float(temporal_loss(noisy, earlier, flow, mask)) > 1e-3
    # A wrong region that the occlusion mask removes costs nothing.
    broken = cur.clone()
    broken[..., :8, :] = 5.0
    mask[..., :8, :] = 0
    assert float(temporal_loss(broken, earlier, flow, mask)) == pytest.approx(0.0, abs=1e-10)
    assert float(temporal_loss(broken, earlier, flow, torch.zeros_like(mask))) == 0.0


def test_temporal_loss_gradient_reaches_both_frames() -> None:
    earlier, flow = _smooth_pair()
    a = earlier.clone().requires_grad_(True)
    b = (backward_warp(earlier, flow) + 0.1).requires_grad_(True)
    temporal_loss(b, a, flow, torch.ones(2, 1, 24, 32)).backward()
    assert a.grad is not None and b.grad is not None and float(a.grad.abs().sum()) > 0 and float(b.grad.abs().sum()) > 0


def test_temporal_slack_charges_only_change_beyond_the_inputs_own() -> None:
    earlier, flow = _smooth_pair()
    mask = torch.ones(2, 1, 24, 32)
    gen = torch.Generator().manual_seed(2)
    # The input changes on the left half only (the resampling error of detail, say); the output's
    # change is the input's there (allowed with slack 1) and the same size on the still right half.
    in_cur = backward_warp(earlier, flow)
    in_change = torch.zeros_like(in_cur)
    in_change[..., :16] = 0.1 * torch.randn(in_cur[..., :16].shape, generator=gen)
    out_earlier = 0.5 * earlier
    out_cur = backward_warp(out_earlier, flow) + in_change
    plain = float(temporal_loss(out_cur, out_earlier, flow, mask))
    slack = float(temporal_loss(out_cur, out_earlier, flow, mask, 1.0, in_cur + in_change, earlier))
    assert plain > 1e-3
    assert slack < 1e-3 * plain  # all the change lies where (and as far as) the input changed
    # The same change where the input is still is charged in full.
    moved = torch.roll(in_change, 16, dims=-1)
    still = float(temporal_loss(backward_warp(out_earlier, flow) + moved, out_earlier, flow, mask, 1.0, in_cur + in_change, earlier))
    assert still > 0.5 * plain
    with pytest.raises(ValueError, match="input frames"):
        temporal_loss(out_cur, out_earlier, flow, mask, 1.0)


def test_edge_loss_sees_edges_not_offsets() -> None:
    x = torch.rand(1, 3, 16, 16)
    assert float(edge_loss(x + 0.3, x)) == pytest.approx(0.0, abs=1e-6)
    assert float(edge_loss(torch.zeros_like(x), x)) > 0


def test_image_pool_returns_history_deterministically() -> None:
    def run() -> list[torch.Tensor]:
        pool, gen = ImagePool(3), torch.Generator().manual_seed(0)
        return [pool.query(torch.full((2, 3, 4, 4), float(i)), gen) for i in range(6)]

    a, b = run(), run()
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert any(float(o.min()) < i for i, o in enumerate(a))  # some old images came back


# ------------------------------------------------------------------------------ synthetic motion


@pytest.mark.parametrize("obj_p", [0.0, 1.0])
def test_synthetic_pair_flow_warps_one_image_onto_the_other(obj_p: float, data: type) -> None:
    photos = ImageFolder(data("paintings", "vangogh", "trainA"), 72, 64, limit=4)
    earlier = photos.images[:4].float().div(127.5).sub(1)[..., :48, :64]
    gen = torch.Generator().manual_seed(3)
    filler = earlier.flip(0)
    cur, flow, mask = synthetic_pair(earlier, 4.0, gen, filler=filler, obj_p=obj_p)
    assert float(flow.abs().max()) > 0.5  # it really moves
    assert float(mask.mean()) > 0.5
    warped = backward_warp(earlier, flow)
    err = ((warped - cur).abs() * mask).amax()
    assert float(err) < 1e-5
    # Without the warp the frames differ: the check above is not vacuous.
    assert float(((earlier - cur).abs() * mask).mean()) > 0.01
    if obj_p:
        assert float(mask.mean()) < 1.0  # the moving object uncovers background: occlusion is known


def test_cached_flows_align_real_video_frames(data: type) -> None:
    a = DomainA([data("frames", "corridor_neuflow")], (96, 56), long_gap=3)
    batch = a.sample(6, torch.Generator().manual_seed(0))
    assert batch.far is not None and batch.far_mask is not None
    warped = backward_warp(batch.prev, batch.flow)
    before = float(((batch.prev - batch.cur).abs() * batch.mask).mean())
    after = float(((warped - batch.cur).abs() * batch.mask).mean())
    assert after < 0.8 * before
    cache = list((Path(os.environ["VST_CACHE_DIR"]) / "flows").glob("corridor_neuflow-*.npz"))
    assert cache, "flows were not cached on disk"


# ------------------------------------------------------------------------------ config


def test_config_defaults_are_the_seed_recipe() -> None:
    cfg = TrainConfig()
    assert (cfg.loss.cycle, cfg.loss.identity, cfg.optim.pool, cfg.optim.lr, cfg.optim.beta1) == (10.0, 0.5, 50, 2e-4, 0.5)
    assert (cfg.optim.batch, cfg.data.b_load, cfg.data.b_crop, cfg.data.b_jitter_p, cfg.model.d_ndf) == (4, 286, 256, 0.15, 64)
    assert cfg.generator_spec().kwargs == {"ngf": 64, "n_blocks": 9, "affine": False}


def test_config_file_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[model]\narch = "compact"\nwidth = 8\n[optim]\nsteps = 7\n')
    cfg = load_config(path, ["loss.temporal=0", "data.frame_size=[64, 32]", "run.style_name=monet"])
    assert (cfg.model.arch, cfg.model.width, cfg.optim.steps, cfg.loss.temporal) == ("compact", 8, 7, 0.0)
    assert cfg.data.frame_size == (64, 32) and cfg.run.style_name == "monet"
    assert load_config("monet_cpu").model.arch == "compact"  # bundled config by name
    with pytest.raises(ConfigError, match="unknown config key"):
        load_config(None, ["loss.nope=1"])
    with pytest.raises(ConfigError, match="must be"):
        load_config(None, ["optim.steps=lots"])
    with pytest.raises(ConfigError):
        parse_override("steps=3")
    aa = load_config("fast_cpu", ["model.antialias=true"])
    assert aa.generator_spec().kwargs["antialias"] is True
    assert "antialias" not in load_config("fast_cpu").generator_spec().kwargs  # older sidecars stay as they were
    with pytest.raises(ConfigError, match="antialias"):
        load_config(None, ["model.antialias=true"]).generator_spec()  # the reference layout: transposed, zero-padded
    with pytest.raises(ConfigError, match="loss.ringing_blur"):
        load_config(None, ["loss.ringing_blur=0.1"])
    assert load_config("fast_cpu", ["model.skip=true"]).generator_spec().kwargs["skip"] is True
    assert "skip" not in load_config("fast_cpu").generator_spec().kwargs
    with pytest.raises(ConfigError, match="model.skip"):
        load_config(None, ["model.skip=true"]).generator_spec()  # the ResNet generator has no such option
    with pytest.raises(ConfigError, match="loss.temporal_slack"):
        load_config(None, ["loss.temporal_slack=-1.0"])
    with pytest.raises(ConfigError, match="loss.texture needs"):
        load_config(None, ["loss.texture=5.0", "data.frame_size=[24, 16]"])
    assert load_config(None, ["loss.texture=5.0", "data.frame_size=[48, 32]"]).loss.texture == 5.0


# ------------------------------------------------------------------------------ training runs


def test_cli_smoke_run_finite_losses_and_checkpoint_loads_as_style(tmp_path: Path, data: type) -> None:
    from vst.train.cli import main

    _tiny(tmp_path, data)
    run = tmp_path / "run"
    with pytest.raises(SystemExit) as exit_info:
        main(["--config", str(tmp_path / "tiny.toml"), "--run", str(run), "--no-progress", "-q"])
    assert exit_info.value.code == 0
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4]
    for row in rows:
        for key in ("g_gan_b", "cycle_a", "idt_b", "temporal", "long_term", "d_b", "d_a"):
            assert math.isfinite(float(row[key])), (key, row)
    assert (run / "config.toml").is_file() and (run / "samples" / "step_0000004.png").is_file()
    style = resolve_style(run / "style" / "tiny.safetensors")
    assert style.meta["training"]["steps"] == 4 and style.meta["dtype"] == "float16"
    net = load_generator(style)
    out = net(torch.zeros(1, 3, 24, 32))
    assert out.shape == (1, 3, 24, 32) and bool(torch.isfinite(out).all())


def test_resume_gives_the_same_next_step_as_an_uninterrupted_run(tmp_path: Path, data: type) -> None:
    from vst.train.trainer import CycleGANTrainer

    cfg = _tiny(tmp_path, data)
    a = DomainA(cfg.data.a_sources, (32, 24), cfg.data.a_stills, 0.5, 3)
    b = ImageFolder(Path(cfg.data.b_dir), 36, 32, 0.15)

    first = CycleGANTrainer(cfg, tmp_path / "r1", a, b)
    for _ in range(2):
        first.train_step(*first.sample_batch())
    ckpt = first.save_checkpoint()
    expected = first.train_step(*first.sample_batch())
    want = {k: v.clone() for k, v in first.g_ab.state_dict().items()} | {"d": next(first.d_b.parameters()).clone()}

    second = CycleGANTrainer(cfg, tmp_path / "r2", a, b)
    second.load_checkpoint(ckpt)
    assert second.step == 2
    got_losses = second.train_step(*second.sample_batch())
    got = {k: v.clone() for k, v in second.g_ab.state_dict().items()} | {"d": next(second.d_b.parameters()).clone()}
    assert got_losses == pytest.approx(expected, rel=1e-6, abs=1e-7)
    for k, v in want.items():
        torch.testing.assert_close(got[k], v, rtol=1e-6, atol=1e-7, msg=k)


def test_distill_smoke(tmp_path: Path, data: type) -> None:
    from vst.train.distill import DistillTrainer
    from vst.train.trainer import CycleGANTrainer

    cfg = _tiny(tmp_path, data, **{"optim.steps": 2})
    teacher = CycleGANTrainer(cfg, tmp_path / "t")
    teacher.export_style(tmp_path / "styles", "teacher")
    student = DistillTrainer(cfg, tmp_path / "s", str(tmp_path / "styles" / "teacher.safetensors"), a=teacher.a)
    student.fit(progress=False)
    assert student.step == 2 and {"l1", "edge", "temporal", "long_term"} <= set(student.last)
    assert all(math.isfinite(v) for v in student.last.values())
    load_generator(resolve_style(tmp_path / "s" / "style" / "tiny.safetensors"))


@pytest.mark.parametrize("flag", ["--b", "--a"])
def test_cli_missing_or_empty_folder_is_one_line_error(tmp_path: Path, data: type, flag: str, capsys: pytest.CaptureFixture[str]) -> None:
    from vst.train.cli import main

    _tiny(tmp_path, data)
    empty = tmp_path / "empty"
    empty.mkdir()
    for target, message in ((tmp_path / "missing", "not found"), (empty, "no images")):
        with pytest.raises(SystemExit) as exit_info:
            main(["--config", str(tmp_path / "tiny.toml"), "--run", str(tmp_path / "run"), flag, str(target), "-q"])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error:") and message in err and "\n" not in err


def _trained_one_step(tmp_path: Path, data: type) -> tuple[CycleGANTrainer, DomainA, ImageFolder]:
    """A tiny CycleGAN trainer after one step, and its data, for the warm-start tests."""
    from vst.train.trainer import CycleGANTrainer

    cfg = _tiny(tmp_path, data)
    a = DomainA(cfg.data.a_sources, (32, 24), long_gap=3)
    b = ImageFolder(Path(cfg.data.b_dir), 36, 32)
    src = CycleGANTrainer(cfg, tmp_path / "src", a, b)
    src.train_step(*src.sample_batch())
    return src, a, b


def test_init_from_takes_weights_but_not_the_step(tmp_path: Path, data: type) -> None:
    from vst.train.trainer import CycleGANTrainer

    src, a, b = _trained_one_step(tmp_path, data)
    ckpt = src.save_checkpoint()
    dst = CycleGANTrainer(load_config(tmp_path / "tiny.toml", ["run.seed=5"]), tmp_path / "dst", a, b)
    dst.init_from(ckpt)
    assert dst.step == 0
    for k, v in src.g_ab.state_dict().items():
        assert torch.equal(dst.g_ab.state_dict()[k], v), k


def test_fast_recipe_options_train_and_export_their_layout(tmp_path: Path, data: type) -> None:
    """The fast CPU recipe's options (hinge + spectral-norm D, TTUR, no identity, resize-conv and
    reflect-padded G) run, and the exported style records its layout so it loads as trained."""
    from vst.train.cli import main

    over = {"loss.gan_mode": "hinge", "model.d_spectral": "true", "optim.lr_d": "4e-4", "loss.identity": "0.0",
            "model.upsample": "resize", "model.pad": "reflect"}  # fmt: skip
    _tiny(tmp_path, data)
    run = tmp_path / "run"
    args = ["--config", str(tmp_path / "tiny.toml"), "--run", str(run), "--no-progress", "-q"]
    with pytest.raises(SystemExit) as exit_info:
        main(args + [a for k, v in over.items() for a in ("--set", f"{k}={v}")])
    assert exit_info.value.code == 0
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    assert "idt_b" not in rows[-1] and all(math.isfinite(float(rows[-1][k])) for k in ("g_gan_b", "d_b", "d_a"))
    style = resolve_style(run / "style" / "tiny.safetensors")
    assert style.meta["arch_kwargs"]["upsample"] == "resize" and style.meta["arch_kwargs"]["pad"] == "reflect"
    net = load_generator(style)
    assert any(isinstance(m, torch.nn.Upsample) for m in net.modules())


@pytest.mark.parametrize("extra", [{}, {"antialias": True}, {"antialias": True, "skip": True}])
def test_bilinear_layout_exports_and_runs_in_onnxruntime(tmp_path: Path, extra: dict[str, bool]) -> None:
    """The bundled styles' layout (bilinear resize-conv), with and without the anti-aliasing blurs
    (reflect Pad + depthwise Conv) and the full-resolution skip, goes through the ONNX export the CPU
    and TensorRT backends consume (a Resize op) and matches torch."""
    import numpy as np
    from vst.stream.engine import make_engine

    from vst.models import GeneratorSpec, build_generator, init_weights
    from vst.styles import save_style

    kwargs = {"width": 8, "n_blocks": 1, "affine": True, "upsample": "bilinear", "pad": "reflect"}
    spec = GeneratorSpec("compact", {**kwargs, **extra})
    net = init_weights(build_generator(spec), gain=0.2, seed=0)
    if extra.get("skip"):
        torch.nn.init.normal_(net.skip.weight, 0.0, 0.3)  # it starts at zero: make it count
    style = save_style(tmp_path, "bl", net, spec, {})
    # 72x128: at or above the ONNX path's 64 px minimum, whose padding (issue 10) would change
    # every pixel through instance norm below it.
    frame = np.random.default_rng(0).integers(0, 256, (72, 128, 3), np.uint8)
    ref = make_engine(style, "torch-cpu", "fp32")(frame).astype(int)
    out = make_engine(style, "onnxruntime")(frame).astype(int)
    assert np.abs(out - ref).max() <= 1


def test_hinge_loss_values() -> None:
    from vst.train.losses import gan_loss

    scores = torch.tensor([-2.0, 0.0, 0.5, 3.0])
    assert float(gan_loss(scores, True, "hinge", for_d=True)) == pytest.approx((3 + 1 + 0.5 + 0) / 4)
    assert float(gan_loss(scores, False, "hinge", for_d=True)) == pytest.approx((0 + 1 + 1.5 + 4) / 4)
    assert float(gan_loss(scores, True, "hinge", for_d=False)) == pytest.approx(-1.5 / 4)
    assert float(gan_loss(scores, True, "lsgan", for_d=True)) == pytest.approx((9 + 1 + 0.25 + 4) / 4)
    with pytest.raises(ValueError):
        gan_loss(scores, True, "wgan", for_d=True)


def test_init_from_a_committed_style_file(tmp_path: Path, data: type) -> None:
    """Issue 15 item 6: a later session continues a bundled style from its fp16 weights alone."""
    from vst.train.trainer import CycleGANTrainer

    src, a, b = _trained_one_step(tmp_path, data)
    style = src.export_style(tmp_path / "styles", "tiny")  # fp16 generator only, as committed
    dst = CycleGANTrainer(load_config(tmp_path / "tiny.toml", ["run.seed=5"]), tmp_path / "dst", a, b)
    d_before = {k: v.clone() for k, v in dst.d_b.state_dict().items()}
    dst.init_from(style.weights)
    for k, v in src.g_ab.state_dict().items():
        assert torch.allclose(dst.g_ab.state_dict()[k], v.half().float()), k
    assert all(torch.equal(dst.d_b.state_dict()[k], v) for k, v in d_before.items())  # D starts fresh
    card = dst.export_style(tmp_path / "out", "next").meta["training"]
    assert card["initialised_from_sha256"] == file_sha256(style.weights)  # what vst.train.soup matches on
    dst.train_step(*dst.sample_batch())
    assert dst.step == 1

    # model.skip adds weights a style without them lacks: they start at zero, so the net continues
    # unchanged; a file of another width is still refused.
    skip = CycleGANTrainer(load_config(tmp_path / "tiny.toml", ["model.skip=true"]), tmp_path / "skip", a, b)
    skip.init_from(style.weights)
    x = torch.rand(1, 3, 24, 32) * 2 - 1
    with torch.no_grad():
        assert torch.allclose(skip.g_ab(x), load_generator(style).float()(x), atol=1e-5)
    assert float(skip.g_ab.skip.weight.detach().abs().sum()) == 0.0
    skip.train_step(*skip.sample_batch())
    assert float(skip.g_ab.skip.weight.detach().abs().sum()) > 0  # and it learns
    wide = CycleGANTrainer(load_config(tmp_path / "tiny.toml", ["model.width=6"]), tmp_path / "wide", a, b)
    from vst.train.trainer import CheckpointError

    with pytest.raises(CheckpointError, match="does not match"):
        wide.init_from(style.weights)

    # A resumed run's cards still name its start (session 10 found them blank after --resume).
    resumed = CycleGANTrainer(load_config(tmp_path / "tiny.toml", ["run.seed=5"]), tmp_path / "dst2", a, b)
    resumed.load_checkpoint(dst.save_checkpoint())
    card = resumed.export_style(tmp_path / "out2", "next").meta["training"]
    assert card["initialised_from"] == str(style.weights)
    assert card["initialised_from_sha256"] == file_sha256(style.weights)


def test_channels_last_and_bf16_train_save_and_resume(tmp_path: Path, data: type) -> None:
    """run.channels_last keeps the nets NHWC; with bf16 autocast on the CPU the losses stay finite, the
    checkpoint (contiguous copies) resumes into the same weights, and the exported style loads."""
    from vst.train.trainer import CycleGANTrainer

    cfg = _tiny(tmp_path, data, **{"run.channels_last": "true", "run.amp": "'bf16'"})
    a = DomainA(cfg.data.a_sources, (32, 24), long_gap=3)
    b = ImageFolder(Path(cfg.data.b_dir), 36, 32)
    t = CycleGANTrainer(cfg, tmp_path / "cl", a, b)
    w = next(v for v in t.g_ab.state_dict().values() if v.dim() == 4)  # a conv weight
    assert w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous()
    losses = [t.train_step(*t.sample_batch()) for _ in range(2)]
    assert all(math.isfinite(v) for step in losses for v in step.values())
    ckpt = t.save_checkpoint()
    back = CycleGANTrainer(cfg, tmp_path / "cl2", a, b)
    back.load_checkpoint(ckpt)
    assert back.step == 2
    for k, v in t.g_ab.state_dict().items():
        assert torch.equal(back.g_ab.state_dict()[k], v), k
    style = t.export_style(tmp_path / "styles", "cl")
    assert load_generator(style)(torch.zeros(1, 3, 24, 32)).shape == (1, 3, 24, 32)


def test_fine_patchgan_trains_checkpoints_and_resumes(tmp_path: Path, data: type) -> None:
    """loss.gan_fine adds a 16x16 PatchGAN on the style side: its loss is logged, its weights move,
    and it is in the checkpoint, so a resumed run continues with the same discriminator."""
    from vst.train.trainer import CycleGANTrainer

    cfg = _tiny(tmp_path, data, **{"loss.gan_fine": "2.0"})
    a = DomainA(cfg.data.a_sources, (32, 24), long_gap=3)
    b = ImageFolder(Path(cfg.data.b_dir), 36, 32)
    t = CycleGANTrainer(cfg, tmp_path / "fine", a, b)
    assert t.d_fine is not None and "d_fine" in t.net_names
    before = {k: v.clone() for k, v in t.d_fine.state_dict().items()}
    losses = [t.train_step(*t.sample_batch()) for _ in range(2)]
    assert all(math.isfinite(s["g_gan_fine"]) and math.isfinite(s["d_fine"]) for s in losses)
    assert any(not torch.equal(before[k], v) for k, v in t.d_fine.state_dict().items())
    back = CycleGANTrainer(cfg, tmp_path / "fine2", a, b)
    back.load_checkpoint(t.save_checkpoint())
    for k, v in t.d_fine.state_dict().items():
        assert torch.equal(back.d_fine.state_dict()[k], v), k  # type: ignore[union-attr]
    plain = CycleGANTrainer(_tiny(tmp_path, data), tmp_path / "plain", a, b)
    assert plain.d_fine is None and "d_fine" not in plain.net_names
    warm = CycleGANTrainer(cfg, tmp_path / "warm", a, b)  # warm start from a run without it: d_fine fresh
    warm.init_from(plain.save_checkpoint())
    for k, v in plain.d_b.state_dict().items():
        assert torch.equal(warm.d_b.state_dict()[k], v), k


def test_weight_average_follows_the_run_without_changing_it(tmp_path: Path, data: type) -> None:
    """optim.ema: g_ab's trajectory is bit for bit the one without it; the average is the exponential mean
    of g_ab after every step; the exported style is the average; it is checkpointed and resumed; a warm
    start restarts it at the weights the run starts from."""
    from vst.train.trainer import CycleGANTrainer

    cfg = _tiny(tmp_path, data, **{"optim.steps": 3})
    for bad in ("1.0", "-0.1"):
        with pytest.raises(ConfigError, match="optim.ema"):
            load_config(tmp_path / "tiny.toml", [f"optim.ema={bad}"])
    a = DomainA(cfg.data.a_sources, (32, 24), long_gap=3)
    b = ImageFolder(Path(cfg.data.b_dir), 36, 32)
    plain = CycleGANTrainer(cfg, tmp_path / "plain", a, b)
    avg = CycleGANTrainer(load_config(tmp_path / "tiny.toml", ["optim.steps=3", "optim.ema=0.5"]), tmp_path / "avg", a, b)
    assert plain.g_ema is None and avg.g_ema is not None and "g_ema" in avg.net_names
    want = {k: v.clone() for k, v in avg.g_ab.state_dict().items()}
    for _ in range(3):
        plain.fit(progress=False, stop_after=1)
        avg.fit(progress=False, stop_after=1)
        want = {k: 0.5 * v + 0.5 * avg.g_ab.state_dict()[k] for k, v in want.items()}
    for k, v in plain.g_ab.state_dict().items():
        assert torch.equal(avg.g_ab.state_dict()[k], v), k
    got = avg.g_ema.state_dict()
    for k, v in want.items():
        torch.testing.assert_close(got[k], v, msg=k)
    assert any(not torch.equal(got[k], v) for k, v in avg.g_ab.state_dict().items())  # it is an average
    exported = load_generator(avg.export_style(tmp_path / "styles", "avg")).state_dict()
    for k, v in got.items():
        torch.testing.assert_close(exported[k], v.half().float(), msg=k)

    back = CycleGANTrainer(avg.cfg, tmp_path / "back", a, b)
    back.load_checkpoint(avg.save_checkpoint())
    for k, v in got.items():
        assert torch.equal(back.g_ema.state_dict()[k], v), k  # type: ignore[union-attr]
    warm = CycleGANTrainer(avg.cfg, tmp_path / "warm", a, b)
    warm.init_from(avg.save_checkpoint())
    for k, v in avg.g_ab.state_dict().items():
        assert torch.equal(warm.g_ema.state_dict()[k], v) and torch.equal(warm.g_ab.state_dict()[k], v), k  # type: ignore[union-attr]
