"""The viewer in a real Chromium against `vst-stream --source sample`: playback, stats, style switch,
four viewers on one inference, abuse of every endpoint while a viewer keeps playing."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from .serving import ARTIFACTS, TOKEN, VstServer, frames_decoded, open_viewer, wait_until

pytestmark = pytest.mark.browser

MAX_VIEWERS = 4


@pytest.fixture(scope="module")
def server(styles_dir: Path) -> Iterator[VstServer]:
    srv = VstServer(
        ["--source", "sample", "--size", "320x180", "--fps", "30", "--style", "monet",
         "--token", TOKEN, "--max-viewers", str(MAX_VIEWERS)],  # fmt: skip
        env={"VST_STYLES_DIR": str(styles_dir)},
        log_name="test_viewer_sample",
    )
    yield srv
    assert srv.stop() == 0, "vst-stream did not exit cleanly on SIGTERM"


@pytest.fixture(scope="module")
def viewer(chromium: Any, server: VstServer) -> Iterator[Any]:
    page = open_viewer(chromium, server.url)
    yield page
    page.close(run_before_unload=True)


def test_viewer_decodes_frames_and_screenshot(viewer: Any, server: VstServer) -> None:
    n0 = frames_decoded(viewer)
    time.sleep(4)
    n1 = frames_decoded(viewer)
    assert n1 - n0 >= 8, f"only {n1 - n0} frames decoded in 4 s"
    wait_until(lambda: viewer.evaluate("vst.stats.width") > 0, 5)
    st = viewer.evaluate("vst.stats")
    assert (st["width"], st["height"]) == (320, 180)
    assert viewer.evaluate("vst.state") == "connected"
    overlay = viewer.inner_text("#overlay")
    assert "fps" in overlay and "kbit/s" in overlay and "jitter" in overlay
    ARTIFACTS.mkdir(exist_ok=True)
    viewer.screenshot(path=str(ARTIFACTS / "viewer_sample.png"))
    assert (ARTIFACTS / "viewer_sample.png").stat().st_size > 5000


def test_stats_endpoint(viewer: Any, server: VstServer) -> None:
    s = server.stats()
    for key in ("source_fps", "inference_ms", "viewers", "dropped_frames", "engine_errors", "cpu_percent", "state"):
        assert key in s, key
    assert s["state"] == "running"
    assert s["viewers"] >= 1
    assert s["source_fps"] > 24, f"source paced at {s['source_fps']} fps, asked for 30"
    assert s["inference_ms"] is not None and s["inference_ms"] > 0
    assert s["engine_errors"] == 0 and s["track_errors"] == 0


def _palette(page: Any) -> np.ndarray:
    """Per-channel mean and std of the stylized picture: a style changes these, motion barely does."""
    px = np.array(page.evaluate("vst.grab()"), dtype=np.float32).reshape(-1, 4)[:, :3]
    return np.concatenate([px.mean(0), px.std(0)])


def test_style_switch_changes_output(viewer: Any, server: VstServer) -> None:
    status, config = server.json("GET", "/config")
    assert status == 200
    current = config["style"]
    others = [s for s in config["styles"] if s != current]
    assert others, f"need two styles, have {config['styles']}"
    b1 = _palette(viewer)
    time.sleep(0.5)
    b2 = _palette(viewer)
    status, body = server.json("POST", "/style", {"style": others[0]})
    assert status == 200 and body["style"] == others[0]
    assert server.stats()["style"] == others[0]
    time.sleep(2.0)  # a few frames of the new style reach the browser
    a1 = _palette(viewer)
    time.sleep(0.5)
    a2 = _palette(viewer)
    within = max(float(np.abs(b1 - b2).mean()), float(np.abs(a1 - a2).mean()))
    switch = float(np.abs((b1 + b2) / 2 - (a1 + a2) / 2).mean())
    assert switch > 8 and switch > 3 * within, (switch, within)
    status, _ = server.json("POST", "/style", {"style": current})
    assert status == 200


def test_blend_control(server: VstServer) -> None:
    status, body = server.json("POST", "/blend", {"alpha": 0.5})
    assert status == 200 and body["alpha"] == 0.5
    assert server.stats()["blend"] == 0.5
    status, body = server.json("POST", "/blend", {"alpha": 7})
    assert status == 400 and ("alpha" in body["error"] or "blend" in body["error"]), body
    status, _ = server.json("POST", "/blend", {"alpha": 0.0})
    assert status == 200


def test_four_viewers_one_inference(chromium: Any, viewer: Any, server: VstServer) -> None:
    pages = [viewer] + [open_viewer(chromium, server.url) for _ in range(MAX_VIEWERS - 1)]
    try:
        assert wait_until(lambda: server.stats()["viewers"] == MAX_VIEWERS, 10)
        s0, d0 = server.stats(), [frames_decoded(p) for p in pages]
        time.sleep(5)
        s1, d1 = server.stats(), [frames_decoded(p) for p in pages]
        inferred = s1["frames_inferred"] - s0["frames_inferred"]
        captured = s1["frames_in"] - s0["frames_in"]
        decoded = [b - a for a, b in zip(d0, d1)]
        assert inferred > 0 and min(decoded) > 0, (inferred, decoded)
        # one inference per source frame at most, however many viewers
        assert inferred <= captured, (inferred, captured)
        # every viewer gets (nearly) every inferred frame: N viewers, one inference
        assert min(decoded) >= 0.6 * inferred, (decoded, inferred)
        assert sum(decoded) >= 2.4 * inferred, (decoded, inferred)
        # one over the limit: 503, and the others keep playing
        offer = pages[0].evaluate("vst.pc.localDescription.sdp")
        status, headers, body = server.request("POST", "/whep", offer.encode(), "application/sdp")
        assert status == 503, (status, body)
        assert "full" in body.decode() and headers.get("Retry-After")
        time.sleep(2)
        d2 = [frames_decoded(p) for p in pages]
        assert all(b > a for a, b in zip(d1, d2))
    finally:
        for p in pages[1:]:
            p.close(run_before_unload=True)
    assert wait_until(lambda: server.stats()["viewers"] == 1, 15), server.stats()["viewers"]


def test_abuse_never_stops_the_viewer(viewer: Any, server: VstServer) -> None:
    big = b"x" * (2 * 1024 * 1024)
    good_offer = viewer.evaluate("vst.pc.localDescription.sdp")
    broken_sdp = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96 VP8/90000\r\na=garbage\r\n"
    cases: list[tuple[str, str, bytes | None, str | None, Any, int]] = [
        ("POST", "/offer", b"{not json", "application/json", True, 400),
        ("POST", "/offer", b"[1, 2]", "application/json", True, 400),
        ("POST", "/offer", json.dumps({"sdp": "hello", "type": "offer"}).encode(), "application/json", True, 400),
        ("POST", "/offer", json.dumps({"sdp": broken_sdp, "type": "offer"}).encode(), "application/json", True, 400),
        ("POST", "/offer", json.dumps({"sdp": good_offer, "type": "answer"}).encode(), "application/json", True, 400),
        ("POST", "/offer", big, "application/json", True, 413),
        ("POST", "/whep", big, "application/sdp", True, 413),
        ("POST", "/whep", b"garbage", "application/sdp", True, 400),
        ("POST", "/whep", broken_sdp.encode(), "application/sdp", True, 400),
        ("POST", "/whep", good_offer.encode(), "text/plain", True, 415),
        ("POST", "/whep", b"\xff\xfe\x00", "application/sdp", True, 400),
        ("DELETE", "/whep/nonexistent", None, None, True, 404),
        ("POST", "/style", json.dumps({"style": "no-such-style"}).encode(), "application/json", True, 400),
        ("POST", "/style", json.dumps({"style": "../../etc/passwd"}).encode(), "application/json", True, 400),
        ("POST", "/style", json.dumps({"style": 5}).encode(), "application/json", True, 400),
        ("GET", "/stats", None, None, "wrong-token", 401),
        ("POST", "/offer", json.dumps({"sdp": good_offer, "type": "offer"}).encode(), "application/json", "wrong", 401),
        ("POST", "/whep", good_offer.encode(), "application/sdp", None, 401),
        ("GET", "/config", None, None, None, 401),
    ]
    before = server.stats()
    last, stalls = frames_decoded(viewer), 0
    for method, path, body, ctype, token, expected in cases:
        status, _headers, data = server.request(method, path, body, ctype, token=token)
        assert status == expected, (method, path, status, data[:200])
        assert data.strip(), f"{method} {path}: empty error body"
        n = frames_decoded(viewer)
        stalls = stalls + 1 if n == last else 0
        assert stalls < 8, "the viewer's stream stopped during the abuse"
        last = n
        time.sleep(0.1)
    time.sleep(2)
    assert frames_decoded(viewer) > last, "the viewer's stream stopped after the abuse"
    after = server.stats()
    assert after["viewers"] == 1 and after["track_errors"] == 0
    assert after["state"] == "running"
    assert sum(after["rejected"].values()) - sum(before["rejected"].values()) == len(cases)


def test_page_messages_for_wrong_token_and_unreachable(chromium: Any, server: VstServer) -> None:
    page = chromium.new_page()
    try:
        page.goto(server.url.replace(TOKEN, "wrong"))
        page.wait_for_function("vst.state === 'unauthorized'", timeout=15000)
        assert "token" in page.inner_text("#message").lower()
        page.route("**/config*", lambda route: route.abort())
        page.goto(server.url)
        page.wait_for_function("vst.state === 'unreachable'", timeout=15000)
        assert "unreachable" in page.inner_text("#message").lower()
    finally:
        page.close(run_before_unload=True)


def test_side_by_side_original(viewer: Any, server: VstServer) -> None:
    viewer.check("#original")  # reconnects with a second (original) video transceiver
    viewer.wait_for_function(
        """async () => { if (!vst.pc) return false; const r = await vst.pc.getStats(); let n = 0;
           r.forEach(s => { if (s.type === 'inbound-rtp' && s.kind === 'video' && s.framesDecoded > 3) n++; });
           return n === 2; }""",
        timeout=30000,
    )
    viewer.wait_for_function("document.getElementById('original-video').videoWidth === 320", timeout=10000)
    assert server.stats()["frames_sent"]["original"] > 0
    time.sleep(1.5)  # let the overlay pick up server stats
    # With two inbound videos the overlay must follow the stylized one: deltas never mix streams.
    viewer.wait_for_function("vst.stats && vst.stats.fps > 1", timeout=10000)  # first delta after reconnect
    samples = []
    for _ in range(3):
        samples.append(viewer.evaluate("() => [vst.stats.fps, vst.stats.kbps]"))
        time.sleep(1.1)
    assert all(fps > 1 and kbps > 0 for fps, kbps in samples), samples
    viewer.screenshot(path=str(ARTIFACTS / "viewer_side_by_side.png"))
    viewer.uncheck("#original")
    viewer.wait_for_function("vst.state === 'connected'", timeout=30000)
