"""Generators: reference key layout, shapes, MAC budget of the compact net, PatchGAN output."""

from __future__ import annotations

import pytest
import torch

from vst.models import CompactGenerator, JohnsonGenerator, PatchDiscriminator, ResnetGenerator, count_macs


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
