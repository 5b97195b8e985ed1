"""Shared loaders for the MPI-Sintel ground-truth pairs in ../shared/data/flow/sintel_clean."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch

from vst.flow import read_flo

PAIRS = ("easy", "medium", "hard")


def load_pair(data: Callable[..., Path], level: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(frame 2, frame 3, GT flow 2->3, GT occlusion mask of frame 2 as bool)."""
    root = data("flow", "sintel_clean", level)
    rgb = [cv2.cvtColor(cv2.imread(str(root / f"frame_000{i}.png")), cv2.COLOR_BGR2RGB) for i in (2, 3)]
    occ = cv2.imread(str(root / "gt" / "occlusions" / "frame_0002.png"), cv2.IMREAD_GRAYSCALE) > 0
    return rgb[0], rgb[1], read_flo(root / "gt" / "frame_0002.flo"), occ


def nchw(a: np.ndarray) -> torch.Tensor:
    """(H, W, C) -> (1, C, H, W) float32."""
    return torch.from_numpy(np.ascontiguousarray(a)).float().permute(2, 0, 1).unsqueeze(0)
