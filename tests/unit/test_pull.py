"""vst-styles pull against a real local HTTP server: progress, sha256, atomic write."""

from __future__ import annotations

import hashlib
import http.server
import subprocess
import sys
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest
import torch

from vst.errors import StyleError
from vst.models import ResnetGenerator
from vst.pull import download
from vst.styles import resolve_style, user_dir


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    root = tmp_path / "www"
    root.mkdir()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(_Quiet, directory=str(root)))
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", root
    httpd.shutdown()
    httpd.server_close()


def _publish(root: Path) -> str:
    torch.manual_seed(0)
    torch.save(ResnetGenerator(ngf=8, n_blocks=6).state_dict(), root / "style_test.pth")
    return hashlib.sha256((root / "style_test.pth").read_bytes()).hexdigest()


def test_pull_url_with_checksum_imports_style(server: tuple[str, Path]) -> None:
    base, root = server
    sha = _publish(root)
    r = subprocess.run([sys.executable, "-m", "vst.styles_cli", "pull", f"{base}/style_test.pth", "--name", "pulled", "--sha256", sha],
                       capture_output=True, text=True, timeout=120)  # fmt: skip
    assert r.returncode == 0, r.stderr
    style = resolve_style("pulled")
    assert style.meta["arch_kwargs"]["ngf"] == 8
    assert "sha256 verified: True" in style.meta["provenance"]
    assert "100%" in r.stderr  # the progress bar ran to the end


def test_pull_catalog_name_from_overridden_index(server: tuple[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    base, root = server
    _publish(root)
    (root / "style_monet.pth").write_bytes((root / "style_test.pth").read_bytes())
    monkeypatch.setenv("VST_STYLE_INDEX_URL", base + "/")
    r = subprocess.run([sys.executable, "-m", "vst.styles_cli", "pull", "cyclegan-monet", "--no-progress"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert resolve_style("cyclegan-monet").kind == "torch"


def test_bad_checksum_leaves_nothing(server: tuple[str, Path], tmp_path: Path) -> None:
    base, root = server
    _publish(root)
    dest = tmp_path / "dl" / "style_test.pth"
    with pytest.raises(StyleError, match="checksum mismatch"):
        download(f"{base}/style_test.pth", dest, sha256="0" * 64, progress=False)
    assert not dest.parent.exists() or not any(dest.parent.iterdir())
    r = subprocess.run([sys.executable, "-m", "vst.styles_cli", "pull", f"{base}/style_test.pth", "--sha256", "ab" * 32],
                       capture_output=True, text=True, timeout=120)  # fmt: skip
    assert r.returncode != 0 and "checksum mismatch" in r.stderr and "Traceback" not in r.stderr
    assert not list(user_dir().glob("*")) if user_dir().exists() else True


def test_404_is_a_clear_error(server: tuple[str, Path], tmp_path: Path) -> None:
    base, _ = server
    with pytest.raises(StyleError, match="HTTP 404"):
        download(f"{base}/missing.pth", tmp_path / "x.pth", progress=False)
    assert not (tmp_path / "x.pth").exists()
