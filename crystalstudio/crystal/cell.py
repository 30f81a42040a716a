"""Unit-cell geometry.

Conventions: lengths in Å, angles in degrees. Fractional coordinates x relate to Cartesian r (Å) by
r = A x, where the columns of A are the cell vectors a, b, c with a along X, b in the XY plane and
c* along Z (the PDB/gemmi orthogonalisation). Reciprocal vectors are without 2π: s = B h with
B = (A⁻¹)ᵀ, |s| = 1/d in Å⁻¹.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InvalidInputError


def orthogonalization_matrix(params) -> np.ndarray:
    """A (…, 3, 3) from cell parameters (…, 6) = (a, b, c, α, β, γ) in Å and degrees."""
    p = np.asarray(params, dtype=np.float64)
    a, b, c = p[..., 0], p[..., 1], p[..., 2]
    al, be, ga = (np.radians(p[..., i]) for i in (3, 4, 5))
    ca, cb, cg, sg = np.cos(al), np.cos(be), np.cos(ga), np.sin(ga)
    v_unit = np.sqrt(np.clip(1 - ca**2 - cb**2 - cg**2 + 2 * ca * cb * cg, 0, None))
    m = np.zeros(p.shape[:-1] + (3, 3))
    m[..., 0, 0] = a
    m[..., 0, 1] = b * cg
    m[..., 0, 2] = c * cb
    m[..., 1, 1] = b * sg
    m[..., 1, 2] = c * (ca - cb * cg) / sg
    m[..., 2, 2] = c * v_unit / sg
    return m


def cell_parameters_from_matrix(A) -> np.ndarray:
    """Cell parameters (…, 6) from the cell vectors as columns of A (…, 3, 3)."""
    A = np.asarray(A, dtype=np.float64)
    va, vb, vc = A[..., :, 0], A[..., :, 1], A[..., :, 2]
    la, lb, lc = (np.linalg.norm(v, axis=-1) for v in (va, vb, vc))

    def angle(u, v, lu, lv):
        return np.degrees(np.arccos(np.clip(np.sum(u * v, axis=-1) / (lu * lv), -1, 1)))

    return np.stack([la, lb, lc, angle(vb, vc, lb, lc), angle(va, vc, la, lc), angle(va, vb, la, lb)], axis=-1)


def cell_volume(params) -> np.ndarray:
    """Volume in Å³ for cell parameters (…, 6)."""
    p = np.asarray(params, dtype=np.float64)
    ca, cb, cg = (np.cos(np.radians(p[..., i])) for i in (3, 4, 5))
    return p[..., 0] * p[..., 1] * p[..., 2] * np.sqrt(np.clip(1 - ca**2 - cb**2 - cg**2 + 2 * ca * cb * cg, 0, None))


@dataclass(frozen=True)
class UnitCell:
    """A unit cell (a, b, c in Å; α, β, γ in degrees)."""

    a: float
    b: float
    c: float
    alpha: float = 90.0
    beta: float = 90.0
    gamma: float = 90.0

    def __post_init__(self):
        p = self.parameters
        if not np.all(np.isfinite(p)) or min(p[:3]) <= 0:
            raise InvalidInputError("cell lengths must be positive numbers, got a, b, c = "
                                    + ", ".join(f"{x:g}" for x in p[:3]) + " Å")
        if min(p[3:]) <= 0 or max(p[3:]) >= 180:
            raise InvalidInputError("cell angles must lie strictly between 0 and 180°, got α, β, γ = "
                                    + ", ".join(f"{x:g}" for x in p[3:]) + "°")
        ca, cb, cg = np.cos(np.radians(p[3:]))
        if 1 - ca**2 - cb**2 - cg**2 + 2 * ca * cb * cg <= 1e-10:
            raise InvalidInputError("cell angles α, β, γ = " + ", ".join(f"{x:g}" for x in p[3:])
                                    + "° do not form a cell (zero volume)")

    @classmethod
    def from_parameters(cls, params) -> "UnitCell":
        return cls(*(float(x) for x in params))

    @classmethod
    def from_matrix(cls, A) -> "UnitCell":
        return cls.from_parameters(cell_parameters_from_matrix(A))

    @property
    def parameters(self) -> np.ndarray:
        return np.array([self.a, self.b, self.c, self.alpha, self.beta, self.gamma], dtype=np.float64)

    @property
    def volume(self) -> float:
        """Cell volume in Å³."""
        return float(cell_volume(self.parameters))

    @property
    def orthogonalization(self) -> np.ndarray:
        """A: fractional → Cartesian (Å); columns are a, b, c."""
        return orthogonalization_matrix(self.parameters)

    @property
    def fractionalization(self) -> np.ndarray:
        """A⁻¹: Cartesian (Å) → fractional."""
        return np.linalg.inv(self.orthogonalization)

    @property
    def metric_tensor(self) -> np.ndarray:
        """G = AᵀA (Å²): |r|² = xᵀ G x for a fractional vector x."""
        A = self.orthogonalization
        return A.T @ A

    @property
    def reciprocal_metric_tensor(self) -> np.ndarray:
        """G* = G⁻¹ (Å⁻²): 1/d² = hᵀ G* h."""
        return np.linalg.inv(self.metric_tensor)

    @property
    def reciprocal_matrix(self) -> np.ndarray:
        """B = (A⁻¹)ᵀ: Miller indices → reciprocal-space Cartesian vector (Å⁻¹, no 2π)."""
        return self.fractionalization.T

    @property
    def reciprocal_parameters(self) -> np.ndarray:
        """(a*, b*, c* in Å⁻¹, α*, β*, γ* in degrees)."""
        return cell_parameters_from_matrix(self.reciprocal_matrix)

    def orthogonalize(self, frac) -> np.ndarray:
        """Fractional (…, 3) → Cartesian Å (…, 3)."""
        return np.asarray(frac, dtype=np.float64) @ self.orthogonalization.T

    def fractionalize(self, cart) -> np.ndarray:
        """Cartesian Å (…, 3) → fractional (…, 3)."""
        return np.asarray(cart, dtype=np.float64) @ self.fractionalization.T

    def d_spacing(self, hkl) -> np.ndarray:
        """d in Å for Miller indices (…, 3); inf for 000."""
        with np.errstate(divide="ignore"):
            return 1.0 / np.sqrt(np.maximum(self.inv_d2(hkl), 0.0))

    def inv_d2(self, hkl) -> np.ndarray:
        """1/d² in Å⁻² for Miller indices (…, 3)."""
        h = np.asarray(hkl, dtype=np.float64)
        return np.einsum("...i,ij,...j->...", h, self.reciprocal_metric_tensor, h)

    def distance(self, frac1, frac2) -> np.ndarray:
        """Cartesian distance (Å) between fractional positions, without periodic images."""
        d = np.asarray(frac1, dtype=np.float64) - np.asarray(frac2, dtype=np.float64)
        return np.linalg.norm(self.orthogonalize(d), axis=-1)

    def transformed(self, P) -> "UnitCell":
        """The cell with new basis vectors (a' b' c') = (a b c)·P."""
        return UnitCell.from_matrix(self.orthogonalization @ np.asarray(P, dtype=np.float64))

    def to_gemmi(self):
        import gemmi

        return gemmi.UnitCell(*self.parameters)

    def __str__(self) -> str:
        return "a={:.4f} b={:.4f} c={:.4f} Å, α={:.3f} β={:.3f} γ={:.3f}°".format(*self.parameters)
