"""Warren–Cowley short-range-order parameters from an I_SRO plane.

On a plane with integer n, I_SRO(h, k) = s·[1 + Σ_{(u,v)≠0} β_uv cos 2π(h u + k v)] where β_uv = Σ_w α_uvw
(the w components cannot be separated on one integer plane, as e^{2πi n w} = 1) and α_−v = α_v. Pixels
are folded into one reciprocal cell (h mod 1, k mod 1), binned, and each bin uses its mean fractional
coordinate; bins below a fraction of the maximum intensity are masked; symmetry constraints tie
vectors together; linear least squares gives s and s·β_uv. A normalised network output fixes only the
ratios β_uv = (s·β_uv)/s — absolute α needs an absolute scale, which the UI states.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from ..errors import InvalidInputError
from .planes import PlaneGeometry, q_grid

SYMMETRIES = {
    "none": [((1, 0), (0, 1))],
    "2/m (u,v)→(−u,v)": [((1, 0), (0, 1)), ((-1, 0), (0, 1))],
    "mm (square/rect.)": [((1, 0), (0, 1)), ((-1, 0), (0, 1)), ((1, 0), (0, -1))],
    "4mm (square)": [((1, 0), (0, 1)), ((-1, 0), (0, 1)), ((1, 0), (0, -1)), ((0, 1), (1, 0)), ((0, -1), (1, 0)),
                     ((0, 1), (-1, 0))],
    "6mm (hexagonal)": [((1, 0), (0, 1)), ((0, -1), (1, -1)), ((-1, 1), (-1, 0)), ((0, 1), (1, 0)), ((1, -1), (0, -1)),
                        ((-1, 0), (-1, 1))],
}


@dataclass
class WarrenCowleyResult:
    vectors: list  # representative (u, v) of each refined class
    members: list  # all (u, v) of each class
    alpha: np.ndarray  # β_uv / β_00 (ratios; α_00 = 1)
    sigma: np.ndarray  # standard uncertainties of the ratios (see `sigma_kind`)
    scale: float
    r_factor: float  # Σ|I − I_calc| / Σ I over the bins used
    n_bins: int
    model_image: Optional[np.ndarray] = None  # I_calc on the input grid
    difference: Optional[np.ndarray] = None  # I − I_calc on the input grid (NaN where not measured)
    sigma_fit: Optional[np.ndarray] = None  # the least-squares σ alone
    sigma_passes: Optional[np.ndarray] = None  # spread of the ratios over the network passes
    sigma_kind: str = "least-squares"  # what σ holds: 'least-squares', or 'calibrated (…)'
    source: str = ""  # what the ratios were fitted to
    form_factor: Optional[np.ndarray] = None  # the radial I_FF estimate (plane method)
    n_pixels: int = 0  # measured pixels used

    def table(self) -> list[tuple[str, float, float]]:
        return [(f"({u} {v})", float(a), float(s)) for (u, v), a, s in zip(self.vectors, self.alpha, self.sigma)]


def vector_classes(max_index: int, symmetry: str = "none") -> list[list[tuple[int, int]]]:
    """Classes of (u, v) ≠ 0 with |u|, |v| ≤ max_index, equivalent under ±v and the 2D point group."""
    try:
        ops = SYMMETRIES[symmetry]
    except KeyError:
        raise InvalidInputError(f"unknown symmetry '{symmetry}' (choose: {', '.join(SYMMETRIES)})") from None
    seen, classes = set(), []
    r = range(-max_index, max_index + 1)
    for u in r:
        for v in r:
            if (u, v) == (0, 0) or (u, v) in seen:
                continue
            orbit = set()
            frontier = [(u, v)]
            while frontier:
                a, b = frontier.pop()
                for (m11, m12), (m21, m22) in ops:
                    for s in (1, -1):
                        c = (s * (m11 * a + m12 * b), s * (m21 * a + m22 * b))
                        if c not in orbit and max(abs(c[0]), abs(c[1])) <= max_index:
                            orbit.add(c)
                            frontier.append(c)
            seen |= orbit
            classes.append(sorted(orbit, key=lambda t: (abs(t[0]) + abs(t[1]), -t[0], -t[1])))
    classes.sort(key=lambda c: (min(abs(a) + abs(b) for a, b in c), c[0]))
    return classes


def resolve_symmetry(name: str) -> str:
    """'mm' → 'mm (square/rect.)' etc.: the SYMMETRIES key a short name stands for."""
    if name in SYMMETRIES:
        return name
    match = [k for k in SYMMETRIES if k.split(" ")[0] == name]
    if not match:
        raise InvalidInputError(f"unknown symmetry '{name}' (choose: none, 2/m, mm, 4mm, 6mm)")
    return match[0]


MIN_BINS_PER_PARAMETER = 3


def fit_warren_cowley(image: np.ndarray, h: np.ndarray, k: np.ndarray, *, measured: Optional[np.ndarray] = None,
                      max_index: int = 3, symmetry: str = "none", bins: int = 40, threshold: float = 0.05,
                      source: str = "") -> WarrenCowleyResult:
    """Refine β_uv ratios from an I_SRO image whose pixels sit at fractional in-plane indices (h, k).

    Only pixels that are finite and `measured` (True = use) enter: the pixels are folded into one reciprocal
    cell, binned `bins` × `bins`, and bins below `threshold` × the brightest bin are left out."""
    img = np.asarray(image, dtype=np.float64)
    good = np.isfinite(img)
    if measured is not None:
        good &= measured
    classes = vector_classes(max_index, symmetry)
    n_par = len(classes) + 1
    if good.sum() < MIN_BINS_PER_PARAMETER * n_par:
        raise InvalidInputError(f"{int(good.sum())} measured pixels: too few for a Warren–Cowley refinement of "
                                f"{n_par} parameters")
    fh, fk = h % 1.0, k % 1.0
    bh = np.minimum((fh * bins).astype(int), bins - 1)
    bk = np.minimum((fk * bins).astype(int), bins - 1)
    idx = (bh * bins + bk)[good]
    n = np.bincount(idx, minlength=bins * bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        Ib = np.bincount(idx, weights=img[good], minlength=bins * bins) / n
        hb = np.bincount(idx, weights=fh[good], minlength=bins * bins) / n
        kb = np.bincount(idx, weights=fk[good], minlength=bins * bins) / n
    use = (n > 0) & np.isfinite(Ib)
    if use.any() and threshold > 0:
        use &= Ib >= threshold * np.nanmax(Ib[use])
    Ib, hb, kb, wts = Ib[use], hb[use], kb[use], n[use]

    def design(hh, kk):
        cols = [np.ones_like(hh)]
        for cl in classes:
            cols.append(sum(np.cos(2 * np.pi * (hh * u + kk * v)) for u, v in cl))
        return np.stack(cols, axis=-1)

    A = design(hb, kb)
    if A.shape[0] < MIN_BINS_PER_PARAMETER * A.shape[1]:
        raise InvalidInputError(f"{A.shape[0]} folded bins for {A.shape[1]} parameters (at least "
                                f"{MIN_BINS_PER_PARAMETER} per parameter needed): measure more of the plane, or "
                                "lower max_index or the threshold")
    sw = np.sqrt(wts)
    coef, *_ = np.linalg.lstsq(A * sw[:, None], Ib * sw, rcond=None)
    calc = A @ coef
    resid = Ib - calc
    dof = max(1, A.shape[0] - A.shape[1])
    s2 = np.sum(wts * resid**2) / dof
    cov = s2 * np.linalg.pinv((A * wts[:, None]).T @ A)
    s = coef[0]
    if not s > 0:
        raise InvalidInputError("the refined mean intensity is not positive: the plane holds no usable I_SRO")
    ratios = coef[1:] / s
    # σ of c_i/c_0 by first-order propagation
    var = (np.diag(cov)[1:] / s**2 + ratios**2 * cov[0, 0] / s**2 - 2 * ratios * cov[0, 1:] / s**2)
    model = (design(h.ravel(), k.ravel()) @ coef).reshape(img.shape)
    sig = np.sqrt(np.maximum(var, 0))
    return WarrenCowleyResult([c[0] for c in classes], classes, ratios, sig, float(s),
                              float(np.sum(np.abs(resid)) / np.sum(np.abs(Ib))), int(len(Ib)), model,
                              np.where(good, img - model, np.nan), sigma_fit=sig.copy(), source=source,
                              n_pixels=int(good.sum()))


def refine_warren_cowley(image: np.ndarray, geometry: PlaneGeometry, q_max: float, *, max_index: int = 3,
                         symmetry: str = "none", bins: int = 40, threshold: float = 0.05,
                         mask: Optional[np.ndarray] = None) -> WarrenCowleyResult:
    """Refine β_uv ratios from an I_SRO image on the Cartesian Q grid of `geometry` (mask: True = leave out)."""
    img = np.asarray(image, dtype=np.float64)
    x, y = q_grid(q_max, img.shape[0])
    h, k = geometry.indices(x, y)
    return fit_warren_cowley(img, h, k, measured=None if mask is None else ~mask, max_index=max_index,
                             symmetry=symmetry, bins=bins, threshold=threshold)


def radial_profile(values: np.ndarray, q_abs: np.ndarray, use: np.ndarray, shells: int = 60) -> np.ndarray:
    """Mean of `values` over `use` pixels in `shells` equal |Q| shells, interpolated back onto every pixel
    (empty shells from their neighbours)."""
    q = q_abs[use]
    lo, hi = float(q.min()), float(q.max()) + 1e-9
    edges = np.linspace(lo, hi, shells + 1)
    idx = np.clip(np.digitize(q, edges) - 1, 0, shells - 1)
    num = np.bincount(idx, values[use], shells)
    den = np.bincount(idx, minlength=shells)
    ok = den > 0
    centres = 0.5 * (edges[1:] + edges[:-1])
    prof = num[ok] / den[ok]
    return np.interp(q_abs, centres[ok], prof)


def refine_plane_radial(intensity: np.ndarray, h: np.ndarray, k: np.ndarray, q_abs: np.ndarray,
                        measured: np.ndarray, *, max_index: int = 3, symmetry: str = "none", bins: int = 40,
                        iterations: int = 4, shells: int = 60) -> WarrenCowleyResult:
    """β_uv ratios fitted to the measured plane itself, I(Q) ≈ I_FF(|Q|)·I_SRO(h, k), without networks: the
    form factor is a smooth radial profile (`shells` |Q| shells) found by alternating with the Warren–Cowley
    fit — I_FF ← ⟨I / I_SRO⟩ over each shell, then I_SRO ← fit of I / I_FF — starting from I_SRO = 1. Exact
    for alloys (I_FF = mA mB |f_A − f_B|² e^{−2Bs²} is radial); for molecules the angular part of |F_A − F_B|²
    averages out in the fold only approximately."""
    img = np.asarray(intensity, dtype=np.float64)
    use = measured & np.isfinite(img)
    if use.sum() < 100:
        raise InvalidInputError(f"{int(use.sum())} measured pixels: too few for a Warren–Cowley refinement")
    sro = np.ones_like(img)
    wc = None
    for _ in range(max(1, iterations)):
        ff = radial_profile(np.where(use, img / sro, 0.0), q_abs, use, shells)
        ff = np.maximum(ff, 1e-9 * max(float(np.max(ff)), 1e-300))
        ratio = np.where(use, img / ff, np.nan)
        wc = fit_warren_cowley(ratio, h, k, measured=use, max_index=max_index, symmetry=symmetry, bins=bins,
                               threshold=0.0, source="measured plane / radial I_FF")
        sro = np.maximum(wc.model_image, 1e-3 * wc.scale)
    wc.form_factor = ff * wc.scale
    return wc
