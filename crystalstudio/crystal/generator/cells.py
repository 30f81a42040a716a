"""Unit cells for artificial structures (vectorised numpy; lengths Å, angles degrees, volumes Å³).

Volume-first sampling (generation paper): draw V, then a1 ≤ a2 ≤ a3 with amin ≤ aᵢ ≤ amax,
a2/a1 ≤ r, a3/a2 ≤ r:
  a1 ~ U(lo1, V^(1/3)),  lo1 = max(amin, V/amax², V^(1/3)/r, √(V/(r·amax)))
  a2 ~ U(max(a1, V/(a1·amax), √(V/(r·a1))), min(r·a1, √(V/a1)))
  a3 = V/(a1·a2), then a random permutation.
A V with lo1 > V^(1/3) is infeasible for (amin, amax, r) and is redrawn. Oblique cells come from a
unit-determinant shear of the orthogonal cell (volume kept) or, in the 'keep_lengths' variant, from
setting the angle with the lengths unchanged (volume changes).
"""

from __future__ import annotations

import numpy as np

from ...errors import InvalidInputError
from .settings import CellSettings


def sample_volumes(n: int, s: CellSettings, rng: np.random.Generator) -> np.ndarray:
    lo, hi = s.volume_range()
    if not (0 < lo < hi):
        raise InvalidInputError(f"volume range [{lo}, {hi}] Å³ is empty")
    if s.volume_distribution == "uniform":
        return rng.uniform(lo, hi, n)
    if s.volume_distribution == "lognormal":
        out = np.empty(0)
        for _ in range(1000):
            v = np.exp(rng.normal(s.lognormal_mu, s.lognormal_sigma, 2 * (n - len(out)) + 16))
            out = np.concatenate([out, v[(v >= lo) & (v <= hi)]])
            if len(out) >= n:
                return out[:n]
        raise InvalidInputError("log-normal volume distribution has almost no mass inside the volume range")
    raise InvalidInputError(f"unknown volume distribution '{s.volume_distribution}'")


def lengths_from_volume(V: np.ndarray, a_min: float, a_max: float, r: float, rng: np.random.Generator):
    """Sorted lengths (n, 3) with product V, or NaN rows where V is infeasible."""
    V = np.asarray(V, dtype=np.float64)
    cbrt = np.cbrt(V)
    lo1 = np.maximum.reduce([np.full_like(V, a_min), V / a_max**2, cbrt / r, np.sqrt(V / (r * a_max))])
    feasible = lo1 <= cbrt * (1 + 1e-12)
    a1 = rng.uniform(np.minimum(lo1, cbrt), cbrt)
    lo2 = np.maximum.reduce([a1, V / (a1 * a_max), np.sqrt(V / (r * a1))])
    hi2 = np.minimum(r * a1, np.sqrt(V / a1))
    feasible &= lo2 <= hi2 * (1 + 1e-12)
    a2 = rng.uniform(np.minimum(lo2, hi2), hi2)
    a3 = V / (a1 * a2)
    out = np.stack([a1, a2, a3], axis=1)
    out[~feasible] = np.nan
    return out


def sample_lengths(n: int, s: CellSettings, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(lengths (n, 3) randomly permuted, volumes (n,)) by the chosen sampling mode."""
    if s.sampling == "naive":
        L = rng.uniform(s.a_min, s.a_max, (n, 3))
        return L, np.prod(L, axis=1)
    if s.sampling != "volume":
        raise InvalidInputError(f"unknown cell sampling '{s.sampling}'")
    out = np.empty((0, 3))
    vols = np.empty(0)
    for _ in range(1000):
        m = n - len(out)
        V = sample_volumes(m + m // 4 + 8, s, rng)
        L = lengths_from_volume(V, s.a_min, s.a_max, s.ratio_max, rng)
        ok = np.all(np.isfinite(L), axis=1)
        out = np.concatenate([out, L[ok]])
        vols = np.concatenate([vols, V[ok]])
        if len(out) >= n:
            break
    else:
        raise InvalidInputError(f"no feasible cells for a_min={s.a_min}, a_max={s.a_max}, r={s.ratio_max} "
                                "in the volume range")
    out, vols = out[:n], vols[:n]
    perm = np.argsort(rng.random((n, 3)), axis=1)
    return np.take_along_axis(out, perm, axis=1), vols


def _shear_beta(n: int, s: CellSettings, a: np.ndarray, c: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """β (degrees, ≥ 90) for a monoclinic shear c' = c + t·a of an orthogonal cell."""
    bmax = np.radians(s.beta_max)
    t_max = (c / a) * abs(np.cos(bmax) / np.sin(bmax))  # |t| giving β = βmax
    if s.lengths_within_bounds and s.shear_variant == "keep_volume":
        t_len = np.sqrt(np.clip(s.a_max**2 - c**2, 0, None)) / a
        t_max = np.minimum(t_max, t_len)
    if s.shear == "none":
        return np.full(n, 90.0)
    if s.shear == "uniform":  # uniform shear: over-weights large β (paper)
        t = rng.uniform(0, t_max)
        return 90.0 + np.degrees(np.arctan2(t * a, c))
    beta_cap = 90.0 + np.degrees(np.arctan2(t_max * a, c))
    if s.shear == "uniform_beta":
        return rng.uniform(90.0, beta_cap)
    if s.shear == "lower_bound":
        lo = np.minimum(s.beta_lower, beta_cap)
        return rng.uniform(lo, beta_cap)
    if s.shear == "exponential":  # β − 90 ~ Exp(scale) truncated at the cap (inverse CDF)
        u = rng.random(n)
        span = beta_cap - 90.0
        return 90.0 - s.beta_scale * np.log1p(-u * (1 - np.exp(-span / s.beta_scale)))
    raise InvalidInputError(f"unknown shear mode '{s.shear}'")


def shear_monoclinic(L: np.ndarray, beta: np.ndarray, variant: str = "keep_volume") -> np.ndarray:
    """Monoclinic cells (n, 6) from orthogonal lengths (n, 3) and β (degrees).

    keep_volume: the unit-determinant shear c' = c + t·a with t = (c/a)·cot(180° − β), so
    |c'| = c / sin β and V = a·b·c is unchanged. keep_lengths: |c'| = c, V = a·b·c·sin β.
    """
    a, b, c = L[:, 0], L[:, 1], L[:, 2]
    if variant == "keep_volume":
        c = c / np.sin(np.radians(beta))
    elif variant != "keep_lengths":
        raise InvalidInputError(f"unknown shear variant '{variant}'")
    n = len(L)
    return np.stack([a, b, c, np.full(n, 90.0), beta, np.full(n, 90.0)], axis=1)


def monoclinic_cells(n: int, s: CellSettings, rng: np.random.Generator) -> np.ndarray:
    """b-unique monoclinic cells (n, 6), β ∈ [90°, βmax]."""
    L, _ = sample_lengths(n, s, rng)
    beta = _shear_beta(n, s, L[:, 0], L[:, 2], rng)
    return shear_monoclinic(L, beta, s.shear_variant)


def shear_triclinic(L: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Cells (n, 6) from orthogonal lengths (n, 3) by the unit-determinant shear
    b' = b + t1·(b/a)·a, c' = c + t2·(c/a)·a + t3·(c/b)·b (volume a·b·c kept)."""
    from ..cell import cell_parameters_from_matrix

    a, b, c = L[:, 0], L[:, 1], L[:, 2]
    A = np.zeros((len(L), 3, 3))
    A[:, 0, 0] = a
    A[:, 0, 1] = t[:, 0] * b
    A[:, 1, 1] = b
    A[:, 0, 2] = t[:, 1] * c
    A[:, 1, 2] = t[:, 2] * c
    A[:, 2, 2] = c
    return cell_parameters_from_matrix(A)


def triclinic_cells(n: int, s: CellSettings, rng: np.random.Generator) -> np.ndarray:
    """Triclinic cells: b' = b + t1 a, c' = c + t2 a + t3 b (volume kept), angles in [angle_min, angle_max]."""
    if s.shear == "none":
        L, _ = sample_lengths(n, s, rng)
        return np.concatenate([L, np.full((n, 3), 90.0)], axis=1)
    out = np.empty((0, 6))
    for _ in range(1000):
        m = 2 * (n - len(out)) + 8
        L, _ = sample_lengths(m, s, rng)
        if s.shear_variant == "keep_lengths":
            ang = rng.uniform(s.angle_min, s.angle_max, (m, 3))
            params = np.concatenate([L, ang], axis=1)
        else:
            tmax = np.tan(np.radians(max(90 - s.angle_min, s.angle_max - 90)))
            params = shear_triclinic(L, rng.uniform(-tmax, tmax, (m, 3)))
        ok = np.all((params[:, 3:] >= s.angle_min) & (params[:, 3:] <= s.angle_max), axis=1)
        if s.lengths_within_bounds:
            ok &= np.all(params[:, :3] <= s.a_max * (1 + 1e-9), axis=1)
        from ..cell import cell_volume

        ok &= cell_volume(params) > 0.2 * np.prod(params[:, :3], axis=1)
        out = np.concatenate([out, params[ok]])
        if len(out) >= n:
            return out[:n]
    raise InvalidInputError("could not sample triclinic cells within the angle range")


def sample_cells(n: int, s: CellSettings, crystal_system: str, rng: np.random.Generator,
                 rhombohedral_axes: bool = False) -> np.ndarray:
    """Cells (n, 6) compatible with the lattice of `crystal_system` (gemmi's names)."""
    system = crystal_system.lower()
    if system == "triclinic":
        return triclinic_cells(n, s, rng)
    if system == "monoclinic":
        return monoclinic_cells(n, s, rng)
    if system == "orthorhombic":
        L, _ = sample_lengths(n, s, rng)
        return np.concatenate([L, np.full((n, 3), 90.0)], axis=1)
    # higher symmetry: volume (or lengths) first, then a = b (= c) with c/a ratio within 1/r..r
    out = np.empty((0, 6))
    lo_v, hi_v = s.volume_range()
    for _ in range(1000):
        m = 2 * (n - len(out)) + 8
        if system == "cubic" or rhombohedral_axes:
            a = np.cbrt(sample_volumes(m, s, rng)) if s.sampling == "volume" else rng.uniform(s.a_min, s.a_max, m)
            if rhombohedral_axes:
                al = rng.uniform(max(s.angle_min, 60.0), min(s.angle_max, 110.0), m)
                params = np.stack([a, a, a, al, al, al], axis=1)
            else:
                params = np.stack([a, a, a, *(np.full(m, 90.0),) * 3], axis=1)
        else:
            gamma = 120.0 if system in ("hexagonal", "trigonal") else 90.0
            sin_g = np.sin(np.radians(gamma))
            if s.sampling == "volume":
                V = sample_volumes(m, s, rng)
                ratio = np.exp(rng.uniform(-np.log(s.ratio_max), np.log(s.ratio_max), m))  # c/a
                a = np.cbrt(V / (ratio * sin_g))
                c = ratio * a
            else:
                a, c = rng.uniform(s.a_min, s.a_max, m), rng.uniform(s.a_min, s.a_max, m)
            params = np.stack([a, a, c, np.full(m, 90.0), np.full(m, 90.0), np.full(m, gamma)], axis=1)
        ok = np.all((params[:, :3] >= s.a_min * (1 - 1e-9)) & (params[:, :3] <= s.a_max * (1 + 1e-9)), axis=1)
        out = np.concatenate([out, params[ok]])
        if len(out) >= n:
            return out[:n]
    raise InvalidInputError(f"no {system} cells fit a_min={s.a_min}, a_max={s.a_max}")
