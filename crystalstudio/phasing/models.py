"""Models shipped with CrystalStudio (trained by the project itself; no published weights are bundled)."""

from __future__ import annotations

from ..errors import ModelFileError
from ..resources import resource_path

SHIPPED_PHAI = "phai_small.pt"


def default_phai_model(device=None):
    from .phai_inference import load_phai

    path = resource_path("models", SHIPPED_PHAI)
    if not path.exists():
        raise ModelFileError(path, "the shipped PhAI model is missing; give a model file (--model)")
    return load_phai(path, device=device)
