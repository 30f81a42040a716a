"""Unit cells and space groups against gemmi and analytic cases."""

import gemmi
import numpy as np
import pytest

from crystalstudio.crystal.cell import UnitCell, cell_volume
from crystalstudio.crystal.symmetry import SpaceGroup
from crystalstudio.errors import InvalidInputError

CELLS = [(5, 6, 7, 90, 90, 90), (7.169, 29.969, 6.807, 90, 103.66, 90), (7.9999, 9.3718, 14.7362, 82.625, 81.527, 81.726),
         (16.193, 16.193, 11.2421, 90, 90, 120)]


@pytest.mark.parametrize("p", CELLS)
def test_cell_matrices_match_gemmi(p):
    cell, g = UnitCell(*p), gemmi.UnitCell(*p)
    assert np.allclose(cell.orthogonalization, np.array(g.orth.mat.tolist()), atol=1e-10)
    assert cell.volume == pytest.approx(g.volume, rel=1e-12)
    hkl = np.array([[1, 0, 0], [1, 2, 3], [-3, 1, 4], [0, 0, 5]])
    assert np.allclose(cell.d_spacing(hkl), [g.calculate_d(list(map(int, h))) for h in hkl], rtol=1e-12)
    # G G* = I, and |a| from the metric tensor
    assert np.allclose(cell.metric_tensor @ cell.reciprocal_metric_tensor, np.eye(3), atol=1e-12)
    assert np.sqrt(cell.metric_tensor[0, 0]) == pytest.approx(p[0])
    x = np.array([0.1, 0.7, 0.3])
    assert np.allclose(cell.fractionalize(cell.orthogonalize(x)), x)
    assert np.allclose(UnitCell.from_matrix(cell.orthogonalization).parameters, p)


def test_cubic_d_spacing_analytic():
    cell = UnitCell(4.0, 4.0, 4.0)
    assert cell.d_spacing([1, 1, 1]) == pytest.approx(4 / np.sqrt(3))
    assert cell_volume([4, 4, 4, 90, 90, 90]) == pytest.approx(64.0)


@pytest.mark.parametrize("bad", [(0, 5, 5, 90, 90, 90), (5, 5, 5, 90, 90, 180), (5, 5, 5, 120, 120, 120)])
def test_bad_cells_rejected(bad):
    with pytest.raises(InvalidInputError):
        UnitCell(*bad)


@pytest.mark.parametrize("name,expected", [("P21/c", "P 1 21/c 1"), ("P2(1)/c", "P 1 21/c 1"), ("P 1 21/n 1", "P 1 21/n 1"),
                                           ("-P 2ybc", "P 1 21/c 1"), ("14", "P 1 21/c 1"), ("P-1", "P -1"),
                                           ("P212121", "P 21 21 21"), ("C2/c", "C 1 2/c 1")])
def test_space_group_names(name, expected):
    assert SpaceGroup.from_name(name).name == expected


def test_unknown_space_group():
    with pytest.raises(InvalidInputError):
        SpaceGroup.from_name("X 42/q")


def test_p21c_absences_and_symmetry_facts():
    sg = SpaceGroup.from_name("P21/c")
    hkl = np.array([[0, 1, 0], [0, 2, 0], [1, 0, 1], [1, 0, 2], [2, 1, 3]])
    assert sg.is_absent(hkl).tolist() == [True, False, True, False, False]
    assert sg.n_operations == 4 and sg.is_centrosymmetric and sg.inversion_at_origin
    # 8 permissible origins {0, 1/2}^3 and four inversion-centre Wyckoff pairs (2a-2d)
    shifts = sg.permissible_origin_shifts()
    assert len(shifts) == 8 and set(np.unique(shifts)) == {0.0, 0.5}
    points = sg.special_points()
    assert [p.multiplicity for p in points] == [2, 2, 2, 2]
    reps = {tuple(p.representative) for p in points}
    assert reps == {(0, 0, 0), (0, 0, 0.5), (0.5, 0, 0), (0.5, 0, 0.5)}


def test_origin_shifts_of_other_groups():
    assert len(SpaceGroup.from_name("P-1").permissible_origin_shifts()) == 8
    assert len(SpaceGroup.from_name("P212121").permissible_origin_shifts()) == 8
    p21 = SpaceGroup.from_name("P21")
    assert p21.free_origin_axes.shape == (1, 3) and abs(p21.free_origin_axes[0, 1]) == pytest.approx(1)
    assert SpaceGroup.from_name("P1").free_origin_axes.shape == (3, 3)
    assert len(SpaceGroup.from_name("Pm-3m").permissible_origin_shifts()) == 2


def test_site_multiplicity_against_gemmi():
    sg = SpaceGroup.from_name("C2/c")
    cell = UnitCell(7.169, 29.969, 6.807, 90, 103.66, 90)
    xyz = np.array([[0.0, 0.1, 0.25], [0.25, 0.25, 0.0], [0.13, 0.22, 0.31], [0, 0, 0]])
    mult = sg.site_multiplicity(xyz, cell)
    # gemmi counts the other images that fall onto the atom (site-symmetry order − 1)
    ss = gemmi.SmallStructure()
    ss.cell = gemmi.UnitCell(*cell.parameters)
    ss.spacegroup_hall = sg.hall
    ss.determine_and_set_spacegroup("H")
    ss.setup_cell_images()
    for x, m in zip(xyz, mult):
        n_same = ss.cell.is_special_position(gemmi.Fractional(*x), 0.05) + 1
        assert m == 8 // n_same
    assert mult.tolist() == [4, 4, 8, 4]


def test_reference_setting_p21n():
    sg = SpaceGroup.from_name("P 1 21/n 1")
    ref, B, o = sg.reference_setting()
    assert ref.name == "P 1 21/c 1"
    assert sg.transformed(B, o) == ref


def test_asu_mapping_and_multiplicity():
    sg = SpaceGroup.from_name("P21/c")
    h = np.array([[1, 2, 3], [-1, 2, -3], [1, -2, 3], [-1, -2, -3], [0, 2, 0]])
    asu, _, _ = sg.to_asu(h)
    assert len({tuple(x) for x in asu[:4]}) == 1
    assert sg.multiplicity(h).tolist() == [4, 4, 4, 4, 2]
