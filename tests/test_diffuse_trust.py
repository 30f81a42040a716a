"""Diffuse numbers a scientist can trust: exact layers, masks end to end, refusals, Bragg peaks, plain planes,
calibrated α uncertainties, cancel inside a network pass, volume attributes."""

import subprocess
import sys
import threading

import h5py
import numpy as np
import pytest
import torch

from crystalstudio.crystal.cell import UnitCell
from crystalstudio.diffuse.alloys import AlloySettings, AlloySimulator
from crystalstudio.diffuse.calibration import AlphaCalibration, calibration_for, fit_calibration, load_calibrations
from crystalstudio.diffuse.dsfu_net import BLOCKS, DSFUGenerator, factorise
from crystalstudio.diffuse.factorise import (FactoriseSettings, check_measured, factorise_plane, load_models,
                                             load_plane, prepare_plane, refine_alpha)
from crystalstudio.diffuse.planes import (ResampledPlane, find_bragg_peaks, plane_from_volume, punch_and_fill,
                                          resample_plane, section_at)
from crystalstudio.diffuse.warren_cowley import fit_warren_cowley, refine_plane_radial
from crystalstudio.errors import Cancelled, InvalidInputError
from crystalstudio.io.meerkat import read_meerkat, write_yell10
from tests.realdata import ROOT, needs_data

REAL = ("diffuse", "meerkat2avg_visual-test.h5")


def cli(*args, timeout=240):
    """The command in its own process (exit status and stderr as a user sees them)."""
    return subprocess.run([sys.executable, "-m", "crystalstudio.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=str(ROOT))


def cli_here(capsys, *args) -> tuple[int, str, str]:
    """The same command in this process (faster; argparse refusals exit with status 2)."""
    from crystalstudio.cli import main

    try:
        rc = main([str(a) for a in args])
    except SystemExit as exc:
        rc = exc.code
    out = capsys.readouterr()
    return rc, out.out, out.err


# ------------------------------------------------------------------------------------------ exact layers
@pytest.mark.parametrize("plane,axis", [("hk0", 2), ("h0l", 1), ("0kl", 0)])
def test_integer_layer_keeps_every_measured_pixel(plane, axis):
    """float32 limits put l = 0 at index 50.0000011: the cut takes layer 50 itself, not a mix with layer 51."""
    v = read_meerkat(needs_data(*REAL))
    t = (0.0 - v.lower_limits[axis]) / v.step_sizes[axis]
    assert 1e-7 < abs(t - 50) < 1e-4  # the real file's float32 offset
    layer = np.asarray(h5py.File(v.path)["data"][tuple(50 if i == axis else slice(None) for i in range(3))], float)
    sec = section_at(v, axis, 0.0)
    assert np.array_equal(sec, layer, equal_nan=True)
    p = plane_from_volume(v, plane, q_max=7.0)
    ref = resample_plane(layer, v.lower_limits, v.step_sizes, p.geometry, 7.0)
    assert p.n_measured == ref.n_measured and np.array_equal(p.intensity, ref.intensity, equal_nan=True)
    if plane == "hk0":
        assert p.n_measured == 29_761  # was 29,322 when the cut interpolated towards the NaN of layer 51
    assert "taken as it is" in p.notes[0]


def test_between_layers_still_interpolates():
    v = read_meerkat(needs_data(*REAL))
    a, b = v.read_slab(2, 62), v.read_slab(2, 63)
    assert np.allclose(section_at(v, 2, 1.0), 0.5 * (a + b), equal_nan=True)


# ------------------------------------------------------------------------------------------ volume attributes
@pytest.mark.parametrize("value,warned", [(0, False), (1, True), (2, True), (-1, True)])
def test_is_direct_other_than_0_or_1_is_warned(tmp_path, value, warned):
    path = tmp_path / "v.h5"
    write_yell10(path, np.ones((5, 5, 5)), [-1, -1, -1], [0.5, 0.5, 0.5], UnitCell(5, 5, 5))
    with h5py.File(path, "r+") as f:
        del f["is_direct"]
        f["is_direct"] = value
    v = read_meerkat(path)
    assert bool(v.warnings) == warned
    if value not in (0, 1):
        assert "neither 0" in v.warnings[0] and str(value) in v.warnings[0]
    assert v.is_direct == (value == 1)


# ------------------------------------------------------------------------------------------ refusals
def empty_volume(tmp_path):
    data = np.full((21, 21, 5), np.nan)
    data[:, :, 0] = 1.0
    write_yell10(tmp_path / "empty.h5", data, [-1, -1, -2], [0.1, 0.1, 1.0], UnitCell(5, 5, 5))
    return tmp_path / "empty.h5"


def test_plane_without_measured_pixels_is_refused(tmp_path):
    plane = load_plane(empty_volume(tmp_path), plane="hk1")
    assert plane.n_measured == 0
    with pytest.raises(InvalidInputError, match="0 of 65,536 pixels measured.*at least 10 %"):
        check_measured(plane)
    gen = DSFUGenerator(4)
    with pytest.raises(InvalidInputError, match="factorisation needs"):
        factorise_plane(plane, gen, gen)


def test_cli_refuses_unmeasured_plane_and_bad_options(tmp_path, capsys):
    out = cli("factorise", empty_volume(tmp_path), "--plane", "hk1", "--out", tmp_path / "o")
    assert out.returncode != 0
    assert out.stderr.count("\n") == 1 and "0 of 65,536 pixels measured" in out.stderr, out.stderr
    assert not (tmp_path / "o" / "alpha.csv").exists()
    for bad in (["--passes", "0"], ["--q-max", "-1"], ["--passes", "two"]):
        rc, _, err = cli_here(capsys, "factorise", empty_volume(tmp_path), *bad, "--out", tmp_path / "o")
        assert rc == 2 and "error: argument" in err, err


def test_settings_are_validated():
    for bad, field in (({"passes": 0}, "passes"), ({"q_max": -1.0}, "q_max"), ({"symmetry": "7mm"}, "symmetry"),
                       ({"plane": "hkl"}, "plane"), ({"size": 100}, "size")):
        with pytest.raises(InvalidInputError, match=field):
            FactoriseSettings.from_dict(bad)
    assert FactoriseSettings(symmetry="mm").symmetry == "mm (square/rect.)"
    s = FactoriseSettings()
    with pytest.raises(InvalidInputError, match="passes"):
        s.passes = 0  # assignments are checked too (the panel's and the CLI's one object)


# ------------------------------------------------------------------------------------------ masks
def alloy(seed, **kw):
    return AlloySimulator(AlloySettings(**kw)).sample(np.random.default_rng(seed), order="order_half_half_half",
                                                      lattice="cubic")


def test_fits_use_measured_pixels_only():
    sim = alloy(3)
    plane = ResampledPlane(sim.measured, sim.geometry, sim.q_max, "hk")
    h, k = plane.indices()
    a = refine_plane_radial(plane.intensity, h, k, plane.q_abs(), plane.measured)
    junk = np.where(plane.measured, plane.intensity, 1e6)  # values where nothing was measured must not matter
    b = refine_plane_radial(junk, h, k, plane.q_abs(), plane.measured)
    assert np.array_equal(a.alpha, b.alpha) and a.n_pixels == plane.n_measured
    truth = sim.true_ratios()
    assert max(abs(x - truth[v]) for v, x in zip(a.vectors, a.alpha)) < 0.01
    sro = sim.sro.copy()
    c = fit_warren_cowley(np.where(plane.measured, sro, 50.0), h, k, measured=plane.measured)
    d = fit_warren_cowley(np.where(plane.measured, sro, -3.0), h, k, measured=plane.measured)
    assert np.array_equal(c.alpha, d.alpha)


# ------------------------------------------------------------------------------------------ Bragg peaks
def test_bragg_peaks_found_counted_and_punched_also_with_averaging():
    clean = alloy(11, p_beamstop=0, p_resolution_limit=0, gap_traces=(0, 0), dead_patches=(0, 0))
    sim = AlloySimulator(AlloySettings(p_beamstop=0, p_resolution_limit=0, gap_traces=(0, 0), dead_patches=(0, 0)))
    bragg = sim.sample(np.random.default_rng(11), order="order_half_half_half", lattice="cubic", bragg=True)
    p0 = ResampledPlane(clean.measured, clean.geometry, clean.q_max, "clean")
    p1 = ResampledPlane(bragg.measured, bragg.geometry, bragg.q_max, "bragg")
    assert find_bragg_peaks(p0).count == 0
    found = find_bragg_peaks(p1)
    h, k = p1.indices()
    inside = {(a, b) for a, b in zip(np.rint(h).ravel().astype(int), np.rint(k).ravel().astype(int))}
    edge = {(a, b) for a, b in inside if abs(a) >= np.abs(h).max() - 0.3 or abs(b) >= np.abs(k).max() - 0.3}
    assert len(inside - edge) <= found.count <= len(inside)
    s = FactoriseSettings(average="mm")
    prepared = prepare_plane(ResampledPlane(bragg.measured, bragg.geometry, bragg.q_max, "bragg"), s)
    assert any("punched and filled" in n for n in prepared.notes) and any("mm mates" in n for n in prepared.notes)
    diffuse_top = np.nanmax(clean.measured)
    assert np.nanmax(prepared.intensity) < 1.5 * diffuse_top  # no peak survives punching + averaging
    assert not prepared.measured[found.pixels & ~np.isfinite(bragg.measured[::-1, ::-1])].any()
    kept = prepare_plane(ResampledPlane(bragg.measured, bragg.geometry, bragg.q_max, "bragg"),
                         FactoriseSettings(bragg="keep"))
    assert any(n.startswith("warning:") and "Bragg" in n for n in kept.notes)
    assert np.nanmax(kept.intensity) > 10 * diffuse_top


def test_real_volume_bragg_peaks_are_found():
    v = read_meerkat(needs_data(*REAL))
    p = plane_from_volume(v, "hk0", q_max=7.0)
    found = find_bragg_peaks(p)
    assert found.count >= 10 and min(found.contrast) > 12
    punched = punch_and_fill(p, found)
    assert punched.n_measured == p.n_measured - int(found.pixels.sum())


# ------------------------------------------------------------------------------------------ plain planes
def demo_plane(tmp_path):
    sim = alloy(5)
    I = sim.measured
    x = np.where(np.isfinite(I), 2 * np.maximum(I, 0) / np.nanmax(I) - 1, -1.0).astype(np.float32)
    path = tmp_path / "test0.npy"
    np.save(path, x[None, None])  # the authors' demo shape (1, 1, 256, 256)
    a = sim.geometry.cell.a
    h = sim.q_max / (2 * np.pi / a)
    return path, sim, ["--cell", *sim.geometry.cell.parameters, "--extent", -h, h, -h, h, "--plane",
                       sim.geometry.label()]


def test_demo_style_npy_plane_factorises_from_the_cli(tmp_path, capsys):
    path, sim, geometry = demo_plane(tmp_path)
    out = cli("factorise", path, "--passes", "2", "--out", tmp_path / "a")
    assert out.returncode == 0, out.stderr
    assert "DSFU-Net demo input" in out.stdout and "factorisation only" in out.stdout
    assert (tmp_path / "a" / "sro.npy").exists() and not (tmp_path / "a" / "alpha.csv").exists()
    rc, stdout, err = cli_here(capsys, "factorise", path, "--passes", "2", *geometry, "--out", tmp_path / "b")
    assert rc == 0, err
    assert "from the measured plane / radial I_FF" in stdout
    rows = [r.split(",") for r in (tmp_path / "b" / "alpha.csv").read_text().splitlines() if not r.startswith("#")]
    head, body = rows[0], rows[1:]
    got = {(int(r[0]), int(r[1])): float(r[head.index("alpha")]) for r in body}
    truth = sim.true_ratios()
    assert max(abs(got[v] - truth[v]) for v in truth) < 0.03
    assert "sigma" in head and "alpha_network" in head


@pytest.mark.parametrize("suffix", ["tif", "edf"])
def test_tiff_and_edf_planes_through_fabio(tmp_path, suffix):
    from fabio.edfimage import EdfImage
    from fabio.tifimage import TifImage

    sim = alloy(5)
    img = sim.measured.astype(np.float32)
    path = tmp_path / f"plane.{suffix}"
    (TifImage if suffix == "tif" else EdfImage)(data=img).write(str(path))
    h1 = sim.q_max / (2 * np.pi / sim.geometry.cell.a)  # cubic cell: the Q grid is an index grid ±h1
    plane = load_plane(path, cell=tuple(sim.geometry.cell.parameters), plane=sim.geometry.label(),
                       extent=(-h1, h1, -h1, h1))
    assert plane.n_measured == int(np.isfinite(img).sum()) and "raw intensities" in plane.notes[0]
    h, k = plane.indices()
    wc = refine_plane_radial(plane.intensity, h, k, plane.q_abs(), plane.measured)
    truth = sim.true_ratios()
    assert max(abs(a - truth[v]) for v, a in zip(wc.vectors, wc.alpha)) < 0.01


def test_plain_plane_needs_cell_and_extent_together(tmp_path):
    path, _, _ = demo_plane(tmp_path)
    with pytest.raises(InvalidInputError, match="both the cell and the plane's extent"):
        load_plane(path, cell=(4, 4, 4, 90, 90, 90))
    raw = load_plane(path, scale="raw")
    assert raw.n_measured == raw.intensity.size and "raw intensities" not in " ".join(raw.notes)


# ------------------------------------------------------------------------------------------ uncertainties
def test_calibrated_sigma_covers_the_truth_on_fresh_alloy_planes():
    """Planes drawn with seeds the calibration never used: α within 0.03 and the truth within 2σ."""
    cals = load_calibrations()
    if "plane" not in cals:
        pytest.skip("no calibration file shipped")
    sim = AlloySimulator()
    errs, z = [], []
    for seed in range(3):
        s = sim.sample(np.random.default_rng([777, seed]))
        plane = prepare_plane(ResampledPlane(s.measured, s.geometry, s.q_max, "x"), FactoriseSettings())
        h, k = plane.indices()
        wc = refine_plane_radial(plane.intensity, h, k, plane.q_abs(), plane.measured)
        cal = calibration_for("plane", cals=cals, bragg=bool(plane.bragg and plane.bragg.every_node))
        sig = cal.sigma(wc.alpha, wc.sigma_fit)
        t = s.true_ratios()
        e = np.array([a - t[v] for v, a in zip(wc.vectors, wc.alpha)])
        errs.append(e)
        z.append(np.abs(e) / sig)
    e, z = np.concatenate(errs), np.concatenate(z)
    assert np.max(np.abs(e)) < 0.03 and np.mean(z <= 2) >= 0.9


def test_calibration_fit_reaches_its_targets():
    rng = np.random.default_rng(0)
    truth = rng.uniform(-0.2, 0.2, 2000)
    sfit = rng.uniform(0.002, 0.01, 2000)
    alpha = truth + rng.normal(0, 1, 2000) * np.sqrt((2 * sfit) ** 2 + 0.01**2)
    cal = fit_calibration("plane", alpha, truth, sfit)
    z = np.abs(alpha - truth) / cal.sigma(alpha, sfit)
    assert np.mean(z <= 1) >= 0.683 and np.mean(z <= 2) >= 0.954
    assert 1.0 <= cal.k_fit <= 3.0 and cal.sigma_model <= 0.02  # finds roughly the true (2, 0.01)
    assert AlphaCalibration("x", sigma_model=0.01).sigma([0.1], [0.0])[0] == pytest.approx(0.01)
    # with groups the coverage must hold in each: a second group with twice the errors needs a wider σ
    alpha2 = np.concatenate([alpha, truth + 2 * (alpha - truth)])
    groups = [np.arange(4000) < 2000, np.arange(4000) >= 2000]
    both = fit_calibration("plane", alpha2, np.concatenate([truth, truth]), np.concatenate([sfit, sfit]),
                           groups=groups)
    assert both.sigma([0.0], [0.005])[0] > cal.sigma([0.0], [0.005])[0]


def test_uncalibrated_models_say_so():
    sim = alloy(8)
    plane = ResampledPlane(sim.measured, sim.geometry, sim.q_max, "hk")
    gen = DSFUGenerator(4)
    res = factorise_plane(plane, gen, gen, passes=2, model_hashes={"ff": "x", "sro": "y"})
    assert "NOT calibrated" in res.wc_network.sigma_kind and res.wc_network.sigma_passes is not None
    assert res.wc is res.wc_plane  # the default α table: the measured plane
    res2 = refine_alpha(res, res.settings.replace(alpha_from="network"))
    assert res2.wc is res2.wc_network


# ------------------------------------------------------------------------------------------ cancel inside a pass
def test_cancel_inside_a_network_pass():
    gen = DSFUGenerator(4)
    x = torch.zeros(1, 1, 256, 256)
    cancel = threading.Event()
    seen = []

    def progress(f, msg):
        seen.append((f, msg))
        if len(seen) == 5:  # in the middle of the first pass of the first network
            cancel.set()

    with pytest.raises(Cancelled):
        factorise(gen, gen, x, passes=8, dropout=True, progress=progress, cancel=cancel)
    assert len(seen) == 5 and "pass 1 of 8" in seen[-1][1]  # stopped at the next block
    assert all(not m._forward_pre_hooks for m in gen.modules())  # hooks removed
    done = []
    factorise(gen, gen, x, passes=2, dropout=True, progress=lambda f, m: done.append(f))
    assert len(done) == 2 * 2 * len(BLOCKS) and done[-1] == pytest.approx(1.0) and done == sorted(done)


def test_shipped_models_load_with_their_hashes():
    gf, gs, hashes = load_models()
    assert set(hashes) == {"ff", "sro"} and all(len(h) == 64 for h in hashes.values())
    cals = load_calibrations()
    if "network" in cals:
        assert cals["network"].models == hashes  # the shipped calibration belongs to the shipped models
