"""Shared fixtures: the real-data folder and the screenshot folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.realdata import DATA, ROOT


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if DATA is None:
        pytest.skip("real data folder ../shared/data is absent")
    return DATA


@pytest.fixture(scope="session")
def screenshot_dir() -> Path:
    d = ROOT / "tests" / "screenshots"
    d.mkdir(parents=True, exist_ok=True)
    return d
