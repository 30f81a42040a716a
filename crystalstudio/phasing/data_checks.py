"""What the data allow before anything is solved: completeness, resolution, reflections per atom, and the
records that cannot be used.

Charge flipping and direct methods need atomic resolution (d_min ≤ 1.2 Å) and nearly complete data; an
isotropic refinement needs several reflections per parameter (4 per atom + 1). Each check says whether it
only warns or rules a "solved" verdict out (blocking), in words a user can act on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from ..crystal.reflections import ReflectionData

COMPLETENESS_WARN = 0.80  # below: "solved" is not given (a partial sphere hides atoms and biases R1)
COMPLETENESS_BLOCK = 0.50  # below: nothing can be judged
RESOLUTION_LIMIT = 1.20  # Å: charge flipping needs atomic resolution
REFLECTIONS_PER_ATOM_WARN = 10.0  # unique reflections per expected non-H atom of the asymmetric unit
REFLECTIONS_PER_ATOM_BLOCK = 5.0
PLACEHOLDER_MIN = 999.0  # all-nines values from this size up (9999.99, 99999.99, 999999.) fill a fixed-width
# field to the brim: an overflow flag or a "missing" marker, not a measurement


@dataclass
class DataCheck:
    name: str
    value: float
    ok: bool
    blocking: bool  # rules out "solved" (and usually any solution)
    message: str

    def line(self) -> str:
        mark = "ok" if self.ok else ("BLOCKS" if self.blocking else "warning")
        return f"  [{mark}] {self.message}"


def is_placeholder(values) -> np.ndarray:
    """True for non-finite values and all-nines values ≥ 999 in size (9999.99, −999.99, 999999.)."""
    v = np.asarray(values, dtype=np.float64)
    out = ~np.isfinite(v)
    big = np.flatnonzero(np.isfinite(v) & (np.abs(v) >= PLACEHOLDER_MIN))
    for i in big:
        digits = f"{abs(v[i]):.2f}".rstrip("0").rstrip(".").replace(".", "")
        out[i] = set(digits) == {"9"}
    return out


def drop_unusable(data: ReflectionData) -> tuple[ReflectionData, int, int]:
    """Records with σ ≤ 0 (or no σ) and placeholder values (see :func:`is_placeholder`) removed.

    Returns (kept data, records with bad σ, placeholder records). The caller says how many were dropped.
    """
    bad_sigma = ~(np.isfinite(data.sigmas) & (data.sigmas > 0))
    placeholder = is_placeholder(data.values)
    keep = ~(bad_sigma | placeholder)
    if keep.all():
        return data, 0, 0
    return data.select(keep), int((bad_sigma & ~placeholder).sum()), int(placeholder.sum())


def check_data(*, n_unique: int, completeness: float, d_min: float, expected_atoms: Optional[float],
               n_dropped_sigma: int = 0, n_placeholder: int = 0, n_records: int = 0, kind: str = "I",
               amplitude_source: str = "") -> list[DataCheck]:
    out = []
    pct = 100 * completeness
    if completeness < COMPLETENESS_BLOCK:
        out.append(DataCheck("completeness", completeness, False, True,
                             f"completeness {pct:.0f} %: too few of the reflections to d_min = {d_min:.2f} Å were "
                             "measured to judge a structure"))
    elif completeness < COMPLETENESS_WARN:
        out.append(DataCheck("completeness", completeness, False, False,
                             f"completeness {pct:.0f} % (< {100 * COMPLETENESS_WARN:.0f} %): missing reflections hide "
                             "atoms and bias R1; at best 'partial'"))
    else:
        out.append(DataCheck("completeness", completeness, True, False, f"completeness {pct:.1f} %"))
    if d_min > RESOLUTION_LIMIT:
        out.append(DataCheck("resolution", d_min, False, True,
                             f"resolution {d_min:.2f} Å: atoms are not resolved (charge flipping needs ≤ "
                             f"{RESOLUTION_LIMIT:.1f} Å)"))
    else:
        out.append(DataCheck("resolution", d_min, True, False, f"resolution {d_min:.2f} Å"))
    if expected_atoms:
        per = n_unique / expected_atoms
        if per < REFLECTIONS_PER_ATOM_BLOCK:
            out.append(DataCheck("reflections per atom", per, False, True,
                                 f"{per:.1f} unique reflections per expected atom ({n_unique} for {expected_atoms:.1f}): "
                                 "too few to refine x y z and U"))
        elif per < REFLECTIONS_PER_ATOM_WARN:
            out.append(DataCheck("reflections per atom", per, False, False,
                                 f"{per:.1f} unique reflections per expected atom (< {REFLECTIONS_PER_ATOM_WARN:.0f}): "
                                 "R1 will flatter the model"))
        else:
            out.append(DataCheck("reflections per atom", per, True, False,
                                 f"{per:.0f} unique reflections per expected atom"))
    if n_dropped_sigma or n_placeholder:
        parts = []
        if n_dropped_sigma:
            parts.append(f"{n_dropped_sigma} with σ ≤ 0 or no σ")
        if n_placeholder:
            parts.append(f"{n_placeholder} placeholder value{'s' if n_placeholder > 1 else ''} (9999.99, 999999. …: "
                         "overflow or missing marks)")
        out.append(DataCheck("records dropped", n_dropped_sigma + n_placeholder, True, False,
                             f"{' and '.join(parts)} of {n_records} records dropped"))
    if kind == "F":
        out.append(DataCheck("amplitudes", 1.0, True, False,
                             f"read as amplitudes |F| ({amplitude_source or 'the file says so'}), not intensities"))
    return out
