"""The main window and the Generator panel driven end to end (screenshots in tests/screenshots)."""

import time

import numpy as np
import pytest
from PySide6 import QtCore, QtWidgets

from crystalstudio.io.shards import shard_paths
from tests.conftest import save_screenshot
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
    qtbot.waitUntil(lambda: str(cif) in window.recent_files(), timeout=5000)
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
    lat = []
    last = [time.perf_counter()]

    def tick():
        now = time.perf_counter()
        lat.append(now - last[0] - 0.010)
        last[0] = now

    timer = QtCore.QTimer()
    timer.timeout.connect(tick)
    timer.start(10)
    qtbot.mouseClick(panel.export_start, QtCore.Qt.LeftButton)
    qtbot.waitUntil(lambda: len(shard_paths(tmp_path / "shards")) >= 1, timeout=60000)
    assert not panel.export_start.isEnabled() and window.cancel_button.isVisible()
    qtbot.wait(300)  # cancel in the middle of a shard's generation
    t_cancel = time.perf_counter()
    qtbot.mouseClick(panel.export_cancel, QtCore.Qt.LeftButton)
    qtbot.waitUntil(lambda: panel.export_start.isEnabled(), timeout=30000)
    cancel_s = time.perf_counter() - t_cancel
    timer.stop()
    assert "cancelled" in panel.export_eta.text()
    n_kept = len(shard_paths(tmp_path / "shards"))
    assert 1 <= n_kept < 6 and not list((tmp_path / "shards").glob("*.tmp"))
    lat = np.array(lat[2:])
    print(f"event loop during batch export: median {1e3 * np.median(lat):.1f} ms, max {1e3 * lat.max():.1f} ms; "
          f"Cancel → stopped in {cancel_s:.2f} s (shared machine)")
    assert lat.max() < 0.25  # goal 0.1 s at low load; margin for a shared machine
    assert cancel_s < 3.0  # goal 1 s; the generator checks the cancel flag per atom slot and per 256 structures


def test_statistics_tab(window, qtbot, screenshot_dir):
    panel = generator(window)
    wait_for_structure(qtbot, panel)
    panel.tabs.setCurrentIndex(2)
    panel.stats_dir.setText(str(needs_data("structures")))
    panel.stats_n.setValue(300)
    qtbot.mouseClick(panel.stats_run, QtCore.Qt.LeftButton)
    qtbot.waitUntil(lambda: panel.stats_gen is not None, timeout=120000)
    assert panel.stats_real.n_structures >= 30 and panel.stats_table.rowCount() == 7
    names = [panel.stats_table.item(r, 0).text() for r in range(7)]  # each quantity's name in full
    fm = panel.stats_table.fontMetrics()
    assert panel.stats_table.columnWidth(0) >= max(fm.horizontalAdvance(n) for n in names)
    panel.stats_quantity.setCurrentIndex(0)
    qtbot.mouseClick(panel.apply_fit, QtCore.Qt.LeftButton)
    assert panel.settings.cell.volume_distribution == "lognormal"
    mu, _ = panel.stats_real.lognormal_volume_fit()
    assert panel.settings.cell.lognormal_mu == pytest.approx(mu, abs=1e-3)
    # the fitted density is drawn over the volume histograms; both axes are labelled
    assert any(k.startswith("log-normal used") for k in panel.stats_plot._table)
    assert panel.stats_plot.plot.getAxis("bottom").labelText == "cell volume (Å³)"
    assert panel.stats_plot.plot.getAxis("left").labelText == "probability density (1/Å³)"
    x, pdf = next(v for k, v in panel.stats_plot._table.items() if k.startswith("log-normal"))
    import math

    c = panel.settings.cell  # the curve is the log-normal density: its integral over the range is the CDF's step
    cdf = lambda v: 0.5 * (1 + math.erf((math.log(v) - c.lognormal_mu) / (c.lognormal_sigma * math.sqrt(2))))
    assert np.sum(0.5 * (pdf[1:] + pdf[:-1]) * np.diff(x)) == pytest.approx(cdf(x[-1]) - cdf(x[0]), abs=2e-3)
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


def test_generator_names_warnings_busy_and_layout(window, qtbot, tmp_path, screenshot_dir, monkeypatch):
    import crystalstudio.gui.panels.generator_panel as gp

    panel = generator(window)
    wait_for_structure(qtbot, panel)
    # no sideways scrolling in the parameter pane at 1500 px
    window.resize(1500, 950)
    qtbot.wait(100)
    assert panel.param_scroll.horizontalScrollBar().maximum() == 0
    assert panel.param_scroll.widget().width() >= panel.param_scroll.widget().minimumSizeHint().width()
    # space groups by gemmi's full Hermann–Mauguin symbol
    panel.space_group.setCurrentText("R -3 c:H")
    prev = panel.current
    qtbot.mouseClick(panel.same_button, QtCore.Qt.LeftButton)
    wait_for_structure(qtbot, panel, prev)
    assert "generated: R -3 c:H," in panel.info.text() and "H-3c" not in panel.info.text()
    # the 3D view names the elements it shows
    if panel.view3d.canvas is not None:
        assert set(panel.view3d.legend_elements) == set(panel.current.structure.composition())
    # an empty generated structure is flagged, with the reason in the user's terms
    panel.space_group.setCurrentText("F d -3 m")
    panel.mode.setCurrentText("molecules")
    prev = panel.current
    qtbot.mouseClick(panel.same_button, QtCore.Qt.LeftButton)
    wait_for_structure(qtbot, panel, prev)
    assert panel.current.structure.n_sites == 0
    assert panel.empty_warning.startswith("no atoms") and "192 symmetry operations" in panel.empty_warning
    assert "⚠" in panel.info.text()
    save_screenshot(window, screenshot_dir, "generator_empty_warning")
    # …and so is an opened .res without atoms
    empty = tmp_path / "empty.res"
    empty.write_text("TITL empty\nCELL 0.71073 5.0 6.0 7.0 90 100 90\nZERR 4 0 0 0 0 0 0\nLATT 1\n"
                     "SYMM -X, 0.5+Y, 0.5-Z\nSFAC C H O\nUNIT 8 8 4\nHKLF 4\nEND\n")
    prev = panel.current
    window.open_path(str(empty))
    wait_for_structure(qtbot, panel, prev)
    assert "no atoms" in panel.empty_warning and "empty.res" in panel.info.text()
    # a busy indicator shows while a slow generation runs, and goes when it is shown
    slow_preview = gp.preview_with_scene

    def slow(*a, cancel=None):
        time.sleep(1.0)
        return slow_preview(*a, cancel=cancel)

    monkeypatch.setattr(gp, "preview_with_scene", slow)
    panel.space_group.setCurrentText("P 1 21/c 1")
    panel.mode.setCurrentText("uniform")
    prev = panel.current
    qtbot.mouseClick(panel.same_button, QtCore.Qt.LeftButton)
    qtbot.waitUntil(lambda: panel.busy_shown, timeout=5000)
    assert "generating" in panel.busy_label.text()
    wait_for_structure(qtbot, panel, prev)
    assert not panel.busy_shown and not panel.empty_warning


def test_curve_plot_markers_and_labels(qtbot):
    from crystalstudio.gui.app import make_application
    from crystalstudio.gui.views.plots import CurvePlot

    make_application()
    plot = CurvePlot(title="validation map r", x_label="step")
    qtbot.addWidget(plot)
    plot.set_curve("val_map_r", [10], [0.42])  # one validation point: drawn as a marker
    item = plot._curves["val_map_r"]
    assert item.opts["symbol"] == "o" and len(item.scatter.data) == 1
    assert plot.plot.getAxis("left").labelText == "validation map r"
    assert plot.plot.getAxis("bottom").labelText == "step"
