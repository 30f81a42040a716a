"""Reflection lists: unique sets to a resolution, merging of equivalents, intensities → amplitudes.

Miller indices are integer (M, 3) arrays; d-spacings in Å; intensities and amplitudes on the
file's scale. Phases in radians unless stated.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Optional

import gemmi
import numpy as np

from ..errors import InvalidInputError
from .cell import UnitCell
from .symmetry import SpaceGroup, encode_hkl


def unique_reflections(cell: UnitCell, space_group: SpaceGroup, d_min: float, d_max: float = 0.0,
                       keep_absent: bool = False) -> np.ndarray:
    """Reflections of the reciprocal ASU with d ≥ d_min (Å), sorted by h, k, l; absences removed."""
    if d_min <= 0:
        raise InvalidInputError(f"d_min must be positive, got {d_min}")
    hkl = gemmi.make_miller_array(cell.to_gemmi(), space_group.gemmi, d_min, d_max).astype(np.int64)
    hkl = hkl[np.any(hkl != 0, axis=1)]
    if not keep_absent:
        hkl = hkl[~space_group.is_absent(hkl)]
    order = np.lexsort((hkl[:, 2], hkl[:, 1], hkl[:, 0]))
    return hkl[order]


@dataclass
class ReflectionData:
    """Measured or calculated reflections.

    kind: 'I' (intensities, F²) or 'F' (amplitudes). `phases` (radians) are present for phased data.
    """

    hkl: np.ndarray
    values: np.ndarray
    sigmas: np.ndarray
    kind: str = "I"
    cell: Optional[UnitCell] = None
    space_group: Optional[SpaceGroup] = None
    phases: Optional[np.ndarray] = None
    batch: Optional[np.ndarray] = None
    source: Optional[str] = None
    wavelength: Optional[float] = None
    notes: list[str] = field(default_factory=list)

    def __post_init__(self):
        self.hkl = np.asarray(self.hkl, dtype=np.int64).reshape(-1, 3)
        self.values = np.asarray(self.values, dtype=np.float64).reshape(-1)
        self.sigmas = np.asarray(self.sigmas, dtype=np.float64).reshape(-1)
        if not (len(self.hkl) == len(self.values) == len(self.sigmas)):
            raise InvalidInputError("hkl, values and sigmas differ in length")
        if self.kind not in ("I", "F"):
            raise InvalidInputError(f"unknown reflection kind {self.kind!r}")

    def __len__(self) -> int:
        return len(self.hkl)

    def with_symmetry(self, cell: Optional[UnitCell], space_group: Optional[SpaceGroup]) -> "ReflectionData":
        return replace(self, cell=cell or self.cell, space_group=space_group or self.space_group)

    def require_symmetry(self) -> tuple[UnitCell, SpaceGroup]:
        if self.cell is None or self.space_group is None:
            raise InvalidInputError(
                f"{self.source or 'reflections'}: cell and space group are unknown; give them "
                "(companion .ins/.res/.cif, or --cell/--space-group)")
        return self.cell, self.space_group

    @property
    def d_spacings(self) -> np.ndarray:
        cell, _ = self.require_symmetry()
        return cell.d_spacing(self.hkl)

    def resolution(self) -> tuple[float, float]:
        d = self.d_spacings
        return float(np.min(d)), float(np.max(d))

    def select(self, mask) -> "ReflectionData":
        m = np.asarray(mask)
        pick = lambda a: None if a is None else a[m]
        return replace(self, hkl=self.hkl[m], values=self.values[m], sigmas=self.sigmas[m],
                       phases=pick(self.phases), batch=pick(self.batch))

    def completeness(self) -> float:
        """Fraction of the unique non-absent reflections to the data's d_min that are present (merged)."""
        cell, sg = self.require_symmetry()
        d_min, _ = self.resolution()
        expected = unique_reflections(cell, sg, d_min * 0.9999)
        asu, _, _ = sg.to_asu(self.hkl)
        present = np.unique(encode_hkl(asu[~sg.is_absent(asu)]))
        return float(np.isin(encode_hkl(expected), present).sum() / max(len(expected), 1))

    def mean_i_over_sigma(self) -> float:
        ok = self.sigmas > 0
        return float(np.mean(self.values[ok] / self.sigmas[ok])) if np.any(ok) else float("nan")

    def merged(self) -> "MergedReflections":
        cell, sg = self.require_symmetry()
        return merge_equivalents(self, sg)

    def amplitudes(self) -> tuple[np.ndarray, np.ndarray]:
        """|F| and σ(|F|) (French–Wilson for intensities; needs cell and space group for the prior)."""
        if self.kind == "F":
            return self.values.copy(), self.sigmas.copy()
        cell, sg = self.require_symmetry()
        return french_wilson(self.hkl, self.values, self.sigmas, cell, sg)


@dataclass
class MergedReflections:
    data: ReflectionData  # unique reflections in the ASU, absences removed
    multiplicity: np.ndarray
    r_int: float
    n_absent_violations: int  # absent reflections with I > 3σ
    n_input: int


def merge_equivalents(data: ReflectionData, space_group: Optional[SpaceGroup] = None) -> MergedReflections:
    """Inverse-variance weighted mean of symmetry (and Friedel) equivalents in the reciprocal ASU.

    Systematic absences are removed (and counted when significant). R_int = Σ|I − ⟨I⟩| / Σ I over
    reflections measured more than once.
    """
    sg = space_group or data.space_group
    if sg is None:
        raise InvalidInputError("merging needs a space group")
    if len(data) == 0:
        raise InvalidInputError(f"{data.source or 'reflections'}: no reflections")
    asu, shift, friedel = sg.to_asu(data.hkl)
    absent = sg.is_absent(asu)
    n_viol = int(np.count_nonzero(absent & (data.values > 3 * np.abs(data.sigmas))))
    keep = ~absent & np.any(asu != 0, axis=1)
    asu, vals, sig = asu[keep], data.values[keep], data.sigmas[keep]
    if len(asu) == 0:
        raise InvalidInputError(f"{data.source or 'reflections'}: every reflection is systematically absent")
    keys = encode_hkl(asu)
    uniq, first, inverse, counts = np.unique(keys, return_index=True, return_inverse=True, return_counts=True)
    s = np.where(sig > 0, sig, np.nan)
    w = np.where(np.isfinite(s), 1.0 / s**2, 0.0)
    has_w = np.bincount(inverse, weights=(w > 0).astype(float), minlength=len(uniq)) == counts
    wsum = np.bincount(inverse, weights=w, minlength=len(uniq))
    mean_w = np.bincount(inverse, weights=w * vals, minlength=len(uniq)) / np.where(wsum > 0, wsum, 1)
    mean_u = np.bincount(inverse, weights=vals, minlength=len(uniq)) / counts
    mean = np.where(has_w & (wsum > 0), mean_w, mean_u)
    sig_w = 1.0 / np.sqrt(np.where(wsum > 0, wsum, np.inf))
    sig_u = np.sqrt(np.bincount(inverse, weights=np.nan_to_num(sig) ** 2, minlength=len(uniq))) / counts
    sigma = np.where(has_w & (wsum > 0), sig_w, sig_u)
    multi = counts > 1
    dev = np.abs(vals - mean[inverse])
    denom = np.sum(np.abs(vals)[multi[inverse]])
    r_int = float(np.sum(dev[multi[inverse]]) / denom) if denom > 0 else float("nan")
    phases = None
    if data.phases is not None:
        ph = data.phases[keep] + shift[keep]
        ph = np.where(friedel[keep], -ph, ph)
        phases = np.angle(np.bincount(inverse, weights=np.cos(ph), minlength=len(uniq))
                          + 1j * np.bincount(inverse, weights=np.sin(ph), minlength=len(uniq)))
    hkl_u = asu[first]
    order = np.lexsort((hkl_u[:, 2], hkl_u[:, 1], hkl_u[:, 0]))
    merged = replace(data, hkl=hkl_u[order], values=mean[order], sigmas=sigma[order],
                     phases=None if phases is None else phases[order], batch=None, space_group=sg)
    return MergedReflections(merged, counts[order], r_int, n_viol, len(data))


def french_wilson(hkl, intensities, sigmas, cell: UnitCell, space_group: SpaceGroup,
                  n_bins: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """Posterior mean |F| and its σ from I, σ(I) with a Wilson prior (French & Wilson 1978).

    The prior mean intensity Σ is ε·⟨I/ε⟩ in resolution shells; acentric p(J) = exp(−J/Σ)/Σ, centric
    p(J) ∝ exp(−J/2Σ)/√J. The posterior is integrated numerically, so negative and weak intensities
    give positive, finite amplitudes instead of being dropped.
    """
    I = np.asarray(intensities, dtype=np.float64)
    s = np.asarray(sigmas, dtype=np.float64).copy()
    hkl = np.asarray(hkl, dtype=np.int64)
    if len(I) == 0:
        return I.copy(), s
    bad = ~(s > 0)
    s[bad] = np.maximum(np.abs(I[bad]) * 0.1, 1e-3 * max(np.max(np.abs(I)), 1e-12))
    eps = space_group.epsilon(hkl).astype(np.float64)
    centric = space_group.is_centric(hkl)
    inv_d2 = cell.inv_d2(hkl)
    nb = int(max(1, min(n_bins, len(I) // 50)))
    edges = np.quantile(inv_d2, np.linspace(0, 1, nb + 1))
    bins = np.clip(np.searchsorted(edges, inv_d2, side="right") - 1, 0, nb - 1)
    mean_ie = np.array([np.mean(np.maximum(I[bins == b] / eps[bins == b], 0.0)) if np.any(bins == b) else 0.0
                        for b in range(nb)])
    fallback = max(np.mean(np.maximum(I / eps, 0)), 1e-12)
    mean_ie = np.where(mean_ie > 0, mean_ie, fallback)
    # smooth the shell means (3-point) for stability with few reflections per shell
    if nb >= 3:
        mean_ie = np.convolve(np.pad(mean_ie, 1, mode="edge"), np.ones(3) / 3, mode="valid")
    Sigma = eps * mean_ie[bins]
    # quadrature in J ∈ [0, Jmax] with a sqrt-spaced grid (resolves the centric 1/√J singularity)
    n_q = 256
    u = (np.arange(n_q) + 0.5) / n_q
    jmax = np.maximum(I, 0) + 8 * s + 2 * Sigma
    J = (u[None, :] ** 2) * jmax[:, None]  # (M, n_q)
    dJ = 2 * u[None, :] * jmax[:, None] / n_q
    loglik = -0.5 * ((I[:, None] - J) / s[:, None]) ** 2
    logprior = np.where(centric[:, None], -J / (2 * Sigma[:, None]) - 0.5 * np.log(J), -J / Sigma[:, None])
    logp = loglik + logprior
    logp -= logp.max(axis=1, keepdims=True)
    p = np.exp(logp) * dJ
    Z = p.sum(axis=1)
    F = (p * np.sqrt(J)).sum(axis=1) / Z
    EJ = (p * J).sum(axis=1) / Z
    sigF = np.sqrt(np.maximum(EJ - F**2, 0.0))
    return F, sigF


def simple_amplitudes(intensities, sigmas) -> tuple[np.ndarray, np.ndarray]:
    """|F| = √max(I, 0) with σF = σI/(2|F|) (σF = √σI where F = 0): the naive conversion."""
    I = np.asarray(intensities, dtype=np.float64)
    s = np.asarray(sigmas, dtype=np.float64)
    F = np.sqrt(np.maximum(I, 0.0))
    sf = np.where(F > 0, s / (2 * np.where(F > 0, F, 1)), np.sqrt(np.abs(s)))
    return F, sf


def index_sphere_half_grid(max_index: int = 10) -> np.ndarray:
    """Miller indices with h ∈ [−m, m], k, l ∈ [0, m], h² + k² + l² ≤ m², without 000, ordered by
    h, then k, then l ascending (the PhAI reflection order; 1205 reflections for m = 10)."""
    m = int(max_index)
    r = np.arange(-m, m + 1)
    h, k, l = np.meshgrid(r, np.arange(m + 1), np.arange(m + 1), indexing="ij")
    hkl = np.stack([h.ravel(), k.ravel(), l.ravel()], axis=1)
    n2 = np.sum(hkl**2, axis=1)
    return hkl[(n2 <= m * m) & (n2 > 0)]
