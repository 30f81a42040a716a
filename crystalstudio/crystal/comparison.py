"""Comparing phase sets: map correlation r and mean phase error with the origin-shift search.

Two phase sets of the same amplitudes describe the same structure if they differ by a permissible
origin shift s (φ → φ + 2π h·s) or, for non-centrosymmetric groups, by the enantiomorph (φ → −φ).
The map correlation is r = Σ w cos Δφ / Σ w with w = |F|² × multiplicity, which equals the Pearson
correlation of the two maps (Parseval, F000 excluded) when `hkl` is a unique set. Phases in radians.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
from scipy import optimize

from .symmetry import SpaceGroup

SOLVED_THRESHOLD = 0.8  # map r at which a structure counts as solved (both seed papers)


@dataclass
class PhaseComparison:
    r: float  # map correlation at the best origin
    phase_error: float  # amplitude-weighted mean |Δφ| in degrees at that origin
    shift: np.ndarray  # origin shift (fractional) applied to the second phase set
    inverted: bool  # whether the enantiomorph of the second set matched better

    @property
    def solved(self) -> bool:
        return self.r >= SOLVED_THRESHOLD


def _cc(h, w, dphi, shifts):
    """Σ w cos(Δφ − 2π h·s) / Σ w for shifts (K, 3) → (K,)."""
    out = np.empty(len(shifts))
    step = max(1, int(2e7 // max(len(h), 1)))
    for i in range(0, len(shifts), step):
        arg = dphi[None, :] - 2 * np.pi * shifts[i : i + step] @ h.T
        out[i : i + step] = np.cos(arg) @ w
    return out / np.sum(w)


def _cc_fft(h, w, dphi, grid):
    X = np.zeros(grid, dtype=np.complex128)
    c = w * np.exp(1j * dphi)
    np.add.at(X, tuple((h % np.array(grid)).T), c)
    return np.fft.fftn(X).real / np.sum(w)  # value at index j is CC(s = j/grid)


def best_origin(hkl, weights, phi_a, phi_b, space_group: SpaceGroup, allow_inversion: Optional[bool] = None):
    """Maximise Σ w cos(φa − σφb − 2π h·s) over permissible shifts s and σ = ±1.

    Returns (cc, shift, inverted).
    """
    h = np.asarray(hkl, dtype=np.float64).reshape(-1, 3)
    w = np.asarray(weights, dtype=np.float64)
    if allow_inversion is None:
        allow_inversion = not space_group.is_centrosymmetric
    best = (-np.inf, np.zeros(3), False)
    free = space_group.free_origin_axes
    for inverted in ([False, True] if allow_inversion else [False]):
        dphi = np.asarray(phi_a) - (-1.0 if inverted else 1.0) * np.asarray(phi_b)
        if len(free) == 0:
            shifts = space_group.permissible_origin_shifts(inverted)
            if len(shifts) == 0:
                continue
            cc = _cc(h, w, dphi, shifts)
            k = int(np.argmax(cc))
            cand = (float(cc[k]), shifts[k], inverted)
        else:
            hmax = np.abs(h).max(axis=0).astype(int)
            grid = tuple(int(24 * np.ceil(max(4 * m + 1, 24) / 24)) for m in hmax)
            ccmap = _cc_fft(h.astype(np.int64), w, dphi, grid)
            g = [np.arange(n) / n for n in grid]
            pts = np.stack(np.meshgrid(*g, indexing="ij"), -1).reshape(-1, 3)
            vals = ccmap.reshape(-1)
            order = np.argsort(-vals)
            ok_idx = []
            for start in range(0, len(order), 4096):
                sel = order[start : start + 4096]
                ok = space_group.is_permissible_shift(pts[sel], inverted)
                ok_idx.extend(sel[ok][: 3 - len(ok_idx)])
                if len(ok_idx) >= 3:
                    break
            cand = best
            for i in ok_idx:  # refine along the free directions
                s0 = pts[i]
                fun = lambda t, s0=s0: -_cc(h, w, dphi, (s0 + t @ free)[None])[0]
                res = optimize.minimize(fun, np.zeros(len(free)), method="Nelder-Mead",
                                        options={"xatol": 1e-5, "fatol": 1e-9})
                s = (s0 + res.x @ free) % 1.0
                if -res.fun > cand[0]:
                    cand = (float(-res.fun), s, inverted)
        if cand[0] > best[0]:
            best = cand
    return best


def compare_phases(hkl, amplitudes, phi_a, phi_b, space_group: SpaceGroup, *,
                   multiplicity_weighted: bool = True, allow_inversion: Optional[bool] = None) -> PhaseComparison:
    """Map correlation r and mean phase error (degrees) of φa against φb at the best origin.

    hkl: (M, 3), amplitudes |F| (M,), phases in radians. Reflections with |F| = 0 carry no weight.
    """
    h = np.asarray(hkl, dtype=np.int64).reshape(-1, 3)
    F = np.abs(np.asarray(amplitudes, dtype=np.float64))
    mult = space_group.multiplicity(h).astype(np.float64) if multiplicity_weighted else np.ones(len(h))
    w2 = F**2 * mult
    cc, shift, inverted = best_origin(h, w2, phi_a, phi_b, space_group, allow_inversion)
    sigma = -1.0 if inverted else 1.0
    dphi = np.asarray(phi_a) - sigma * np.asarray(phi_b) - 2 * np.pi * (h @ shift)
    dphi = np.angle(np.exp(1j * dphi))
    w1 = F * mult
    err = float(np.degrees(np.sum(w1 * np.abs(dphi)) / np.sum(w1))) if np.sum(w1) > 0 else float("nan")
    return PhaseComparison(float(cc), err, np.asarray(shift, dtype=np.float64), bool(inverted))


def map_correlation(hkl, amplitudes, phi_a, phi_b, space_group: SpaceGroup, **kw) -> float:
    """r of :func:`compare_phases`."""
    return compare_phases(hkl, amplitudes, phi_a, phi_b, space_group, **kw).r
