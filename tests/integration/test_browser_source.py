"""`vst-stream --source browser`: Chromium's fake camera goes up, comes back stylized."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .serving import ARTIFACTS, VstServer, frames_decoded, open_viewer, wait_until

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def server(styles_dir: Path) -> Iterator[VstServer]:
    srv = VstServer(["--source", "browser", "--size", "320x180", "--style", "compact-test", "--bitrate", "1500"],
                    env={"VST_STYLES_DIR": str(styles_dir)}, log_name="test_browser_source")  # fmt: skip
    yield srv
    assert srv.stop() == 0


def test_fake_camera_round_trip(chromium: Any, server: VstServer) -> None:
    s0 = server.stats()
    assert s0["state"].startswith("waiting") and s0["frames_in"] == 0
    page = open_viewer(chromium, server.url)
    try:
        assert wait_until(lambda: server.stats()["frames_in"] > 10, 30), "no camera frames reached the server"
        s1, n1 = server.stats(), frames_decoded(page)
        time.sleep(3)
        s2, n2 = server.stats(), frames_decoded(page)
        assert s2["publishers"] == 1 and s2["state"] == "running"
        assert s2["frames_inferred"] - s1["frames_inferred"] >= 6
        assert n2 - n1 >= 6, "stylized camera frames did not come back"
        assert s2["size"] == [320, 180]
        page.screenshot(path=str(ARTIFACTS / "viewer_browser_source.png"))
    finally:
        page.close(run_before_unload=True)
    assert wait_until(lambda: server.stats()["viewers"] == 0, 15)
    # the pipeline applies state changes between frames: the camera's departure shows a moment later
    assert wait_until(lambda: server.stats()["state"].startswith("waiting"), 10), server.stats()["state"]
