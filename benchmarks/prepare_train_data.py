#!/usr/bin/env python3
"""Decode and pack the training data for a machine without PyAV or ../shared (the GPU lease).

    python benchmarks/prepare_train_data.py --out .gpu_data          # then carry .gpu_data

Videos become JPEG frame folders (long side at most --max-side), the paintings, photos and the
held-out evaluation clips are re-encoded as JPEG, and subsets are taken so that the folder stays
under the device tool's 64 MiB working-tree limit. The layout mirrors ../shared/data:
frames/<clip>/, paintings/<painter>/, photos/landscapes/, heldout/<clip>/. Sizes are printed.
"""

from __future__ import annotations

import argparse
import logging
import shutil
from pathlib import Path

import cv2
import numpy as np

from vst.cli import run_main, setup_logging
from vst.errors import VstError

log = logging.getLogger("vst.bench.prepare")

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
TRAIN_CLIPS = ("videos/bikes.mp4", "videos/bigbuckbunny.mp4", "frames/corridor_neuflow")
HELDOUT_CLIPS = ("videos/carphone_pristine.mp4", "frames/sintel_market")
PAINTERS = {"monet": ("paintings/monet/trainA", 600), "vangogh": ("paintings/vangogh/trainA", 0)}


def _frames(src: Path, limit: int) -> list[np.ndarray]:
    """BGR frames of a video file (PyAV, here) or an image folder."""
    if src.is_dir():
        files = sorted(p for p in src.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
        return [cv2.imread(str(p), cv2.IMREAD_COLOR) for p in files[: limit or None]]
    import av

    out = []
    with av.open(str(src)) as container:
        for frame in container.decode(video=0):
            out.append(frame.to_ndarray(format="bgr24"))
            if limit and len(out) >= limit:
                break
    return out


def _write(folder: Path, images: list[np.ndarray], max_side: int, quality: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(images):
        s = max_side / max(img.shape[:2])
        if s < 1:
            img = cv2.resize(img, (round(img.shape[1] * s), round(img.shape[0] * s)), interpolation=cv2.INTER_AREA)
        if not cv2.imwrite(str(folder / f"{i:05d}.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, quality]):
            raise VstError(f"cannot write {folder}")


def _subset(folder: Path, limit: int) -> list[np.ndarray]:
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    if limit and len(files) > limit:
        files = [files[i] for i in np.linspace(0, len(files) - 1, limit).round().astype(int)]
    return [cv2.imread(str(p), cv2.IMREAD_COLOR) for p in files]


def body() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--data", type=Path, default=DATA, help="the shared data folder (default ../shared/data)")
    p.add_argument("--max-side", type=int, default=640, help="long side of decoded frames (default 640)")
    p.add_argument("--photos", type=int, default=250, help="landscape photos to take (default 250)")
    p.add_argument("--frames", type=int, default=0, help="frames per clip (0 = all)")
    p.add_argument("--paintings", type=int, default=-1, help="paintings per painter (-1 = the defaults: monet 600, vangogh all)")
    args = p.parse_args()
    setup_logging(0)
    if not args.data.is_dir():
        raise VstError(f"data folder not found: {args.data}")
    if args.out.exists():
        shutil.rmtree(args.out)
    for rel in TRAIN_CLIPS:
        _write(args.out / "frames" / Path(rel).stem, _frames(args.data / rel, args.frames), args.max_side, 92)
    for rel in HELDOUT_CLIPS:
        _write(args.out / "heldout" / Path(rel).stem, _frames(args.data / rel, args.frames), args.max_side, 92)
    for painter, (rel, default) in PAINTERS.items():
        limit = default if args.paintings < 0 else args.paintings
        _write(args.out / "paintings" / painter, _subset(args.data / rel, limit), 256, 90)
    _write(args.out / "photos" / "landscapes", _subset(args.data / "photos/landscapes", args.photos), 256, 90)
    for sub in sorted(args.out.iterdir()):
        for d in sorted(sub.iterdir()):
            size = sum(f.stat().st_size for f in d.iterdir())
            log.info("%-32s %4d files %6.1f MiB", f"{sub.name}/{d.name}", len(list(d.iterdir())), size / 2**20)
    total = sum(f.stat().st_size for f in args.out.rglob("*") if f.is_file())
    log.info("total %.1f MiB in %s", total / 2**20, args.out)
    return 0


if __name__ == "__main__":
    run_main(body)
