"""Training configuration: frozen dataclasses, read from TOML, overridable with ``section.key=value``.

The defaults are the seed's recipe (CycleGAN ResNet-9, LSGAN, λ_cycle=10, identity 0.5·λ, pool 50,
Adam 2e-4/β1=0.5, linear decay over the second half, batch 4, paintings 286 -> crop 256) plus the
temporal losses. ``configs/*.toml`` hold named variants (e.g. the CPU compact run).
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field, fields, replace
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vst.errors import VstError

if TYPE_CHECKING:  # vst.models imports torch: `vst-train --help` and config errors should not wait for it
    from vst.models import GeneratorSpec

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 needs the backport (pyproject: tomli; python_version < '3.11')
    import tomli as tomllib


CHECKPOINT = "checkpoint.safetensors"
"""A run directory's checkpoint file (nets, optimisers, pools, RNG, step)."""


class ConfigError(VstError):
    """A config file or override is invalid."""


@dataclass(frozen=True)
class DataConfig:
    a_sources: tuple[str, ...] = ()
    """Domain A sequences: video files and folders of frames (in order). Flows are cached."""
    a_stills: tuple[str, ...] = ()
    """Domain A still folders (e.g. photos): temporal pairs by synthetic smooth motion."""
    a_still_p: float = 0.0
    """Fraction of domain-A samples drawn from ``a_stills``."""
    frame_size: tuple[int, int] = (320, 176)
    """Domain A training size (w, h), multiples of 4; frames are resized to it with no crop."""
    max_frames: int = 0
    """Frames decoded per sequence (0 = all)."""
    b_dir: str = ""
    """Domain B: a folder of paintings."""
    b_load: int = 286
    """Paintings are resized to this square size..."""
    b_crop: int = 256
    """...then randomly cropped to this one (with horizontal flips)."""
    b_jitter_p: float = 0.15
    """Fraction of paintings given a colour jitter."""
    long_gap: int = 5
    """k for the long-term temporal loss (frames t and t-k); <= 1 disables it."""
    synth_max_px: float = 6.0
    """Scale (pixels) of the synthetic motion made from stills."""
    flow_cache: bool = True
    """Cache the precomputed DIS flows on disk ($VST_CACHE_DIR/flows, else ~/.cache/vst/flows)."""


@dataclass(frozen=True)
class ModelConfig:
    arch: str = "resnet"
    """Generator A->B (the style): 'resnet' (CycleGAN) or 'compact' (CPU real-time)."""
    width: int = 64
    """ngf for 'resnet', width for 'compact'."""
    n_blocks: int = 9
    """Residual blocks."""
    affine: bool = False
    """Affine instance norm (the reference's is non-affine)."""
    back_arch: str = ""
    """Generator B->A architecture ('' = same as A->B); it is thrown away after training."""
    back_width: int = 0
    """Its width (0 = same)."""
    back_n_blocks: int = 0
    """Its residual blocks (0 = same)."""
    d_ndf: int = 64
    """PatchGAN base width (64 = the 70x70 reference discriminator)."""
    d_spectral: bool = False
    """Spectral-normalised discriminators without instance norm (the reference's: false)."""
    upsample: str = "transpose"
    """Generator upsampling: 'transpose' (the reference's; leaves a checkerboard), 'resize'
    (nearest + conv) or 'bilinear' (bilinear + conv: no period-2/4 artefacts)."""
    pad: str = "zeros"
    """Padding of the generator's stride-2 convs: 'zeros' (the reference's) or 'reflect'."""
    antialias: bool = False
    """Blur before each stride-2 conv and after each upsampling (``vst.models.BlurPad``; needs pad
    'reflect' and upsample 'resize' or 'bilinear'): content moved by 1-3 px is repainted less (by a
    third, trained; docs/training.md, "Session 11"). Adds no weights: a net without it can warm-start one."""
    skip: bool = False
    """Compact generator only: add the full-resolution stem's features (1x1 conv, zero at the start)
    before the output conv, room for pixel-scale detail (``vst.models.CompactGenerator``). A net
    without it warm-starts one unchanged."""


@dataclass(frozen=True)
class LossConfig:
    gan: float = 1.0
    """Adversarial loss weight."""
    gan_mode: str = "lsgan"
    """'lsgan' (the reference's least squares) or 'hinge'."""
    gan_fine: float = 0.0
    """Weight of a second, 16x16 PatchGAN on the style side (domain B). The 70x70 one judges
    composition and averages over brush strokes; this one sees only stroke-sized patches, where the
    outputs were smoother than paintings (0 = off)."""
    cycle: float = 10.0
    """λ: cycle-consistency L1 weight."""
    identity: float = 0.5
    """Identity L1 weight, as a fraction of λ."""
    temporal: float = 20.0
    """γ: short-term temporal loss weight (0 = plain CycleGAN)."""
    long_term: float = 10.0
    """Long-term (frames ``long_gap`` apart) temporal loss weight."""
    temporal_slack: float = 0.0
    """Both temporal losses charge each pixel's output change only beyond this many times the
    input's own change there (``vst.train.losses.temporal_loss``): room for fine detail where the
    input has it, full charge where it is smooth (0 = the thesis's loss, which charges all of it)."""
    shift: float = 0.0
    """Shift-equivariance L1 weight: G(crop of x shifted by 1-3 px) against the same crop of G(x).
    The stride-2 encoder makes G depend on the pixel grid's phase, which paints a grid-locked
    period-2 hatching and changes the texture whenever the camera pans (0 = off)."""
    noise: float = 0.0
    """Noise-stability L1 weight: G(x + Gaussian noise of ``noise_sigma``) against G(x). Camera and
    compression noise changes every frame, and a generator that paints it into strokes flickers
    even where nothing moves (0 = off)."""
    noise_sigma: float = 0.04
    """Standard deviation of that noise, in the [-1, 1] input range (0.04 is about 5 levels of 255)."""
    noise_blur: float = 0.0
    """Gaussian blur σ (px) of that noise before it is rescaled to ``noise_sigma``: 0 = independent per
    pixel; a few px = the spatially correlated noise of upscaled, block-compressed video."""
    ringing: float = 0.0
    """Edge-response weight (``vst.train.losses.ringing_loss``): G on a synthetic clean edge in the
    frame's colours, pasted into the frame, averaged along the edge, L1 against its own level a little further away on the
    same side. It penalises what is locked to edges (outlines, halos, the parallel bands of contour
    ringing), not texture, which the averaging removes (0 = off)."""
    ringing_blur: float = 1.0
    """Largest blur σ (px) of those edges (at least 0.3); the edges of upscaled video are softer."""
    texture: float = 0.0
    """Texture weight (``vst.train.losses.texture_loss``): sliced Wasserstein distance between 7x7
    neighbourhoods of the output's three finest Laplacian bands and the paintings' (0 = off). The
    GAN losses leave the output smoother than a painting at the finest scales."""
    flow_cycle: float = 0.0
    """The thesis's flow-cycle loss weight (its section 5.3): L1, in pixels, between the flow of the
    reconstructions F(G(x_t)), F(G(x_{t-1})) and the input frames' flow, both by the
    differentiable Lucas–Kanade of ``vst.train.lk_flow``, on non-occluded pixels (0 = off; needs
    the temporal pairs, i.e. ``temporal`` > 0)."""
    edge: float = 1.0
    """Distillation: weight of the Sobel-gradient L1 term (the L1 term has weight 1)."""


@dataclass(frozen=True)
class OptimConfig:
    steps: int = 100_000
    """Total optimisation steps (the schedule's length)."""
    decay_start: float = 0.5
    """Fraction of steps after which the learning rate decays linearly to 0."""
    lr: float = 2e-4
    """Adam learning rate (G, and D unless lr_d is set)."""
    lr_d: float = 0.0
    """D's learning rate (0 = lr). TTUR (Heusel et al. 2017) gives D a larger one than G."""
    beta1: float = 0.5
    beta2: float = 0.999
    batch: int = 4
    """Per-process batch size (both domains)."""
    pool: int = 50
    """Image pool size for the discriminators."""
    ema: float = 0.0
    """Decay of an exponential moving average of the style generator's weights, updated after every
    step (0 = off). When on, the snapshots, the exported style and the sample grids are the average:
    GAN weights wander from step to step, and their mean over a few hundred steps paints as strongly
    with less of the wander (docs/training.md, "Session 12"). 0.997 averages over about 330 steps."""


@dataclass(frozen=True)
class RunConfig:
    seed: int = 0
    """Seeds the weights' init and the data/pool sampling."""
    threads: int = 0
    """torch CPU threads (0 = torch's default)."""
    device: str = "auto"
    """'auto' (CUDA when present), 'cpu' or 'cuda'."""
    amp: str = "auto"
    """'auto' (bf16 autocast on CUDA, none on CPU), 'bf16' or 'off'. On a CPU with native bf16, 'bf16' is
    1.4x faster per step but trained weaker styles at matched CPU time (docs/training.md)."""
    channels_last: bool = False
    """Keep the networks' weights (and so their activations) in channels-last (NHWC) memory format."""
    log_every: int = 10
    """Steps between metrics CSV rows."""
    sample_every: int = 500
    """Steps between PNG sample grids."""
    checkpoint_every: int = 1000
    """Steps between checkpoints..."""
    checkpoint_every_s: float = 600.0
    """...or seconds, whichever comes first (a CPU run must leave something usable behind)."""
    max_seconds: float = 0.0
    """Stop, with a checkpoint, after this many seconds of this session (0 = no limit): a run
    that must fit a time slot, such as a GPU lease."""
    snapshot_every: int = 0
    """Steps between exported generator snapshots kept in snapshots/ (0 = none)."""
    style_name: str = ""
    """When set, every checkpoint also exports the A->B generator as style/<name>.safetensors."""
    style_note: str = ""
    """Free text copied into the exported style's model card."""


@dataclass(frozen=True)
class TrainConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def generator_spec(self, back: bool = False) -> GeneratorSpec:
        from vst.models import GeneratorSpec, check_layout

        m = self.model
        arch = (m.back_arch or m.arch) if back else m.arch
        width = (m.back_width or m.width) if back else m.width
        blocks = (m.back_n_blocks or m.n_blocks) if back else m.n_blocks
        try:
            check_layout(m.upsample, m.pad, m.antialias)
        except ValueError as e:
            raise ConfigError(f"model: {e}") from None
        if self.loss.gan_mode not in ("lsgan", "hinge"):
            raise ConfigError(f"loss.gan_mode must be 'lsgan' or 'hinge', got {self.loss.gan_mode!r}")
        # Only non-default layout options are written, so reference-layout sidecars stay as they were.
        layout: dict[str, Any] = {k: v for k, v in (("upsample", m.upsample), ("pad", m.pad)) if v not in ("transpose", "zeros")}
        if m.antialias:
            layout["antialias"] = True
        if m.skip:
            if arch != "compact":
                raise ConfigError("model.skip is for the compact generator (model.arch = 'compact')")
            layout["skip"] = True
        if arch == "resnet":
            return GeneratorSpec("resnet", {"ngf": width, "n_blocks": blocks, "affine": m.affine, **layout})
        if arch == "compact":
            return GeneratorSpec("compact", {"width": width, "n_blocks": blocks, "affine": m.affine, **layout})
        raise ConfigError(f"model.arch must be 'resnet' or 'compact', got {arch!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_SECTIONS = {f.name: f for f in fields(TrainConfig)}


def _coerce(section: str, key: str, value: Any, current: Any) -> Any:
    if isinstance(current, tuple):
        if not isinstance(value, list | tuple):
            value = [value]
        return tuple(value)
    if isinstance(current, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{section}.{key} must be true or false, got {value!r}")
        return value
    if isinstance(current, float) and isinstance(value, int):
        return float(value)
    if type(current) is not type(value):
        raise ConfigError(f"{section}.{key} must be {type(current).__name__}, got {value!r}")
    return value


def apply(cfg: TrainConfig, values: dict[str, Any]) -> TrainConfig:
    """Merge ``{section: {key: value}}`` into ``cfg`` with type checks; unknown keys are errors."""
    out = cfg
    for section, table in values.items():
        if section not in _SECTIONS:
            raise ConfigError(f"unknown config section [{section}] (known: {', '.join(_SECTIONS)})")
        if not isinstance(table, dict):
            raise ConfigError(f"[{section}] must be a table")
        sub = getattr(out, section)
        known = {f.name for f in fields(sub)}
        changes = {}
        for key, value in table.items():
            if key not in known:
                raise ConfigError(f"unknown config key {section}.{key} (known: {', '.join(sorted(known))})")
            changes[key] = _coerce(section, key, value, getattr(sub, key))
        out = replace(out, **{section: replace(sub, **changes)})
    return out


def parse_override(text: str) -> dict[str, Any]:
    """'loss.temporal=0' -> {'loss': {'temporal': 0}}; the value is TOML (bare words are strings)."""
    if "=" not in text or "." not in text.split("=", 1)[0]:
        raise ConfigError(f"override {text!r} must look like section.key=value")
    dotted, raw = text.split("=", 1)
    section, key = dotted.strip().split(".", 1)
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return {section: {key: value}}


def builtin_config(name: str) -> Path:
    """A config shipped in vst/train/configs by name (without .toml)."""
    return Path(str(resources.files("vst.train") / "configs" / f"{name}.toml"))


def load_config(path: str | Path | None, overrides: list[str] = ()) -> TrainConfig:  # type: ignore[assignment]
    """Defaults, then the TOML file (a path or a bundled config name), then the overrides in order."""
    cfg = TrainConfig()
    if path:
        p = Path(path).expanduser()
        if not p.is_file() and builtin_config(str(path)).is_file():
            p = builtin_config(str(path))
        if not p.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            cfg = apply(cfg, tomllib.loads(p.read_text()))
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{p}: invalid TOML: {e}") from None
    for text in overrides:
        cfg = apply(cfg, parse_override(text))
    if cfg.loss.ringing_blur < 0.3:
        raise ConfigError(f"loss.ringing_blur must be at least 0.3 px, got {cfg.loss.ringing_blur}")
    if cfg.loss.temporal_slack < 0:
        raise ConfigError(f"loss.temporal_slack must be 0 (off) or positive, got {cfg.loss.temporal_slack}")
    if cfg.loss.texture > 0 and min(*cfg.data.frame_size, cfg.data.b_crop) < 28:
        raise ConfigError("loss.texture needs frames and painting crops of at least 28 px (its third band must hold a 7x7 patch)")
    if not 0.0 <= cfg.optim.ema < 1.0:
        raise ConfigError(f"optim.ema must be in [0, 1) (0 = off), got {cfg.optim.ema}")
    return cfg


def dump_toml(cfg: TrainConfig) -> str:
    """The config as TOML (what the run directory keeps, so a run can be repeated exactly)."""

    def val(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(v, list | tuple):
            return "[" + ", ".join(val(x) for x in v) + "]"
        return repr(v)

    lines = []
    for section, table in cfg.to_dict().items():
        lines.append(f"[{section}]")
        lines += [f"{k} = {val(v)}" for k, v in table.items()]
        lines.append("")
    return "\n".join(lines)
