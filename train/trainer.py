"""CycleGAN + temporal-loss trainer (the seed's recipe), with resume, samples, metrics and DDP.

Nets: ``g_ab`` (frames -> paintings: the style that ships), ``g_ba`` (its inverse, for the cycle),
``d_b`` / ``d_a`` (70x70 PatchGANs judging paintings / frames).

Multi-process: under ``torchrun`` (WORLD_SIZE > 1) each rank samples its own batches (seed + rank)
and gradients are averaged with an all-reduce after each backward. That is what DDP does, done by
hand because each generator runs several times per step (cycle, identity, temporal), which DDP's
one-forward-one-backward bookkeeping does not like.
"""

from __future__ import annotations

import copy
import csv
import json
import logging
import math
import os
import sys
import time
from collections.abc import Mapping
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.distributed as dist
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from vst.errors import VstError
from vst.hardware import cpu_model
from vst.models import GeneratorSpec, PatchDiscriminator, build_generator, count_macs, init_weights
from vst.styles import Style, file_sha256, save_style

from .config import CHECKPOINT, TrainConfig, dump_toml
from .data import DataError, DomainA, ImageFolder, PairBatch, list_images
from .lk_flow import flow_cycle_loss
from .losses import ImagePool, edge_colours, gan_loss, noise_loss, paste_edges, ringing_loss, sensor_noise, shift_loss, step_edges, temporal_loss, texture_loss

log = logging.getLogger("vst.train")


class CheckpointError(VstError):
    """A checkpoint is missing, corrupt or from a different setup."""


# ------------------------------------------------------------------------------ environment


@dataclass(frozen=True)
class Dist:
    """This process's place in a torchrun job (rank 0 of 1 when run plainly)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device_kind: str) -> Dist:
    """Join the torchrun process group when WORLD_SIZE > 1 (nccl on CUDA, gloo on CPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device_kind == "cuda" else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def pick_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise VstError("run.device is 'cuda' but torch sees no CUDA GPU")
        return torch.device("cuda", local_rank)
    if name != "cpu":
        raise VstError(f"run.device must be auto, cpu or cuda, got {name!r}")
    return torch.device("cpu")


def seed_all(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)


def check_paths(cfg: TrainConfig, need_b: bool) -> None:
    """Fail in a second, with one clear line, on a missing or empty folder (before minutes of loading)."""
    d = cfg.data
    for src in d.a_sources:
        p = Path(src).expanduser()
        if p.is_dir():
            list_images(p)
        elif not p.is_file():
            raise DataError(f"training video or frame folder not found: {p}")
    for folder in d.a_stills:
        list_images(Path(folder))
    if need_b:
        if not d.b_dir:
            raise DataError("data.b_dir (the paintings folder) is not set")
        list_images(Path(d.b_dir))


# ------------------------------------------------------------------------------ state IO


def flatten_optimizer(prefix: str, opt: torch.optim.Optimizer) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Optimizer state -> (tensors for safetensors, JSON-able rest)."""
    sd = opt.state_dict()
    tensors = {f"{prefix}/{pid}/{k}": v.detach().cpu().contiguous() for pid, st in sd["state"].items() for k, v in st.items()}
    return tensors, {"param_groups": sd["param_groups"]}


def unflatten_optimizer(prefix: str, tensors: Mapping[str, Tensor], meta: Mapping[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Tensor]] = {}
    for key, v in tensors.items():
        if key.startswith(prefix + "/"):
            _, pid, name = key.split("/", 2)
            state.setdefault(int(pid), {})[name] = v
    return {"state": state, "param_groups": meta["param_groups"]}


def write_png(path: Path, image: np.ndarray) -> None:
    """(H, W, 3) uint8 RGB -> PNG, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    if not ok:
        raise OSError(f"PNG encoding failed for {path}")
    tmp = path.with_suffix(".part")
    tmp.write_bytes(buf.tobytes())
    os.replace(tmp, path)


def to_uint8(x: Tensor) -> np.ndarray:
    """(3, H, W) in [-1, 1] -> (H, W, 3) uint8."""
    return x.float().add(1).mul(127.5).round().clamp(0, 255).byte().permute(1, 2, 0).cpu().numpy()


def grid_image(rows: list[list[Tensor]], pad: int = 2) -> np.ndarray:
    """Rows of (3, H, W) [-1, 1] images (same height per row) -> one white-padded uint8 grid."""
    rendered = []
    for row in rows:
        h = row[0].shape[-2]
        cells = []
        for img in row:
            cells += [to_uint8(img), np.full((h, pad, 3), 255, np.uint8)]
        rendered.append(np.concatenate(cells[:-1], axis=1))
    width = max(r.shape[1] for r in rendered)
    out = []
    for r in rendered:
        out += [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0)), constant_values=255), np.full((pad, width, 3), 255, np.uint8)]
    return np.concatenate(out[:-1], axis=0)


# ------------------------------------------------------------------------------ trainer


class TrainerBase:
    """Run plumbing shared by the CycleGAN and distillation trainers: the loop, checkpoints,
    samples, metrics. Subclasses create their nets and optimisers (listed in ``net_names`` /
    ``opt_names`` / ``pool_names``) and implement ``sample_batch`` and ``train_step``; ``g_ab`` is
    always the generator that becomes the style.
    """

    net_names: tuple[str, ...] = ()
    opt_names: tuple[str, ...] = ()
    pool_names: tuple[str, ...] = ()
    fresh_if_missing: tuple[str, ...] = ()
    """Optional nets that a warm start (``init_from``) leaves fresh when the source run has none."""
    g_ab: nn.Module
    g_ema: nn.Module | None = None
    """The moving average of g_ab's weights (``optim.ema``), or None."""
    spec_ab: GeneratorSpec
    description = ""

    def _setup(self, cfg: TrainConfig, run_dir: Path, a: DomainA | None, dist_info: Dist | None) -> None:
        self.cfg, self.run_dir = cfg, Path(run_dir)
        self.dist = dist_info or Dist()
        self.device = pick_device(cfg.run.device, self.dist.local_rank)
        if cfg.run.threads:
            torch.set_num_threads(cfg.run.threads)
        seed_all(cfg.run.seed)
        amp = cfg.run.amp
        if amp == "auto":
            amp = "bf16" if self.device.type == "cuda" else "off"
        if amp not in ("bf16", "off"):
            raise VstError(f"run.amp must be auto, bf16 or off, got {cfg.run.amp!r}")
        self.amp = amp
        d = cfg.data
        if a is None:
            check_paths(cfg, need_b=bool(self.net_names and "d_b" in self.net_names))
        self.a = a or DomainA(
            d.a_sources, tuple(d.frame_size), d.a_stills, d.a_still_p, d.long_gap, d.synth_max_px, d.max_frames, d.flow_cache
        )  # type: ignore[arg-type]
        self.gen = torch.Generator().manual_seed(cfg.run.seed * 1000 + self.dist.rank)
        self.step = 0
        self.elapsed = 0.0  # training seconds over all sessions of this run
        self.last: dict[str, float] = {}
        self._fixed: Tensor | None = None

    def _setup_ema(self) -> None:
        """Subclasses call this once g_ab exists: the average starts at g_ab and is checkpointed with it."""
        if self.cfg.optim.ema > 0:
            self.g_ema = copy.deepcopy(self.g_ab).requires_grad_(False)
            self.net_names = (*self.net_names, "g_ema")

    @torch.no_grad()
    def _update_ema(self) -> None:
        if self.g_ema is None:
            return
        weight = 1.0 - self.cfg.optim.ema
        for avg, p in zip(self.g_ema.parameters(), self.g_ab.parameters(), strict=True):
            avg.lerp_(p, weight)
        for avg, b in zip(self.g_ema.buffers(), self.g_ab.buffers(), strict=True):
            avg.copy_(b)

    @property
    def style_net(self) -> nn.Module:
        """The generator that becomes the style: the average when ``optim.ema`` is on, else g_ab."""
        return self.g_ema if self.g_ema is not None else self.g_ab

    def sample_batch(self) -> Any:
        raise NotImplementedError

    def train_step(self, *batch: Any) -> dict[str, float]:
        raise NotImplementedError

    def lr_at(self, step: int) -> float:
        """Constant, then linear decay to 0 over the last (1 - decay_start) of the steps."""
        o = self.cfg.optim
        start = int(o.steps * o.decay_start)
        if step < start:
            return o.lr
        return o.lr * max(0.0, 1.0 - (step - start) / max(1, o.steps - start))

    def _autocast(self) -> Any:
        if self.amp == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return nullcontext()

    def _allreduce(self, nets: list[nn.Module]) -> None:
        if self.dist.world <= 1:
            return
        for net in nets:
            for p in net.parameters():
                if p.grad is not None:
                    dist.all_reduce(p.grad)
                    p.grad.div_(self.dist.world)

    def state(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        tensors: dict[str, Tensor] = {}
        for name in self.net_names:
            tensors |= {f"{name}.{k}": v.detach().cpu().contiguous() for k, v in getattr(self, name).state_dict().items()}
        meta: dict[str, Any] = {"step": self.step, "elapsed": self.elapsed, "config": self.cfg.to_dict()}
        # A warm start's source travels with the run, so the cards of a resumed run still name it
        # (soups check it to refuse ingredients from different starts).
        meta["init"] = {"source": getattr(self, "init_source", None), "sha256": getattr(self, "init_sha256", None)}
        for name in self.opt_names:
            t, m = flatten_optimizer(name, getattr(self, name))
            tensors |= t
            meta[name] = m
        for name in self.pool_names:
            images = getattr(self, name).state()
            if images is not None:
                tensors[name] = images.cpu().contiguous()
        tensors["rng.data"] = self.gen.get_state()
        tensors["rng.torch"] = torch.get_rng_state()
        return tensors, meta

    def save_checkpoint(self, path: Path | None = None) -> Path:
        """Everything needed to continue bit-for-bit: nets, optimisers, pools, RNG, step."""
        path = path or self.run_dir / CHECKPOINT
        tensors, meta = self.state()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".part")
        save_file(tensors, str(tmp), metadata={"vst_train": json.dumps(meta)})
        os.replace(tmp, path)
        return path

    def load_checkpoint(self, path: Path) -> None:
        from safetensors import safe_open

        if not path.is_file():
            raise CheckpointError(f"no checkpoint to resume at {path}")
        try:
            with safe_open(str(path), "pt") as f:
                meta = json.loads((f.metadata() or {})["vst_train"])
            tensors = load_file(str(path))
        except (OSError, KeyError, ValueError, json.JSONDecodeError) as e:
            raise CheckpointError(f"corrupt checkpoint {path}: {e}") from None
        try:
            for name in self.net_names:
                net: nn.Module = getattr(self, name)
                sd = {k[len(name) + 1 :]: v for k, v in tensors.items() if k.startswith(name + ".")}
                net.load_state_dict(sd, strict=True)
            for name in self.opt_names:
                getattr(self, name).load_state_dict(unflatten_optimizer(name, tensors, meta[name]))
        except (RuntimeError, ValueError, KeyError) as e:
            raise CheckpointError(f"checkpoint {path} does not match this config's networks: {str(e).splitlines()[0]}") from None
        for name in self.pool_names:
            getattr(self, name).load(tensors.get(name), self.device)
        self.gen.set_state(tensors["rng.data"])
        torch.set_rng_state(tensors["rng.torch"])
        self.step, self.elapsed = int(meta["step"]), float(meta.get("elapsed", 0.0))
        init = meta.get("init") or {}
        if init.get("source"):
            self.init_source, self.init_sha256 = init["source"], init.get("sha256")
        log.info("resumed %s at step %d (%.0f s trained so far)", path, self.step, self.elapsed)

    def init_from(self, path: Path) -> None:
        """Warm start: take the networks' weights from another run's checkpoint (optimisers, pools
        and step start fresh), e.g. a new painter from the monet run; or take the style's generator
        from a style file (a committed, fp16 ``.safetensors``), so a later session can continue a
        bundled style without any run folder."""
        try:
            tensors = load_file(str(path))
        except (OSError, ValueError) as e:
            raise CheckpointError(f"cannot read checkpoint {path}: {e}") from None
        is_style = not any(k.startswith("g_ab.") for k in tensors)
        try:
            if is_style:
                # A style file (fp16 generator weights only, as committed): the style's generator
                # continues, the inverse generator and the discriminators start fresh.
                missing, unexpected = self.g_ab.load_state_dict({k: v.float() for k, v in tensors.items()}, strict=False)
                neutral = getattr(self.g_ab, "NEUTRAL_KEYS", ())
                if unexpected or set(missing) - set(neutral):
                    raise RuntimeError(f"missing {missing}, unexpected {unexpected}")
                if missing:  # e.g. a compact net without model.skip: the new weights start at zero
                    log.info("the style has no %s; they start at zero", ", ".join(missing))
                log.info("g_ab initialised from the style %s; the other networks start fresh", path)
            else:
                for name in self.net_names:
                    if name == "g_ema":  # restarted below, from the weights this run starts at
                        continue
                    sd = {k[len(name) + 1 :]: v for k, v in tensors.items() if k.startswith(name + ".")}
                    if not sd and name in self.fresh_if_missing:
                        log.info("%s has no %s; it starts fresh", path, name)
                        continue
                    getattr(self, name).load_state_dict(sd, strict=True)
        except RuntimeError as e:
            raise CheckpointError(f"checkpoint {path} does not match this config's networks: {str(e).splitlines()[0]}") from None
        if self.g_ema is not None:
            self.g_ema.load_state_dict(self.g_ab.state_dict())
        self.init_source = str(path)
        self.init_sha256 = file_sha256(path)  # a bundled path's bytes change when a style is re-bundled
        log.info("networks initialised from %s", path)

    def export_style(self, directory: Path, name: str, extra: Mapping[str, Any] | None = None) -> Style:
        """Save g_ab as an fp16 style with a model card in the sidecar's 'training' field."""
        card = {
            "trainer": f"vst-train {self.description}",
            "steps": self.step,
            "wall_time_s": round(self.elapsed, 1),
            "machine": machine_description(self.device),
            "data": {"domain_a": list(self.cfg.data.a_sources), "domain_a_stills": list(self.cfg.data.a_stills), "domain_b": self.cfg.data.b_dir},
            "config": self.cfg.to_dict(),
            "last_losses": {k: round(v, 5) for k, v in self.last.items()},
            "note": self.cfg.run.style_note,
            "initialised_from": getattr(self, "init_source", None),
            "initialised_from_sha256": getattr(self, "init_sha256", None),
            **(extra or {}),
        }
        meta = {"provenance": f"trained by vst-train, run {self.run_dir.name}", "training": card}
        return save_style(directory, name, self.style_net, self.spec_ab, meta)

    # ---------------------------------------------------------------- samples

    def fixed_inputs(self, k: int = 4) -> Tensor:
        """k frames spread over domain A's sequences (the same ones at every sample step)."""
        if self._fixed is None:
            frames = self.a.all_frames()
            idx = torch.linspace(0, len(frames) - 1, k).round().long()
            self._fixed = frames[idx].float().div(127.5).sub(1.0)
        return self._fixed

    @torch.no_grad()
    def write_samples(self) -> Path:
        """samples/step_XXXXXXX.png: each row is input | the style's output (``style_net``)."""
        x = self.fixed_inputs().to(self.device)
        net = self.style_net
        net.eval()
        try:
            with self._autocast():
                y = net(x).float()
        finally:
            net.train()
        path = self.run_dir / "samples" / f"step_{self.step:07d}.png"
        write_png(path, grid_image([[xi, yi] for xi, yi in zip(x, y, strict=True)]))
        return path

    # ---------------------------------------------------------------- the loop

    def fit(self, progress: bool = True, stop_after: int = 0) -> None:
        """Train to ``optim.steps`` (or ``stop_after`` more steps); checkpoint on schedule, at the end and on Ctrl-C."""
        cfg, r = self.cfg, self.cfg.run
        main = self.dist.main
        if main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / "config.toml").write_text(dump_toml(cfg))
            log.info(
                "training %s (%.2f M params, %.2f GMAC at %dx%d) for %d steps on %s, amp=%s, world=%d",
                self.spec_ab.arch, sum(p.numel() for p in self.g_ab.parameters()) / 1e6,
                count_macs(self.g_ab, 180, 320) / 1e9, 320, 180, cfg.optim.steps, self.device, self.amp, self.dist.world,
            )  # fmt: skip
        metrics = _MetricsCSV(self.run_dir / "metrics.csv") if main else None
        bar = _progress(self.step, cfg.optim.steps, enabled=progress and main)
        last_ckpt = time.monotonic()
        sums: dict[str, float] = {}
        count = 0
        end = min(cfg.optim.steps, self.step + stop_after) if stop_after else cfg.optim.steps
        session_start = time.monotonic()
        try:
            while self.step < end:
                if r.max_seconds and time.monotonic() - session_start >= r.max_seconds:
                    log.info("run.max_seconds (%.0f s) reached at step %d", r.max_seconds, self.step)
                    break
                t0 = time.monotonic()
                losses = self.train_step(*self.sample_batch())
                self._update_ema()
                self.elapsed += time.monotonic() - t0
                if not all(math.isfinite(v) for v in losses.values()):
                    raise VstError(f"non-finite loss at step {self.step}: {losses}")
                for k, v in losses.items():
                    sums[k] = sums.get(k, 0.0) + v
                count += 1
                self.last = losses
                bar.update(1)
                bar.set_postfix({k: f"{losses[k]:.3f}" for k in ("g_gan_b", "cycle_a", "d_b", "temporal") if k in losses}, refresh=False)
                if not main:
                    continue
                if self.step % r.log_every == 0 or self.step == cfg.optim.steps:
                    assert metrics is not None
                    metrics.write(self.step, self.elapsed, self.lr_at(self.step - 1), {k: v / count for k, v in sums.items()})
                    sums, count = {}, 0
                if r.sample_every and self.step % r.sample_every == 0:
                    self.write_samples()
                if r.snapshot_every and self.step % r.snapshot_every == 0:
                    self.export_style(self.run_dir / "snapshots", f"step_{self.step:07d}")
                due = time.monotonic() - last_ckpt >= r.checkpoint_every_s
                if (r.checkpoint_every and self.step % r.checkpoint_every == 0) or due:
                    self.checkpoint()
                    last_ckpt = time.monotonic()
        except KeyboardInterrupt:
            if main:
                log.warning("interrupted at step %d: saving a checkpoint", self.step)
                self.checkpoint()
            raise
        finally:
            bar.close()
        if main:
            self.checkpoint()
            self.write_samples()

    def checkpoint(self) -> None:
        path = self.save_checkpoint()
        if self.cfg.run.style_name:
            self.export_style(self.run_dir / "style", self.cfg.run.style_name)
        log.info("step %d: checkpoint %s", self.step, path)


class CycleGANTrainer(TrainerBase):
    """Two generators, two 70x70 PatchGANs and their pools: the seed's recipe plus temporal losses.

    ``a``/``b`` may be given (tests); otherwise they are loaded from ``cfg.data``.
    """

    net_names = ("g_ab", "g_ba", "d_b", "d_a")
    opt_names = ("opt_g", "opt_d")
    pool_names = ("pool_b", "pool_a")
    fresh_if_missing = ("d_fine",)  # a run without the fine PatchGAN (loss.gan_fine)
    description = "CycleGAN + temporal loss"

    def __init__(
        self,
        cfg: TrainConfig,
        run_dir: Path,
        a: DomainA | None = None,
        b: ImageFolder | None = None,
        dist_info: Dist | None = None,
    ) -> None:
        self._setup(cfg, run_dir, a, dist_info)
        d = cfg.data
        if b is None:
            if not d.b_dir:
                raise VstError("data.b_dir (the paintings folder) is not set")
            b = ImageFolder(Path(d.b_dir), d.b_load, d.b_crop, d.b_jitter_p)
        self.b = b
        # Same init on every rank (seeded), so no parameter broadcast is needed.
        self.spec_ab, self.spec_ba = cfg.generator_spec(), cfg.generator_spec(back=True)
        self.g_ab = init_weights(build_generator(self.spec_ab), seed=cfg.run.seed).to(self.device)
        self.g_ba = init_weights(build_generator(self.spec_ba), seed=cfg.run.seed + 1).to(self.device)
        m = cfg.model
        self.d_b = init_weights(PatchDiscriminator(m.d_ndf, spectral=m.d_spectral), seed=cfg.run.seed + 2).to(self.device)
        self.d_a = init_weights(PatchDiscriminator(m.d_ndf, spectral=m.d_spectral), seed=cfg.run.seed + 3).to(self.device)
        self.d_fine: nn.Module | None = None
        if cfg.loss.gan_fine > 0:
            fine = PatchDiscriminator(m.d_ndf, spectral=m.d_spectral, n_layers=1)
            self.d_fine = init_weights(fine, seed=cfg.run.seed + 4).to(self.device)
            self.net_names = (*self.net_names, "d_fine")
        self._setup_ema()
        if cfg.run.channels_last:  # convolutions follow their weights' format; checkpoints save contiguous copies
            for name in self.net_names:
                getattr(self, name).to(memory_format=torch.channels_last)
        o = cfg.optim
        betas = (o.beta1, o.beta2)
        self.opt_g = torch.optim.Adam([*self.g_ab.parameters(), *self.g_ba.parameters()], lr=o.lr, betas=betas)
        self.d_nets = [self.d_b, self.d_a, *([self.d_fine] if self.d_fine else [])]
        self.opt_d = torch.optim.Adam([p for d in self.d_nets for p in d.parameters()], lr=o.lr_d or o.lr, betas=betas)
        self.pool_b, self.pool_a = ImagePool(o.pool), ImagePool(o.pool)

    def sample_batch(self) -> tuple[PairBatch, Tensor]:
        n = self.cfg.optim.batch
        return self.a.sample(n, self.gen).to(self.device), self.b.sample(n, self.gen).to(self.device)

    def train_step(self, batch_a: PairBatch, real_b: Tensor) -> dict[str, float]:
        """One G update then one D update, as the seed orders them. Returns the losses."""
        lc = self.cfg.loss
        mode = lc.gan_mode
        o = self.cfg.optim
        lr = self.lr_at(self.step)  # D follows the same schedule at its own base rate (TTUR)
        for group in self.opt_g.param_groups:
            group["lr"] = lr
        for group in self.opt_d.param_groups:
            group["lr"] = lr * (o.lr_d / o.lr) if o.lr_d else lr
        real_a = batch_a.cur
        n = real_a.shape[0]
        use_t = lc.temporal > 0
        use_long = lc.long_term > 0 and batch_a.far is not None
        with self._autocast():
            # G_ab runs once on every domain-A frame it needs (instance norm is per sample, so
            # batching the current, earlier and far frames together changes nothing but speed).
            xs = [real_a] + ([batch_a.prev] if use_t else []) + ([batch_a.far] if use_long else [])
            outs = self.g_ab(torch.cat(xs)).split(n)
            fake_b = outs[0]
            use_fc = use_t and lc.flow_cycle > 0
            recs = self.g_ba(torch.cat((fake_b, outs[1])) if use_fc else fake_b).split(n)
            rec_a = recs[0]
            fake_a = self.g_ba(real_b)
            rec_b = self.g_ab(fake_a)
            losses: dict[str, Tensor] = {
                "g_gan_b": gan_loss(self.d_b(fake_b), True, mode, for_d=False),
                "g_gan_a": gan_loss(self.d_a(fake_a), True, mode, for_d=False),
                "cycle_a": (rec_a.float() - real_a).abs().mean(),
                "cycle_b": (rec_b.float() - real_b).abs().mean(),
            }
            if self.d_fine is not None:
                losses["g_gan_fine"] = gan_loss(self.d_fine(fake_b), True, mode, for_d=False)
            if lc.identity > 0:
                losses["idt_b"] = (self.g_ab(real_b).float() - real_b).abs().mean()
                losses["idt_a"] = (self.g_ba(real_a).float() - real_a).abs().mean()
            if lc.shift > 0:
                dy, dx = (int(v) for v in torch.randint(1, 4, (2,), generator=self.gen))
                losses["shift"] = shift_loss(self.g_ab, real_a, fake_b, dy, dx)
            if lc.noise > 0:
                noise = sensor_noise(tuple(real_a.shape), lc.noise_sigma, lc.noise_blur, self.gen).to(real_a.device)
                losses["noise"] = noise_loss(self.g_ab, real_a, fake_b, noise)
            if lc.ringing > 0:
                edges, dist = step_edges(edge_colours(real_a.cpu(), self.gen), self.gen, max_sigma=lc.ringing_blur)
                pasted, dist, valid = paste_edges(real_a, edges.to(real_a.device), dist.to(real_a.device), self.gen)
                losses["ringing"] = ringing_loss(self.g_ab(pasted), dist, valid)
            if lc.texture > 0:
                losses["texture"] = texture_loss(fake_b, real_b, self.gen)
        if use_t:
            losses["temporal"] = temporal_loss(fake_b, outs[1], batch_a.flow, batch_a.mask, lc.temporal_slack, real_a, batch_a.prev)
        if use_fc:
            losses["flow_cycle"] = flow_cycle_loss(rec_a, recs[1], real_a, batch_a.prev, batch_a.mask)
        if use_long:
            losses["long_term"] = temporal_loss(fake_b, outs[-1], batch_a.far_flow, batch_a.far_mask,  # type: ignore[arg-type]
                                                lc.temporal_slack, real_a, batch_a.far)
        weights = {
            "g_gan_b": lc.gan, "g_gan_a": lc.gan, "g_gan_fine": lc.gan_fine, "cycle_a": lc.cycle, "cycle_b": lc.cycle,
            "idt_b": lc.cycle * lc.identity, "idt_a": lc.cycle * lc.identity,
            "temporal": lc.temporal, "long_term": lc.long_term, "shift": lc.shift,
            "noise": lc.noise, "ringing": lc.ringing, "texture": lc.texture, "flow_cycle": lc.flow_cycle,
        }  # fmt: skip
        loss_g = sum(weights[k] * v for k, v in losses.items())
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()  # type: ignore[union-attr]
        self._allreduce([self.g_ab, self.g_ba])
        self.opt_g.step()

        # D step. The G step also left gradients on D's weights; they are dropped here.
        self.opt_d.zero_grad(set_to_none=True)
        with self._autocast():
            old_b = self.pool_b.query(fake_b.detach().float(), self.gen)
            old_a = self.pool_a.query(fake_a.detach().float(), self.gen)
            d_b = 0.5 * (gan_loss(self.d_b(real_b), True, mode, for_d=True) + gan_loss(self.d_b(old_b), False, mode, for_d=True))
            d_a = 0.5 * (gan_loss(self.d_a(real_a), True, mode, for_d=True) + gan_loss(self.d_a(old_a), False, mode, for_d=True))
            d_loss = d_b + d_a
            if self.d_fine is not None:  # the same pooled fakes as d_b
                d_fine = 0.5 * (gan_loss(self.d_fine(real_b), True, mode, for_d=True) + gan_loss(self.d_fine(old_b), False, mode, for_d=True))
                d_loss = d_loss + d_fine
        d_loss.backward()
        self._allreduce(self.d_nets)
        self.opt_d.step()
        self.step += 1
        out = {k: v.detach() for k, v in losses.items()} | {"g_total": loss_g.detach(), "d_b": d_b.detach(), "d_a": d_a.detach()}  # type: ignore[union-attr]
        if self.d_fine is not None:
            out["d_fine"] = d_fine.detach()
        # One host sync per step for logging is fine here: training is not the real-time path.
        return {k: float(v) for k, v in out.items()}

    # ---------------------------------------------------------------- checkpoints


def machine_description(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda})"
    model = cpu_model()
    return f"{model}, {torch.get_num_threads()} torch thread(s) of {os.cpu_count()} cores"


class _MetricsCSV:
    """metrics.csv: one row per log interval, columns fixed by the first row (missing = blank)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.columns: list[str] | None = None
        if path.is_file():
            with path.open() as f:
                self.columns = next(csv.reader(f), None)

    def write(self, step: int, elapsed: float, lr: float, losses: Mapping[str, float]) -> None:
        row = {"step": step, "elapsed_s": f"{elapsed:.1f}", "lr": f"{lr:.3e}"} | {k: f"{v:.5f}" for k, v in losses.items()}
        new = self.columns is None
        if new:
            self.columns = list(row)
        with self.path.open("a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=self.columns, extrasaction="ignore")
            if new:
                w.writeheader()
            w.writerow(row)


def _progress(initial: int, total: int, enabled: bool) -> Any:
    from tqdm import tqdm

    # Not a terminal (nohup, CI): a line every minute rather than a redraw per step.
    interval = 0.1 if sys.stderr.isatty() else 60.0
    return tqdm(total=total, initial=initial, disable=not enabled, dynamic_ncols=True, mininterval=interval, desc="train")

