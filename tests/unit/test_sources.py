"""Sources on the real videos: counts, rates, sizes, looping, pacing and dead streams."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from itertools import islice

import numpy as np
import pytest

from vst.errors import SourceError
from vst.imaging import fit_size
from vst.stream.sources import AvSource, TestSource, open_source


def test_bikes_all_frames_with_timestamps(data) -> None:  # noqa: ANN001
    src = open_source(str(data("videos", "bikes.mp4")))
    frames = list(src)
    assert len(frames) == 250 and src.fps == 25.0
    assert frames[0].image.shape == (272, 640, 3) and frames[0].image.dtype == np.uint8
    pts = np.array([f.pts for f in frames])
    assert np.allclose(np.diff(pts), 1 / 25, atol=1e-3)
    assert [f.index for f in frames] == list(range(250))
    # Real content: consecutive frames differ, but not wildly.
    diff = np.abs(frames[10].image.astype(int) - frames[11].image).mean()
    assert 0.5 < diff < 40


def test_resize_keeps_aspect_and_even_sizes(data) -> None:  # noqa: ANN001
    src = open_source(str(data("videos", "carphone_pristine.mp4")), size=(101, 101))  # odd box
    first = next(iter(src))
    src.close()
    h, w = first.image.shape[:2]
    assert (w, h) == src.size and w % 2 == 0 and h % 2 == 0
    assert abs(w / h - 176 / 144) < 0.03


@pytest.mark.parametrize(("src", "box", "want"), [((640, 272), (320, 180), (320, 136)), ((176, 144), None, (176, 144)), ((1023, 435), (1023, 435), (1022, 434))])
def test_fit_size(src: tuple[int, int], box: tuple[int, int] | None, want: tuple[int, int]) -> None:
    assert fit_size(*src, box) == want


def test_loop_restarts_with_increasing_timestamps(data) -> None:  # noqa: ANN001
    src = open_source(str(data("videos", "carphone_pristine.mp4")), size=(88, 72), loop=True)
    frames = list(islice(iter(src), 130))
    src.close()
    assert len(frames) == 130
    assert np.all(np.diff([f.pts for f in frames]) > 0)
    assert np.array_equal(frames[0].image, frames[120].image)  # the same first frame again


def test_sample_is_bundled_and_realtime_paced() -> None:
    src = open_source("sample", size=(160, 90), realtime=True)
    t0 = time.monotonic()
    frames = list(islice(iter(src), 13))
    elapsed = time.monotonic() - t0
    src.close()
    assert frames[0].image.shape == (90, 160, 3)
    assert 0.40 <= elapsed < 1.5  # 12 intervals at 25 fps = 0.48 s


def test_testsrc_moves() -> None:
    a, b = islice(iter(TestSource((64, 48), fps=30)), 2)
    assert a.image.shape == (48, 64, 3)
    assert np.abs(a.image.astype(int) - b.image).mean() > 1


def test_missing_and_non_video_inputs(tmp_path) -> None:  # noqa: ANN001
    with pytest.raises(SourceError, match="not found"):
        open_source(str(tmp_path / "nope.mp4"))
    junk = tmp_path / "notes.mp4"
    junk.write_text("this is not a video\n" * 50)
    with pytest.raises(SourceError, match="cannot open"):
        open_source(str(junk))
    with pytest.raises(SourceError, match="directory"):
        open_source(str(tmp_path))


@pytest.fixture
def silent_rtsp_port() -> Iterator[int]:
    """A local TCP server that accepts connections and never answers: a hung camera."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    conns: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                conns.append(srv.accept()[0])
            except OSError:
                pass

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield srv.getsockname()[1]
    stop.set()
    t.join()
    for c in conns:
        c.close()
    srv.close()


def test_dead_rtsp_times_out_within_10s(silent_rtsp_port: int) -> None:
    t0 = time.monotonic()
    with pytest.raises(SourceError, match="timed out|cannot open"):
        AvSource(f"rtsp://127.0.0.1:{silent_rtsp_port}/cam", open_timeout=3.0, read_timeout=3.0)
    assert time.monotonic() - t0 < 10


def test_refused_rtsp_is_immediate() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nothing listens there
    t0 = time.monotonic()
    with pytest.raises(SourceError, match="cannot open"):
        open_source(f"rtsp://127.0.0.1:{port}/cam")
    assert time.monotonic() - t0 < 5


def test_bad_webcam_spec() -> None:
    with pytest.raises(SourceError, match="bad webcam spec"):
        open_source("webcam:x")
