"""Setting changes to P2₁/c (from P2₁/n, P2₁/a or any cell choice of No. 14) and back.

A setting change x' = T x + o (fractional coordinates) gives the cell vectors (a' b' c') = (a b c)·T⁻¹,
Miller indices h' = T⁻ᵀ h and structure factors F'(h') = F(h)·exp(2πi h'·o). Among the settings of
P 1 21/c 1, the one with β closest to 90° (β ≥ 90°) and the shortest a + c is chosen, so that the cell
looks like the ones PhAI was trained on.
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass, replace

import numpy as np

from ..crystal.cell import UnitCell
from ..crystal.reflections import ReflectionData
from ..crystal.structure import Structure
from ..crystal.symmetry import SpaceGroup
from ..errors import InvalidInputError

P21C = "P 1 21/c 1"


@dataclass(frozen=True)
class SettingTransform:
    T: np.ndarray  # x_new = T x_old + o
    o: np.ndarray
    source: str  # xHM of the original setting
    target: str

    @property
    def is_identity(self) -> bool:
        return np.allclose(self.T, np.eye(3)) and np.allclose(self.o, 0)

    def cell(self, cell: UnitCell) -> UnitCell:
        return cell.transformed(np.linalg.inv(self.T))

    def xyz(self, x) -> np.ndarray:
        return np.asarray(x) @ self.T.T + self.o

    def hkl(self, h) -> np.ndarray:
        out = np.asarray(h, dtype=np.float64) @ np.linalg.inv(self.T)
        r = np.rint(out)
        if not np.allclose(out, r, atol=1e-6):
            raise InvalidInputError("setting change does not map integer Miller indices to integers")
        return r.astype(np.int64)

    def phase_shift(self, h_new) -> np.ndarray:
        """Radians to add to φ(h) to get φ'(h') (origin shift o)."""
        return 2 * np.pi * (np.asarray(h_new, dtype=np.float64) @ self.o)

    def inverse(self) -> "SettingTransform":
        Ti = np.linalg.inv(self.T)
        return SettingTransform(Ti, -Ti @ self.o, self.target, self.source)


def _transform_u(u6, old: UnitCell, new: UnitCell, T: np.ndarray) -> np.ndarray:
    """CIF Uij under x' = T x: the fractional covariance N U N transforms as T (N U N) Tᵀ."""
    u11, u22, u33, u12, u13, u23 = u6
    U = np.array([[u11, u12, u13], [u12, u22, u23], [u13, u23, u33]])
    n_old = np.diag(old.reciprocal_parameters[:3])
    n_new_inv = np.diag(1.0 / new.reciprocal_parameters[:3])
    V = n_new_inv @ T @ n_old @ U @ n_old @ T.T @ n_new_inv
    return np.array([V[0, 0], V[1, 1], V[2, 2], V[0, 1], V[0, 2], V[1, 2]])


@functools.lru_cache(maxsize=64)
def _settings_of_p21c():
    """Unimodular P (new basis = old·P, b kept) that leave P 1 21/c 1 unchanged."""
    sg = SpaceGroup.from_name(P21C)
    out = []
    for p11, p13, p31, p33 in itertools.product(range(-2, 3), repeat=4):
        for s in (1, -1):
            P = np.array([[p11, 0, p13], [0, s, 0], [p31, 0, p33]], dtype=float)
            if round(np.linalg.det(P)) != 1:
                continue
            try:
                if sg.transformed(np.linalg.inv(P)) == sg:
                    out.append(P)
            except InvalidInputError:
                continue
    return out


def phai_supports(space_group: SpaceGroup) -> bool:
    """PhAI phases P2₁/c in any of its settings (P2₁/n, P2₁/a, …: No. 14)."""
    return space_group.number == 14


def require_phai_group(space_group: SpaceGroup) -> None:
    """The one check (and message) that the data suit PhAI, for the command line, the panel and the API."""
    if not phai_supports(space_group):
        raise InvalidInputError(f"PhAI solves P2₁/c (No. 14, also as P2₁/n or P2₁/a) only; the data are in "
                                f"{space_group.short_name} (No. {space_group.number}) — use charge flipping")


def p21c_transform(space_group: SpaceGroup, cell: UnitCell) -> SettingTransform:
    """The change of setting from any No. 14 setting to the best-looking P 1 21/c 1 cell."""
    require_phai_group(space_group)
    ref, B, o = space_group.reference_setting()
    if ref.name != P21C:
        raise InvalidInputError(f"reference setting {ref.name} is not {P21C}")
    base = SettingTransform(B, o % 1.0, space_group.name, P21C)
    c0 = base.cell(cell)
    best, best_key = None, None
    for P in _settings_of_p21c():
        c1 = c0.transformed(P)
        key = (0 if c1.beta >= 90 - 1e-6 else 1, round(c1.beta - 90, 3), round(c1.a + c1.c, 3))
        if best_key is None or key < best_key:
            best, best_key = P, key
    Pinv = np.linalg.inv(best)
    return SettingTransform(Pinv @ B, Pinv @ (o % 1.0), space_group.name, P21C)


def to_p21c(structure: Structure) -> Structure:
    """The structure in the P 1 21/c 1 setting (atoms, U tensors transformed)."""
    tr = p21c_transform(structure.space_group, structure.cell)
    return transform_structure(structure, tr)


def transform_structure(structure: Structure, tr: SettingTransform) -> Structure:
    new_cell = tr.cell(structure.cell)
    sites = []
    for s in structure.sites:
        u6 = None
        if s.u_aniso is not None:
            u6 = _transform_u(s.u_aniso, structure.cell, new_cell, tr.T)
        sites.append(replace(s, xyz=tr.xyz(s.xyz) % 1.0, u_aniso=u6))
    return Structure(new_cell, SpaceGroup.from_name(tr.target), sites, structure.title, structure.wavelength,
                     structure.source)


def transform_reflections(data: ReflectionData, tr: SettingTransform) -> ReflectionData:
    h_new = tr.hkl(data.hkl)
    phases = None if data.phases is None else data.phases + tr.phase_shift(h_new)
    return replace(data, hkl=h_new, cell=tr.cell(data.cell) if data.cell is not None else None,
                   space_group=SpaceGroup.from_name(tr.target), phases=phases)
