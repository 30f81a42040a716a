"""The main window and the Generator panel driven end to end (screenshots in tests/screenshots)."""

import time

import numpy as np
import pytest
from PySide6 import QtCore, QtWidgets

from crystalstudio.io.shards import shard_paths
from tests.conftest import save_screenshot
from tests.eventloop import EventLoopMonitor
from tests.realdata import needs_data


def generator(window):
    return next(p for p in window.panels if p.title == "Generator")


def wait_for_structure(qtbot, panel, previous=None, timeout=20000):
    qtbot.waitUntil(lambda: panel.current is not None and panel.current is not previous, timeout=timeout)


def test_default_structure_generate_and_slab(window, qtbot, screenshot_dir):
    panel = generator(window)
    wait_for_structure(qtbot, panel)  # the embedded default: a generated structure without any file
    assert panel.current.structure.n_sites > 0
    assert "generated" in panel.info.text()
    timings = []
    for _ in range(4):
        prev = panel.current
        t0 = time.perf_counter()
        qtbot.mouseClick(panel.generate_button, QtCore.Qt.LeftButton)
        wait_for_structure(qtbot, panel, prev)
        timings.append(1e3 * (time.perf_counter() - t0))
    # a user who looks at a structure for a moment finds the next seed computed ahead
    paused = []
    for _ in range(3):
        qtbot.wait(600)
        prev = panel.current
        t0 = time.perf_counter()
        qtbot.mouseClick(panel.generate_button, QtCore.Qt.LeftButton)
        wait_for_structure(qtbot, panel, prev)
        paused.append(1e3 * (time.perf_counter() - t0))
    print(f"click → redraw: back to back {', '.join(f'{t:.0f}' for t in timings)} ms; after a pause "
          f"{', '.join(f'{t:.0f}' for t in paused)} ms (views alone {panel.last_redraw_ms:.0f} ms)")
    assert f"seed {panel.seed}," in panel.info.text()  # the structure shown is the one asked for
    # slab controls act on the view
    panel.slab.axis_box.setCurrentIndex(0)
    panel.slab.thickness.setValue(0.25)
    panel.slab.position.setValue(panel.slab.position.maximum() // 2)
    start, thick = panel.slab.slab_range()
    assert panel.slab.axis == 0 and thick == pytest.approx(0.25) and 0.3 < start < 0.6
    img = panel.slab.img.image
    assert img.shape == (panel.current.dmap.shape[1], panel.current.dmap.shape[2])
    panel.recip.plane_box.setCurrentIndex(1)
    assert "reflections in the plane" in panel.recip.readout.text()
    save_screenshot(window, screenshot_dir, "generator_structure")


def test_molecules_other_group_and_exports(window, qtbot, tmp_path):
    panel = generator(window)
    wait_for_structure(qtbot, panel)
    panel.mode.setCurrentText("molecules")
    panel.space_group.setCurrentText("P -1")
    prev = panel.current
    qtbot.mouseClick(panel.same_button, QtCore.Qt.LeftButton)
    wait_for_structure(qtbot, panel, prev)
    st = panel.current.structure
    assert st.space_group.number == 2
    panel.export_cif(str(tmp_path / "s.cif"))
    panel.export_res(str(tmp_path / "s.res"))
    panel.export_hkl(str(tmp_path / "s.hkl"))
    panel.export_map(str(tmp_path / "s.ccp4"))
    from crystalstudio.io.hkl import read_hklf
    from crystalstudio.io.structures import read_structure

    for f in ("s.cif", "s.res"):
        back = read_structure(tmp_path / f)
        assert back.space_group == st.space_group and np.allclose(back.xyz, st.xyz, atol=1e-5)
    assert len(read_hklf(tmp_path / "s.hkl")) == len(panel.current.hkl)
    assert (tmp_path / "s.ccp4").stat().st_size > 1000


def test_open_real_cif_and_bad_file(window, qtbot, screenshot_dir, tmp_path):
    panel = generator(window)
    wait_for_structure(qtbot, panel)
    prev = panel.current
    cif = needs_data("structures", "nosphera2_cytidine.cif")
    assert window.open_path(str(cif))
    wait_for_structure(qtbot, panel, prev)
    assert panel.current.structure.n_sites == 30 and "cytidine" in panel.info.text()
    assert str(cif) in window.recent_files()
    save_screenshot(window, screenshot_dir, "generator_real_cif")
    bad = tmp_path / "broken.res"
    bad.write_text("TITL x\nCELL 0.71 5 5 5 90 90 90\nSFAC C\nC1 1 0.1 0.2\n")
    window.open_path(str(bad))
    qtbot.waitUntil(lambda: window.last_error is not None, timeout=10000)
    assert "broken.res" in window.last_error
    window.open_path(str(tmp_path / "missing.cif"))
    assert "does not exist" in window.last_error


def test_batch_export_cancel_and_latency(window, qtbot, tmp_path):
    panel = generator(window)
    wait_for_structure(qtbot, panel)
    panel.tabs.setCurrentIndex(1)
    panel.export_dir.setText(str(tmp_path / "shards"))
    panel.export_n.setValue(6000)
    panel.export_shard.setValue(1000)
    mon = EventLoopMonitor().__enter__()
    qtbot.mouseClick(panel.export_start, QtCore.Qt.LeftButton)
    qtbot.waitUntil(lambda: len(shard_paths(tmp_path / "shards")) >= 1, timeout=60000)
    assert not panel.export_start.isEnabled() and window.cancel_button.isVisible()
    qtbot.wait(300)  # cancel in the middle of a shard's generation
    t_cancel = time.perf_counter()
    qtbot.mouseClick(panel.export_cancel, QtCore.Qt.LeftButton)
    qtbot.waitUntil(lambda: panel.export_start.isEnabled(), timeout=30000)
    cancel_s = time.perf_counter() - t_cancel
    mon.__exit__()
    assert "cancelled" in panel.export_eta.text()
    n_kept = len(shard_paths(tmp_path / "shards"))
    assert 1 <= n_kept < 6 and not list((tmp_path / "shards").glob("*.tmp"))
    print(f"batch export: {mon.summary()}; Cancel → stopped in {cancel_s:.2f} s (shared machine)")
    assert mon.longest_cpu_ms < 250 and mon.longest_ms < 3000  # goal 100 ms at low load (see tests/eventloop.py)
    assert cancel_s < 3.0  # goal 1 s (a shared machine stretches it)


def test_statistics_tab(window, qtbot, screenshot_dir):
    panel = generator(window)
    wait_for_structure(qtbot, panel)
    panel.tabs.setCurrentIndex(2)
    panel.stats_dir.setText(str(needs_data("structures")))
    panel.stats_n.setValue(300)
    qtbot.mouseClick(panel.stats_run, QtCore.Qt.LeftButton)
    qtbot.waitUntil(lambda: panel.stats_gen is not None, timeout=120000)
    assert panel.stats_real.n_structures >= 30 and panel.stats_table.rowCount() == 7
    panel.stats_quantity.setCurrentIndex(0)
    qtbot.mouseClick(panel.apply_fit, QtCore.Qt.LeftButton)
    assert panel.settings.cell.volume_distribution == "lognormal"
    mu, _ = panel.stats_real.lognormal_volume_fit()
    assert panel.settings.cell.lognormal_mu == pytest.approx(mu, abs=1e-3)
    save_screenshot(window, screenshot_dir, "generator_statistics")


def test_about_and_preferences(window, qtbot):
    text = window.about_text()
    assert "torch" in text and "gemmi" in text and "Qt" in text
    window.preferences_dialog()
    dlg = window._dialogs[-1]
    dlg.findChildren(QtWidgets.QComboBox)[0].setCurrentText("cpu")  # the user's choices are what is stored
    dlg.findChildren(QtWidgets.QDoubleSpinBox)[0].setValue(1.5)
    dlg.accept()
    assert window.settings.value("compute/device") == "cpu" and window.device() == "cpu"
    assert float(window.settings.value("views/d_min")) == 1.5
