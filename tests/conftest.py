"""Shared fixtures: the real data folder, per-dtype tolerances, device selection."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

# Max abs error allowed when comparing an implementation against its reference, per dtype.
TOLERANCES: dict[torch.dtype, float] = {torch.float64: 1e-9, torch.float32: 1e-4, torch.bfloat16: 3e-2, torch.float16: 5e-3}


def data_path(*parts: str) -> Path:
    """A path under ../shared/data, or skip the test with the reason when it is absent."""
    path = DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not available: {path} (needs ../shared/data beside the checkout)")
    return path


@pytest.fixture
def data() -> type:
    """``data("videos", "bikes.mp4")`` -> Path, skipping when ../shared/data is absent."""
    return data_path  # type: ignore[return-value]


@pytest.fixture
def cuda() -> torch.device:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU on this machine")
    return torch.device("cuda")


@pytest.fixture(autouse=True)
def _user_styles(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test gets an empty user style directory: tests never touch the real ~/.local/share."""
    monkeypatch.setenv("VST_STYLES_DIR", str(tmp_path_factory.mktemp("styles")))
