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
    ("factorise", lambda t: ["factorise", _data("diffuse", "meerkat2avg_visual-test.h5"), "--passes", "two",
                             "--out", str(t / "o")], "--passes: must be a whole number"),
    ("factorise", lambda t: ["factorise", _data("diffuse", "meerkat2avg_visual-test.h5"), "--out", "/proc/cs-f"],
     "cannot write"),
    ("evaluate", lambda t: ["evaluate", str(t / "m.pt"), str(t), "--starts", "many", "--out", str(t / "o")],
     "--starts: must be a whole number"),
    ("evaluate", lambda t: ["evaluate", str(t / "m.pt"), str(t), "--device", "gpu", "--out", str(t / "o")],
     "unknown device 'gpu'"),
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
