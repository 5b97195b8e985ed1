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
import os
import pickle
import shutil
import tempfile
import warnings
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from vst.errors import StyleError
from vst.models import GeneratorSpec, build_generator

log = logging.getLogger("vst.styles")

StyleKind = Literal["torch", "onnx"]
DEFAULT_STYLE = "monet"  # trained by vst-train (docs/training.md); candy stays bundled
_WEIGHT_SUFFIXES = (".safetensors", ".onnx")


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
        if self.kind != "torch":
            raise StyleError(f"style {self.name!r} is an ONNX model; it has no torch generator")
        return GeneratorSpec(self.meta.get("arch", "resnet"), dict(self.meta.get("arch_kwargs", {})))

    def digest(self) -> str:
        """sha256 of the weights file: names exported artefacts (ONNX, engines) after what built them."""
        return file_sha256(self.weights)


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
    sidecar = weights.with_suffix(".json")
    if not sidecar.exists():
        return {}
    try:
        return json.loads(sidecar.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise StyleError(f"style metadata {sidecar} is unreadable: {e}") from None


def _styles_in(directory: Path, origin: str) -> list[Style]:
    if not directory.is_dir():
        return []
    return [
        Style(p.stem, p, _read_meta(p), origin)
        for p in sorted(directory.iterdir())
        if p.suffix in _WEIGHT_SUFFIXES and p.is_file()
    ]


def list_styles() -> list[Style]:
    """Every style by name: bundled first, then the user's (a user style may not shadow a bundled one)."""
    seen: dict[str, Style] = {}
    for style in _styles_in(bundled_dir(), "bundled") + _styles_in(user_dir(), "user"):
        seen.setdefault(style.name, style)
    return list(seen.values())


def resolve_style(name_or_path: str | os.PathLike[str] | None = None) -> Style:
    """A style name (bundled, then user dir) or a path to a .safetensors/.onnx/.json file."""
    text = str(name_or_path) if name_or_path is not None else DEFAULT_STYLE
    path = Path(text).expanduser()
    if path.suffix in (*_WEIGHT_SUFFIXES, ".json") or os.sep in text:
        if path.suffix == ".json":
            path = next((path.with_suffix(s) for s in _WEIGHT_SUFFIXES if path.with_suffix(s).exists()), path)
        if not path.is_file():
            raise StyleError(f"style file not found: {path}")
        if path.suffix not in _WEIGHT_SUFFIXES:
            raise StyleError(f"{path} is not a style (.safetensors or .onnx); use `vst-styles import` for .pth files")
        return Style(path.stem, path, _read_meta(path), "path")
    for style in list_styles():
        if style.name == text:
            return style
    known = ", ".join(s.name for s in list_styles()) or "none"
    raise StyleError(f"unknown style {text!r} (available: {known}); see `vst-styles list`")


def load_generator(style: Style) -> nn.Module:
    """Build the style's torch generator in fp32 eval mode with its weights loaded."""
    net = build_generator(style.spec)
    try:
        state = load_file(str(style.weights))
    except (SafetensorError, OSError, ValueError) as e:
        raise StyleError(f"corrupt style weights {style.weights}: {e}") from None
    try:
        net.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    except RuntimeError as e:
        raise StyleError(f"style {style.name!r} does not match its architecture {style.spec.arch}: {_first_line(e)}") from None
    return net.eval()


def save_style(
    directory: Path,
    name: str,
    net_or_state: nn.Module | Mapping[str, torch.Tensor],
    spec: GeneratorSpec,
    meta: Mapping[str, Any],
) -> Style:
    """Write ``name.safetensors`` (fp16) and ``name.json`` atomically into ``directory``."""
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
    """Write via a temp file in the same directory, then rename: no half-written file survives."""
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _check_name(name: str) -> None:
    if not name or not all(c.isalnum() or c in "-_." for c in name) or name.startswith("."):
        raise StyleError(f"invalid style name {name!r}: use letters, digits, '-', '_' and '.'")


def _first_line(e: BaseException) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


# ---------------------------------------------------------------- importing third-party checkpoints


def load_pth_state(path: Path) -> dict[str, torch.Tensor]:
    """Load a ``.pth`` state_dict with ``weights_only=True``: a pickle that carries code is refused."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # torch warns about old pickle protocols
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise StyleError(f"{path} was refused: it holds code or objects other than tensors (weights-only load)") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as e:
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
    expected = build_generator(spec).state_dict()
    missing = sorted(set(expected) - set(mapped))
    extra = sorted(set(mapped) - set(expected))
    if missing or extra:
        raise StyleError(f"unrecognised CycleGAN layout: missing {missing[:3]}, unexpected {extra[:3]}")
    for k, v in expected.items():
        if mapped[k].shape != v.shape:
            raise StyleError(f"shape mismatch at {k}: {tuple(mapped[k].shape)} vs {tuple(v.shape)}")
    return spec, {k: mapped[k].float() for k in expected}, layout


def import_style(src: Path, name: str, directory: Path | None = None, provenance: str | None = None) -> Style:
    """Import a ``.pth`` (CycleGAN layouts), our ``.safetensors`` or an ONNX image model as a user style."""
    src = Path(src).expanduser()
    if not src.is_file():
        raise StyleError(f"no such file: {src}")
    _check_name(name)
    if directory is None and any(s.name == name for s in _styles_in(bundled_dir(), "bundled")):
        # A user style never shadows a bundled one (list_styles keeps bundled first): refuse, don't hide it.
        raise StyleError(f"{name!r} is a bundled style; import under another --name")
    dest_dir = directory or user_dir()
    origin = provenance or f"imported from {src.name} (sha256 {file_sha256(src)[:16]})"
    suffix = src.suffix.lower()
    if suffix in (".pth", ".pt", ".ckpt"):
        spec, state, layout = map_cyclegan_state(load_pth_state(src))
        style = save_style(dest_dir, name, state, spec, {"provenance": origin, "source_layout": layout})
    elif suffix == ".safetensors":
        meta_src = src.with_suffix(".json")
        if not meta_src.exists():
            raise StyleError(f"{src} has no {meta_src.name} sidecar naming its architecture")
        load_generator(Style(name, src, _read_meta(src), "path"))  # fail now, before anything is copied
        dest_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest_dir / f"{name}.safetensors")
        shutil.copyfile(meta_src, dest_dir / f"{name}.json")
        style = Style(name, dest_dir / f"{name}.safetensors", _read_meta(dest_dir / f"{name}.json"), "user")
    elif suffix == ".onnx":
        from vst.onnx_styles import import_onnx_style

        style = import_onnx_style(src, name, dest_dir, origin)
    else:
        raise StyleError(f"cannot import {src.name}: expected .pth, .safetensors or .onnx")
    log.info("imported %s as style %r in %s", src, name, dest_dir)
    return style


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
