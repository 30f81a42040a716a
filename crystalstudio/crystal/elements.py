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
