"""Frame <-> tensor conversion and size arithmetic shared by every stage.

Frames are ``np.ndarray`` of shape (H, W, 3), dtype uint8, RGB. Generator tensors are float
(N, 3, H, W) in [-1, 1].
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

# The generators downsample twice by 2, so H and W must be multiples of 4 to come back unchanged.
SIZE_MULTIPLE = 4


def fit_size(src_w: int, src_h: int, box: tuple[int, int] | None) -> tuple[int, int]:
    """The largest even (w, h) inside ``box`` with the source's aspect ratio (the source's own even size without a box)."""
    if src_w <= 0 or src_h <= 0:
        raise ValueError(f"invalid source size {src_w}x{src_h}")
    if box is None:
        w, h = src_w, src_h
    else:
        scale = min(box[0] / src_w, box[1] / src_h)
        w, h = round(src_w * scale), round(src_h * scale)
    return max(2, w - w % 2), max(2, h - h % 2)


def to_tensor(frame: np.ndarray, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(H, W, 3) uint8 -> (1, 3, H, W) in [-1, 1]."""
    t = torch.from_numpy(np.ascontiguousarray(frame)).to(device)
    return t.permute(2, 0, 1).unsqueeze(0).to(dtype).div_(127.5).sub_(1.0)


def to_frame(t: torch.Tensor) -> np.ndarray:
    """(1, 3, H, W) in [-1, 1] -> (H, W, 3) uint8."""
    x = t[0].float().add(1.0).mul_(127.5).round_().clamp_(0, 255).to(torch.uint8)
    return x.permute(1, 2, 0).contiguous().cpu().numpy()


def pad_to_multiple(x: torch.Tensor, multiple: int = SIZE_MULTIPLE) -> tuple[torch.Tensor, tuple[int, int]]:
    """Reflect-pad (N, C, H, W) on the bottom/right to multiples of ``multiple``; returns the original (H, W)."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        mode = "reflect" if h > ph and w > pw else "replicate"
        x = F.pad(x, (0, pw, 0, ph), mode=mode)
    return x, (h, w)
