"""``vst-train --distill TEACHER``: a compact student learns to reproduce a teacher style.

Loss = L1(student, teacher) + edge · L1(Sobel(student), Sobel(teacher)) + the temporal losses on
the student's outputs. The teacher's outputs are made on the fly (no_grad), on the same domain-A
frames and synthetic-motion stills the CycleGAN trainer uses; no paintings are needed. This is how
a full-size (GPU) style becomes a CPU real-time style.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import Tensor

from vst.errors import VstError
from vst.models import build_generator, init_weights
from vst.styles import load_generator, resolve_style

from .config import TrainConfig
from .data import DomainA, PairBatch
from .losses import edge_loss, temporal_loss
from .trainer import Dist, TrainerBase

log = logging.getLogger("vst.train.distill")


class DistillTrainer(TrainerBase):
    """Student ``g_ab`` (the config's generator, usually 'compact') against a frozen teacher style."""

    net_names = ("g_ab",)
    opt_names = ("opt_g",)
    description = "distillation (L1 + edge + temporal)"

    def __init__(
        self, cfg: TrainConfig, run_dir: Path, teacher: str, a: DomainA | None = None, dist_info: Dist | None = None
    ) -> None:
        self._setup(cfg, run_dir, a, dist_info)
        style = resolve_style(teacher)
        if style.kind != "torch":
            raise VstError(f"--distill needs a torch (.safetensors) teacher; {style.name!r} is {style.kind}")
        self.teacher_name = style.name
        self.teacher = load_generator(style).to(self.device).eval().requires_grad_(False)
        self.spec_ab = cfg.generator_spec()
        self.g_ab = init_weights(build_generator(self.spec_ab), seed=cfg.run.seed).to(self.device)
        self._setup_ema()
        o = cfg.optim
        self.opt_g = torch.optim.Adam(self.g_ab.parameters(), lr=o.lr, betas=(o.beta1, o.beta2))
        log.info("distilling %s (%s) into %s", style.name, style.spec.arch, self.spec_ab)

    def sample_batch(self) -> tuple[PairBatch]:
        return (self.a.sample(self.cfg.optim.batch, self.gen).to(self.device),)

    def train_step(self, batch: PairBatch) -> dict[str, float]:  # type: ignore[override]
        lc = self.cfg.loss
        for group in self.opt_g.param_groups:
            group["lr"] = self.lr_at(self.step)
        n = batch.cur.shape[0]
        use_t = lc.temporal > 0
        use_long = lc.long_term > 0 and batch.far is not None
        with self._autocast():
            with torch.no_grad():
                target = self.teacher(batch.cur).float()
            xs = [batch.cur] + ([batch.prev] if use_t else []) + ([batch.far] if use_long else [])
            outs = self.g_ab(torch.cat(xs)).float().split(n)
        out = outs[0]
        losses: dict[str, Tensor] = {"l1": (out - target).abs().mean(), "edge": edge_loss(out, target)}
        if use_t:
            losses["temporal"] = temporal_loss(out, outs[1], batch.flow, batch.mask)
        if use_long:
            losses["long_term"] = temporal_loss(out, outs[-1], batch.far_flow, batch.far_mask)  # type: ignore[arg-type]
        weights = {"l1": 1.0, "edge": lc.edge, "temporal": lc.temporal, "long_term": lc.long_term}
        total = sum(weights[k] * v for k, v in losses.items())
        self.opt_g.zero_grad(set_to_none=True)
        total.backward()  # type: ignore[union-attr]
        self._allreduce([self.g_ab])
        self.opt_g.step()
        self.step += 1
        return {k: float(v.detach()) for k, v in losses.items()} | {"g_total": float(total.detach())}  # type: ignore[union-attr]

    def export_style(self, directory: Path, name: str, extra: dict | None = None):  # type: ignore[no-untyped-def, override]
        return super().export_style(directory, name, {"distilled_from": self.teacher_name, **(extra or {})})
