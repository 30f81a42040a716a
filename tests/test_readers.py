"""Readers on real files, fixed-column corner cases, and corrupted copies of real files."""

import os
import shutil

import gemmi
import numpy as np
import pytest

from crystalstudio.crystal.maps import density_map
from crystalstudio.crystal.reflections import french_wilson, merge_equivalents
from crystalstudio.errors import InputFileError
from crystalstudio.io.ccp4 import read_ccp4_map, write_ccp4_map
from crystalstudio.io.cif import read_cif_reflections, read_cif_structure, write_fcf
from crystalstudio.io.hkl import format_hklf4, parse_hklf, read_hklf
from crystalstudio.io.reflections import read_reflections
from crystalstudio.io.shelx import format_res, parse_shelx, read_shelx
from crystalstudio.io.structures import read_structure
from tests.realdata import EMBEDDED, PAIRS, needs_data


def test_hklf4_fixed_columns():
    text = "  -1  10-100 1234.56   12.34\n   1   2   3-1234.5    5.00  12\n   0   0   0    0.00    0.00\nHKLF 4\nEND\n"
    d = parse_hklf(text)
    assert d.hkl.tolist() == [[-1, 10, -100], [1, 2, 3]]
    assert d.values.tolist() == [1234.56, -1234.5]
    assert d.batch.tolist() == [0, 12]
    assert d.notes == []


def test_hklf4_round_trip(tmp_path):
    hkl = np.array([[1, 2, 3], [-10, 0, 5]])
    p = tmp_path / "x.hkl"
    p.write_text(format_hklf4(hkl, [12.5, 99999.0], [0.5, 3.0]))
    d = read_hklf(p)
    assert d.hkl.tolist() == hkl.tolist() and d.values.tolist() == [12.5, 99999.0]


@pytest.mark.parametrize("structure,reflections", PAIRS)
def test_pairs_read(structure, reflections):
    st = read_structure(needs_data("pairs", structure))
    d = read_reflections(needs_data("pairs", reflections), cell=st.cell, space_group=st.space_group)
    assert st.n_sites > 0 and len(d) > 50 and d.kind in "IF"
    assert np.all(np.isfinite(d.values))


@pytest.mark.parametrize("path", EMBEDDED)
def test_embedded_hkl_cifs(path):
    p = needs_data("pairs", path)
    d = read_reflections(p)
    assert d.cell is not None and d.space_group is not None and len(d) > 50


def test_companion_file_supplies_symmetry():
    d = read_reflections(needs_data("pairs", "ZZULI2_Cu_P21n", "ZZULI2.hkl"))
    assert d.space_group.name == "P 1 21/n 1"  # the title says P2(1)/c, the SYMM card says P2₁/n
    assert d.cell.beta == pytest.approx(108.814)


def test_dot_style_cif_equals_classic():
    a = read_cif_structure(needs_data("pairs", "ylid_P212121_formats", "olex.cif"))
    b = read_cif_structure(needs_data("pairs", "ylid_P212121_formats", "shelx.cif"))
    assert a.space_group == b.space_group and np.allclose(a.cell.parameters, b.cell.parameters)
    assert [s.label.upper() for s in a.sites] == [s.label.upper() for s in b.sites]
    heavy = [i for i, site in enumerate(a.sites) if site.element != "H"]  # same model, refined separately
    assert np.allclose(a.xyz[heavy], b.xyz[heavy], atol=2e-3)


def test_embedded_res_file_and_hkl_cif():
    p = needs_data("structures", "qctbx_L-Alanine_23K.cif")
    st = read_structure(p)
    assert st.space_group.number == 19 and st.n_sites == 13


def test_fcf_list6_phases_match_our_calculation():
    """P-1.fcf (SHELXL LIST 6) carries Fc and φc of its model; our calculation reproduces the phases."""
    from crystalstudio.crystal.structure_factors import structure_factors

    st = read_structure(needs_data("pairs", "ntd106c_P-1", "P-1.cif"))
    d = read_cif_reflections(needs_data("pairs", "ntd106c_P-1", "P-1.fcf"))
    assert d.phases is not None
    F = structure_factors(st, d.hkl)
    strong = np.abs(F) > 0.2 * np.abs(F).max()
    dphi = np.angle(np.exp(1j * (np.angle(F[strong]) - d.phases[strong])))
    assert np.mean(np.abs(dphi) < 0.1) > 0.95


def test_mtz_and_xds(tmp_path):
    p = needs_data("maps", "gemmi_5e5z.mtz")
    d = read_reflections(p)
    mtz = gemmi.read_mtz_file(str(p))
    assert d.kind == "I" and len(d) == np.isfinite(np.array(mtz.column_with_label("I"))).sum()
    xds = tmp_path / "XDS_ASCII.HKL"
    items = ["H", "K", "L", "IOBS", "SIGMA(IOBS)", "XD", "YD", "ZD", "RLP", "PEAK", "CORR", "MAXC"]
    head = ["!FORMAT=XDS_ASCII    MERGE=FALSE    FRIEDEL'S_LAW=TRUE", "!SPACE_GROUP_NUMBER=   14",
            "!UNIT_CELL_CONSTANTS=    10.000    11.000    12.000  90.000  95.000  90.000",
            "!X-RAY_WAVELENGTH=  0.71073", f"!NUMBER_OF_ITEMS_IN_EACH_DATA_RECORD={len(items)}"]
    head += [f"!ITEM_{n}={i + 1}" for i, n in enumerate(items)] + ["!END_OF_HEADER"]
    rows = ["  1  0  0  1.234E+02  5.0E+00 1 1 1 0.1 100 90 10", "  0  1  1  2.5E+01  2.0E+00 1 1 1 0.1 100 90 10",
            "  0  1  1  2.7E+01 -1.0E+00 1 1 1 0.1 100 90 10", "!END_OF_DATA"]
    xds.write_text("\n".join(head + rows) + "\n")
    d = read_reflections(xds)
    assert d.space_group.number == 14 and d.hkl.tolist() == [[1, 0, 0], [0, 1, 1]]
    assert "misfits" in d.notes[0]


def test_merging_and_negative_intensities():
    d = read_reflections(needs_data("pairs", "Co110_P-1", "Co110.hkl"))
    m = merge_equivalents(d)
    assert len(m.data) < len(d) and 0 < m.r_int < 0.1
    F, sF = m.data.amplitudes()
    neg = m.data.values < 0
    assert neg.any() and np.all(F[neg] > 0) and np.all(np.isfinite(sF))  # negatives kept, not dropped
    strong = m.data.values > 20 * m.data.sigmas
    assert np.allclose(F[strong], np.sqrt(m.data.values[strong]), rtol=0.01)


def test_french_wilson_analytic_limit():
    """A centric and an acentric reflection with I = 0 ± σ have E|F| above zero and below √(Σ)."""
    from crystalstudio.crystal.cell import UnitCell
    from crystalstudio.crystal.symmetry import SpaceGroup

    sg = SpaceGroup.from_name("P21/c")
    cell = UnitCell(10, 11, 12, 90, 100, 90)
    hkl = np.array([[h, k, l] for h in range(1, 6) for k in range(1, 6) for l in range(1, 6)] * 3)
    I = np.full(len(hkl), 100.0)
    I[:5] = 0.0
    F, s = french_wilson(hkl, I, np.full(len(hkl), 10.0), cell, sg)
    assert np.all((F[:5] > 0) & (F[:5] < 10))
    assert np.allclose(F[5:], 10.0, rtol=0.1)


def test_fcf_and_map_round_trip(tmp_path):
    from crystalstudio.crystal.structure_factors import structure_factors
    from crystalstudio.crystal.reflections import unique_reflections

    st = read_structure(needs_data("pairs", "epoxide_P21n", "epoxide.cif"))
    hkl = unique_reflections(st.cell, st.space_group, 0.9)
    F = structure_factors(st, hkl)
    write_fcf(tmp_path / "s.fcf", hkl, np.abs(F), np.ones(len(F)), F, st.cell, st.space_group, title="epoxide")
    d = read_reflections(tmp_path / "s.fcf")
    assert d.space_group == st.space_group and np.allclose(d.values, np.abs(F), atol=2e-3)
    ok = np.abs(F) > 1
    assert np.allclose(np.exp(1j * d.phases[ok]), np.exp(1j * np.angle(F[ok])), atol=1e-2)
    dmap = density_map(st.cell, st.space_group, hkl, F, d_min=0.9)
    write_ccp4_map(tmp_path / "m.ccp4", dmap)
    back = read_ccp4_map(tmp_path / "m.ccp4")
    assert back.shape == dmap.shape and np.allclose(back.values, dmap.values, atol=1e-4 * np.abs(dmap.values).max())
    assert back.space_group == st.space_group


def test_res_round_trip(tmp_path):
    sf = read_shelx(needs_data("pairs", "Co110_P-1", "Co110.res"))
    text = format_res(sf.structure)
    back = parse_shelx(text).structure
    assert back.space_group == sf.structure.space_group
    assert np.allclose(back.xyz, sf.structure.xyz, atol=1e-6)
    assert np.allclose(back.occupancies, sf.structure.occupancies)


# ------------------------------------------------------------------ corrupted copies
def _copy(src, tmp_path, name=None):
    dst = tmp_path / (name or src.name)
    shutil.copy(src, dst)
    return dst


def test_truncated_hkl_names_line(tmp_path):
    src = needs_data("pairs", "Co110_P-1", "Co110.hkl")
    text = src.read_text()
    cut = text.index("\n", 5000) + 18  # in the middle of the next line, inside the value column
    p = tmp_path / "cut.hkl"
    p.write_text(text[:cut])
    with pytest.raises(InputFileError) as e:
        read_hklf(p)
    assert e.value.line == text[:cut].count("\n") + 1 and "cut.hkl" in str(e.value)


def test_misformatted_hkl_line(tmp_path):
    src = needs_data("pairs", "sucrose_P21", "sucrose.hkl")
    lines = src.read_text().splitlines()
    lines[99] = lines[99][:14] + "ab.cd" + lines[99][19:]
    p = tmp_path / "bad.hkl"
    p.write_text("\n".join(lines))
    with pytest.raises(InputFileError, match="line 100"):
        read_hklf(p)


def test_binary_empty_and_gigantic(tmp_path):
    rng = np.random.default_rng(1)
    b = tmp_path / "noise.hkl"
    b.write_bytes(rng.integers(0, 256, 5000, dtype=np.uint8).tobytes())
    with pytest.raises(InputFileError, match="binary"):
        read_reflections(b)
    e = tmp_path / "empty.res"
    e.write_text("")
    with pytest.raises(InputFileError, match="empty"):
        read_structure(e)
    g = tmp_path / "huge.hkl"
    with open(g, "wb") as f:
        f.truncate(3 * 1024**3)  # sparse: costs no disk
    with pytest.raises(InputFileError, match="GiB"):
        read_reflections(g)


def test_truncated_res_and_cif(tmp_path):
    src = needs_data("pairs", "Co110_P-1", "Co110.res")
    text = src.read_text()
    p = tmp_path / "cut.res"
    p.write_text(text[: len(text) // 2])
    with pytest.raises(InputFileError, match="cut.res"):
        read_structure(p)
    cif = needs_data("pairs", "timmy_P212121", "timmy.cif").read_text()
    start = cif.index("_shelx_hkl_file")
    q = tmp_path / "cut.cif"
    q.write_text(cif[: start + 5000])  # unterminated text field
    with pytest.raises(InputFileError, match="cut.cif"):
        read_reflections(q)


def test_res_with_bad_sfac_number(tmp_path):
    text = needs_data("pairs", "water_Mn_P21c", "water.ins").read_text().splitlines()
    for i, line in enumerate(text):
        if line.startswith("MN1") or line.startswith("Mn1"):
            parts = line.split()
            parts[1] = "42"
            text[i] = " ".join(parts)
            break
    else:
        pytest.fail("no Mn1 line")
    p = tmp_path / "w.ins"
    p.write_text("\n".join(text))
    with pytest.raises(InputFileError, match=rf"line {i + 1}: atom .*SFAC number 42"):
        read_structure(p)
