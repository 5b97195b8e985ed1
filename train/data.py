"""Training data: domain A (video frames with cached flows, stills with synthetic motion), domain B (paintings).

Everything is decoded once, resized to the training size and kept in memory as uint8; a step
samples with a ``torch.Generator`` so a run is reproducible and resumable from the generator's
state alone (no DataLoader workers: on the 2-core training box they would only steal the core the
step needs, and the sets here are a few hundred MB at most).

Tensors handed to the trainer are float (N, 3, H, W) in [-1, 1]; flows (N, 2, H, W) in pixels
[dx, dy] on the *current* frame's grid pointing into the earlier frame (t -> t-k), so that
``vst.warp.backward_warp(G(x_{t-k}), flow)`` lines G(x_{t-k}) up with G(x_t); masks (N, 1, H, W)
in {0, 1}, 1 = visible in both frames.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from vst.errors import VstError
from vst.flow import DISFlow, read_flo
from vst.styles import cache_root
from vst.warp import backward_warp, consistency_mask

log = logging.getLogger("vst.train.data")

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
VIDEO_SUFFIXES = (".mp4", ".mkv", ".mov", ".avi", ".webm", ".m4v")


class DataError(VstError):
    """A training folder or file is missing, empty or unreadable."""


# ---------------------------------------------------------------------------------------- IO


def list_images(folder: Path) -> list[Path]:
    """Image files directly in ``folder``, sorted by name; a clear error when there are none."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise DataError(f"training folder not found: {folder}")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        subs = sorted(p.name for p in folder.iterdir() if p.is_dir())
        hint = f"; it has subfolders: {', '.join(subs[:5])}" if subs else ""
        raise DataError(f"training folder {folder} holds no images ({', '.join(IMAGE_SUFFIXES)}){hint}")
    return files


def read_rgb(path: Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB; palette PNGs and greyscale come back as RGB too."""
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise DataError(f"cannot read image {path}")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def resize(img: np.ndarray, w: int, h: int) -> np.ndarray:
    # INTER_AREA when shrinking avoids the aliasing that would otherwise teach the net to flicker.
    interp = cv2.INTER_AREA if w < img.shape[1] else cv2.INTER_CUBIC
    return cv2.resize(img, (w, h), interpolation=interp)


def read_video(path: Path, max_frames: int = 0) -> list[np.ndarray]:
    """Decode a video file's frames as RGB uint8 (all, or the first ``max_frames``)."""
    import av  # lazy: only video sources need it

    frames: list[np.ndarray] = []
    try:
        with av.open(str(path)) as container:
            for frame in container.decode(video=0):
                frames.append(frame.to_ndarray(format="rgb24"))
                if max_frames and len(frames) >= max_frames:
                    break
    except (av.error.FFmpegError, OSError) as e:  # type: ignore[attr-defined]
        raise DataError(f"cannot decode video {path}: {e}") from None
    if len(frames) < 2:
        raise DataError(f"video {path} has {len(frames)} frame(s); temporal pairs need at least 2")
    return frames


def to_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 (..., H, W, 3) or (N, 3, H, W) -> float in [-1, 1] (layout unchanged)."""
    return x.float().div_(127.5).sub_(1.0)


def _chw(frames: Sequence[np.ndarray]) -> torch.Tensor:
    """list of (H, W, 3) uint8 -> (N, 3, H, W) uint8."""
    return torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).contiguous()


# ------------------------------------------------------------------------------ domain B


def color_jitter(x: torch.Tensor, gen: torch.Generator, strength: float = 0.2) -> torch.Tensor:
    """Brightness, contrast and saturation jitter of a (3, H, W) [-1, 1] image."""
    b, c, s = (1.0 + strength * (2 * torch.rand(3, generator=gen) - 1)).tolist()
    x = x * b + (b - 1.0)  # brightness in [0,1] space, written in [-1,1]
    mean = x.mean()
    x = (x - mean) * c + mean
    grey = x.mean(dim=0, keepdim=True)
    x = (x - grey) * s + grey
    return x.clamp(-1.0, 1.0)


class ImageFolder:
    """Still images resized to ``load`` then randomly cropped to ``crop`` with flips (and jitter).

    The seed's painting pipeline: resize 286 -> random crop 256, horizontal flip, plus colour
    jitter on ``jitter_p`` of the samples.
    """

    def __init__(self, folder: Path | str, load: int, crop: int, jitter_p: float = 0.0, limit: int = 0) -> None:
        files = list_images(Path(folder))
        if limit:
            files = files[:limit]
        if crop > load:
            raise DataError(f"crop {crop} is larger than load size {load}")
        self.folder, self.load, self.crop, self.jitter_p = Path(folder), load, crop, jitter_p
        self.images = _chw([resize(read_rgb(p), load, load) for p in files])  # (N, 3, load, load) uint8
        log.info("loaded %d images from %s at %dpx", len(files), folder, load)

    def __len__(self) -> int:
        return self.images.shape[0]

    def crop_params(self, gen: torch.Generator) -> tuple[int, int, bool]:
        span = self.load - self.crop + 1
        y, x = torch.randint(span, (2,), generator=gen).tolist()
        return y, x, bool(torch.rand(1, generator=gen) < 0.5)

    def sample(self, n: int, gen: torch.Generator) -> torch.Tensor:
        """(n, 3, crop, crop) float in [-1, 1]."""
        out = []
        for i in torch.randint(len(self), (n,), generator=gen).tolist():
            y, x, flip = self.crop_params(gen)
            img = to_float(self.images[i, :, y : y + self.crop, x : x + self.crop])
            if flip:
                img = img.flip(-1)
            if torch.rand(1, generator=gen) < self.jitter_p:
                img = color_jitter(img, gen)
            out.append(img)
        return torch.stack(out)


# ------------------------------------------------------------------------------ domain A


@dataclass
class PairBatch:
    """Current frames with an earlier frame (short term) and optionally a far one (long term).

    cur, prev, far: (N, 3, H, W) float in [-1, 1]; flow, far_flow: (N, 2, H, W) cur -> earlier;
    mask, far_mask: (N, 1, H, W) float, 1 = valid.
    """

    cur: torch.Tensor
    prev: torch.Tensor
    flow: torch.Tensor
    mask: torch.Tensor
    far: torch.Tensor | None = None
    far_flow: torch.Tensor | None = None
    far_mask: torch.Tensor | None = None

    def to(self, device: torch.device) -> PairBatch:
        return PairBatch(*(t.to(device, non_blocking=True) if t is not None else None for t in self.__dict__.values()))


@dataclass
class _Sequence:
    """One video or frame folder at training size, with its cached pair flows."""

    name: str
    frames: torch.Tensor  # (T, 3, H, W) uint8
    pairs: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]
    """gap k -> (cur index (P,), flow (P, 2, H, W) fp16 cur -> cur-k, mask (P, 1, H, W) uint8)."""


def _source_key(path: Path, size: tuple[int, int], gaps: Sequence[int], max_frames: int, method: str) -> str:
    """Cache key: the source's identity (path, size on disk, mtime) and everything the flows depend on."""
    stats = [(str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in ([path] if path.is_file() else sorted(path.iterdir()))]
    text = repr((stats, size, sorted(gaps), max_frames, method))
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def _pair_flows(frames: list[np.ndarray], gap: int, flow: DISFlow) -> tuple[np.ndarray, np.ndarray]:
    """DIS flows cur -> cur-gap with Sundaram forward-backward masks, for every cur >= gap."""
    flows, masks = [], []
    for t in range(gap, len(frames)):
        back = flow(frames[t], frames[t - gap])  # cur -> earlier: what we warp with
        fwd = flow(frames[t - gap], frames[t])
        fb = torch.from_numpy(back).permute(2, 0, 1)[None]
        ff = torch.from_numpy(fwd).permute(2, 0, 1)[None]
        masks.append(consistency_mask(fb, ff)[0].to(torch.uint8).numpy())
        flows.append(back.transpose(2, 0, 1).astype(np.float16))
    return np.stack(flows), np.stack(masks)


def _gt_pairs(folder: Path, names: list[str], size: tuple[int, int]) -> dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Ground-truth pairs from ``gt/<frame>.flo`` (flow frame -> next, Sintel layout).

    A forward flow t -> t+1 is exactly what warps frame t+1 onto frame t, so each GT file gives
    the pair (cur = t, earlier = t+1): the temporal loss does not care which way time runs.
    Returns {-1: (cur indices, flows, masks)} with gap -1 meaning "the next frame".
    """
    cur, flows, masks = [], [], []
    w, h = size
    for i, name in enumerate(names[:-1]):
        flo = folder / "gt" / f"{Path(name).stem}.flo"
        if not flo.is_file():
            continue
        f = read_flo(flo)
        fh, fw = f.shape[:2]
        f = cv2.resize(f, (w, h), interpolation=cv2.INTER_LINEAR) * np.array([w / fw, h / fh], np.float32)
        valid = np.ones((fh, fw), np.uint8)
        for sub in ("occlusions", "invalid"):
            m = folder / "gt" / sub / f"{Path(name).stem}.png"
            if m.is_file():
                valid &= (cv2.imread(str(m), cv2.IMREAD_GRAYSCALE) < 128).astype(np.uint8)
        cur.append(i)
        flows.append(f.transpose(2, 0, 1).astype(np.float16))
        masks.append(cv2.resize(valid, (w, h), interpolation=cv2.INTER_NEAREST)[None])
    if not cur:
        return {}
    return {-1: (np.array(cur), np.stack(flows), np.stack(masks))}


def load_sequence(
    path: Path, size: tuple[int, int], gaps: Sequence[int], max_frames: int = 0, use_cache: bool = True
) -> _Sequence:
    """Decode a video file or frame folder at ``size`` (w, h), no crop, and get its pair flows.

    Flows are computed once with DIS (at twice the training size, for sub-pixel accuracy at the
    training size) and cached under ``$VST_CACHE_DIR/flows`` (default ``~/.cache/vst/flows``).
    A folder with Sintel-style ``gt/*.flo`` files uses those instead for the pairs they cover.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        files = list_images(path)[: max_frames or None]
        raw = [read_rgb(p) for p in files]
        names = [p.name for p in files]
    elif path.is_file():
        raw, names = read_video(path, max_frames), []
    else:
        raise DataError(f"training video or frame folder not found: {path}")
    if len(raw) < 2:
        raise DataError(f"{path} has {len(raw)} frame(s); temporal pairs need at least 2")
    w, h = size
    frames = [resize(f, w, h) for f in raw]
    method = "dis-medium@2x"
    key = _source_key(path, size, gaps, max_frames, method)
    cache = cache_root() / "flows" / f"{path.name}-{key}.npz"
    pairs: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
    if use_cache and cache.is_file():
        with np.load(cache) as z:
            for k in gaps:
                if f"flow{k}" in z:
                    pairs[k] = (torch.from_numpy(z[f"cur{k}"]), torch.from_numpy(z[f"flow{k}"]), torch.from_numpy(z[f"mask{k}"]))
        log.info("%s: %d frames, flows from cache %s", path.name, len(frames), cache)
    else:
        flow = DISFlow("medium", scale=0.5)
        big = [resize(f, 2 * w, 2 * h) for f in raw]
        arrays: dict[str, np.ndarray] = {}
        for k in gaps:
            if k >= len(frames):
                continue
            fl, mk = _pair_flows(big, k, flow)
            # Flow computed on the 2x frames: halve the grid and the vectors.
            fl = F.avg_pool2d(torch.from_numpy(fl).float(), 2).mul_(0.5).half().numpy()
            mk = (F.avg_pool2d(torch.from_numpy(mk).float(), 2) > 0.99).to(torch.uint8).numpy()
            arrays |= {f"cur{k}": np.arange(k, len(frames)), f"flow{k}": fl, f"mask{k}": mk}
            pairs[k] = (torch.from_numpy(arrays[f"cur{k}"]), torch.from_numpy(fl), torch.from_numpy(mk))
        if use_cache:
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_name(f".{cache.stem}.{os.getpid()}.npz")  # torchrun ranks may race here
            np.savez(tmp, **arrays)
            os.replace(tmp, cache)
        log.info("%s: %d frames, DIS flows for gaps %s computed and cached in %s", path.name, len(frames), list(gaps), cache)
    if names:
        for k, (c, fl, mk) in _gt_pairs(path, names, size).items():
            pairs[k] = (torch.from_numpy(c), torch.from_numpy(fl), torch.from_numpy(mk))
    return _Sequence(path.name, _chw(frames), pairs)


# ------------------------------------------------------------------------- synthetic motion


def smooth_flow(n: int, h: int, w: int, max_px: float, gen: torch.Generator, grid: int = 4) -> torch.Tensor:
    """A random smooth flow (N, 2, H, W): affine camera motion plus a bicubic-upsampled coarse field.

    Magnitudes stay within about ``max_px`` pixels.
    """
    ys = torch.linspace(-1, 1, h).view(1, h, 1)
    xs = torch.linspace(-1, 1, w).view(1, 1, w)
    p = (2 * torch.rand(n, 6, generator=gen) - 1).view(n, 6, 1, 1)
    # translation + small zoom/rotation, in pixels at the border
    dx = p[:, 0] * 0.5 + (p[:, 1] * xs - p[:, 2] * ys) * 0.25
    dy = p[:, 3] * 0.5 + (p[:, 1] * ys + p[:, 2] * xs) * 0.25
    coarse = (2 * torch.rand(n, 2, grid, grid, generator=gen) - 1) * 0.35
    local = F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=True)
    return (torch.stack((dx, dy), 1) + local) * max_px


def synthetic_pair(
    img: torch.Tensor, max_px: float, gen: torch.Generator, filler: torch.Tensor | None = None, obj_p: float = 0.5
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Make a moved copy of ``img`` whose flow and occlusion are known exactly.

    img: (N, 3, H, W) float, treated as the earlier frame. Returns (cur, flow cur -> img, mask):
    cur = backward_warp(img, flow) wherever mask = 1. With probability ``obj_p`` a rectangle
    moves with its own translation on top of the background motion; background that it covered
    in ``img`` and uncovers in ``cur`` has no source and is filled from ``filler`` (another image)
    with mask 0, as are pixels whose source lies outside the frame.
    """
    n, _, h, w = img.shape
    flow = smooth_flow(n, h, w, max_px, gen)
    yy = torch.arange(h, dtype=img.dtype).view(1, 1, h, 1)
    xx = torch.arange(w, dtype=img.dtype).view(1, 1, 1, w)
    obj_prev = torch.zeros(n, 1, h, w)  # where the object sits in the earlier frame
    obj_cur = torch.zeros(n, 1, h, w)
    for i in range(n):
        if torch.rand(1, generator=gen) >= obj_p:
            continue
        bw, bh = (torch.randint(w // 6, w // 2, (1,), generator=gen).item(), torch.randint(h // 6, h // 2, (1,), generator=gen).item())
        x0 = torch.randint(0, w - bw, (1,), generator=gen).item()
        y0 = torch.randint(0, h - bh, (1,), generator=gen).item()
        d = (2 * torch.rand(2, generator=gen) - 1) * 1.5 * max_px  # object motion, earlier - cur
        inside = ((xx >= x0) & (xx < x0 + bw) & (yy >= y0) & (yy < y0 + bh)).to(img.dtype)[0]
        obj_cur[i] = inside
        flow[i] = flow[i] * (1 - inside) + d.view(2, 1, 1) * inside
        ox, oy = x0 + d[0].item(), y0 + d[1].item()
        obj_prev[i] = ((xx >= ox) & (xx < ox + bw) & (yy >= oy) & (yy < oy + bh)).to(img.dtype)[0]
    cur = backward_warp(img, flow)
    src_x = xx + flow[:, :1]
    src_y = yy + flow[:, 1:]
    mask = ((src_x >= 0) & (src_x <= w - 1) & (src_y >= 0) & (src_y <= h - 1)).to(img.dtype)
    # Background pixels of cur whose source was under the object in the earlier frame: occluded there.
    hidden = backward_warp(obj_prev, flow, mode="nearest") * (1 - obj_cur)
    mask = mask * (1 - hidden)
    if filler is not None:
        cur = cur * mask + filler * (1 - mask)
    return cur, flow, mask


# ---------------------------------------------------------------------------- domain A


class DomainA:
    """Temporal pairs from videos / frame folders (cached flows) and from stills (synthetic motion).

    ``still_p`` of each batch comes from the stills; the rest from the sequences. Stills are
    resized to ``still_load`` and cropped to the frame size (w, h); frames are resized, no crop.
    """

    def __init__(
        self,
        sources: Sequence[Path | str],
        size: tuple[int, int],
        stills: Sequence[Path | str] = (),
        still_p: float = 0.0,
        long_gap: int = 0,
        synth_max_px: float = 4.0,
        max_frames: int = 0,
        use_cache: bool = True,
    ) -> None:
        if not sources and not stills:
            raise DataError("domain A is empty: give at least one video, frame folder or still folder")
        w, h = size
        if w % 4 or h % 4:
            raise DataError(f"frame size {w}x{h} must be a multiple of 4 (the generators downsample twice)")
        self.size, self.long_gap, self.synth_max_px = size, long_gap, synth_max_px
        gaps = [1] + ([long_gap] if long_gap > 1 else [])
        self.seqs = [load_sequence(Path(s), size, gaps, max_frames, use_cache) for s in sources]
        # Every short-term pair: (sequence, gap key 1 = DIS / -1 = GT next frame, position).
        self.index: list[tuple[int, int, int]] = [
            (si, k, j) for si, seq in enumerate(self.seqs) for k in (1, -1) if k in seq.pairs for j in range(len(seq.pairs[k][0]))
        ]
        n_long = sum(len(s.pairs[long_gap][0]) for s in self.seqs if long_gap > 1 and long_gap in s.pairs)
        self.stills: ImageFolder | None = None
        if stills:
            folders = [ImageFolder(Path(f), max(w, h) + max(w, h) // 8, max(w, h)) for f in stills]
            self.stills = folders[0]
            if len(folders) > 1:
                self.stills.images = torch.cat([f.images for f in folders])
        self.still_p = still_p if self.stills is not None else 0.0
        if not self.index:
            if self.stills is None:
                raise DataError("domain A has no frame pairs and no stills")
            self.still_p = 1.0
        log.info(
            "domain A: %d sequences (%d short-term pairs, %d long-term), %d stills (p=%.2f)",
            len(self.seqs), len(self.index), n_long,
            len(self.stills) if self.stills else 0, self.still_p,
        )  # fmt: skip

    def all_frames(self) -> torch.Tensor:
        """Every sequence frame, (T, 3, H, W) uint8 (for sample grids)."""
        return torch.cat([s.frames for s in self.seqs]) if self.seqs else self.stills.images[:8, :, : self.size[1], : self.size[0]]  # type: ignore[union-attr]

    def _from_sequence(self, gen: torch.Generator) -> tuple[torch.Tensor, ...]:
        """(cur, earlier, flow, mask, far, far_flow, far_mask); the far triple is None when the
        sequence has no long-term pair for this frame."""
        si, k, j = self.index[int(torch.randint(len(self.index), (1,), generator=gen))]
        seq = self.seqs[si]
        c, fl, mk = seq.pairs[k]
        ci = int(c[j])
        ei = ci - 1 if k == 1 else ci + 1
        out: list[torch.Tensor | None] = [to_float(seq.frames[ci]), to_float(seq.frames[ei]), fl[j].float(), mk[j].float()]
        g = self.long_gap
        if g > 1 and g in seq.pairs and ci >= g:
            _, flk, mkk = seq.pairs[g]
            out += [to_float(seq.frames[ci - g]), flk[ci - g].float(), mkk[ci - g].float()]
        else:
            out += [None, None, None]
        return tuple(out)  # type: ignore[arg-type]

    def _from_still(self, gen: torch.Generator) -> tuple[torch.Tensor, ...]:
        assert self.stills is not None
        w, h = self.size
        i, f = torch.randint(len(self.stills), (2,), generator=gen).tolist()
        load = self.stills.load
        y, x = torch.randint(load - h + 1, (1,), generator=gen).item(), torch.randint(load - w + 1, (1,), generator=gen).item()
        earlier = to_float(self.stills.images[i, :, y : y + h, x : x + w])[None]
        filler = to_float(self.stills.images[f, :, :h, :w])[None]
        cur, flow, mask = synthetic_pair(earlier, self.synth_max_px, gen, filler)
        return cur[0], earlier[0], flow[0], mask[0], None, None, None

    def sample(self, n: int, gen: torch.Generator) -> PairBatch:
        """``n`` pairs; when ``long_gap`` > 1 also the far frames (zero mask where an item has none)."""
        cols: list[list[torch.Tensor]] = [[] for _ in range(7)]
        for _ in range(n):
            still = bool(torch.rand(1, generator=gen) < self.still_p)
            item = list(self._from_still(gen) if still else self._from_sequence(gen))
            if item[4] is None:  # no long-term partner: reuse the earlier frame, masked out
                item[4:] = [item[1], item[2], torch.zeros_like(item[3])]
            if torch.rand(1, generator=gen) < 0.5:  # mirror the whole item; flows' dx change sign
                item = [t.flip(-1) for t in item]
                for fi in (2, 5):
                    item[fi] = item[fi] * torch.tensor([-1.0, 1.0]).view(2, 1, 1)
            for col, t in zip(cols, item, strict=True):
                col.append(t)
        cur, prev, flow, mask, far, far_flow, far_mask = (torch.stack(c) for c in cols)
        if self.long_gap > 1:
            return PairBatch(cur, prev, flow, mask, far, far_flow, far_mask)
        return PairBatch(cur, prev, flow, mask)
