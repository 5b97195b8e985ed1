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
from torch.nn import functional as F

Arch = Literal["resnet", "compact", "johnson"]


def _norm(channels: int, affine: bool) -> nn.InstanceNorm2d:
    # The reference uses non-affine instance norm with no running stats; some forks use affine.
    return nn.InstanceNorm2d(channels, affine=affine, track_running_stats=False)


Upsample = Literal["transpose", "resize", "bilinear"]
Pad = Literal["zeros", "reflect"]


class BlurPad(nn.Module):
    """A [1, 2, 1]x[1, 2, 1] binomial low-pass, then what ``nn.ReflectionPad2d(1)`` gives (reflect-pad
    by 2, blur 'valid'). Before a stride-2 conv it takes out most of the energy near Nyquist, so
    the subsampling aliases less: a plain stride-2 net is equivariant only to moves by multiples of
    its stride and repaints content moved by 1-3 px (Zhang 2019,
    "Making Convolutional Networks Shift-Invariant Again"). After a 2x upsampling it suppresses the
    coarse grid's images that a short interpolator leaves. Parameter-free and in the place of the
    pad, so the module indices, and the weights of nets without it, stay the same."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        k = torch.tensor([1.0, 2.0, 1.0])
        self.register_buffer("kernel", (torch.outer(k, k) / 16.0).expand(channels, 1, 3, 3).clone(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.pad(x, (2, 2, 2, 2), mode="reflect"), self.kernel.to(x.dtype), groups=x.shape[1])


def check_layout(upsample: str, pad: str, antialias: bool) -> None:
    """Refuse a generator layout that cannot be built (ValueError naming the option)."""
    if upsample not in ("transpose", "resize", "bilinear"):
        raise ValueError(f"upsample must be 'transpose', 'resize' or 'bilinear', got {upsample!r}")
    if pad not in ("zeros", "reflect"):
        raise ValueError(f"pad must be 'zeros' or 'reflect', got {pad!r}")
    if antialias and (pad != "reflect" or upsample == "transpose"):
        raise ValueError("antialias needs pad='reflect' and upsample='resize' or 'bilinear'")


def _down(cin: int, cout: int, pad: Pad, antialias: bool = False) -> list[nn.Module]:
    """A stride-2 3x3 conv; 'reflect' pads by mirroring so the border looks like the middle;
    ``antialias`` low-passes its input first (``BlurPad``, in the reflection pad's place)."""
    if antialias:
        return [BlurPad(cin), nn.Conv2d(cin, cout, 3, stride=2)]
    if pad == "reflect":
        return [nn.ReflectionPad2d(1), nn.Conv2d(cin, cout, 3, stride=2)]
    return [nn.Conv2d(cin, cout, 3, stride=2, padding=1)]


def _up(cin: int, cout: int, upsample: Upsample, pad: Pad, antialias: bool = False) -> list[nn.Module]:
    """2x upsampling. 'transpose' (the reference's) overlaps its 3x3 kernel unevenly at stride 2,
    which leaves a period-2 checkerboard. 'resize' (nearest 2x then a 3x3 conv, Odena et al. 2016)
    gives every output pixel the same kernel footprint, but trained nets still keep some of the
    2x2 blocks' period-2/4 structure (artefact index ~5 in docs/training.md); 'bilinear' then a
    3x3 conv has neither. The two resize modes share weights, so a net can switch between them.
    ``antialias`` blurs the upsampled map before its conv (``BlurPad``), taking out the images of
    the coarse grid that a short interpolator leaves, which tie the output to that grid."""
    if upsample == "transpose":
        return [nn.ConvTranspose2d(cin, cout, 3, stride=2, padding=1, output_padding=1)]
    first = BlurPad(cin) if antialias else nn.ReflectionPad2d(1)
    padding = [first, nn.Conv2d(cin, cout, 3)] if pad == "reflect" else [nn.Conv2d(cin, cout, 3, padding=1)]
    mode = "nearest" if upsample == "resize" else "bilinear"
    return [nn.Upsample(scale_factor=2.0, mode=mode), *padding]


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

    def __init__(
        self,
        ngf: int = 64,
        n_blocks: int = 9,
        affine: bool = False,
        in_ch: int = 3,
        out_ch: int = 3,
        upsample: Upsample = "transpose",
        pad: Pad = "zeros",
        antialias: bool = False,
    ) -> None:
        """``upsample``/``pad``/``antialias`` as in CompactGenerator; the defaults keep the reference's layout and keys."""
        super().__init__()
        check_layout(upsample, pad, antialias)
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(in_ch, ngf, 7, bias=True),
            _norm(ngf, affine),
            nn.ReLU(True),
        ]
        for i in range(2):
            c = ngf * 2**i
            layers += [*_down(c, 2 * c, pad, antialias), _norm(2 * c, affine), nn.ReLU(True)]
        layers += [ResnetBlock(ngf * 4, affine) for _ in range(n_blocks)]
        for i in range(2):
            c = ngf * 2 ** (2 - i)
            layers += [*_up(c, c // 2, upsample, pad, antialias), _norm(c // 2, affine), nn.ReLU(True)]
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

    ``upsample``/``pad`` default to the first bundled style's layout (transposed convs, zero-padded
    stride-2 convs) so its file keeps loading; new styles use 'resize' and 'reflect' (no
    checkerboard, no edge stripes). Module indices are the same in both layouts' weights except
    where a pad or upsample layer is inserted, and the sidecar records which one a file uses.
    ``antialias`` blurs before each stride-2 conv and after each upsampling (``BlurPad``): the same
    weights, and a net that repaints 1-3 px moves about a third less once trained with them (3-tap
    blurs bound the aliasing the ReLUs bring back; docs/training.md, "Session 11").
    ``skip`` adds the full-resolution stem's features, through a 1x1 conv, to the last upsampling's
    before the output conv: the trunk runs at 1/4 resolution and comes back through two blurred
    upsamplings, so without it the net has little to paint pixel-scale detail from. The 1x1 conv
    starts at zero (``NEUTRAL_KEYS``), so a net without it continues unchanged (docs/training.md,
    "Session 15").
    """

    NEUTRAL_KEYS = ("skip.weight", "skip.bias")
    """Weights that a file of the same net without ``skip`` lacks, and that start at zero."""

    def __init__(
        self,
        width: int = 16,
        n_blocks: int = 5,
        affine: bool = True,
        upsample: Upsample = "transpose",
        pad: Pad = "zeros",
        antialias: bool = False,
        skip: bool = False,
    ) -> None:
        super().__init__()
        check_layout(upsample, pad, antialias)
        w1, w2, w4 = width, 2 * width, 4 * width
        self.down = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(3, w1, 3), _norm(w1, affine), nn.ReLU(True),
            *_down(w1, w2, pad, antialias), _norm(w2, affine), nn.ReLU(True),
            *_down(w2, w4, pad, antialias), _norm(w4, affine), nn.ReLU(True),
        )  # fmt: skip
        self.blocks = nn.Sequential(*[ResnetBlock(w4, affine) for _ in range(n_blocks)])
        self.up = nn.Sequential(
            *_up(w4, w2, upsample, pad, antialias), _norm(w2, affine), nn.ReLU(True),
            *_up(w2, w1, upsample, pad, antialias), _norm(w1, affine), nn.ReLU(True),
            nn.ReflectionPad2d(1), nn.Conv2d(w1, 3, 3), nn.Tanh(),
        )  # fmt: skip
        self.skip: nn.Conv2d | None = None
        if skip:
            self.skip = nn.Conv2d(w1, w1, 1)
            nn.init.zeros_(self.skip.weight)
            nn.init.zeros_(self.skip.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.skip is None:
            return self.up(self.blocks(self.down(x)))
        stem = self.down[:4](x)  # pad, conv, norm, ReLU: the full-resolution features
        u = self.up[:-3](self.blocks(self.down[4:](stem)))
        return self.up[-3:](u + self.skip(stem))  # pad, output conv, tanh


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
    """PatchGAN. ``n_layers=3`` is the 70x70 reference: C64-C128-C256-C512 (stride 2,2,2,1) then a
    1-channel 4x4 conv, returning a ``(N, 1, H/8-2, W/8-2)`` map of real/fake scores (LSGAN: no
    sigmoid). ``n_layers=1`` is the 16x16 PatchGAN of pix2pix (C64-C128, stride 2,1): it judges
    brush-stroke-sized patches only.
    """

    def __init__(self, ndf: int = 64, in_ch: int = 3, spectral: bool = False, n_layers: int = 3) -> None:
        """``spectral``: spectral-normalised convs and no instance norm (Miyato et al. 2018), which
        bounds D's Lipschitz constant so it cannot win outright against a small generator."""
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"a PatchGAN needs n_layers >= 1, got {n_layers}")

        def conv(cin: int, cout: int, stride: int) -> nn.Module:
            c = nn.Conv2d(cin, cout, 4, stride=stride, padding=1)
            return nn.utils.parametrizations.spectral_norm(c) if spectral else c

        layers: list[nn.Module] = [conv(in_ch, ndf, 2), nn.LeakyReLU(0.2, True)]
        c = ndf
        for stride in (2,) * (n_layers - 1) + (1,):
            norm: list[nn.Module] = [] if spectral else [_norm(2 * c, False)]
            layers += [conv(c, 2 * c, stride), *norm, nn.LeakyReLU(0.2, True)]
            c *= 2
        layers += [conv(c, 1, 1)]
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
            # A spectral-normalised conv computes .weight; its stored tensor is the original.
            weight = m.parametrizations.weight.original if nn.utils.parametrize.is_parametrized(m, "weight") else m.weight
            with torch.no_grad():
                weight.normal_(0.0, gain, generator=gen)
                if m.bias is not None:
                    m.bias.zero_()
        elif isinstance(m, nn.InstanceNorm2d) and m.affine:
            with torch.no_grad():
                m.weight.normal_(1.0, gain, generator=gen)
                m.bias.zero_()
    params = dict(net.named_parameters())
    with torch.no_grad():
        for key in getattr(net, "NEUTRAL_KEYS", ()):  # a net without them continues unchanged from zero
            if key in params:
                params[key].zero_()
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
        elif isinstance(m, BlurPad):
            total += out.numel() * m.kernel.shape[-2] * m.kernel.shape[-1]  # depthwise

    kinds = nn.Conv2d | nn.ConvTranspose2d | BlurPad
    handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, kinds)]
    try:
        with torch.no_grad():
            net(torch.zeros(1, 3, height, width))
    finally:
        for h in handles:
            h.remove()
    return total
