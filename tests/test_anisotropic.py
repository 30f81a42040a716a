"""Anisotropic displacement: the U_ij structure factor against gemmi, site-symmetry constraints of U, analytic
derivatives, and the refinement (recovers U_ij; a non-positive-definite atom falls back to Uiso)."""

from dataclasses import replace

import gemmi
import numpy as np
import pytest

from crystalstudio.crystal.reflections import unique_reflections
from crystalstudio.crystal.structure import Site, Structure, u_cif_to_cartesian
from crystalstudio.crystal.symmetry import SpaceGroup
from crystalstudio.crystal.cell import UnitCell
from crystalstudio.io.structures import read_structure
from crystalstudio.phasing.anisotropic import (adp_basis, anisotropic_allowed, atom_factors_aniso, isotropic_u6,
                                               refine_anisotropic, u_eigenvalues)
from crystalstudio.phasing.refinement import ObservedData, calculated_f, site_symmetry
from tests.realdata import PAIRS, needs_data

PAIR_MODELS = sorted({p[0] for p in PAIRS})


def _gemmi_f(structure, hkl):
    ss = structure.to_gemmi()
    calc = gemmi.StructureFactorCalculatorX(ss.cell)
    return np.array([calc.calculate_sf_from_small_structure(ss, [int(x) for x in h]) for h in hkl])


@pytest.mark.parametrize("model", PAIR_MODELS)
def test_anisotropic_structure_factors_match_gemmi(model):
    """exp(−2π² hᵀU*h) over the symmetry images, on the published anisotropic models: ≤ 1e-5 of max |F|."""
    st = read_structure(needs_data("pairs", model))
    hkl = unique_reflections(st.cell, st.space_group, 0.8)
    hkl = hkl[np.random.default_rng(0).permutation(len(hkl))[:300]]
    G = _gemmi_f(st, hkl)
    F = atom_factors_aniso(hkl, st.cell, st.space_group, st.elements, st.xyz, st.u_aniso
                           if st.u_aniso is not None else np.array([isotropic_u6(u, st.cell) for u in st.u_iso]),
                           st.crystallographic_occupancies())[0].sum(0)
    scale = np.max(np.abs(G))
    assert np.max(np.abs(F - G)) / scale < 1e-5
    assert np.max(np.abs(calculated_f(st, hkl) - G)) / scale < 1e-5  # the refinement's F_calc uses U_ij too


def test_adp_site_symmetry_constraints():
    """Allowed U: 6 on a general position, 4 on a 2-fold axis, 2 on a 3-fold axis, 1 at m-3m; the published
    U of atoms on special positions lie in the allowed space and the isotropic tensor always does."""
    sg = SpaceGroup.from_name("Pm-3m")
    cell = UnitCell(4.0, 4.0, 4.0, 90, 90, 90)
    assert adp_basis([0, 0, 0], sg, cell).shape[1] == 1
    assert adp_basis([0.11, 0.23, 0.37], sg, cell).shape[1] == 6
    st = read_structure(needs_data("pairs", "cod2240189_R-3c", "2240189.res"))  # Fe on -3 (3-fold), Cl on 2-fold
    dims = {}
    for s in st.sites:
        B = adp_basis(s.xyz % 1.0, st.space_group, st.cell)
        dims[s.label] = B.shape[1]
        iso = isotropic_u6(0.02, st.cell)
        assert np.allclose(B @ (B.T @ iso), iso, atol=1e-12)
        if s.u_aniso is not None:
            assert np.allclose(B @ (B.T @ s.u_aniso), s.u_aniso, atol=2e-5), s.label  # published to 5 decimals
    assert dims["FE1"] == 2 and dims["CL1"] == 4 and sorted(dims.values())[-1] == 6


def test_anisotropic_derivatives_match_finite_differences():
    st = read_structure(needs_data("pairs", "cod2240189_R-3c", "2240189.res"))
    hkl = unique_reflections(st.cell, st.space_group, 1.0)[:60]
    occ = st.crystallographic_occupancies()
    F, dX, dU = atom_factors_aniso(hkl, st.cell, st.space_group, st.elements, st.xyz, st.u_aniso, occ, True)
    e = 1e-6
    for c in range(3):
        x = st.xyz.copy()
        x[:, c] += e
        F2 = atom_factors_aniso(hkl, st.cell, st.space_group, st.elements, x, st.u_aniso, occ)[0]
        assert np.max(np.abs((F2 - F) / e - dX[..., c])) < 1e-4 * np.max(np.abs(dX))
    for c in range(6):
        u = st.u_aniso.copy()
        u[:, c] += e
        F2 = atom_factors_aniso(hkl, st.cell, st.space_group, st.elements, st.xyz, u, occ)[0]
        assert np.max(np.abs((F2 - F) / e - dU[..., c])) < 1e-4 * np.max(np.abs(dU))


def _synthetic(structure, d_min=0.8, k=3.0):
    hkl = unique_reflections(structure.cell, structure.space_group, d_min)
    fo2 = k * np.abs(calculated_f(structure, hkl)) ** 2
    sigma = 0.01 * fo2 + 0.002 * fo2.max()
    return ObservedData(hkl, fo2, sigma, structure.cell, structure.space_group)


def test_refinement_recovers_published_u_ij():
    """Data calculated from the published anisotropic R-3c model (Fe on a 3-fold axis, Cl on 2-fold axes);
    refinement from the isotropic atoms, shifted 0.05 Å, recovers every U_ij and R1 → 0."""
    st = read_structure(needs_data("pairs", "cod2240189_R-3c", "2240189.res"))
    st = replace(st, sites=[s for s in st.sites if s.occupancy == 1.0])  # ordered sites only
    data = _synthetic(st)
    rng = np.random.default_rng(1)
    start = replace(st, sites=[replace(s, u_aniso=None, u_iso=s.u_equivalent(st.cell),
                                       xyz=s.xyz + rng.normal(0, 0.05, 3) / st.cell.parameters[:3]) for s in st.sites])
    assert anisotropic_allowed(len(data), st.n_sites)
    res = refine_anisotropic(start, data, cycles=10, tolerance=1e-8)
    assert res.statistics.r1 < 2e-3 and not res.non_positive_definite
    for a, b in zip(res.structure.sites, st.u_aniso):  # isotropic published sites as their spherical tensor
        assert np.max(np.abs(a.u_aniso - b)) < 5e-4, a.label
    free = [site_symmetry(s.xyz, st.space_group, st.cell)[1].basis.shape[1] for s in st.sites]
    adp = [adp_basis(s.xyz % 1, st.space_group, st.cell).shape[1] for s in st.sites]
    assert res.statistics.n_par == 1 + sum(free) + sum(adp) and min(adp) < 6  # special positions constrained


def test_non_positive_definite_atom_falls_back_to_isotropic():
    """One atom of the data has a flat U (a negative principal value): its refined U_ij go non-positive-
    definite, so it is refined isotropically and reported; the others stay anisotropic."""
    cell = UnitCell(7.0, 8.0, 9.0, 90, 100, 90)
    sg = SpaceGroup.from_name("P21/c")
    bad_cart = np.diag([0.04, 0.03, -0.008])
    A, n = cell.orthogonalization, cell.reciprocal_parameters[:3]
    Ainv = np.linalg.inv(A)
    U = Ainv @ bad_cart @ Ainv.T / np.outer(n, n)
    bad = np.array([U[0, 0], U[1, 1], U[2, 2], U[0, 1], U[0, 2], U[1, 2]])
    rng = np.random.default_rng(5)
    sites = [Site(f"C{i + 1}", "C" if i else "S", rng.uniform(0, 1, 3), 1.0, 0.03,
                  isotropic_u6(0.02 + 0.01 * i, cell) * np.array([1.0, 1.2, 0.9, 1.0, 1.0, 1.0]))
             for i in range(4)]
    sites[1] = replace(sites[1], u_aniso=bad)
    truth = Structure(cell, sg, sites)
    assert u_eigenvalues(bad, cell).min() < 0
    data = _synthetic(truth, d_min=0.75)
    start = replace(truth, sites=[replace(s, u_aniso=None, u_iso=0.03) for s in truth.sites])
    res = refine_anisotropic(start, data, cycles=8)
    assert res.non_positive_definite == ["C2"]
    assert res.structure.sites[1].u_aniso is None and res.structure.sites[1].u_iso > 0
    for s in res.structure.sites[:1] + res.structure.sites[2:]:
        assert s.u_aniso is not None and u_eigenvalues(s.u_aniso, cell).min() > 0
        assert np.isclose(s.u_iso, np.trace(u_cif_to_cartesian(s.u_aniso, cell)) / 3)
