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
    sigma: np.ndarray  # standard uncertainties of the ratios
    scale: float
    r_factor: float  # Σ|I − I_calc| / Σ I over the bins used
    n_bins: int
    model_image: Optional[np.ndarray] = None  # I_calc on the input grid
    difference: Optional[np.ndarray] = None  # I − I_calc on the input grid

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


def refine_warren_cowley(image: np.ndarray, geometry: PlaneGeometry, q_max: float, *, max_index: int = 3,
                         symmetry: str = "none", bins: int = 40, threshold: float = 0.05,
                         mask: Optional[np.ndarray] = None) -> WarrenCowleyResult:
    """Refine β_uv ratios from an I_SRO image on the Q grid of `geometry`."""
    img = np.asarray(image, dtype=np.float64)
    size = img.shape[0]
    x, y = q_grid(q_max, size)
    h, k = geometry.indices(x, y)
    good = np.isfinite(img)
    if mask is not None:
        good &= ~mask
    if good.sum() < 50:
        raise InvalidInputError("too few measured pixels for a Warren–Cowley refinement")
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
    use &= Ib >= threshold * np.nanmax(Ib[use])
    Ib, hb, kb, wts = Ib[use], hb[use], kb[use], n[use]
    classes = vector_classes(max_index, symmetry)

    def design(hh, kk):
        cols = [np.ones_like(hh)]
        for cl in classes:
            cols.append(sum(np.cos(2 * np.pi * (hh * u + kk * v)) for u, v in cl))
        return np.stack(cols, axis=-1)

    A = design(hb, kb)
    if A.shape[0] <= A.shape[1]:
        raise InvalidInputError(f"{A.shape[0]} bins for {A.shape[1]} parameters: lower max_index or the threshold")
    sw = np.sqrt(wts)
    coef, *_ = np.linalg.lstsq(A * sw[:, None], Ib * sw, rcond=None)
    calc = A @ coef
    resid = Ib - calc
    dof = max(1, A.shape[0] - A.shape[1])
    s2 = np.sum(wts * resid**2) / dof
    cov = s2 * np.linalg.pinv((A * wts[:, None]).T @ A)
    s = coef[0]
    ratios = coef[1:] / s
    # σ of c_i/c_0 by first-order propagation
    var = (np.diag(cov)[1:] / s**2 + ratios**2 * cov[0, 0] / s**2 - 2 * ratios * cov[0, 1:] / s**2)
    # model and difference on the full grid (the class coefficients per member vector)
    A_full = design(h, k)
    model = (A_full.reshape(-1, A_full.shape[-1]) @ coef).reshape(img.shape)
    return WarrenCowleyResult([c[0] for c in classes], classes, ratios, np.sqrt(np.maximum(var, 0)), float(s),
                              float(np.sum(np.abs(resid)) / np.sum(np.abs(Ib))), int(len(Ib)), model,
                              np.where(good, img - model, np.nan))
