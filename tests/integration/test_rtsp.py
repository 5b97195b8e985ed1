"""`vst-stream --source rtsp://...` against a real GStreamer RTSP camera, including a camera restart
mid-stream: the viewer keeps its session and the video resumes."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from .serving import ARTIFACTS, RtspCamera, VstServer, frames_decoded, free_port, have_rtsp_server, open_viewer, wait_until

pytestmark = [pytest.mark.browser, pytest.mark.rtsp]


@pytest.fixture(scope="module")
def camera() -> Iterator[RtspCamera]:
    if reason := have_rtsp_server():
        pytest.skip(reason)
    cam = RtspCamera(free_port())
    cam.start()
    yield cam
    cam.stop()


@pytest.fixture(scope="module")
def server(camera: RtspCamera, styles_dir: Path) -> Iterator[VstServer]:
    srv = VstServer(["--source", camera.url, "--size", "320x180", "--style", "compact-test"],
                    env={"VST_STYLES_DIR": str(styles_dir)}, log_name="test_rtsp")  # fmt: skip
    yield srv
    assert srv.stop() == 0


def _moving(page: Any) -> bool:
    a = np.array(page.evaluate("vst.grab()"), np.float32)
    time.sleep(0.6)
    b = np.array(page.evaluate("vst.grab()"), np.float32)
    return float(np.abs(a - b).mean()) > 0.5


def test_rtsp_plays_and_survives_camera_restart(chromium: Any, camera: RtspCamera, server: VstServer) -> None:
    page = open_viewer(chromium, server.url)
    try:
        n0 = frames_decoded(page)
        time.sleep(3)
        assert frames_decoded(page) - n0 >= 6, "RTSP stream not decoding"
        assert server.stats()["state"] == "running"
        session = page.evaluate("vst.sessionId")

        camera.stop()  # the camera drops
        assert wait_until(lambda: server.stats()["source_errors"] >= 1, 20), "server did not notice the dropped camera"
        # the pipeline applies state changes between frames: the error is counted a moment before
        assert wait_until(lambda: server.stats()["state"] != "running", 10), server.stats()["state"]
        assert server.stats()["viewers"] == 1
        n1 = frames_decoded(page)
        time.sleep(2)
        assert frames_decoded(page) > n1, "viewer got no status frames while the camera was down"
        page.screenshot(path=str(ARTIFACTS / "viewer_rtsp_down.png"))

        camera.start()  # same port: the server reconnects with backoff
        assert wait_until(lambda: server.stats()["reconnects"] >= 1 and server.stats()["state"] == "running", 30), server.stats()
        assert wait_until(lambda: _moving(page), 15), "video did not resume after the camera came back"
        n2 = frames_decoded(page)
        time.sleep(3)
        assert frames_decoded(page) - n2 >= 6
        assert page.evaluate("vst.sessionId") == session and page.evaluate("vst.state") == "connected"
        page.screenshot(path=str(ARTIFACTS / "viewer_rtsp.png"))
    finally:
        page.close(run_before_unload=True)
