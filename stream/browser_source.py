"""A source fed by a WebRTC viewer's camera (the 'browser' source of ``vst-stream``)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from vst.imaging import fit_size
from vst.stream.newest import OneSlot
from vst.stream.sources import Frame


class BrowserSource:
    """A live source fed by a WebRTC viewer's camera: ``push`` from the event loop, iterate in a thread.

    Holds only the newest ``av.VideoFrame``; conversion to RGB happens in the reading thread, off
    the event loop.
    """

    live = True

    def __init__(self, size: tuple[int, int], fps: float = 30.0) -> None:
        self.size = size
        self.fps = fps
        self._slot = OneSlot()
        self._closed = False
        self.publisher: str | None = None
        """Session id of the viewer whose camera is the input (the latest one wins)."""

    def push(self, frame: Any) -> None:
        self._slot.put(frame)

    def release(self, session_id: str) -> bool:
        """The publisher ``session_id`` left: forget it and its pending frame. True if it was the input."""
        if self.publisher != session_id:
            return False
        self.publisher = None
        self._slot.take(0)
        return True

    def __iter__(self) -> Iterator[Frame]:
        t0, n = time.monotonic(), 0
        while not self._closed:
            vf = self._slot.take(0.25)
            if vf is None:
                continue
            w, h = fit_size(vf.width, vf.height, self.size)
            image = vf.to_ndarray(width=w, height=h, format="rgb24")
            yield Frame(np.ascontiguousarray(image), time.monotonic() - t0, n)
            n += 1

    def close(self) -> None:
        self._closed = True
        self._slot.wake()
