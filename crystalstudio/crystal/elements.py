"""Element data: X-ray scattering factors (IT92 4-Gaussian coefficients from gemmi) and covalent
radii (Cordero et al. 2008, from resources/elements/covalent_radii.csv).

f(s) = Σₖ aₖ exp(−bₖ s²) + c with s = sinθ/λ = 1/(2d) in Å⁻¹.
"""

from __future__ import annotations

import csv
import functools
import re

import gemmi
import numpy as np

from ..errors import InvalidInputError
from ..resources import resource_path


def normalize_symbol(label: str) -> str:
    """'FE' / 'Fe3+' / 'fe' / 'C12' → 'Fe' / 'Fe' / 'Fe' / 'C' (raises on unknown)."""
    m = re.match(r"\s*([A-Za-z]{1,2})", str(label))
    if not m:
        raise InvalidInputError(f"no element symbol in '{label}'")
    s = m.group(1)
    for cand in (s[:1].upper() + s[1:].lower(), s[:1].upper()):
        if cand == "D":
            return "H"
        el = gemmi.Element(cand)
        if el.atomic_number > 0 and el.name.lower() == cand.lower():
            return el.name
    raise InvalidInputError(f"unknown element '{label}'")


def atomic_number(symbol: str) -> int:
    return gemmi.Element(normalize_symbol(symbol)).atomic_number


def symbol_from_number(z: int) -> str:
    return gemmi.Element(int(z)).name


@functools.lru_cache(maxsize=None)
def form_factor_coefficients(symbol: str) -> np.ndarray:
    """(9,) = a1..a4, b1..b4, c of the neutral atom (IT Vol. C Table 6.1.1.4 / IT92)."""
    el = gemmi.Element(normalize_symbol(symbol))
    coef = el.it92
    if coef is None:
        raise InvalidInputError(f"no X-ray form factor for {symbol}")
    return np.array([*coef.a, *coef.b, coef.c], dtype=np.float64)


def form_factor(symbol: str, stol2) -> np.ndarray:
    """f at (sinθ/λ)² (Å⁻²)."""
    c = form_factor_coefficients(symbol)
    s2 = np.asarray(stol2, dtype=np.float64)[..., None]
    return np.sum(c[:4] * np.exp(-c[4:8] * s2), axis=-1) + c[8]


@functools.lru_cache(maxsize=1)
def _covalent_table() -> dict[str, float]:
    table = {}
    with open(resource_path("elements", "covalent_radii.csv")) as f:
        rows = (line for line in f if not line.startswith("#"))
        for row in csv.DictReader(rows):
            table[row["symbol"]] = float(row["radius"])
    return table


def covalent_radius(symbol: str) -> float:
    """Cordero 2008 covalent radius in Å."""
    s = normalize_symbol(symbol)
    try:
        return _covalent_table()[s]
    except KeyError:
        raise InvalidInputError(f"no covalent radius tabulated for {s}") from None


def covalent_radii(symbols) -> np.ndarray:
    return np.array([covalent_radius(s) for s in symbols])


# Jmol element colours (RGB floats in [0, 1]) for drawing atoms
JMOL = {
    "H": (1.0, 1.0, 1.0), "He": (0.85, 1.0, 1.0), "Li": (0.8, 0.5, 1.0), "Be": (0.76, 1.0, 0.0),
    "B": (1.0, 0.71, 0.71), "C": (0.56, 0.56, 0.56), "N": (0.19, 0.31, 0.97), "O": (1.0, 0.05, 0.05),
    "F": (0.56, 0.88, 0.31), "Na": (0.67, 0.36, 0.95), "Mg": (0.54, 1.0, 0.0), "Al": (0.75, 0.65, 0.65),
    "Si": (0.94, 0.78, 0.63), "P": (1.0, 0.5, 0.0), "S": (1.0, 1.0, 0.19), "Cl": (0.12, 0.94, 0.12),
    "K": (0.56, 0.25, 0.83), "Ca": (0.24, 1.0, 0.0), "Cr": (0.54, 0.6, 0.78), "Mn": (0.61, 0.48, 0.78),
    "Fe": (0.88, 0.4, 0.2), "Co": (0.94, 0.56, 0.63), "Ni": (0.31, 0.82, 0.31), "Cu": (0.78, 0.5, 0.2),
    "Zn": (0.49, 0.5, 0.69), "Se": (1.0, 0.63, 0.0), "Br": (0.65, 0.16, 0.16), "Ru": (0.14, 0.56, 0.56),
    "Pd": (0.0, 0.41, 0.52), "Ag": (0.75, 0.75, 0.75), "Cd": (1.0, 0.85, 0.56), "Sn": (0.4, 0.5, 0.5),
    "I": (0.58, 0.0, 0.58), "Pt": (0.82, 0.82, 0.88), "Au": (1.0, 0.82, 0.14), "Hg": (0.72, 0.72, 0.82),
    "Pr": (0.85, 1.0, 0.78), "Ge": (0.4, 0.56, 0.56), "As": (0.74, 0.5, 0.89),
}


def element_color(symbol: str) -> tuple[float, float, float]:
    """Jmol colour of an element as RGB floats in [0, 1] (magenta for elements not in the table)."""
    return JMOL.get(symbol, (1.0, 0.08, 0.58))
