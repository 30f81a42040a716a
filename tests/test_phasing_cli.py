"""The `phase` command: verdict as the last line, model.res/model.hkl, checks before work, PhAI's list."""

import subprocess
import sys


from crystalstudio.io.reflections import read_reflections
from crystalstudio.io.shelx import read_shelx
from tests.realdata import needs_data


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "crystalstudio.cli", *args], capture_output=True, text=True, timeout=600)


def test_phase_prints_the_verdict_last_and_writes_a_shelxl_model(tmp_path):
    out = _cli("phase", str(needs_data("pairs", "cod2229150_PrSO4OH_P21n", "2229150.hkl")), "--out", str(tmp_path))
    assert out.returncode == 0, out.stderr
    last = out.stdout.strip().splitlines()[-1]
    assert last.startswith("verdict: solved, R1 0.0"), out.stdout
    assert "_chemical_formula_sum 'H O5 Pr S' × Z 4" in out.stdout  # cell content from the companion CIF
    assert "wR2" in out.stdout and "GooF" in out.stdout and "parameters" in out.stdout
    model = read_shelx(tmp_path / "model.res")
    assert sorted(s.element for s in model.structure.sites) == ["O"] * 5 + ["Pr", "S"]
    assert model.hklf == 4 and len(read_reflections(tmp_path / "model.hkl", companion=False)) == 840


def test_phase_checks_the_output_folder_and_arguments_before_solving(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")  # a folder cannot be made inside a file, whoever runs the test
    out = _cli("phase", str(needs_data("pairs", "ZZULI2_Cu_P21n", "ZZULI2.hkl")), "--out", str(blocker / "x"))
    assert out.returncode != 0 and "is not a folder" in out.stderr and out.stderr.count("\n") == 1, out.stderr
    assert "charge flipping" not in out.stdout and "completeness" not in out.stdout  # nothing was read or solved
    for args, why in [(["--starts", "-3"], "starts"), (["--z", "4"], "z needs a formula"),
                      (["--formula", "C6Xq2"], "unknown element")]:
        out = _cli("phase", str(needs_data("pairs", "ZZULI2_Cu_P21n", "ZZULI2.hkl")), "--out", str(tmp_path / "y"), *args)
        assert out.returncode != 0 and why in out.stderr and "Traceback" not in out.stderr, out.stderr
        assert not (tmp_path / "y").exists()  # a run that failed before writing leaves no folder


def test_phai_leaves_unphased_reflections_out_and_warns_outside_its_domain(tmp_path):
    out = _cli("phase", str(needs_data("pairs", "water_Mn_P21c", "water.hkl")), "--method", "phai", "--cycles", "1",
               "--starts", "0", "--no-build-model", "--out", str(tmp_path))
    assert out.returncode == 0, out.stderr
    assert "training domain (axes ≤ 10 Å): b = 16.13 Å" in out.stdout
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("PhAI phased")][0]
    n_on, n_all = (int(w) for w in line.split()[2:5:2])
    assert 0 < n_on < n_all and "left out of solution.fcf" in line
    fcf = read_reflections(tmp_path / "solution.fcf")
    assert len(fcf) == n_on
    assert out.stdout.strip().splitlines()[-1].startswith("verdict: not solved")
