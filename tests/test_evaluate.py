"""`crystalstudio evaluate`: PhAI measured on real CIFs (seed paper 1's protocol), checked against a direct scan
of the same structure; the repeat-skipping batched scan against the plain scan; classes; resume after a cancel."""

import csv
import shutil
import threading

import numpy as np
import pytest
import torch

from crystalstudio import cli
from crystalstudio.crystal.structure_factors import structure_factors
from crystalstudio.errors import Cancelled
from crystalstudio.io.structures import read_structure
from crystalstudio.phasing.evaluate import (EvaluateSettings, compound_class, evaluate_folder, prepare_structure,
                                            read_results, size_class)
from crystalstudio.phasing.models import default_phai_model
from crystalstudio.phasing.phai_grid import PhAIGrid, scale_amplitudes
from crystalstudio.phasing.phai_inference import load_phai, phai_scan, phai_scan_batch
from crystalstudio.phasing.phai_model import PhAI, PhAIConfig
from crystalstudio.phasing.settings import to_p21c
from crystalstudio.resources import resource_path
from tests.realdata import needs_data

P21C = "codtools_2007089-decomposition.cif"  # P2₁/c, all axes < 10 Å, inorganic
P21N = "structurefinder_1000002.cif"  # P2₁/n (setting change), metal-organic
OTHER = "nosphera2_cysteine.cif"  # P2₁2₁2₁: listed as skipped


def _folder(tmp_path, names):
    src = needs_data("structures")
    d = tmp_path / "cifs"
    d.mkdir()
    for n in names:
        shutil.copy(src / n, d / n)
    return d


def direct_scan(model, path, d_min=1.0, **kw):
    """The scan of one structure built by hand: P2₁/c setting, |F| and φ on the list to d_min, plain scan."""
    st = to_p21c(read_structure(path))
    grid = PhAIGrid(model.config.max_index)
    F = structure_factors(st, grid.hkl)
    F[st.cell.d_spacing(grid.hkl) < d_min] = 0
    amp = scale_amplitudes(torch.as_tensor(np.abs(F))[None])[0].numpy()
    ref = np.degrees(np.angle(F))
    cands = phai_scan(model, amp, reference_phases=ref, skip_repeats=False, **kw)
    return max(c.map_r for c in cands), cands[0].map_r


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_evaluate_command_shipped_model_matches_direct_scan(tmp_path, capsys):
    folder = _folder(tmp_path, [P21C, P21N, OTHER])
    (folder / "broken.cif").write_text("data_x\n_cell_length_a 5\n_atom_site_fract_x\n")
    out = tmp_path / "eval"
    args = ["evaluate", str(resource_path("models", "phai_small.pt")), str(folder), "--out", str(out),
            "--cycles", "3", "--starts", "1", "--threads", "1"]
    assert cli.main(args) == 0
    text = capsys.readouterr().out
    assert "f best" in text and "median r" in text and "FOM" in text and "organic" in text
    rows = {r["file"]: r for r in read_results(out / "results.csv")}
    assert set(rows) == {P21C, P21N}
    skipped = {r["file"]: r["reason"] for r in _rows(out / "skipped.csv")}
    assert set(skipped) == {OTHER, "broken.cif"} and "not in the P2₁/c family" in skipped[OTHER]
    assert (out / "r_vs_volume.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert rows[P21C]["size_class"] == "≤10 Å" and rows[P21C]["compound_class"] == "inorganic"
    assert rows[P21N]["space_group"] == "P21/n" and rows[P21N]["compound_class"] == "metal-organic"
    model = default_phai_model()
    for name in (P21C, P21N):
        best, fom = direct_scan(model, folder / name, max_cycles=3, random_starts=1)
        assert rows[name]["best_r"] == pytest.approx(best, abs=2e-6)
        assert rows[name]["fom_r"] == pytest.approx(fom, abs=2e-6)
        assert rows[name]["best_r"] >= rows[name]["fom_r"] and rows[name]["best_r"] > rows[name]["random_best_r"]
    # a re-run resumes: nothing evaluated again; other scan settings are refused
    assert cli.main(args) == 0
    assert "0 structures evaluated now (2 resumed)" in capsys.readouterr().out
    assert cli.main(args[:-4] + ["--cycles", "4"]) == 2
    assert "another scan" in capsys.readouterr().err


def test_published_layout_model_file(tmp_path):
    folder = _folder(tmp_path, [P21C])
    torch.manual_seed(3)
    torch.save(PhAI(PhAIConfig.published()).state_dict(), tmp_path / "PhAI_model.pth")
    model = load_phai(tmp_path / "PhAI_model.pth", expected=PhAIConfig.published())
    s = EvaluateSettings(max_cycles=2, random_starts=1)
    rep = evaluate_folder(model, folder, tmp_path / "eval", s, model_path=tmp_path / "PhAI_model.pth")
    assert len(rep.rows) == 1 and (tmp_path / "eval" / "r_vs_volume.png").stat().st_size > 10_000
    best, fom = direct_scan(model, folder / P21C, max_cycles=2, random_starts=1)
    row = read_results(tmp_path / "eval" / "results.csv")[0]
    assert row["best_r"] == pytest.approx(best, abs=2e-6) and row["fom_r"] == pytest.approx(fom, abs=2e-6)


def test_repeat_skipping_and_batching_give_the_plain_scan():
    """Structures scanned together, with repeated inputs answered from earlier passes, give every candidate of
    each structure's own plain scan — and the skipping really skips (converging real structures)."""
    folder = needs_data("structures")
    model = default_phai_model()
    grid = PhAIGrid(model.config.max_index)
    xs = [prepare_structure(folder / n, grid, 1.0) for n in (P21C, P21N, "codtools_4063223-spacegroup-with-spaces.cif")]
    amp, ref = np.stack([x.amplitudes for x in xs]), np.stack([x.phases for x in xs])
    stats = {}
    fast = phai_scan_batch(model, amp, max_cycles=6, random_starts=2, reference_phases=ref, stats=stats, max_rows=5)
    assert stats["forwards"] < stats["rows"] == 3 * 6 * 3
    for i in range(3):
        plain = phai_scan(model, amp[i], max_cycles=6, random_starts=2, reference_phases=ref[i], skip_repeats=False)
        assert len(plain) == len(fast[i]) == 18
        for a, b in zip(plain, fast[i]):
            assert (a.start, a.cycles) == (b.start, b.cycles) and np.array_equal(a.phases, b.phases)
            assert a.fom == pytest.approx(b.fom, rel=1e-6) and a.map_r == pytest.approx(b.map_r, abs=1e-7)


def test_compound_and_size_classes():
    assert compound_class(["C", "H", "N", "O"]) == "organic"
    assert compound_class(["C", "H", "Si", "B", "Se"]) == "organic"  # metalloids are not metals
    assert compound_class(["C", "H", "O", "Fe"]) == "metal-organic"
    assert compound_class(["C", "O", "Ca"]) == "inorganic"  # a carbonate: C without H
    assert compound_class(["H", "O", "P", "V"]) == "inorganic"
    assert size_class([6, 9.99, 10.0], 10) == "≤10 Å"
    assert size_class([6, 9, 10.5], 10) == "10–20 Å" and size_class([21, 5, 5], 10) == ">20 Å"


def test_cancel_keeps_finished_structures_and_resume_completes(tmp_path):
    folder = _folder(tmp_path, [P21C, P21N])
    model = default_phai_model()
    s = EvaluateSettings(max_cycles=1, random_starts=0, structures_per_batch=1)
    cancel = threading.Event()

    def progress(f, msg):
        if "1 structures evaluated" in msg:
            cancel.set()

    with pytest.raises(Cancelled):
        evaluate_folder(model, folder, tmp_path / "eval", s, progress=progress, cancel=cancel)
    assert [r["file"] for r in read_results(tmp_path / "eval" / "results.csv")] == [P21C]
    rep = evaluate_folder(model, folder, tmp_path / "eval", s)
    assert rep.evaluated_now == 1 and [r["file"] for r in rep.rows] == [P21C, P21N]


def test_the_shipped_model_scores_what_its_note_says(tmp_path):
    """The figures in shipped_phai_note() (shown by `phase`, the Phasing panel and the models README) are
    those of a full default evaluation of the shipped model on the real structures."""
    from crystalstudio.phasing.models import SHIPPED_PHAI_EVALUATION as e, shipped_phai_note

    rep = evaluate_folder(default_phai_model(), needs_data("structures"), tmp_path / "eval", EvaluateSettings(),
                          model_path=resource_path("models", "phai_small.pt"))
    rows = rep.rows
    assert len(rows) == e["structures"]
    for pick in ("best", "fom"):
        assert sum(r[f"{pick}_r"] >= 0.8 for r in rows) == e[f"solved_{pick}"]
        assert np.median([r[f"{pick}_r"] for r in rows]) == pytest.approx(e[f"median_r_{pick}"], abs=0.001)
    for cls, key in (("organic", "organic"), ("metal-organic", "metal_organic"), ("inorganic", "inorganic")):
        sel = [r for r in rows if r["compound_class"] == cls]
        assert (sum(r["best_r"] >= 0.8 for r in sel), len(sel)) == e[key]
    assert np.median([r["random_best_r"] for r in rows]) == pytest.approx(e["chance_median_r"], abs=0.001)
    assert "demonstration model" in shipped_phai_note()



def test_size_classes_follow_the_checkpoints_training_cells(tmp_path):
    folder = _folder(tmp_path, [P21C])
    model = default_phai_model()
    model.domain = {"space_group": "P 1 21/c 1", "a_min": 3.0, "a_max": 8.0}  # as a checkpoint records it
    s = EvaluateSettings(max_cycles=1, random_starts=0)
    row = evaluate_folder(model, folder, tmp_path / "a", s).rows[0]
    assert row["size_class"] == "8–16 Å"  # longest axis 9.47 Å
    given = EvaluateSettings(max_cycles=1, random_starts=0, cell_range=(4, 10))  # an explicit --cells wins
    assert evaluate_folder(model, folder, tmp_path / "b", given).rows[0]["size_class"] == "≤10 Å"
