"""What the pipeline draws onto outputs: the latency stamp and the visible error/status banner."""

from __future__ import annotations

import cv2
import numpy as np

STAMP_BITS = 24
"""Latency stamp: bits of (capture wall-clock ms mod 2**24), after a white+black sync pair."""
STAMP_BLOCKS = STAMP_BITS + 2
STAMP_HEIGHT = 12


def stamp_time(image: np.ndarray, ms: int) -> None:
    """Write ``ms mod 2**24`` as black/white blocks across the top rows of ``image`` (in place)."""
    h, w = image.shape[:2]
    bw = w // (STAMP_BLOCKS + 2)
    if bw < 4 or h < STAMP_HEIGHT * 2:
        return
    bits = [1, 0] + [(ms >> (STAMP_BITS - 1 - i)) & 1 for i in range(STAMP_BITS)]
    for i, b in enumerate(bits):
        image[:STAMP_HEIGHT, i * bw : (i + 1) * bw] = 255 if b else 0


def read_stamp(image: np.ndarray) -> int | None:
    """Inverse of ``stamp_time`` (None when the sync pair is not there)."""
    w = image.shape[1]
    bw = w // (STAMP_BLOCKS + 2)
    if bw < 4:
        return None
    y = STAMP_HEIGHT // 2
    lum = [int(image[y, i * bw + bw // 2].mean()) for i in range(STAMP_BLOCKS)]
    if lum[0] < 128 or lum[1] >= 128:
        return None
    value = 0
    for v in lum[2:]:
        value = (value << 1) | (v >= 128)
    return value


def banner(image: np.ndarray, text: str, colour: tuple[int, int, int] = (200, 30, 30)) -> np.ndarray:
    """A dimmed copy of ``image`` with ``text`` on a coloured bar: the visible error state."""
    out = (image.astype(np.uint16) * 2 // 5).astype(np.uint8)
    h, w = out.shape[:2]
    bar = max(18, h // 8)
    y0 = h // 2 - bar // 2
    out[y0 : y0 + bar] = colour
    scale = max(0.35, min(1.2, w / 900))
    cv2.putText(out, text[:60], (6, y0 + bar * 2 // 3), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return out
