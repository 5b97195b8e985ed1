"""``vst-train``: train a style (CycleGAN + temporal loss) or distill one into a compact student.

    vst-train --config monet_cpu --run runs/monet                  # bundled config by name
    vst-train --config my.toml --set loss.temporal=0 --set optim.steps=500 --run runs/ablation
    vst-train --run runs/monet --resume                            # continue (config from the run)
    vst-train --distill monet_big --config distill_cpu --run runs/monet_small
    torchrun --nproc_per_node=4 -m vst.train.cli --config x.toml --run runs/x   # DDP, same code
"""

from __future__ import annotations

import argparse
import logging
import signal
from pathlib import Path

from vst.cli import run_main, setup_logging
from vst.errors import VstError

from .config import CHECKPOINT, load_config

log = logging.getLogger("vst.train")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vst-train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="TOML file, or the name of a bundled config (e.g. monet_cpu); default: the seed recipe")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override one config value (TOML syntax; repeatable), e.g. --set loss.temporal=0")  # fmt: skip
    p.add_argument("--run", required=True, type=Path, help="run directory (config, metrics.csv, samples/, checkpoint)")
    p.add_argument("--resume", action="store_true", help="continue from RUN/checkpoint.safetensors (config from RUN/config.toml)")
    p.add_argument("--stop-after", type=int, default=0, metavar="N", help="stop (with a checkpoint) after N steps this session")
    p.add_argument("--init", type=Path, metavar="CHECKPOINT", help="start from another run's network weights (fresh optimiser and step)")
    p.add_argument("--distill", metavar="TEACHER", help="distill this style (name or path) into the config's compact student")
    p.add_argument("--a", dest="a_sources", action="append", metavar="PATH", help="domain A video/frame folder (repeatable; replaces the config's)")
    p.add_argument("--b", dest="b_dir", metavar="DIR", help="domain B paintings folder (replaces the config's)")
    p.add_argument("--no-progress", action="store_true", help="no tqdm bar")
    p.add_argument("-v", "--verbose", action="count", default=0)
    p.add_argument("-q", "--quiet", action="store_true")
    return p


def _sigterm_as_interrupt(signum: int, frame: object) -> None:
    # `kill PID` (and schedulers' preemption) should leave a checkpoint exactly like Ctrl-C does.
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    setup_logging(-1 if args.quiet else args.verbose)
    run_main(lambda: _train(args))


def _train(args: argparse.Namespace) -> int:
    run: Path = args.run
    overrides = list(args.overrides)
    if args.a_sources:
        overrides.append("data.a_sources=[" + ", ".join(f"'{s}'" for s in args.a_sources) + "]")
    if args.b_dir:
        overrides.append(f"data.b_dir='{args.b_dir}'")
    config = args.config
    if args.resume:
        if not (run / CHECKPOINT).is_file():
            raise VstError(f"--resume: no checkpoint in {run}")
        config = config or str(run / "config.toml")
    cfg = load_config(config, overrides)  # config errors before the slow torch import below
    signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    if args.distill:
        from .distill import DistillTrainer

        trainer = DistillTrainer(cfg, run, args.distill)
    else:
        from .trainer import CycleGANTrainer, init_distributed, pick_device

        trainer = CycleGANTrainer(cfg, run, dist_info=init_distributed(pick_device(cfg.run.device).type))
    if args.resume:
        trainer.load_checkpoint(run / CHECKPOINT)
    elif args.init:
        trainer.init_from(args.init)
    trainer.fit(progress=not args.no_progress, stop_after=args.stop_after)
    return 0


if __name__ == "__main__":
    main()
