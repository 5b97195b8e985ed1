"""Process-wide settings change in ``vst.process.configure_process`` only: once, when a CLI asks, never on import.

Each check runs in a fresh interpreter: the settings are process-wide, and this test process must keep
the libraries' defaults for the other tests.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

_STATE = r"""
import json, sys
import aioice.ice, torch
from aiortc.codecs import h264, vpx
def state():
    return {"ice": aioice.ice.get_host_addresses(True, False), "vp8_max": vpx.MAX_BITRATE, "vp8_start": vpx.DEFAULT_BITRATE,
            "h264_max": h264.MAX_BITRATE, "cudnn": torch.backends.cudnn.benchmark}
"""


def _run(body: str) -> dict[str, object]:
    r = subprocess.run([sys.executable, "-c", _STATE + body], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_importing_vst_changes_no_process_setting() -> None:
    out = _run(r"""
before = state()
import vst.stream.webrtc, vst.stream.server, vst.stream.serve_cli, vst.stream.render, vst.stream.eval_cli
import vst.stream.backends.torch_backend, vst.stream.cuda_processor, vst.process
print(json.dumps({"same": state() == before}))
""")
    assert out["same"]


def test_configure_process_sets_each_setting_once() -> None:
    out = _run(r"""
from vst.errors import VstError
from vst.process import ProcessSettings, applied, configure_process
torch.backends.cudnn.benchmark = False
s = ProcessSettings(ice_host="127.0.0.1", encoder_bitrate=4_000_000)
assert applied() is None
configure_process(s)
configure_process(ProcessSettings(ice_host="127.0.0.1", encoder_bitrate=4_000_000))  # equal: nothing happens
try:
    configure_process(ProcessSettings(encoder_bitrate=2_000_000))
    refused = False
except VstError:
    refused = True
print(json.dumps({**state(), "refused": refused, "applied": applied() == s}))
""")
    assert out["ice"] == ["127.0.0.1"] and out["cudnn"] is True and out["refused"] and out["applied"]
    assert out["vp8_max"] == out["vp8_start"] == 4_000_000 and out["h264_max"] >= 4_000_000


def test_a_public_bind_address_keeps_ice_gathering() -> None:
    out = _run(r"""
before = state()["ice"]
from vst.process import ProcessSettings, configure_process
configure_process(ProcessSettings(ice_host="0.0.0.0"))
print(json.dumps({"same": state()["ice"] == before}))
""")
    assert out["same"]


@pytest.mark.parametrize("bad", [{"encoder_bitrate": 0}, {"encoder_bitrate": True}, {"ice_host": " "}])
def test_bad_settings_are_one_line_errors(bad: dict[str, object]) -> None:
    from vst.errors import VstError
    from vst.process import ProcessSettings

    with pytest.raises(VstError):
        ProcessSettings(**bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("module", ["vst.stream.render", "vst.stream.eval_cli"])
def test_render_and_eval_call_configure_process(module: str, tmp_path: Path) -> None:
    """Each CLI applies the settings after parsing its arguments (here: a missing input, so no work is done)."""
    argv = [str(tmp_path / "missing.mp4"), str(tmp_path / "o.mp4")] if module.endswith("render") else [str(tmp_path / "missing.mp4")]
    out = _run(rf"""
import vst.process, {module} as m
torch.backends.cudnn.benchmark = False
sys.argv = ["x", *{argv!r}]
try:
    m.main(sys.argv[1:]) if "render" in "{module}" else m.main()
except SystemExit as e:
    code = e.code
print(json.dumps({{"code": code, "applied": vst.process.applied() is not None, "cudnn": torch.backends.cudnn.benchmark}}))
""")
    assert out["code"] != 0 and out["applied"] and out["cudnn"] is True
