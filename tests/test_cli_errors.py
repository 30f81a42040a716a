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
