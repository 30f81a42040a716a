"""Models shipped with CrystalStudio (trained by the project itself; no published weights are bundled).

What the shipped PhAI model scores on real structures is stated here once; the `phase` command, the Phasing
panel and resources/models/README.md show the same text.
"""

from __future__ import annotations

from ..errors import ModelFileError
from ..resources import resource_path

SHIPPED_PHAI = "phai_small.pt"

# `crystalstudio evaluate resources/models/phai_small.pt ../shared/data/structures` (defaults: cycles 1–10 ×
# zero + 4 random starts, seed 0, |F| to d_min 1 Å on the PhAI list, solved = map r ≥ 0.8), 2026-11-29
# (commit 3bc7060; tests/test_evaluate.py re-runs it).
SHIPPED_PHAI_EVALUATION = {
    "structures": 18, "solved_best": 5, "solved_fom": 5, "median_r_best": 0.557, "median_r_fom": 0.477,
    "organic": (0, 5), "metal_organic": (5, 8), "inorganic": (0, 5), "chance_median_r": 0.233,
}


def shipped_phai_note() -> str:
    """One paragraph: the shipped PhAI model is a demonstration model, with its measured figures."""
    e = SHIPPED_PHAI_EVALUATION
    return (f"The shipped PhAI model ({SHIPPED_PHAI}, 1.3 M parameters, trained for 230 s on generated 4–10 Å cells) is "
            f"a demonstration model, not the published PhAI. Measured on {e['structures']} real P2₁/c-family "
            f"structures (crystalstudio evaluate, d_min 1 Å, 10 cycles × 5 starts) it solves {e['solved_fom']} of "
            f"{e['structures']} (r ≥ 0.8) with the candidate its figure of merit picks (median map r {e['median_r_fom']:.2f}; best "
            f"candidate by true r: {e['solved_best']} solved, median {e['median_r_best']:.2f}; random phases "
            f"{e['chance_median_r']:.2f}): metal-organic {e['metal_organic'][0]} of {e['metal_organic'][1]}, organic "
            f"{e['organic'][0]} of {e['organic'][1]}, inorganic {e['inorganic'][0]} of {e['inorganic'][1]}. "
            "Load the published weights (PhAI_model.pth) or your own checkpoint for real work.")


def shipped_phai_summary() -> str:
    """Two lines for a screen: the shipped PhAI model is a demonstration model (the figures of shipped_phai_note())."""
    e = SHIPPED_PHAI_EVALUATION
    return (f"demonstration model, not the published PhAI: it solves {e['solved_fom']} of {e['structures']} real "
            f"structures (organic {e['organic'][0]} of {e['organic'][1]}). Load PhAI_model.pth for real work.")


def default_phai_model(device=None):
    from .phai_inference import load_phai

    path = resource_path("models", SHIPPED_PHAI)
    if not path.exists():
        raise ModelFileError(path, "the shipped PhAI model is missing; give a model file (--model)")
    return load_phai(path, device=device)
