"""Location of the shipped resources (element tables, default configs, small models)."""

from __future__ import annotations

import os
from pathlib import Path


def resource_dir() -> Path:
    """The `resources/` folder: $CRYSTALSTUDIO_RESOURCES, the repository's, or a frozen app's."""
    env = os.environ.get("CRYSTALSTUDIO_RESOURCES")
    if env:
        return Path(env)
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "resources", here / "resources"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("CrystalStudio resources folder not found; set CRYSTALSTUDIO_RESOURCES")


def resource_path(*parts: str) -> Path:
    return resource_dir().joinpath(*parts)
