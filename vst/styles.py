"""Styles: resolve a name or path, load it, import third-party checkpoints.

A style is a weights file plus a JSON sidecar with the same stem:

    monet.safetensors   fp16 generator weights (our format)      or  candy.onnx (run by onnxruntime)
    monet.json          {"arch": ..., "arch_kwargs": ..., "normalization": ..., "provenance": ..., "training": ...}

Names resolve to the styles bundled in the package, then to the user style directory
(``$VST_STYLES_DIR``, else ``$XDG_DATA_HOME/vst/styles``, else ``~/.local/share/vst/styles``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import pickle
import shutil
import warnings
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from vst.errors import StyleError
from vst.fileio import atomic_write, is_regular_file, special_file_kind

if TYPE_CHECKING:  # torch is imported where weights are touched: listing styles must not pay for it
    import torch
    from torch import nn

    from vst.models import GeneratorSpec

log = logging.getLogger("vst.styles")

StyleKind = Literal["torch", "onnx"]
DEFAULT_STYLE = "monet"  # trained by vst-train (docs/training.md); candy stays bundled
_WEIGHT_SUFFIXES = (".safetensors", ".onnx")
MAX_SIDECAR_BYTES = 1 << 20
"""A sidecar is a few KB of JSON; anything near this is not one (and is not read into memory)."""
MAX_ARCH_INT = 1024
"""Largest integer an architecture argument may take (widths, block counts): refused before building."""
MAX_PARAMETERS = 100_000_000
"""Largest generator accepted (the CycleGAN ResNet-9 has 11.4 M parameters)."""
_PROBE_HW = (64, 64)


@dataclass(frozen=True)
class Style:
    """A resolved style: where its weights are and what its metadata says."""

    name: str
    """Display name (the file stem)."""
    weights: Path
    """The .safetensors or .onnx file."""
    meta: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    """The JSON sidecar (empty dict when there is none)."""
    origin: str = "path"
    """'bundled', 'user' or 'path'."""

    @property
    def kind(self) -> StyleKind:
        return "onnx" if self.weights.suffix == ".onnx" else "torch"

    @property
    def spec(self) -> GeneratorSpec:
        """The generator to build; the sidecar's types are checked here, its sizes in ``check_spec``."""
        from vst.models import GeneratorSpec

        if self.kind != "torch":
            raise StyleError(f"style {self.name!r} is an ONNX model; it has no torch generator")
        arch, kwargs = self.meta.get("arch", "resnet"), self.meta.get("arch_kwargs", {})
        if not isinstance(arch, str):
            raise StyleError(f"style {self.name!r}: 'arch' in its sidecar must be a name, got {arch!r:.60}")
        if not isinstance(kwargs, dict) or not all(isinstance(k, str) for k in kwargs):
            raise StyleError(f"style {self.name!r}: 'arch_kwargs' in its sidecar must be an object of named arguments")
        return GeneratorSpec(arch, dict(kwargs))  # type: ignore[arg-type]

    def digest(self) -> str:
        """sha256 of what builds the network: names exported artefacts (ONNX, engines) after it.
        For a torch style that is the weights and the architecture, so one weights file under two
        layouts (say with and without ``antialias``) is two exports, not one stale cache hit."""
        if self.kind != "torch":
            return file_sha256(self.weights)
        arch = json.dumps(self.spec.to_dict(), sort_keys=True)
        return hashlib.sha256(f"{file_sha256(self.weights)}\n{arch}".encode()).hexdigest()


def bundled_dir() -> Path:
    return Path(str(resources.files("vst.assets") / "styles"))


def user_dir() -> Path:
    if env := os.environ.get("VST_STYLES_DIR"):
        return Path(env).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "vst" / "styles"


def cache_root() -> Path:
    """``$VST_CACHE_DIR``, else ``$XDG_CACHE_HOME/vst``, else ``~/.cache/vst``: exports, engines, flows."""
    if env := os.environ.get("VST_CACHE_DIR"):
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "vst"


def _read_meta(weights: Path) -> dict[str, Any]:
    """The JSON sidecar beside ``weights`` ({} when there is none); anything else is a one-line StyleError."""
    sidecar = weights.with_suffix(".json")
    if not sidecar.exists() and not sidecar.is_symlink():
        return {}
    if kind := special_file_kind(sidecar):  # reading a FIFO would block forever
        raise StyleError(f"style metadata {sidecar} is {kind}, not a file")
    if not is_regular_file(sidecar):
        raise StyleError(f"style metadata {sidecar} is not a regular file")
    try:
        if sidecar.stat().st_size > MAX_SIDECAR_BYTES:
            raise StyleError(f"style metadata {sidecar} is too large to be a sidecar (over {MAX_SIDECAR_BYTES} bytes)")
        # NaN/Infinity are accepted: a model card may record a diverged loss; the fields the runtime
        # reads are range-checked below
        meta = json.loads(sidecar.read_bytes().decode("utf-8"))
    except OSError as e:
        raise StyleError(f"style metadata {sidecar} is unreadable: {e.strerror or e}") from None
    except (ValueError, RecursionError) as e:  # JSONDecodeError, UnicodeDecodeError, the int-digits limit
        raise StyleError(f"style metadata {sidecar} is not valid JSON: {_first_line(e)[:120]}") from None
    if not isinstance(meta, dict):
        raise StyleError(f"style metadata {sidecar} must hold a JSON object, not {type(meta).__name__}")
    if problem := _meta_problem(meta, onnx=weights.suffix == ".onnx"):
        raise StyleError(f"style metadata {sidecar}: {problem}")
    return meta


def _is_int(v: Any, lo: int, hi: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi


def _meta_problem(meta: dict[str, Any], onnx: bool) -> str | None:
    """What is wrong with the fields the runtime reads from a sidecar (None: nothing). Cheap: no torch."""
    if "arch" in meta and not isinstance(meta["arch"], str):
        return "'arch' must be a name"
    if "arch_kwargs" in meta and not isinstance(meta["arch_kwargs"], dict):
        return "'arch_kwargs' must be an object"
    if not onnx:
        return None
    if meta.get("onnx_input") is not None and not isinstance(meta["onnx_input"], str):
        return "'onnx_input' must be an input name"
    extras = meta.get("onnx_extra_inputs") or {}
    if not isinstance(extras, dict):
        return "'onnx_extra_inputs' must be an object"
    for key, spec in extras.items():
        if not isinstance(spec, dict) or not _is_int(spec.get("length"), 1, 4096):
            return f"'onnx_extra_inputs.{key}' needs a length in 1..4096"
        if not _is_int(spec.get("index", 0), 0, spec["length"] - 1):
            return f"'onnx_extra_inputs.{key}.index' must be in 0..{spec['length'] - 1}"
    fixed = meta.get("onnx_fixed_hw")
    if fixed is not None and not (isinstance(fixed, list) and len(fixed) == 2 and all(_is_int(v, 8, 8192) for v in fixed)):
        return "'onnx_fixed_hw' must be null or [height, width] in 8..8192"
    value_range = meta.get("onnx_value_range", 255.0)
    if isinstance(value_range, bool) or value_range not in (-1, 1, 255):
        return "'onnx_value_range' must be 1, 255 (input scale) or -1 ([-1, 1] models)"
    if meta.get("onnx_channel_order", "rgb") not in ("rgb", "bgr"):
        return "'onnx_channel_order' must be 'rgb' or 'bgr'"
    return None


_warned: set[tuple[str, float]] = set()


def _styles_in(directory: Path, origin: str) -> list[Style]:
    """The styles in ``directory``; a broken one is skipped with one warning naming its file."""
    if not directory.is_dir():
        return []
    styles = []
    try:
        entries = sorted(directory.iterdir())
    except OSError as e:
        log.warning("cannot list styles in %s: %s", directory, e.strerror or e)
        return []
    for p in entries:
        if p.suffix not in _WEIGHT_SUFFIXES or not is_regular_file(p):
            continue
        try:
            styles.append(Style(p.stem, p, _read_meta(p), origin))
        except StyleError as e:
            try:
                key = (str(p), p.with_suffix(".json").stat().st_mtime)
            except OSError:
                key = (str(p), 0.0)
            if key not in _warned:  # list_styles runs per request in the server: warn once per file
                _warned.add(key)
                log.warning("skipping style %s: %s", p, e)
    return styles


def list_styles() -> list[Style]:
    """Every style by name: bundled first, then the user's (a user style may not shadow a bundled one).

    A style whose sidecar is broken is left out with a warning: it must not take the others down.
    """
    seen: dict[str, Style] = {}
    for style in _styles_in(bundled_dir(), "bundled") + _styles_in(user_dir(), "user"):
        seen.setdefault(style.name, style)
    return list(seen.values())


def _broken_user_style(name: str) -> StyleError | None:
    """Why the user style ``name`` is not listed, when it exists but is broken."""
    for suffix in _WEIGHT_SUFFIXES:
        p = user_dir() / f"{name}{suffix}"
        if is_regular_file(p):
            try:
                _read_meta(p)
            except StyleError as e:
                return e
    return None


def resolve_style(name_or_path: str | os.PathLike[str] | None = None) -> Style:
    """A style name (bundled, then user dir) or a path to a .safetensors/.onnx/.json file."""
    text = str(name_or_path) if name_or_path is not None else DEFAULT_STYLE
    path = Path(text).expanduser()
    if path.suffix in (*_WEIGHT_SUFFIXES, ".json") or os.sep in text:
        if path.suffix == ".json":
            path = next((path.with_suffix(s) for s in _WEIGHT_SUFFIXES if path.with_suffix(s).exists()), path)
        if kind := special_file_kind(path):
            raise StyleError(f"style file {path} is {kind}, not a file")
        if not path.is_file():
            raise StyleError(f"style file not found: {path}")
        if path.suffix not in _WEIGHT_SUFFIXES:
            raise StyleError(f"{path} is not a style (.safetensors or .onnx); use `vst-styles import` for .pth files")
        return Style(path.stem, path, _read_meta(path), "path")
    styles = list_styles()
    for style in styles:
        if style.name == text:
            return style
    if broken := _broken_user_style(text):
        raise broken
    known = ", ".join(s.name for s in styles) or "none"
    raise StyleError(f"unknown style {text[:80]!r} (available: {known}); see `vst-styles list`")


def check_spec(spec: GeneratorSpec, name: str = "style") -> None:
    """Refuse, before anything is allocated, a generator spec vst cannot or should not build.

    Unknown architectures and arguments, sizes beyond ``MAX_ARCH_INT``, more than
    ``MAX_PARAMETERS`` parameters (counted on the meta device: no memory is allocated), and
    networks that do not map an RGB image to an RGB image of the same size.
    """
    import torch

    from vst.models import build_generator

    for key, value in spec.kwargs.items():
        if isinstance(value, bool) or value is None or isinstance(value, str):
            continue
        if isinstance(value, int):
            if not 0 <= value <= MAX_ARCH_INT:
                raise StyleError(f"{name}: architecture argument {key}={value} is out of range (0..{MAX_ARCH_INT})")
        elif isinstance(value, float):
            if not math.isfinite(value):
                raise StyleError(f"{name}: architecture argument {key}={value} is not finite")
        else:
            raise StyleError(f"{name}: architecture argument {key} must be a number, name or flag, got {type(value).__name__}")
    try:
        with torch.device("meta"):
            net = build_generator(spec)
            params = sum(p.numel() for p in net.parameters())
            if params > MAX_PARAMETERS:
                raise StyleError(f"{name}: {spec.arch} with {spec.kwargs} has {params:,} parameters (limit {MAX_PARAMETERS:,})")
            out = net(torch.empty(1, 3, *_PROBE_HW))
    except StyleError:
        raise
    except (ValueError, TypeError, RuntimeError, KeyError) as e:  # unknown arch/argument, inconsistent sizes
        raise StyleError(f"{name}: cannot build architecture {spec.arch!r} with {spec.kwargs}: {_first_line(e)[:160]}") from None
    if tuple(out.shape) != (1, 3, *_PROBE_HW):
        raise StyleError(f"{name}: {spec.arch} with {spec.kwargs} maps an RGB image to shape {tuple(out.shape)}, not RGB of the same size")


def check_finite(state: Mapping[str, torch.Tensor], name: str) -> None:
    """Refuse weights holding NaN or inf: they render black frames, silently."""
    import torch

    for key, value in state.items():
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise StyleError(f"{name}: weights are not finite (NaN or inf in {key})")


def load_generator(style: Style) -> nn.Module:
    """Build the style's torch generator in fp32 eval mode with its weights loaded."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from vst.models import build_generator

    spec = style.spec
    check_spec(spec, f"style {style.name!r}")
    try:
        state = load_file(str(style.weights))
    except (SafetensorError, OSError, ValueError) as e:
        raise StyleError(f"corrupt style weights {style.weights}: {_first_line(e)[:160]}") from None
    check_finite(state, f"style {style.name!r}")
    net = build_generator(spec)
    try:
        net.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    except RuntimeError as e:
        raise StyleError(f"style {style.name!r} does not match its architecture {spec.arch}: {_first_line(e)}") from None
    return net.eval()


def check_style(style: Style) -> None:
    """Refuse, before an engine is built, a style no backend can run correctly: its architecture,
    sizes and weights (torch), or its graph's inputs, outputs and weights (ONNX). One-line StyleErrors."""
    if style.kind == "onnx":
        from vst.onnx_styles import check_onnx_file

        check_onnx_file(style.weights)
    else:
        load_generator(style)


def save_style(
    directory: Path,
    name: str,
    net_or_state: nn.Module | Mapping[str, torch.Tensor],
    spec: GeneratorSpec,
    meta: Mapping[str, Any],
) -> Style:
    """Write ``name.safetensors`` (fp16) and ``name.json`` atomically into ``directory``."""
    import torch
    from safetensors.torch import save_file
    from torch import nn

    _check_name(name)
    directory.mkdir(parents=True, exist_ok=True)
    state = net_or_state.state_dict() if isinstance(net_or_state, nn.Module) else net_or_state
    tensors = {k: v.detach().to("cpu", torch.float16).contiguous() for k, v in state.items()}
    full_meta = {
        "name": name,
        "arch": spec.arch,
        "arch_kwargs": spec.kwargs,
        "normalization": "rgb in [-1, 1] -> rgb in [-1, 1] (tanh)",
        "dtype": "float16",
        **meta,
    }
    weights = directory / f"{name}.safetensors"
    _atomic_write(weights, lambda p: save_file(tensors, str(p), metadata={"vst_arch": spec.arch}))
    _atomic_write(weights.with_suffix(".json"), lambda p: p.write_text(json.dumps(full_meta, indent=2) + "\n"))
    return Style(name, weights, full_meta, "user")


def _atomic_write(dest: Path, write: Any) -> None:
    """Write via a temp file in the same directory, then rename: no half-written file survives,
    and the file gets the umask's mode like any other."""
    atomic_write(dest, write)


def _check_name(name: str) -> None:
    if not name or not all(c.isalnum() or c in "-_." for c in name) or name.startswith("."):
        raise StyleError(f"invalid style name {name!r}: use letters, digits, '-', '_' and '.'")


def _first_line(e: BaseException) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


# ---------------------------------------------------------------- importing third-party checkpoints


def load_pth_state(path: Path) -> dict[str, torch.Tensor]:
    """Load a ``.pth`` state_dict with ``weights_only=True``: a pickle that carries code is refused."""
    import torch

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # torch warns about old pickle protocols
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise StyleError(f"{path} was refused: it holds code or objects other than tensors (weights-only load)") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError, RecursionError, MemoryError) as e:
        raise StyleError(f"cannot read checkpoint {path}: {_first_line(e)[:160]}") from None
    for key in ("state_dict", "model", "netG", "G_A2B", "generator"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise StyleError(f"{path} does not hold a generator state_dict")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def map_cyclegan_state(state: Mapping[str, torch.Tensor]) -> tuple[GeneratorSpec, dict[str, torch.Tensor], str]:
    """Recognise a CycleGAN ResNet generator layout and map it onto ``ResnetGenerator``'s keys.

    Handles the reference layout (``conv_block``, non-affine norm, optional stale
    ``running_mean``/``running_var`` entries from old PyTorch) and the ``block`` layout with affine
    instance norm used by some forks (e.g. the vintage checkpoint). Returns (spec, state, layout).
    """
    from vst.models import GeneratorSpec, build_generator

    mapped = {
        k.replace(".block.", ".conv_block."): v
        for k, v in state.items()
        if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))
    }
    layout = "cyclegan-reference" if any(".conv_block." in k for k in state) else "cyclegan-block"
    first = mapped.get("model.1.weight")
    if first is None or first.ndim != 4 or tuple(first.shape[1:]) != (3, 7, 7):
        raise StyleError("not a CycleGAN ResNet generator: no 7x7 input conv at model.1.weight")
    ngf = int(first.shape[0])
    blocks = sorted({int(k.split(".")[1]) for k in mapped if ".conv_block." in k})
    affine = "model.2.weight" in mapped
    spec = GeneratorSpec("resnet", {"ngf": ngf, "n_blocks": len(blocks), "affine": affine})
    check_spec(spec, "checkpoint")
    expected = build_generator(spec).state_dict()
    missing = sorted(set(expected) - set(mapped))
    extra = sorted(set(mapped) - set(expected))
    if missing or extra:
        raise StyleError(f"unrecognised CycleGAN layout: missing {missing[:3]}, unexpected {extra[:3]}")
    for k, v in expected.items():
        if mapped[k].shape != v.shape:
            raise StyleError(f"shape mismatch at {k}: {tuple(mapped[k].shape)} vs {tuple(v.shape)}")
    return spec, {k: mapped[k].float() for k in expected}, layout


def import_style(
    src: Path, name: str, directory: Path | None = None, provenance: str | None = None, *, force: bool = False
) -> Style:
    """Import a ``.pth`` (CycleGAN layouts), our ``.safetensors`` or an ONNX image model as a user style.

    An existing style of that name is replaced only with ``force`` (it may be the user's work).
    Nothing is written unless the import succeeds.
    """
    src = Path(src).expanduser()
    if kind := special_file_kind(src):
        raise StyleError(f"{src} is {kind}, not a file")
    if not src.is_file():
        raise StyleError(f"no such file: {src}")
    _check_name(name)
    if directory is None and any(s.name == name for s in _styles_in(bundled_dir(), "bundled")):
        # A user style never shadows a bundled one (list_styles keeps bundled first): refuse, don't hide it.
        raise StyleError(f"{name!r} is a bundled style; import under another --name")
    dest_dir = directory or user_dir()
    existing = [dest_dir / f"{name}{s}" for s in (*_WEIGHT_SUFFIXES, ".json")]
    if not force and any(p.exists() or p.is_symlink() for p in existing):
        raise StyleError(f"style {name!r} already exists in {dest_dir}; pass --force to replace it, or choose another --name")
    suffix = src.suffix.lower()
    if suffix not in (".pth", ".pt", ".ckpt", ".safetensors", ".onnx"):
        raise StyleError(f"cannot import {src.name}: expected .pth, .safetensors or .onnx")
    origin = provenance or f"imported from {src.name} (sha256 {file_sha256(src)[:16]})"
    if suffix in (".pth", ".pt", ".ckpt"):
        spec, state, layout = map_cyclegan_state(load_pth_state(src))
        check_finite(state, f"checkpoint {src.name}")
        style = save_style(dest_dir, name, state, spec, {"provenance": origin, "source_layout": layout})
    elif suffix == ".safetensors":
        meta_src = src.with_suffix(".json")
        if not meta_src.exists():
            raise StyleError(f"{src} has no {meta_src.name} sidecar naming its architecture")
        load_generator(Style(name, src, _read_meta(src), "path"))  # fail now, before anything is copied
        dest_dir.mkdir(parents=True, exist_ok=True)
        weights = dest_dir / f"{name}.safetensors"
        _atomic_write(weights, lambda p: shutil.copyfile(src, p))
        _atomic_write(weights.with_suffix(".json"), lambda p: shutil.copyfile(meta_src, p))
        style = Style(name, weights, _read_meta(weights), "user")
    else:
        from vst.onnx_styles import import_onnx_style

        style = import_onnx_style(src, name, dest_dir, origin)
    for stale in existing:  # --force from one kind to the other: the old weights must not linger
        if stale.suffix in _WEIGHT_SUFFIXES and stale != style.weights:
            stale.unlink(missing_ok=True)
    log.info("imported %s as style %r in %s", src, name, dest_dir)
    return style


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
