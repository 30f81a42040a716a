"""Crystal structures: a cell, a space group and the sites of the asymmetric unit.

Occupancies are chemical (1.0 for a fully occupied atom on a special position, as in CIF); the
structure-factor sum over all operations divides by the site-symmetry order. Displacement
parameters: Uiso in Å²; Uaniso as (U11, U22, U33, U12, U13, U23) in the CIF convention
(dimensionless reciprocal-length-scaled, i.e. exp(−2π² Σ Uij hᵢ hⱼ aᵢ* aⱼ*)).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Optional

import numpy as np

from .cell import UnitCell
from .elements import normalize_symbol
from .symmetry import SpaceGroup


@dataclass
class Site:
    label: str
    element: str
    xyz: np.ndarray  # fractional
    occupancy: float = 1.0
    u_iso: float = 0.025
    u_aniso: Optional[np.ndarray] = None  # (U11, U22, U33, U12, U13, U23)

    def __post_init__(self):
        self.element = normalize_symbol(self.element)
        self.xyz = np.asarray(self.xyz, dtype=np.float64).reshape(3)
        if self.u_aniso is not None:
            self.u_aniso = np.asarray(self.u_aniso, dtype=np.float64).reshape(6)

    def u_equivalent(self, cell: UnitCell) -> float:
        """Ueq (Å²) = trace(U_cart)/3."""
        if self.u_aniso is None:
            return float(self.u_iso)
        return float(np.trace(u_cif_to_cartesian(self.u_aniso, cell)) / 3.0)


def u_cif_to_cartesian(u6, cell: UnitCell) -> np.ndarray:
    """U_cart = A N U N Aᵀ with N = diag(a*, b*, c*) (Å²)."""
    u11, u22, u33, u12, u13, u23 = np.asarray(u6, dtype=np.float64)
    U = np.array([[u11, u12, u13], [u12, u22, u23], [u13, u23, u33]])
    N = np.diag(cell.reciprocal_parameters[:3])
    A = cell.orthogonalization
    return A @ N @ U @ N @ A.T


@dataclass
class Structure:
    cell: UnitCell
    space_group: SpaceGroup
    sites: list[Site] = field(default_factory=list)
    title: str = ""
    wavelength: Optional[float] = None
    source: Optional[str] = None

    # ---------------------------------------------------------------- arrays
    @property
    def n_sites(self) -> int:
        return len(self.sites)

    @property
    def xyz(self) -> np.ndarray:
        return np.array([s.xyz for s in self.sites], dtype=np.float64).reshape(-1, 3)

    @property
    def elements(self) -> list[str]:
        return [s.element for s in self.sites]

    @property
    def occupancies(self) -> np.ndarray:
        return np.array([s.occupancy for s in self.sites], dtype=np.float64)

    @property
    def u_iso(self) -> np.ndarray:
        return np.array([s.u_equivalent(self.cell) for s in self.sites], dtype=np.float64)

    @property
    def u_aniso(self) -> Optional[np.ndarray]:
        """(N, 6) with isotropic sites expressed as equivalent anisotropic U, or None if all isotropic."""
        if all(s.u_aniso is None for s in self.sites):
            return None
        a_star = self.cell.reciprocal_parameters[:3]
        G_star = self.cell.reciprocal_metric_tensor
        out = np.empty((self.n_sites, 6))
        for i, s in enumerate(self.sites):
            if s.u_aniso is not None:
                out[i] = s.u_aniso
            else:  # U_ij = Uiso G*_ij / (a*_i a*_j)
                M = s.u_iso * G_star / np.outer(a_star, a_star)
                out[i] = [M[0, 0], M[1, 1], M[2, 2], M[0, 1], M[0, 2], M[1, 2]]
        return out

    def site_symmetry_orders(self, tolerance: float = 0.05) -> np.ndarray:
        return self.space_group.site_symmetry_order(self.xyz, self.cell, tolerance)

    def crystallographic_occupancies(self) -> np.ndarray:
        """Occupancy divided by the site-symmetry order (the SHELX/gemmi convention)."""
        return self.occupancies / self.site_symmetry_orders()

    # ---------------------------------------------------------------- expansion
    def expand_to_p1(self, tolerance: float = 0.05) -> "Structure":
        """All atoms of the unit cell (coordinates in [0,1)), one copy per special-position atom."""
        sg = self.space_group
        out: list[Site] = []
        A = self.cell.orthogonalization
        for s in self.sites:
            images = sg.apply(s.xyz) % 1.0  # (n, 3)
            kept: list[np.ndarray] = []
            for k, x in enumerate(images):
                if kept:
                    d = np.array(kept) - x
                    d -= np.rint(d)
                    if np.min(np.linalg.norm(d @ A.T, axis=1)) < tolerance:
                        continue
                kept.append(x)
                u6 = None
                if s.u_aniso is not None:
                    u6 = _rotate_u(s.u_aniso, sg.rotations[k], self.cell)
                out.append(replace(s, label=f"{s.label}_{len(kept)}" if len(kept) > 1 else s.label, xyz=x, u_aniso=u6))
        return Structure(self.cell, SpaceGroup.from_name("P 1"), out, self.title, self.wavelength, self.source)

    def composition(self) -> dict[str, float]:
        """Atoms per unit cell by element (occupancy-weighted)."""
        p1 = self.expand_to_p1()
        comp: dict[str, float] = {}
        for s in p1.sites:
            comp[s.element] = comp.get(s.element, 0.0) + s.occupancy
        return comp

    # ---------------------------------------------------------------- gemmi
    def to_gemmi(self):
        """A gemmi.SmallStructure with crystallographic occupancies (for gemmi's calculators)."""
        import gemmi

        ss = gemmi.SmallStructure()
        ss.cell = gemmi.UnitCell(*self.cell.parameters)
        ss.spacegroup_hall = self.space_group.hall
        ss.determine_and_set_spacegroup("H")
        occ = self.crystallographic_occupancies()
        for s, o in zip(self.sites, occ):
            site = gemmi.SmallStructure.Site()
            site.label = s.label
            site.type_symbol = s.element
            site.element = gemmi.Element(s.element)
            site.fract = gemmi.Fractional(*s.xyz)
            site.occ = float(o)
            site.u_iso = float(s.u_equivalent(self.cell))
            if s.u_aniso is not None:
                u = s.u_aniso
                site.aniso = gemmi.SMat33d(u[0], u[1], u[2], u[3], u[4], u[5])
            ss.add_site(site)
        ss.setup_cell_images()
        return ss


def _rotate_u(u6, R, cell: UnitCell) -> np.ndarray:
    """U (CIF convention) of the image R x + t: U' = N⁻¹ R N U N Rᵀ N⁻¹ with N = diag(a*)."""
    u11, u22, u33, u12, u13, u23 = u6
    U = np.array([[u11, u12, u13], [u12, u22, u23], [u13, u23, u33]])
    n = cell.reciprocal_parameters[:3]
    Ustar = U * np.outer(n, n)
    Ur = R @ Ustar @ R.T / np.outer(n, n)
    return np.array([Ur[0, 0], Ur[1, 1], Ur[2, 2], Ur[0, 1], Ur[0, 2], Ur[1, 2]])
