"""Every command-line failure is one line on stderr and a non-zero exit status — no traceback unless --debug."""

from __future__ import annotations

import subprocess
import sys

import pytest

from crystalstudio import cli


def run_main(capsys, *argv):
    code = cli.main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def assert_one_line(code, err, *words):
    assert code != 0, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert "np.float64" not in err and "Input should" not in err, err  # our words, not a library's
    for w in words:
        assert w in err, err


def test_typo_subcommand_suggests_instead_of_opening_the_gui(capsys):
    code, out, err = run_main(capsys, "generat", "--n", "5")
    assert_one_line(code, err, "unknown command 'generat'", "did you mean 'generate'?")
    code, out, err = run_main(capsys, "frobnicate")
    assert_one_line(code, err, "unknown command 'frobnicate'", "generate")
    code, out, err = run_main(capsys, "missing_file.hkl")
    assert_one_line(code, err, "missing_file.hkl: file does not exist")


def test_devices_refused_in_our_words(capsys, tmp_path):
    code, _, err = run_main(capsys, "generate", "--n", "2", "--out", str(tmp_path / "a"), "--device", "gpu")
    assert_one_line(code, err, "unknown device 'gpu'")
    import torch

    if not torch.cuda.is_available():
        code, _, err = run_main(capsys, "generate", "--n", "2", "--out", str(tmp_path / "b"), "--device", "cuda")
        assert_one_line(code, err, "device 'cuda' requested but")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_unwritable_output_checked_before_work(capsys, tmp_path):
    afile = tmp_path / "file"
    afile.write_text("x")
    code, _, err = run_main(capsys, "generate", "--n", "2", "--out", str(afile / "sub"))
    assert_one_line(code, err, "output folder", "is not a folder")
    code, _, err = run_main(capsys, "generate", "--n", "2", "--out", "/proc/crystalstudio-test")
    assert_one_line(code, err, "output folder /proc/crystalstudio-test: cannot write")


def test_failed_run_removes_the_folder_it_created(capsys, tmp_path):
    out = tmp_path / "new" / "deeper"
    code, _, err = run_main(capsys, "generate", "--n", "2", "--space-group", "Q99", "--out", str(out))
    assert_one_line(code, err, "Q99")
    assert not (tmp_path / "new").exists()


def test_internal_errors_are_one_line_and_debug_shows_the_traceback(capsys, monkeypatch, tmp_path):
    def boom(args):
        raise KeyError("unexpected")

    monkeypatch.setattr(cli, "_run_generate", boom)
    argv = ["generate", "--n", "2", "--out", str(tmp_path / "x")]
    code, _, err = run_main(capsys, *argv)
    assert_one_line(code, err, "internal error: KeyError", "rerun with --debug")
    with pytest.raises(KeyError):
        cli.main(["--debug", *argv])


def test_subprocess_typo_exits_without_a_window():
    out = subprocess.run([sys.executable, "-m", "crystalstudio.cli", "generat", "--n", "5"], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "did you mean 'generate'" in out.stderr


def _data(*parts):
    from tests.realdata import needs_data

    return str(needs_data(*parts))


def _config(tmp_path, text):
    p = tmp_path / "run.json"
    p.write_text(text)
    return str(p)


def _file(tmp_path, name, content):
    p = tmp_path / name
    p.write_bytes(content)
    return str(p)


def _truncated_hkl(tmp_path):
    """A .hkl cut mid-record with its .ins beside it (a transfer that stopped)."""
    import shutil

    src = _data("pairs", "sucrose_P21", "sucrose.hkl")
    shutil.copy(src.replace(".hkl", ".ins"), tmp_path / "cut.ins")
    return _file(tmp_path, "cut.hkl", open(src, "rb").read()[:20000])


def _cif_without_symmetry(tmp_path):
    """A structure CIF (with its reflections embedded) whose space-group names and operators were stripped."""
    import gemmi

    doc = gemmi.cif.read(_data("pairs", "timmy_P212121", "timmy.cif"))
    block = doc.sole_block()
    for tag in ("_space_group_IT_number", "_space_group_name_H-M_alt", "_space_group_name_Hall",
                "_space_group_crystal_system", "_symmetry_space_group_name_H-M", "_symmetry_Int_Tables_number",
                "_symmetry_space_group_name_Hall", "_symmetry_cell_setting"):
        if block.find_value(tag) is not None:
            block.set_pair(tag, "?")
    for tag in ("_space_group_symop_operation_xyz", "_symmetry_equiv_pos_as_xyz"):
        table = block.find([tag])
        if len(table):
            table.erase()
    out = tmp_path / "nosym.cif"
    doc.write_file(str(out))
    return str(out)


def _h5_without_volume(tmp_path):
    import h5py

    p = tmp_path / "other.h5"
    with h5py.File(p, "w") as f:
        f["data"] = [[1.0, 2.0], [3.0, 4.0]]
    return str(p)


def _cut_model(tmp_path):
    from crystalstudio.diffuse.factorise import model_paths

    return _file(tmp_path, "cut.pt", open(model_paths()[0], "rb").read()[:4000])


# (subcommand, argv builder, words the one line must contain); every case must end in one line, status ≠ 0
CASES = [
    ("generate", lambda t: ["generate", "--n", "ten", "--out", str(t / "o")], "--n: must be a whole number"),
    ("generate", lambda t: ["generate", "--n", "-5", "--out", str(t / "o")], "--n: must be ≥ 1 (got -5)"),
    ("generate", lambda t: ["generate", "--n", "5", "--shard-size", "0", "--out", str(t / "o")], "--shard-size: must be ≥ 1"),
    ("generate", lambda t: ["generate", "--n", "5", "--d-min", "-1", "--out", str(t / "o")], "--d-min: must be ≥ 0"),
    ("generate", lambda t: ["generate", "--n", "5", "--a-min", "12", "--out", str(t / "o")], "a_min (12 Å) must not exceed"),
    ("generate", lambda t: ["generate", "--n", "5", "--device", "cuda:7", "--out", str(t / "o")], "device 'cuda:7'"),
    ("generate", lambda t: ["generate", "--n", "5", "--out", "/proc/cs-out"], "cannot write"),
    ("generate", lambda t: ["generate", "--n", "5", "--config", _config(t, '{"cell": {"a_max": -1}}'),
                            "--out", str(t / "o")], "run.json, line 1: cell.a_max: must be > 0 (got -1)"),
    ("generate", lambda t: ["generate", "--n", "5", "--config", _config(t, '{"kind": "dsfu"}'), "--out", str(t / "o")],
     "this is a dsfu configuration"),
    ("stats", lambda t: ["stats", str(t), "--generated", "-1"], "--generated: must be ≥ 0"),
    ("stats", lambda t: ["stats", str(t / "none")], "no .cif files"),
    ("stats", lambda t: ["stats", _data("structures"), "--generated", "0", "--tables", "/proc/cs-tables"], "cannot write"),
    ("train", lambda t: ["train", _config(t, '{"steps": -1}')], "run.json, line 1: steps: must be ≥ 1 (got -1)"),
    ("train", lambda t: ["train", _config(t, '{"kind": "phai"}'), "--steps", "-1"], "--steps: must be ≥ 1"),
    ("train", lambda t: ["train", _config(t, '{"kind": "phai"}'), "--lr", "fast"], "--lr: must be a number"),
    ("train", lambda t: ["train", _config(t, '{"kind": "phai"}'), "--device", "gpu"], "unknown device 'gpu'"),
    ("train", lambda t: ["train", _config(t, '{"kind": "phai", "device": "cuda:7"}')], "device 'cuda:7'"),
    ("train", lambda t: ["train", _config(t, '{"kind": "phai", "run_dir": "/proc/cs-run"}')], "run directory /proc/cs-run"),
    ("train", lambda t: ["train", _config(t, "{oops")], "run.json, line 1: not valid JSON"),
    ("train", lambda t: ["train", _config(t, '{"kind": "dsfu", "cycles_max": 2}')], "cycles_max: a phai setting"),
    ("phase", lambda t: ["phase", _data("pairs", "sucrose_P21", "sucrose.hkl"), "--starts", "x", "--out", str(t / "o")],
     "argument --starts: must be a whole number (got 'x')"),
    ("phase", lambda t: ["phase", str(t / "d.hkl"), "--starts", "-3", "--out", str(t / "o")],
     "argument --starts: must be ≥ 1 (got -3)"),
    ("phase", lambda t: ["phase", str(t / "d.hkl"), "--starts", "0", "--out", str(t / "o")],
     "argument --starts: must be ≥ 1 (got 0) for charge flipping"),
    ("phase", lambda t: ["phase", str(t / "d.hkl"), "--starts", "65", "--method", "phai", "--out", str(t / "o")],
     "argument --starts: must be ≤ 64 (got 65)"),
    ("phase", lambda t: ["phase", str(t / "d.hkl"), "--cell", "a", "5", "5", "90", "90", "90", "--out", str(t / "o")],
     "argument --cell: must be a number (got 'a')"),
    ("phase", lambda t: ["phase", str(t / "d.hkl"), "--iterations", "10", "--out", str(t / "o")],
     "argument --iterations: must be ≥ 50 (got 10)"),
    ("phase", lambda t: ["phase", str(t / "missing.hkl"), "--out", str(t / "o")], "missing.hkl: file does not exist"),
    ("phase", lambda t: ["phase", _data("pairs", "sucrose_P21", "sucrose.hkl"), "--cell", "0", "5", "5", "90", "90",
                         "90", "--out", str(t / "o")], "cell lengths must be positive numbers, got a, b, c = 0, 5, 5 Å"),
    ("phase", lambda t: ["phase", _data("pairs", "sucrose_P21", "sucrose.hkl"), "--out", "/proc/cs-phase"], "cannot write"),
    ("phase", lambda t: ["phase", _file(t, "empty.hkl", b""), "--out", str(t / "o")], "empty.hkl: file is empty"),
    ("phase", lambda t: ["phase", _file(t, "image.hkl", bytes(range(256)) * 20), "--out", str(t / "o")],
     "image.hkl: binary file of unknown type"),
    ("phase", lambda t: ["phase", _truncated_hkl(t), "--out", str(t / "o")], "cut.hkl, line 589: line too short"),
    ("phase", lambda t: ["phase", _file(t, "lonely.hkl", open(_data("pairs", "sucrose_P21", "sucrose.hkl"), "rb").read()),
                         "--out", str(t / "o")],
     "lonely.hkl: the cell and the space group are unknown — neither the file nor a companion"),
    ("phase", lambda t: ["phase", _cif_without_symmetry(t), "--out", str(t / "o")],
     "nosym.cif (_shelx_hkl_file): the space group is unknown"),
    ("phase", lambda t: ["phase", _data("pairs", "sucrose_P21", "sucrose.hkl"), "--structure", _cif_without_symmetry(t),
                         "--out", str(t / "o")], "nosym.cif: data_timmy: atoms but no space group"),
    ("phase", lambda t: ["phase", _data("pairs", "sucrose_P21", "sucrose.hkl"), "--structure", str(t / "gone.res"),
                         "--out", str(t / "o")], "gone.res: file does not exist"),
    ("phase", lambda t: ["phase", _file(t, "cut.fcf", open(_data("pairs", "ntd106c_P-1", "P-1.fcf"), "rb").read()[:30000]),
                         "--out", str(t / "o")],
     "cut.fcf, line 23: not a readable CIF: Wrong number of values in loop _refln_* (is the file truncated?)"),
    ("factorise", lambda t: ["factorise", _h5_without_volume(t), "--out", str(t / "o")],
     "other.h5: not a Meerkat/Yell reconstruction"),
    ("factorise", lambda t: ["factorise", _file(t, "cut.h5", open(_data("diffuse", "meerkat2avg_visual-test.h5"), "rb")
                                                .read()[:30000]), "--out", str(t / "o")], "cut.h5: not an HDF5 file"),
    ("factorise", lambda t: ["factorise", _data("diffuse", "meerkat2avg_visual-test.h5"), "--passes", "two",
                             "--out", str(t / "o")], "--passes: must be a whole number"),
    ("factorise", lambda t: ["factorise", _data("diffuse", "meerkat2avg_visual-test.h5"), "--out", "/proc/cs-f"],
     "cannot write"),
    ("evaluate", lambda t: ["evaluate", str(t / "m.pt"), str(t), "--starts", "many", "--out", str(t / "o")],
     "--starts: must be a whole number"),
    ("evaluate", lambda t: ["evaluate", _file(t, "m.pt", b"hello\n"), str(t), "--out", str(t / "o")],
     "m.pt: not a PyTorch weights file (neither a zip archive nor a pickle)"),
    ("evaluate", lambda t: ["evaluate", _file(t, "m.pt", b""), str(t), "--out", str(t / "o")],
     "m.pt: file is empty (expected PyTorch weights)"),
    ("factorise", lambda t: ["factorise", _data("diffuse", "recon_y10.h5"), "--model-ff", _cut_model(t), "--model-sro",
                             _cut_model(t), "--out", str(t / "o")], "cut.pt: the PyTorch archive is damaged or truncated"),
    ("evaluate", lambda t: ["evaluate", str(t / "m.pt"), str(t), "--device", "gpu", "--out", str(t / "o")],
     "unknown device 'gpu'"),
    ("stats", lambda t: ["stats", str(t), "--out", str(t / "o")],
     "crystalstudio stats: error: unrecognized arguments: --out"),
    ("phase", lambda t: ["phase", str(t / "d.hkl"), "--iteration", "300", "--itrations", "3", "--out", str(t / "o")],
     "crystalstudio phase: error: unrecognized arguments: --itrations 3; did you mean --iterations?"),
    ("typo", lambda t: ["factorize", "x.h5"], "unknown command 'factorize'; did you mean 'factorise'?"),
    ("typo", lambda t: ["evaluat"], "did you mean 'evaluate'?"),
]


@pytest.mark.parametrize("command,argv,words", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_every_command_fails_in_one_line(capsys, tmp_path, command, argv, words):
    code, out, err = run_main(capsys, *argv(tmp_path))
    assert_one_line(code, err, words)
    assert not (tmp_path / "o").exists()  # nothing written, no empty folder left behind


def test_every_subcommand_is_covered():
    assert {c[0] for c in CASES} >= set(cli.SUBCOMMANDS) | {"typo"}


def test_factorise_plane_of_any_size(capsys, tmp_path):
    """A detector image 100×70 (not a multiple of 64) once ended in 'internal error: RuntimeError: Sizes of tensors
    must match' inside the U-Net: it is padded with unmeasured pixels, factorised, and the padding said."""
    import numpy as np

    rng = np.random.default_rng(0)
    path = tmp_path / "odd.npy"
    np.save(path, rng.uniform(1.0, 2.0, size=(70, 100)))
    code, out, err = run_main(capsys, "factorise", str(path), "--passes", "1", "--out", str(tmp_path / "o"))
    assert code == 0, err
    assert "padded to 128×128 pixels" in out
    plane, mask = np.load(tmp_path / "o" / "plane.npy"), np.load(tmp_path / "o" / "measured_mask.npy")
    assert plane.shape == mask.shape == (128, 128)
    assert mask[:70, :100].all() and not mask[70:].any() and not mask[:, 100:].any()
