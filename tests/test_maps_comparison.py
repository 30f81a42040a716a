"""Density maps, peak search and phase comparison (map r, phase error, origin search)."""

import gemmi
import numpy as np
import pytest

from crystalstudio.crystal.comparison import compare_phases
from crystalstudio.crystal.maps import density_map, find_peaks, structure_factors_from_map
from crystalstudio.crystal.reflections import unique_reflections
from crystalstudio.crystal.structure_factors import structure_factors
from crystalstudio.io.structures import read_structure
from tests.realdata import needs_data


@pytest.fixture(scope="module")
def epoxide():
    st = read_structure(needs_data("pairs", "epoxide_P21n", "epoxide.cif"))
    hkl = unique_reflections(st.cell, st.space_group, 0.7)
    return st, hkl, structure_factors(st, hkl)


def test_map_matches_gemmi_fft(epoxide):
    st, hkl, F = epoxide
    dmap = density_map(st.cell, st.space_group, hkl, F, d_min=0.7)
    asu = gemmi.ComplexAsuData(st.cell.to_gemmi(), st.space_group.gemmi, hkl.astype(np.int32), F.astype(np.complex64))
    ref = asu.transform_f_phi_to_map(exact_size=list(dmap.shape))
    assert np.allclose(dmap.values, np.array(ref), atol=1e-3 * np.abs(dmap.values).max())
    # and back: F sampled from the map
    back = structure_factors_from_map(dmap, hkl)
    assert np.allclose(back, F, atol=1e-6 * np.abs(F).max())


@pytest.mark.parametrize("name", [("pairs", "epoxide_P21n", "epoxide.cif"), ("structures", "codtools_2000001.cif"),
                                  ("pairs", "alanine_P212121", "alanine.cif")])
def test_highest_peaks_on_atoms(name):
    """Every non-H atom of the asymmetric unit has a peak within 0.1 Å (map from calculated F to 0.6 Å)."""
    st = read_structure(needs_data(*name))
    hkl = unique_reflections(st.cell, st.space_group, 0.6)
    F = structure_factors(st, hkl)
    dmap = density_map(st.cell, st.space_group, hkl, F, d_min=0.6, sampling=4)
    heavy = [s for s in st.sites if s.element != "H"]
    peaks = find_peaks(dmap, max_peaks=len(heavy), min_distance=0.9)
    A = st.cell.orthogonalization
    for s in heavy:
        images = st.space_group.apply(s.xyz)
        d = images[:, None, :] - peaks.xyz[None]
        d -= np.rint(d)
        dist = np.linalg.norm(d @ A.T, axis=-1).min()
        assert dist < 0.1, (s.label, dist)


def test_map_correlation_properties(epoxide):
    st, hkl, F = epoxide
    sg = st.space_group
    phi = np.angle(F)
    same = compare_phases(hkl, np.abs(F), phi, phi, sg)
    assert same.r == pytest.approx(1.0) and same.phase_error == pytest.approx(0.0, abs=1e-6)
    # a permissible origin shift (1/2, 0, 1/2) is invisible
    shifted = phi + 2 * np.pi * hkl @ np.array([0.5, 0.0, 0.5])
    c = compare_phases(hkl, np.abs(F), phi, shifted, sg)
    assert c.r == pytest.approx(1.0) and c.phase_error < 1e-6
    # random phases (0/π for a centrosymmetric group) correlate near zero
    rng = np.random.default_rng(0)
    rs = [compare_phases(hkl, np.abs(F), rng.choice([0.0, np.pi], size=len(phi)), phi, sg).r for _ in range(10)]
    # best of 8 origins of a random set: well below the 0.8 "solved" threshold; with |F|² weights the spread
    # is set by the few strongest reflections, σ = √Σw²/Σw for one origin
    w = np.abs(F) ** 2 * sg.multiplicity(hkl)
    sigma = np.sqrt(np.sum(w**2)) / np.sum(w)
    assert max(rs) < 0.4 and np.mean(rs) < 3 * sigma


def test_enantiomorph_and_polar_axis():
    st = read_structure(needs_data("pairs", "sucrose_P21", "nosphera2_sucrose.cif"))  # P21: origin floats along b
    hkl = unique_reflections(st.cell, st.space_group, 1.0)
    F = structure_factors(st, hkl)
    phi = np.angle(F)
    moved = -phi + 2 * np.pi * hkl @ np.array([0.5, 0.3171, 0.0])  # enantiomorph, shifted along the polar axis
    c = compare_phases(hkl, np.abs(F), phi, moved, st.space_group)
    assert c.inverted and c.r > 0.999
    c2 = compare_phases(hkl, np.abs(F), phi, moved, st.space_group, allow_inversion=False)
    assert c2.r < 0.5
