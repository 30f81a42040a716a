"""The artificial-structure generator against the generation paper's statements and analytic facts."""

import json

import numpy as np
import pytest
from scipy import stats as sps

from crystalstudio.crystal.cell import cell_volume
from crystalstudio.crystal.elements import covalent_radius
from crystalstudio.crystal.generator import GeneratorSettings, generate_batch
from crystalstudio.crystal.generator.cells import (lengths_from_volume, sample_cells, sample_lengths,
                                                   shear_monoclinic, shear_triclinic)
from crystalstudio.crystal.generator.settings import CellSettings
from crystalstudio.crystal.statistics import pair_distances
from crystalstudio.crystal.symmetry import SpaceGroup
from crystalstudio.params import ParamsError


@pytest.fixture(scope="module")
def big_batch():
    """100,000 P2₁/c structures (uniform mode, no hydrogens to keep the test quick)."""
    s = GeneratorSettings()
    s.content.include_hydrogen = False
    return generate_batch(100_000, s, seed=11, chunk=4096)


def test_special_position_shares(big_batch):
    occupied = big_batch.special.sum(axis=1)
    shares = 100 * np.array([np.mean(occupied == 0), np.mean(occupied == 1), np.mean(occupied > 1)])
    assert np.all(np.abs(shares - [81.4, 17.2, 1.4]) <= 0.7), shares
    # special atoms sit on inversion centres: site-symmetry order 2
    assert np.all(big_batch.site_order[big_batch.special] == 2)


def test_cells_within_bounds(big_batch):
    c = big_batch.cells
    assert np.all(c[:, :3] >= 4.0 - 1e-9) and np.all(c[:, :3] <= 10.0 + 1e-9)
    assert np.all((c[:, 4] >= 90) & (c[:, 4] <= 125 + 1e-9)) and np.all(c[:, [3, 5]] == 90)


@pytest.mark.parametrize("r", [1.5, 2.0, 3.0])
def test_volume_first_lengths_respect_bounds_and_ratios(r):
    rng = np.random.default_rng(0)
    s = CellSettings(ratio_max=r)
    L, V = sample_lengths(60_000, s, rng)
    srt = np.sort(L, axis=1)
    assert np.all(srt >= 4 - 1e-9) and np.all(srt <= 10 + 1e-9)
    assert np.all(srt[:, 1] / srt[:, 0] <= r + 1e-9) and np.all(srt[:, 2] / srt[:, 1] <= r + 1e-9)
    assert np.allclose(np.prod(L, axis=1), V)
    # the permutation is random: each axis is the longest about a third of the time
    assert np.allclose(np.bincount(np.argmax(L, axis=1)) / len(L), 1 / 3, atol=0.02)


def test_infeasible_volume_is_nan():
    # V = 70 with amax = 4.2 and r = 1.01: lo1 > V^(1/3) cannot happen here, but V = 1000 > amax³ can
    L = lengths_from_volume(np.array([1000.0, 64.0]), 4.0, 8.0, 2.0, np.random.default_rng(0))
    assert np.all(np.isnan(L[0])) and np.allclose(np.prod(L[1]), 64.0)


def test_shears_keep_volume():
    rng = np.random.default_rng(1)
    L = rng.uniform(4, 10, (10_000, 3))
    beta = rng.uniform(90, 125, 10_000)
    mono = shear_monoclinic(L, beta)
    assert np.max(np.abs(cell_volume(mono) / np.prod(L, axis=1) - 1)) < 1e-9
    tri = shear_triclinic(L, rng.uniform(-0.6, 0.6, (10_000, 3)))
    assert np.max(np.abs(cell_volume(tri) / np.prod(L, axis=1) - 1)) < 1e-9
    keep_len = shear_monoclinic(L, beta, "keep_lengths")
    assert np.allclose(keep_len[:, :3], L) and np.allclose(cell_volume(keep_len), np.prod(L, axis=1) * np.sin(np.radians(beta)))


def test_lognormal_volume_matches_target():
    s = CellSettings(volume_distribution="lognormal", lognormal_mu=6.0, lognormal_sigma=0.4, shear="none")
    rng = np.random.default_rng(2)
    V = cell_volume(sample_cells(20_000, s, "monoclinic", rng))
    lo, hi = s.volume_range()
    dist = sps.lognorm(s=0.4, scale=np.exp(6.0))
    trunc_cdf = lambda v: (dist.cdf(v) - dist.cdf(lo)) / (dist.cdf(hi) - dist.cdf(lo))
    assert sps.kstest(V, trunc_cdf).pvalue > 0.01


def test_naive_lengths_skew_the_volume():
    """Naive uniform lengths give V = a·b·c with E[V] = ((amin + amax)/2)³, right-skewed; volume-first
    sampling gives the uniform volume it was asked for."""
    rng = np.random.default_rng(3)
    naive = cell_volume(sample_cells(50_000, CellSettings(sampling="naive", shear="none"), "orthorhombic", rng))
    first = cell_volume(sample_cells(50_000, CellSettings(shear="none"), "orthorhombic", rng))
    assert naive.mean() == pytest.approx(7.0**3, rel=0.01)
    assert sps.skew(naive) > 0.3 and np.median(naive) < naive.mean()
    uniform = sps.uniform(64, 1000 - 64).cdf
    assert sps.kstest(first, uniform).pvalue > 0.01
    assert sps.kstest(naive, uniform).pvalue < 1e-10


def _all_pairs(batch, n):
    for i in range(n):
        st = batch.structure(i)
        if st.n_sites:
            d, idx, partner = pair_distances(st, 3.4)
            yield st, d, idx, partner


def test_uniform_mode_minimum_distance():
    batch = generate_batch(300, GeneratorSettings(), seed=5)
    dmin = min(d.min() for _, d, _, _ in _all_pairs(batch, 300) if len(d))
    assert dmin >= 1.2 - 1e-4
    assert batch.n_atoms.mean() > 10


def test_molecule_mode_bond_rules_and_distance_histogram():
    s = GeneratorSettings()
    s.content.mode = "molecules"
    m = s.molecule
    # 800 structures: a neighbour list that missed the lattice translate nearest to the candidate
    # (wrapped relative to the anchor only) broke the rule in 8 of them
    batch = generate_batch(800, s, seed=6)
    nn, violations, checked = [], 0, 0
    for st, d, idx, partner in _all_pairs(batch, 800):
        r_self = np.array([covalent_radius(x.element) for x in st.sites])[idx]
        r_partner = np.array([covalent_radius(e) for e in partner])
        rsum = r_self + r_partner
        bonded = np.abs(d - rsum) <= m.bond_window * rsum + 1e-4
        far = d >= np.clip(m.nonbonded_factor * rsum, m.nonbonded_floor, m.nonbonded_cap) - 1e-4
        violations += int(np.count_nonzero(~(bonded | far)))
        checked += len(d)
        for i in range(st.n_sites):
            di = d[idx == i]
            if len(di):
                nn.append(di.min())
    assert checked > 10_000 and violations == 0
    nn = np.array(nn)
    # the covalent-bond peak (C–H 1.07, C–C 1.52 Å ± 10 %) holds nearly every nearest neighbour, and the
    # range between one and two bond lengths (1.75–2.5 Å) is a trough
    hist, edges = np.histogram(nn, bins=np.arange(0.8, 3.45, 0.05))
    peak = hist[(edges[:-1] >= 0.9) & (edges[:-1] < 1.7)].max()
    trough = hist[(edges[:-1] >= 1.75) & (edges[:-1] < 2.5)].mean()
    assert np.mean((nn > 0.9) & (nn < 1.75)) > 0.9
    assert trough < 0.05 * peak


def test_reproducible_and_seed_dependent():
    a = generate_batch(50, GeneratorSettings(), seed=9)
    b = generate_batch(50, GeneratorSettings(), seed=9)
    c = generate_batch(50, GeneratorSettings(), seed=10)
    assert np.array_equal(a.xyz, b.xyz) and np.array_equal(a.cells, b.cells)
    assert not np.allclose(a.cells, c.cells)


@pytest.mark.parametrize("name", ["P-1", "C2/c", "P212121", "P21", "P4/nmm", "R-3", "Pm-3m"])
def test_other_space_groups(name):
    s = GeneratorSettings(space_group=name)
    s.content.special_probability = 0.5
    batch = generate_batch(40, s, seed=1)
    sg = SpaceGroup.from_name(name)
    for i in range(5):
        st = batch.structure(i)
        assert st.space_group == sg
        p = st.cell.parameters
        if sg.crystal_system in ("tetragonal", "cubic", "trigonal", "hexagonal"):
            assert p[0] == pytest.approx(p[1])
    if sg.special_points():
        assert batch.special.any()
        orders = batch.site_order[batch.special]
        assert np.all(orders > 1)
    else:
        assert not batch.special.any()
    d = min(d.min() for _, d, _, _ in _all_pairs(batch, 10) if len(d))
    assert d >= 1.2 - 1e-4


def test_structure_factors_of_batch_match_single_structures():
    from crystalstudio.crystal.reflections import index_sphere_half_grid
    from crystalstudio.crystal.structure_factors import structure_factors

    batch = generate_batch(20, GeneratorSettings(), seed=4)
    hkl = index_sphere_half_grid(10)
    assert len(hkl) == 1205
    F = batch.structure_factors(hkl, d_min=1.0).numpy()
    for i in range(5):
        st = batch.structure(i)
        ref = structure_factors(st, hkl)
        inside = st.cell.d_spacing(hkl) >= 1.0
        assert np.allclose(F[i][inside], ref[inside], atol=1e-4 * np.abs(ref).max())
        assert np.all(F[i][~inside] == 0)


def test_settings_round_trip_and_unknown_keys():
    s = GeneratorSettings()
    s.content.mode = "molecules"
    back = GeneratorSettings.from_dict(json.loads(json.dumps(s.to_dict())))
    assert back == s
    with pytest.raises(ParamsError, match=r"cell.a_maxx: unknown setting \(did you mean 'a_max'\?\)"):
        GeneratorSettings.from_dict({"cell": {"a_maxx": 3}})
    with pytest.raises(ParamsError, match="a_min .* must not exceed a_max"):
        GeneratorSettings.from_dict({"cell": {"a_min": 12.0}})
