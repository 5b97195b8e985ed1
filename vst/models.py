"""Generator and discriminator networks.

All generators map an RGB float tensor ``(N, 3, H, W)`` in [-1, 1] to the same shape in [-1, 1].

``ResnetGenerator`` keeps the module indices of the public CycleGAN reference
(junyanz/pytorch-CycleGAN-and-pix2pix ``ResnetGenerator``), so its state_dict keys
(``model.1.weight``, ``model.10.conv_block.1.weight``, ...) and shapes are the reference's and its
published ``latest_net_G.pth`` files load unchanged.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import torch
from torch import nn

Arch = Literal["resnet", "compact", "johnson"]


def _norm(channels: int, affine: bool) -> nn.InstanceNorm2d:
    # The reference uses non-affine instance norm with no running stats; some forks use affine.
    return nn.InstanceNorm2d(channels, affine=affine, track_running_stats=False)


class ResnetBlock(nn.Module):
    """x + [pad, conv3x3, IN, ReLU, pad, conv3x3, IN](x). Indices 1 and 5 hold the convs."""

    def __init__(self, dim: int, affine: bool = False) -> None:
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(dim, dim, 3, bias=True),
            _norm(dim, affine),
            nn.ReLU(True),
            nn.ReflectionPad2d(1),
            nn.Conv2d(dim, dim, 3, bias=True),
            _norm(dim, affine),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class ResnetGenerator(nn.Module):
    """CycleGAN ResNet generator: c7s1-ngf, two stride-2 downs, n_blocks residual blocks, two ups."""

    def __init__(self, ngf: int = 64, n_blocks: int = 9, affine: bool = False, in_ch: int = 3, out_ch: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(in_ch, ngf, 7, bias=True),
            _norm(ngf, affine),
            nn.ReLU(True),
        ]
        for i in range(2):
            c = ngf * 2**i
            layers += [nn.Conv2d(c, 2 * c, 3, stride=2, padding=1, bias=True), _norm(2 * c, affine), nn.ReLU(True)]
        layers += [ResnetBlock(ngf * 4, affine) for _ in range(n_blocks)]
        for i in range(2):
            c = ngf * 2 ** (2 - i)
            layers += [
                nn.ConvTranspose2d(c, c // 2, 3, stride=2, padding=1, output_padding=1, bias=True),
                _norm(c // 2, affine),
                nn.ReLU(True),
            ]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, out_ch, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class CompactGenerator(nn.Module):
    """A CPU real-time generator: the ResNet layout at quarter resolution, with thin channels.

    The costly parts of the Johnson/CycleGAN nets are the 7x7/9x9 full-resolution convs and the
    wide residual trunk; here the stem is 3x3, the trunk runs at 1/4 resolution, and the widths
    are ``width, 2*width, 4*width``. At width=16, 5 blocks, 640x360 this is ~5 GMAC (see
    benchmarks/generators.py), against 35 GMAC for the Johnson net.
    """

    def __init__(self, width: int = 16, n_blocks: int = 5, affine: bool = True) -> None:
        super().__init__()
        w1, w2, w4 = width, 2 * width, 4 * width
        self.down = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(3, w1, 3), _norm(w1, affine), nn.ReLU(True),
            nn.Conv2d(w1, w2, 3, stride=2, padding=1), _norm(w2, affine), nn.ReLU(True),
            nn.Conv2d(w2, w4, 3, stride=2, padding=1), _norm(w4, affine), nn.ReLU(True),
        )  # fmt: skip
        self.blocks = nn.Sequential(*[ResnetBlock(w4, affine) for _ in range(n_blocks)])
        self.up = nn.Sequential(
            nn.ConvTranspose2d(w4, w2, 3, stride=2, padding=1, output_padding=1), _norm(w2, affine), nn.ReLU(True),
            nn.ConvTranspose2d(w2, w1, 3, stride=2, padding=1, output_padding=1), _norm(w1, affine), nn.ReLU(True),
            nn.ReflectionPad2d(1), nn.Conv2d(w1, 3, 3), nn.Tanh(),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.blocks(self.down(x)))


class _JohnsonResidual(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(c, c, 3), _norm(c, True), nn.ReLU(True),
            nn.ReflectionPad2d(1), nn.Conv2d(c, c, 3), _norm(c, True),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class JohnsonGenerator(nn.Module):
    """Johnson et al. fast style network (9x9 stem, 32-64-128, 5 residual blocks).

    Used as the MAC baseline the compact net is measured against.
    """

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.ReflectionPad2d(4), nn.Conv2d(3, 32, 9), _norm(32, True), nn.ReLU(True),
            nn.Conv2d(32, 64, 3, stride=2, padding=1), _norm(64, True), nn.ReLU(True),
            nn.Conv2d(64, 128, 3, stride=2, padding=1), _norm(128, True), nn.ReLU(True),
            *[_JohnsonResidual(128) for _ in range(5)],
            nn.ConvTranspose2d(128, 64, 3, stride=2, padding=1, output_padding=1), _norm(64, True), nn.ReLU(True),
            nn.ConvTranspose2d(64, 32, 3, stride=2, padding=1, output_padding=1), _norm(32, True), nn.ReLU(True),
            nn.ReflectionPad2d(4), nn.Conv2d(32, 3, 9), nn.Tanh(),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class PatchDiscriminator(nn.Module):
    """70x70 PatchGAN: C64-C128-C256-C512 (stride 2,2,2,1) then a 1-channel 4x4 conv.

    Returns a ``(N, 1, H/8-2, W/8-2)`` map of real/fake scores (LSGAN: no sigmoid).
    """

    def __init__(self, ndf: int = 64, in_ch: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_ch, ndf, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
        c = ndf
        for stride in (2, 2, 1):
            layers += [nn.Conv2d(c, 2 * c, 4, stride=stride, padding=1), _norm(2 * c, False), nn.LeakyReLU(0.2, True)]
            c *= 2
        layers += [nn.Conv2d(c, 1, 4, stride=1, padding=1)]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


@dataclass(frozen=True)
class GeneratorSpec:
    """What to build: the architecture name and its constructor arguments."""

    arch: Arch
    """'resnet' (CycleGAN), 'compact' (CPU real-time) or 'johnson' (baseline)."""
    kwargs: dict[str, Any] = field(default_factory=dict)
    """Constructor arguments, e.g. {'ngf': 64, 'n_blocks': 9}."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_BUILDERS: dict[str, type[nn.Module]] = {
    "resnet": ResnetGenerator,
    "compact": CompactGenerator,
    "johnson": JohnsonGenerator,
}


def build_generator(spec: GeneratorSpec) -> nn.Module:
    """Instantiate a generator from its spec (weights uninitialised)."""
    try:
        cls = _BUILDERS[spec.arch]
    except KeyError:
        raise ValueError(f"unknown generator architecture {spec.arch!r}; known: {sorted(_BUILDERS)}") from None
    return cls(**spec.kwargs)


def init_weights(net: nn.Module, gain: float = 0.02, seed: int | None = None) -> nn.Module:
    """The reference's 'normal' init: conv weights ~ N(0, gain), affine norm weights ~ N(1, gain)."""
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    for m in net.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
            with torch.no_grad():
                m.weight.normal_(0.0, gain, generator=gen)
                if m.bias is not None:
                    m.bias.zero_()
        elif isinstance(m, nn.InstanceNorm2d) and m.affine:
            with torch.no_grad():
                m.weight.normal_(1.0, gain, generator=gen)
                m.bias.zero_()
    return net


def count_macs(net: nn.Module, height: int, width: int) -> int:
    """Multiply-accumulates of one forward pass at ``height x width`` (convs only; norms are O(HW))."""
    total = 0

    def hook(m: nn.Module, inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal total
        if isinstance(m, nn.Conv2d):
            k = m.weight.shape[1] * m.weight.shape[2] * m.weight.shape[3]
            total += out.numel() * k
        elif isinstance(m, nn.ConvTranspose2d):
            # Each input pixel scatters a (out_ch x kh x kw) patch.
            total += inp[0].numel() * m.weight.shape[1] * m.weight.shape[2] * m.weight.shape[3]

    handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, nn.Conv2d | nn.ConvTranspose2d)]
    try:
        with torch.no_grad():
            net(torch.zeros(1, 3, height, width))
    finally:
        for h in handles:
            h.remove()
    return total
