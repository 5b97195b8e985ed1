"""Video sources: one small interface that yields RGB frames with timestamps.

    src = open_source("sample", size=(320, 180))
    for frame in src:          # Frame(image=(H, W, 3) uint8 RGB, pts=seconds, index=n)
        ...
    src.close()

Specs: a file path, ``rtsp://``/``rtsps://``/``http(s)://`` URLs (PyAV), ``webcam[:N][@WxH][/FPS]``
(OpenCV, since the PyAV wheel has no v4l2), ``testsrc`` (synthetic motion) and ``sample``
(the bundled clip). Frames are scaled to fit the requested size with the aspect ratio kept and
even dimensions (what yuv420 encoders need).

URLs with credentials: every message shows them redacted (``vst.redact``); ``conceal(spec)`` gives
a spec that is safe to show anywhere and that ``open_source`` still opens with the real one.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from vst.errors import SourceError
from vst.fileio import special_file_kind
from vst.imaging import fit_size
from vst.redact import redact_text, redact_url

log = logging.getLogger("vst.sources")

STREAM_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://", "rtmp://", "rtmps://", "srt://", "udp://", "rtp://", "tcp://")
MAX_FPS = 240.0
"""Highest frame rate a source may be asked to pace at (testsrc at 'nan' fps ran unpaced at 2000)."""

_CONCEALED: dict[str, str] = {}


def conceal(spec: str) -> str:
    """``spec`` with its credentials redacted, for configs, states, banners and logs.

    ``open_source`` maps the redacted spec back to the real one, so a pipeline can carry the
    redacted spec everywhere and still connect: the password then exists only here.
    """
    shown = redact_url(spec)
    if shown != spec:
        _CONCEALED[shown] = spec
    return shown


def check_fps(fps: float | None, what: str = "fps") -> float | None:
    """A frame rate in (0, MAX_FPS], or None; anything else (0, negative, NaN, inf) is a SourceError."""
    if fps is None:
        return None
    if isinstance(fps, bool) or not isinstance(fps, int | float) or not math.isfinite(fps) or not 0 < fps <= MAX_FPS:
        raise SourceError(f"{what} must be a number in (0, {MAX_FPS:g}], got {fps!r}")
    return float(fps)


def is_stream_url(spec: str) -> bool:
    return spec.lower().startswith(STREAM_SCHEMES)


@dataclass(frozen=True)
class Frame:
    """One decoded frame."""

    image: np.ndarray
    """(H, W, 3) uint8 RGB, C-contiguous."""
    pts: float
    """Presentation time in seconds since the source started (monotonic for live sources)."""
    index: int
    """0-based frame counter of this source."""


class Source(Protocol):
    """Anything that yields frames. ``close()`` releases the device/connection and is idempotent."""

    fps: float
    """Nominal frame rate (the stream's declared rate, or the requested one)."""
    size: tuple[int, int]
    """Output (width, height) of every frame."""
    live: bool
    """True for cameras and network streams: frames come at their own pace and may stop."""

    def __iter__(self) -> Iterator[Frame]: ...

    def close(self) -> None: ...


def sample_path() -> Path:
    return Path(str(resources.files("vst.assets") / "sample" / "bigbuckbunny_360p.mp4"))


class _Pacer:
    """Sleeps so that frames come out at their timestamps (for files and testsrc served live)."""

    def __init__(self) -> None:
        self.t0: float | None = None

    def wait(self, pts: float) -> None:
        now = time.monotonic()
        if self.t0 is None:
            self.t0 = now - pts
        delay = self.t0 + pts - now
        if delay > 0:
            time.sleep(delay)
        elif delay < -1.0:  # far behind (slow consumer): re-anchor instead of bursting
            self.t0 = now - pts


class AvSource:
    """A file or network stream decoded by PyAV.

    Network streams use TCP for RTSP by default and bounded open/read timeouts, so a dead camera
    raises ``SourceError`` instead of hanging.
    """

    live: bool

    def __init__(
        self,
        url: str,
        size: tuple[int, int] | None = None,
        *,
        loop: bool = False,
        realtime: bool = False,
        open_timeout: float = 8.0,
        read_timeout: float = 5.0,
        rtsp_transport: str = "tcp",
    ) -> None:

        self.url = url = _CONCEALED.get(url, url)
        self.name = redact_url(url)
        """What messages show: the URL with its credentials redacted."""
        self.live = is_stream_url(url)
        self.loop = loop and not self.live
        self.pacer = _Pacer() if realtime and not self.live else None
        self.timeouts = (open_timeout, read_timeout)
        options: dict[str, str] = {}
        if url.lower().startswith(("rtsp://", "rtsps://")):
            options = {"rtsp_transport": rtsp_transport, "timeout": str(int(read_timeout * 1e6))}
        elif self.live:
            options = {"rw_timeout": str(int(read_timeout * 1e6))}
        if not self.live:
            if "://" in url:
                raise SourceError(f"unsupported URL scheme in {self.name}: use {', '.join(s.rstrip(':/') for s in STREAM_SCHEMES)} or a file path")
            path = Path(url)
            if kind := special_file_kind(path):  # a FIFO or device would block the decoder forever
                raise SourceError(f"input {self.name} is {kind}, not a video file (cameras: --source webcam:N)")
            if not path.exists():
                raise SourceError(f"input not found: {self.name}")
            if path.is_dir():
                raise SourceError(f"input is a directory, not a video: {self.name}")
        self._open_args: dict[str, Any] = {"options": options, "timeout": (open_timeout, read_timeout)}
        self.container = self._open()
        self._closed = False
        try:
            stream = self.container.streams.video[0]
            cc = stream.codec_context
            if not cc.width or not cc.height:
                raise SourceError(f"{self.name}: the video stream has no frame size")
            self.fps = float(stream.average_rate or stream.guessed_rate or 25.0)
            if not math.isfinite(self.fps) or not 0 < self.fps <= 1000:
                self.fps = 25.0  # a broken header; the frames' own timestamps still pace playback
            self.frames_hint = int(stream.frames or 0)
            self.size = fit_size(cc.width, cc.height, size)
        except BaseException:
            self.close()
            raise

    def _open(self) -> Any:
        import av

        try:
            container = av.open(self.url, mode="r", **self._open_args)
        except av.error.ExitError:
            raise SourceError(f"timed out opening {self.name} (no answer within {self.timeouts[0]:g} s)") from None
        except (av.error.FFmpegError, OSError) as e:
            raise SourceError(f"cannot open {self.name}: {_av_reason(e)}") from None
        if not container.streams.video:
            container.close()
            raise SourceError(f"{self.name} has no video stream")
        container.streams.video[0].thread_type = "AUTO"
        return container

    def __iter__(self) -> Iterator[Frame]:
        import av

        index, offset, last_pts = 0, 0.0, 0.0
        w, h = self.size
        while not self._closed:
            stream = self.container.streams.video[0]
            try:
                for vf in self.container.decode(stream):
                    pts = float(vf.time) if vf.time is not None else index / self.fps
                    last_pts = pts + offset
                    if self.pacer:
                        self.pacer.wait(last_pts)
                    image = vf.to_ndarray(width=w, height=h, format="rgb24", interpolation="AREA")
                    yield Frame(np.ascontiguousarray(image), last_pts, index)
                    index += 1
            except av.error.ExitError:
                raise SourceError(f"read timed out on {self.name} (no data for {self.timeouts[1]:g} s)") from None
            except (av.error.FFmpegError, OSError) as e:
                if self._closed:
                    return
                raise SourceError(f"decoding {self.name} failed: {_av_reason(e)}") from None
            if index == 0:
                raise SourceError(f"{self.name} contains no decodable video frames")
            if not self.loop:
                return
            offset = last_pts + 1.0 / self.fps
            self.container.seek(0)

    def close(self) -> None:
        self._closed = True
        try:
            self.container.close()
        except Exception:  # closing a broken container must not mask the real error
            log.debug("error while closing %s", self.name, exc_info=True)


def _av_reason(e: BaseException) -> str:
    """FFmpeg's reason ('Connection refused', 'Server returned 404 Not Found'), without the URL it appends."""
    text = getattr(e, "strerror", None) or str(e)
    return " ".join(redact_text(str(text)).split())[:160]


class WebcamSource:
    """A local camera via OpenCV (V4L2 on Linux, AVFoundation on macOS, MSMF on Windows)."""

    live = True

    def __init__(self, index: int = 0, size: tuple[int, int] | None = None, fps: float | None = None,
                 capture_size: tuple[int, int] | None = None) -> None:  # fmt: skip
        import cv2

        if capture_size and not all(16 <= v <= 8192 for v in capture_size):
            raise SourceError(f"webcam mode {capture_size[0]}x{capture_size[1]} is out of range (16..8192 per side)")
        fps = check_fps(fps, "webcam frame rate")
        # OpenCV prints its own WARN lines for a missing camera; our one-line error says it better
        level = cv2.utils.logging.getLogLevel()
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
        try:
            self.cap = cv2.VideoCapture(index)
        finally:
            cv2.utils.logging.setLogLevel(level)
        if not self.cap.isOpened():
            raise SourceError(f"cannot open webcam {index} (is a camera attached and not in use?)")
        if capture_size:
            self.cap.set(cv2.CAP_PROP_FRAME_WIDTH, capture_size[0])
            self.cap.set(cv2.CAP_PROP_FRAME_HEIGHT, capture_size[1])
        if fps:
            self.cap.set(cv2.CAP_PROP_FPS, fps)
        ok, first = self.cap.read()
        if not ok or first is None:
            self.cap.release()
            raise SourceError(f"webcam {index} opened but delivers no frames")
        self._first: np.ndarray | None = first
        self.fps = float(fps or self.cap.get(cv2.CAP_PROP_FPS) or 30.0)
        self.size = fit_size(first.shape[1], first.shape[0], size)
        self.index = index

    def __iter__(self) -> Iterator[Frame]:
        import cv2

        t0, n = time.monotonic(), 0
        while self.cap.isOpened():
            if self._first is not None:
                bgr, self._first = self._first, None
            else:
                ok, bgr = self.cap.read()
                if not ok:
                    raise SourceError(f"webcam {self.index} stopped delivering frames")
            if (bgr.shape[1], bgr.shape[0]) != self.size:
                bgr = cv2.resize(bgr, self.size, interpolation=cv2.INTER_AREA)
            yield Frame(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), time.monotonic() - t0, n)
            n += 1

    def close(self) -> None:
        self.cap.release()


class TestSource:
    """Synthetic moving content: a drifting colour field with a bouncing disc and a sliding bar."""

    live = False
    __test__ = False  # not a pytest class

    def __init__(self, size: tuple[int, int] | None = None, fps: float = 30.0, frames: int | None = None,
                 realtime: bool = False) -> None:  # fmt: skip
        self.size = size or (640, 360)
        self.size = fit_size(*self.size, None)
        self.fps = check_fps(fps, "testsrc frame rate") or 30.0
        self.frames = frames
        self.pacer = _Pacer() if realtime else None
        w, h = self.size
        self._yy, self._xx = np.mgrid[0:h, 0:w].astype(np.float32)

    def render(self, n: int) -> np.ndarray:
        w, h = self.size
        t = n / self.fps
        xx, yy = self._xx, self._yy
        r = 127 + 100 * np.sin(xx / 37.0 + t * 1.3)
        g = 127 + 100 * np.sin(yy / 23.0 - t * 0.9)
        b = 127 + 100 * np.sin((xx + yy) / 51.0 + t * 2.1)
        img = np.stack([r, g, b], axis=-1)
        cx = w * (0.5 + 0.35 * np.sin(t * 1.7))
        cy = h * (0.5 + 0.35 * np.cos(t * 1.1))
        disc = (xx - cx) ** 2 + (yy - cy) ** 2 < (min(w, h) * 0.12) ** 2
        img[disc] = (250, 240, 40)
        bar = np.abs(xx - (t * w * 0.25) % w) < max(2, w // 40)
        img[bar] = (20, 20, 20)
        return img.clip(0, 255).astype(np.uint8)

    def __iter__(self) -> Iterator[Frame]:
        n = 0
        while self.frames is None or n < self.frames:
            pts = n / self.fps
            if self.pacer:
                self.pacer.wait(pts)
            yield Frame(self.render(n), pts, n)
            n += 1

    def close(self) -> None:
        pass


_WEBCAM = re.compile(r"^webcam(?::(\d+))?(?:@(\d+)x(\d+))?(?:/(\d+(?:\.\d+)?))?$")


def open_source(
    spec: str,
    size: tuple[int, int] | None = None,
    *,
    fps: float | None = None,
    loop: bool = False,
    realtime: bool = False,
) -> Source:
    """Open a source from its spec string (see module docstring).

    ``realtime`` paces files and testsrc at their frame rate (for serving); ``loop`` restarts files.
    A spec from ``conceal`` opens the real (unredacted) URL.
    """
    spec = _CONCEALED.get(spec, spec)
    fps = check_fps(fps)
    if not spec:
        raise SourceError("empty source: use webcam, rtsp://…, a file, testsrc or sample")
    if spec == "sample":
        return AvSource(str(sample_path()), size, loop=loop, realtime=realtime)
    if spec == "testsrc":
        return TestSource(size or (640, 360), fps or 30.0, realtime=realtime)
    if m := _WEBCAM.match(spec):
        index = int(m.group(1) or 0)
        if index > 63:
            raise SourceError(f"bad webcam index {index}: cameras are numbered 0, 1, 2…")
        cap = (int(m.group(2)), int(m.group(3))) if m.group(2) else None
        cam_fps = float(m.group(4)) if m.group(4) else fps
        return WebcamSource(index, size, cam_fps, cap)
    if spec.startswith("webcam"):
        raise SourceError(f"bad webcam spec {spec!r}: use webcam, webcam:N, webcam:N@1280x720 or webcam:N@1280x720/30")
    return AvSource(spec, size, loop=loop, realtime=realtime)
