"""Fixtures for the serving tests: headless Chromium and a user style dir for the server subprocess."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .serving import CHROMIUM, CHROMIUM_ARGS, make_test_style


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """Headless Debian Chromium via Playwright (never `playwright install`).

    Module-scoped: while Playwright's sync API is open its event loop counts as running in the main
    thread, so any later test calling ``asyncio.run`` there would fail; a module's browser is closed
    (and the loop released) when the module ends.
    """
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright python package not installed")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def styles_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A user style dir for the server subprocess, holding one extra (compact, untrained) style."""
    d = tmp_path_factory.mktemp("served-styles")
    make_test_style(d, "compact-test")
    return d

