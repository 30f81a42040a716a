"""Structure factors against gemmi.StructureFactorCalculatorX on real structures (≤ 1e-4 relative)."""

import glob

import gemmi
import numpy as np
import pytest
import torch

from crystalstudio.crystal.reflections import unique_reflections
from crystalstudio.crystal.structure_factors import ScatteringTable, structure_factors, structure_factors_batched
from crystalstudio.io.structures import read_structure
from tests.realdata import DATA, PAIRS, needs_data

STRUCTURES = sorted(glob.glob(str(DATA / "structures" / "*.cif"))) if DATA else []
PAIR_MODELS = sorted({p[0] for p in PAIRS})


def gemmi_reference(structure, hkl):
    ss = structure.to_gemmi()
    calc = gemmi.StructureFactorCalculatorX(ss.cell)
    return np.array([calc.calculate_sf_from_small_structure(ss, list(map(int, h))) for h in hkl])


def check_against_gemmi(structure, d_min=0.8):
    hkl = unique_reflections(structure.cell, structure.space_group, d_min)
    F = structure_factors(structure, hkl)
    G = gemmi_reference(structure, hkl)
    scale = np.max(np.abs(G))
    assert np.max(np.abs(F - G)) / scale < 1e-4
    strong = np.abs(G) > 1e-2 * scale
    assert np.max(np.abs(np.angle(F[strong] / G[strong]))) < 1e-4  # phase, radians


@pytest.mark.skipif(not STRUCTURES, reason="real data folder absent")
@pytest.mark.parametrize("path", STRUCTURES, ids=lambda p: p.split("/")[-1])
def test_structures_folder_against_gemmi(path):
    check_against_gemmi(read_structure(path))


@pytest.mark.parametrize("model", PAIR_MODELS)
def test_pair_models_against_gemmi(model):
    check_against_gemmi(read_structure(needs_data("pairs", model)))


def test_gemmi_reader_agrees_with_ours():
    """Our CIF reader and gemmi's small-structure reader give the same sites."""
    path = needs_data("structures", "nosphera2_mohrs_salt.cif")
    ours = read_structure(path)
    ss = gemmi.read_small_structure(str(path))
    assert len(ours.sites) == len(ss.sites)
    for a, b in zip(ours.sites, ss.sites):
        assert a.label == b.label and a.element == b.element.name
        assert np.allclose(a.xyz, [b.fract.x, b.fract.y, b.fract.z])


def test_special_positions_counted_once():
    """An atom on an inversion centre contributes f, not 2f (chemical occupancy 1)."""
    from crystalstudio.crystal.cell import UnitCell
    from crystalstudio.crystal.structure import Site, Structure
    from crystalstudio.crystal.symmetry import SpaceGroup

    st = Structure(UnitCell(6, 7, 8, 90, 100, 90), SpaceGroup.from_name("P21/c"), [Site("Fe1", "Fe", [0, 0, 0], 1.0, 0.0)])
    F = structure_factors(st, [[0, 0, 2]])
    # two Fe per cell (0,0,0) and (0,1/2,1/2): F(002) = 2 f_Fe(s)
    from crystalstudio.crystal.elements import form_factor

    s2 = 0.25 * st.cell.inv_d2([0, 0, 2])
    assert F[0].real == pytest.approx(2 * form_factor("Fe", s2), rel=1e-10)
    assert st.expand_to_p1().n_sites == 2


def test_batch_equals_single_and_float32():
    """Two P2₁/c structures in one padded batch equal two single calls; float32 within 1e-5."""
    structs = [read_structure(needs_data("structures", n)) for n in ("codtools_2000001.cif", "codtools_2000724.cif")]
    assert structs[0].space_group == structs[1].space_group
    for s in structs:  # the batched kernel takes Uiso; use Ueq for both paths
        for site in s.sites:
            site.u_iso, site.u_aniso = site.u_equivalent(s.cell), None
    hkl = np.array([[h, k, l] for h in range(-4, 5) for k in range(0, 4) for l in range(0, 4)])
    table = ScatteringTable(structs[0].elements + structs[1].elements)
    nmax = max(s.n_sites for s in structs)

    def pad(rows, width=None):
        out = np.zeros((len(structs), nmax) + (() if width is None else (width,)))
        for i, x in enumerate(rows):
            out[i, : len(x)] = x
        return out

    args = (hkl, np.array([s.cell.parameters for s in structs]), pad([s.xyz for s in structs], 3),
            pad([table.indices(s.elements) for s in structs]).astype(np.int64),
            pad([s.crystallographic_occupancies() for s in structs]), pad([s.u_iso for s in structs]),
            structs[0].space_group, table.coefficients)
    F64 = structure_factors_batched(*args, dtype=torch.float64).numpy()
    F32 = structure_factors_batched(*args, dtype=torch.float32).numpy()
    for i, s in enumerate(structs):
        single = structure_factors(s, hkl)
        assert np.max(np.abs(F64[i] - single)) < 1e-9 * np.abs(single).max()
    assert np.max(np.abs(F32 - F64)) / np.abs(F64).max() < 1e-5


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu():
    st = read_structure(needs_data("structures", "codtools_2000001.cif"))
    hkl = unique_reflections(st.cell, st.space_group, 1.0)
    assert np.allclose(structure_factors(st, hkl, device="cuda"), structure_factors(st, hkl), rtol=1e-6, atol=1e-6)
