"""Generators: reference key layout, shapes, MAC budget of the compact net, PatchGAN output."""

from __future__ import annotations

import pytest
import torch

from vst.models import CompactGenerator, JohnsonGenerator, PatchDiscriminator, ResnetGenerator, count_macs, init_weights


def reference_layout(ngf: int, n_blocks: int) -> dict[str, tuple[int, ...]]:
    """The public CycleGAN ResnetGenerator's state_dict, written out from its documented structure:
    pad+conv7 (model.1), two stride-2 convs (model.4, model.7), n residual blocks whose
    conv_block holds convs at .1 and .5, two ConvTranspose (after the blocks), pad+conv7, tanh.
    Non-affine InstanceNorm contributes no keys."""
    keys: dict[str, tuple[int, ...]] = {
        "model.1.weight": (ngf, 3, 7, 7), "model.1.bias": (ngf,),
        "model.4.weight": (2 * ngf, ngf, 3, 3), "model.4.bias": (2 * ngf,),
        "model.7.weight": (4 * ngf, 2 * ngf, 3, 3), "model.7.bias": (4 * ngf,),
    }  # fmt: skip
    for b in range(n_blocks):
        for conv in (1, 5):
            keys[f"model.{10 + b}.conv_block.{conv}.weight"] = (4 * ngf, 4 * ngf, 3, 3)
            keys[f"model.{10 + b}.conv_block.{conv}.bias"] = (4 * ngf,)
    up1, up2, last = 10 + n_blocks, 13 + n_blocks, 17 + n_blocks
    keys[f"model.{up1}.weight"], keys[f"model.{up1}.bias"] = (4 * ngf, 2 * ngf, 3, 3), (2 * ngf,)
    keys[f"model.{up2}.weight"], keys[f"model.{up2}.bias"] = (2 * ngf, ngf, 3, 3), (ngf,)
    keys[f"model.{last}.weight"], keys[f"model.{last}.bias"] = (3, ngf, 7, 7), (3,)
    return keys


@pytest.mark.parametrize(("ngf", "n_blocks"), [(64, 9), (64, 6), (32, 10)])
def test_resnet_generator_matches_reference_keys(ngf: int, n_blocks: int) -> None:
    got = {k: tuple(v.shape) for k, v in ResnetGenerator(ngf, n_blocks).state_dict().items()}
    assert got == reference_layout(ngf, n_blocks)


def test_resnet9_parameter_count_matches_published() -> None:
    # The reference ResNet-9 (ngf=64) has 11.378M parameters (reported by its train script).
    assert sum(p.numel() for p in ResnetGenerator().parameters()) == 11_378_179


@pytest.mark.parametrize("net", [ResnetGenerator(16, 2), CompactGenerator(), JohnsonGenerator()], ids=["resnet", "compact", "johnson"])
def test_generators_keep_size_and_range(net: torch.nn.Module) -> None:
    x = torch.rand(1, 3, 36, 52) * 2 - 1
    with torch.no_grad():
        y = net.eval()(x)
    assert y.shape == x.shape
    assert y.abs().max() <= 1.0
    assert y.std() > 0


def test_compact_generator_is_4x_cheaper_than_johnson() -> None:
    # The budget: at least 4x fewer MACs than the Johnson net's 35 GMAC at 640x360.
    compact = count_macs(CompactGenerator(), 360, 640)
    johnson = count_macs(JohnsonGenerator(), 360, 640)
    assert compact * 4 <= 35e9
    assert compact * 4 <= johnson


def test_patch_discriminator_receptive_grid() -> None:
    d = PatchDiscriminator()
    with torch.no_grad():
        out = d(torch.randn(2, 3, 256, 256))
    # 256 -> 128 -> 64 -> 32 -> 31 -> 30: a 30x30 grid of 70x70 patches.
    assert out.shape == (2, 1, 30, 30)


def test_fine_patch_discriminator_sees_16px_patches() -> None:
    """n_layers=1: 128 -> 64 -> 63 -> 62 scores, and each depends on a 16x16 input patch only."""
    d = PatchDiscriminator(8, spectral=True, n_layers=1).eval()  # no instance norm, whose statistics span the image
    x = torch.randn(1, 3, 128, 128, requires_grad=True)
    out = d(x)
    assert out.shape == (1, 1, 62, 62)
    out[0, 0, 30, 30].backward()
    ys, xs = torch.nonzero(x.grad.abs().sum(1)[0], as_tuple=True)  # type: ignore[union-attr]
    assert int(ys.max() - ys.min()) + 1 == 16 and int(xs.max() - xs.min()) + 1 == 16
    with pytest.raises(ValueError, match="n_layers"):
        PatchDiscriminator(n_layers=0)


ARTEFACT_FREE = {"upsample": "bilinear", "pad": "reflect"}  # the bundled styles' layout


@pytest.mark.parametrize("net", [ResnetGenerator(16, 2, **ARTEFACT_FREE), CompactGenerator(**ARTEFACT_FREE)], ids=["resnet", "compact"])
def test_artefact_free_layouts_keep_size_and_range(net: torch.nn.Module) -> None:
    x = torch.rand(1, 3, 36, 52) * 2 - 1
    with torch.no_grad():
        y = net.eval()(x)
    assert y.shape == x.shape and y.abs().max() <= 1.0


def test_default_style_budget_within_10_gmac() -> None:
    # Issue 15: the default style stays CPU real-time, at most 10 GMAC per 640x360 frame.
    assert count_macs(CompactGenerator(**ARTEFACT_FREE), 360, 640) <= 10e9


def test_resize_convolution_has_no_checkerboard() -> None:
    """On a flat input, every output pixel of a resize-conv net sees the same weights, so the
    output is flat; a stride-2 transposed conv's uneven kernel overlap leaves a period-2/4 pattern."""
    from vst.models import init_weights

    x = torch.full((1, 3, 64, 64), 0.3)
    outs = {}
    for name, kw in {"transpose": {}, "resize": {"upsample": "resize", "pad": "reflect"}, "bilinear": ARTEFACT_FREE}.items():
        net = init_weights(CompactGenerator(affine=False, **kw), gain=0.2, seed=0).eval()
        with torch.no_grad():
            y = net(x)[0, :, 16:-16, 16:-16]  # away from the borders
        outs[name] = float(y.std())
    assert outs["resize"] < 1e-4 and outs["bilinear"] < 1e-4, outs
    assert outs["transpose"] > 100 * max(outs["resize"], outs["bilinear"], 1e-6), outs


def test_reflect_padding_keeps_borders_like_the_middle() -> None:
    """Zero padding in the stride-2 convs makes borders differ on a flat input; reflection does not."""
    from vst.models import init_weights

    x = torch.full((1, 3, 64, 64), 0.3)
    with torch.no_grad():
        y = init_weights(CompactGenerator(affine=False, **ARTEFACT_FREE), gain=0.2, seed=0).eval()(x)
    assert float((y - y[..., 32:33, 32:33]).abs().max()) < 1e-4


def test_spectral_patch_discriminator() -> None:
    from vst.models import init_weights

    d = init_weights(PatchDiscriminator(16, spectral=True), seed=0)
    assert not any(isinstance(m, torch.nn.InstanceNorm2d) for m in d.modules())
    with torch.no_grad():
        for _ in range(20):  # each training-mode forward runs one power iteration
            out = d(torch.randn(2, 3, 128, 128))
    assert out.shape == (2, 1, 14, 14)
    conv = d.model[0]
    sigma = torch.linalg.matrix_norm(conv.weight.flatten(1), ord=2)
    assert float(sigma) == pytest.approx(1.0, rel=0.05)  # the largest singular value is normalised to 1


def test_first_layout_style_files_keep_loading(tmp_path) -> None:
    """A style saved before the layout options existed (its sidecar has no 'upsample'/'pad') still
    builds the transposed-conv, zero-padded net it was trained as, with the same outputs."""
    import json

    from vst.models import GeneratorSpec, init_weights
    from vst.styles import load_generator, resolve_style, save_style

    old = init_weights(CompactGenerator(), gain=0.1, seed=1).eval()
    style = save_style(tmp_path, "old", old, GeneratorSpec("compact", {"width": 16, "n_blocks": 5, "affine": True}), {})
    meta = json.loads(style.weights.with_suffix(".json").read_text())
    assert "upsample" not in meta["arch_kwargs"] and "pad" not in meta["arch_kwargs"]
    net = load_generator(resolve_style(style.weights))
    assert any(isinstance(m, torch.nn.ConvTranspose2d) for m in net.modules())
    x = torch.rand(1, 3, 32, 48) * 2 - 1
    with torch.no_grad():
        assert torch.allclose(net(x), old.half().float()(x), atol=1e-5)


def test_blur_pad_zeroes_nyquist_keeps_flat_and_pads_like_reflection() -> None:
    from vst.models import BlurPad

    x = torch.rand(1, 4, 20, 30)
    assert BlurPad(4)(x).shape == torch.nn.ReflectionPad2d(1)(x).shape
    ii, jj = torch.meshgrid(torch.arange(20), torch.arange(30), indexing="ij")
    checker = ((ii + jj) % 2 * 2.0 - 1.0).expand(1, 4, 20, 30)  # all energy at Nyquist
    assert float(BlurPad(4)(checker)[..., 2:-2, 2:-2].abs().max()) < 1e-6
    flat = torch.full((1, 4, 20, 30), 0.7)
    assert torch.allclose(BlurPad(4)(flat), torch.full((1, 4, 22, 32), 0.7))


def test_antialias_keeps_the_weights_the_budget_and_the_layout_rules() -> None:
    plain, aa = CompactGenerator(**ARTEFACT_FREE), CompactGenerator(**ARTEFACT_FREE, antialias=True)
    # Same keys and shapes: a style trained without it warm-starts a net with it.
    assert {k: v.shape for k, v in plain.state_dict().items()} == {k: v.shape for k, v in aa.state_dict().items()}
    assert count_macs(plain, 360, 640) < count_macs(aa, 360, 640) <= 10e9
    x = torch.rand(1, 3, 36, 52) * 2 - 1
    with torch.no_grad():
        y = aa.eval()(x)
    assert y.shape == x.shape and y.abs().max() <= 1.0
    with pytest.raises(ValueError, match="antialias"):
        CompactGenerator(upsample="bilinear", antialias=True)  # zero-padded stride-2 convs
    with pytest.raises(ValueError, match="antialias"):
        CompactGenerator(pad="reflect", antialias=True)  # transposed convs
    ResnetGenerator(8, 1, **ARTEFACT_FREE, antialias=True)


def test_skip_starts_neutral_and_stays_in_the_budget() -> None:
    """``skip`` adds only a zero-initialised 1x1 conv: a net without it loads into one and gives the
    same frames; once its weights move, the full-resolution features reach the output."""
    plain, skip = CompactGenerator(**ARTEFACT_FREE, antialias=True), CompactGenerator(**ARTEFACT_FREE, antialias=True, skip=True)
    init_weights(plain, gain=0.2, seed=0)
    init_weights(skip, seed=1)
    missing, unexpected = skip.load_state_dict(plain.state_dict(), strict=False)
    assert sorted(missing) == sorted(CompactGenerator.NEUTRAL_KEYS) and not unexpected
    x = torch.rand(1, 3, 36, 52) * 2 - 1
    with torch.no_grad():
        assert torch.equal(skip.eval()(x), plain.eval()(x))
        skip.skip.weight.normal_(0.0, 0.3)
        assert float((skip(x) - plain(x)).abs().max()) > 1e-2
    assert count_macs(plain, 360, 640) < count_macs(skip, 360, 640) < count_macs(plain, 360, 640) + 0.1e9
    assert count_macs(skip, 360, 640) <= 10e9


def test_the_blurs_bring_the_bundled_monet_closer_to_shift_equivariance() -> None:
    """The bundled monet, trained with the blurs (``antialias``): its weights run without them move the
    painting with content moved by 4 px (the stride) but repaint it under 1-3 px moves; with the blurs,
    as bundled, the 1-3 px error is lower."""
    import numpy as np

    from vst.models import GeneratorSpec, build_generator
    from vst.stream.eval_cli import load_frames
    from vst.stream.sources import sample_path
    from vst.styles import load_generator, resolve_style

    style = resolve_style("monet")
    aa = load_generator(style)
    assert style.spec.kwargs.get("antialias") is True
    plain = build_generator(GeneratorSpec(style.spec.arch, {**style.spec.kwargs, "antialias": False}))
    plain.load_state_dict(aa.state_dict())
    plain.eval()
    frames = load_frames(str(sample_path()), (256, 144), 24)[::8]

    def shift_error(net: torch.nn.Module, s: int) -> float:
        errs = []
        with torch.no_grad():
            for f in frames:
                x = torch.from_numpy(np.ascontiguousarray(f)).permute(2, 0, 1)[None].float() / 127.5 - 1
                w = x.shape[-1] - 8
                out, ref = net(x[..., s : s + w]), net(x)[..., s : s + w]
                errs.append(float((out - ref)[..., 16:-16, 16:-16].abs().mean()))
        return float(np.mean(errs))

    off_grid = {name: np.mean([shift_error(n, s) for s in (1, 2, 3)]) for name, n in (("plain", plain), ("aa", aa))}
    on_grid = shift_error(plain, 4)
    assert off_grid["plain"] > 2 * on_grid, (off_grid, on_grid)  # the aliasing this is about
    assert off_grid["aa"] < 0.85 * off_grid["plain"], off_grid
