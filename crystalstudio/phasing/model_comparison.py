"""How much of a published structure a solved model reproduces: atoms within 0.5 Å, with the right element.

The model is first moved onto the reference's origin (and hand) by the phase comparison of both models'
structure factors (permissible origin shifts of the space group, enantiomorph where the group allows),
then each reference non-H atom is matched to the nearest model atom over symmetry images and lattice
translations. Used for the calibration of the verdict and the closing table, never during a solution.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..crystal.comparison import compare_phases
from ..crystal.structure import Structure
from .refinement import calculated_f


@dataclass
class ModelMatch:
    n_reference: int  # non-H reference atoms (occupancy ≥ min_occupancy)
    n_found: int  # of those, with a model atom within `radius`
    n_element_right: int  # of the found, with the same element
    n_model: int  # model atoms
    n_unmatched_model: int  # model atoms with no reference atom within `radius`
    map_r: float  # map correlation of the two models' phases at the best origin
    mean_distance: float  # Å over the found atoms

    @property
    def found_fraction(self) -> float:
        return self.n_found / max(self.n_reference, 1)

    @property
    def element_fraction(self) -> float:
        return self.n_element_right / max(self.n_found, 1)

    @property
    def right(self) -> bool:
        """The calibration's definition of a correct solution: ≥ 90 % of the atoms found, ≥ 90 % of them with
        the right element."""
        return self.found_fraction >= 0.9 and self.element_fraction >= 0.9


def align_to_reference(model: Structure, reference: Structure, hkl, weights) -> tuple[Structure, float]:
    """The model moved to the reference's origin/hand; returns (moved model, map r of the two phase sets)."""
    fm = calculated_f(model, hkl)
    fr = calculated_f(reference, hkl)
    c = compare_phases(hkl, weights, np.angle(fm), np.angle(fr), model.space_group)
    # compare_phases matches φ_model − 2π h·s (then negated when inverted) to φ_ref: atoms x → x − s (→ −(x − s))
    moved = []
    for s in model.sites:
        x = s.xyz - c.shift
        if c.inverted:
            x = -x
        moved.append(type(s)(s.label, s.element, x % 1.0, s.occupancy, s.u_iso, None))
    return Structure(model.cell, model.space_group, moved, model.title), float(c.r)


def match_models(model: Structure, reference: Structure, hkl, weights, radius: float = 0.5,
                 min_occupancy: float = 0.0) -> ModelMatch:
    ref_sites = [s for s in reference.sites if s.element != "H" and s.occupancy >= min_occupancy]
    if model.n_sites == 0:
        return ModelMatch(len(ref_sites), 0, 0, 0, 0, 0.0, float("nan"))
    moved, r = align_to_reference(model, reference, hkl, weights)
    sg, A = model.space_group, model.cell.orthogonalization
    img = sg.apply(moved.xyz)  # (n_ops, N, 3)
    idx = np.broadcast_to(np.arange(moved.n_sites), img.shape[:2]).reshape(-1)
    img = img.reshape(-1, 3)
    used_model = np.zeros(moved.n_sites, dtype=bool)
    found = right = 0
    dists = []
    for s in ref_sites:
        d = img - s.xyz
        d -= np.rint(d)
        dist = np.linalg.norm(d @ A.T, axis=1)
        k = int(np.argmin(dist))
        if dist[k] <= radius:
            found += 1
            dists.append(dist[k])
            j = idx[k]
            used_model[j] = True
            right += _same_site_element(moved.sites[j].element, s, ref_sites)
    return ModelMatch(len(ref_sites), found, right, moved.n_sites, int((~used_model).sum()), r,
                      float(np.mean(dists)) if dists else float("nan"))


def _same_site_element(element: str, site, ref_sites) -> bool:
    """Right when the element is the reference atom's, or that of another reference atom sharing the site
    (mixed occupancy, e.g. Sn/In)."""
    if element == site.element:
        return True
    for other in ref_sites:
        if other is not site and other.element == element and np.allclose(other.xyz, site.xyz, atol=1e-3):
            return True
    return False
