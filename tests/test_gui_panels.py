"""Phasing and Diffuse panels driven end to end (screenshots in tests/screenshots); Training: test_gui_training.py."""

import numpy as np
import pytest
from PySide6 import QtCore, QtGui

from tests.conftest import save_screenshot
from tests.realdata import needs_data


def panel(window, title):
    return next(p for p in window.panels if p.title == title)


def test_all_panels_present(window):
    assert [p.title for p in window.panels] == ["Generator", "Training", "Phasing", "Diffuse"]


def drop(window, path):
    mime = QtCore.QMimeData()
    mime.setUrls([QtCore.QUrl.fromLocalFile(str(path))])
    ev = QtGui.QDropEvent(QtCore.QPointF(10, 10), QtCore.Qt.CopyAction, mime, QtCore.Qt.LeftButton, QtCore.Qt.NoModifier)
    window.dropEvent(ev)


def test_phasing_drop_solve_select_export(window, qtbot, tmp_path, screenshot_dir):
    pp = panel(window, "Phasing")
    pp.set_reference(str(needs_data("pairs", "epoxide_P21n", "epoxide.cif")))
    drop(window, needs_data("pairs", "epoxide_P21n", "epoxide.hkl"))
    assert window.tabs.currentWidget() is pp
    qtbot.waitUntil(lambda: pp.problem is not None and pp.problem.reference is not None, timeout=30000)
    assert "P21/n" in pp.summary.toPlainText() and "2143" in pp.summary.toPlainText()
    pp.method.setCurrentIndex(0)
    pp.starts.setValue(2)
    qtbot.mouseClick(pp.solve_button, QtCore.Qt.LeftButton)
    qtbot.waitUntil(lambda: len(pp.solutions) == 2, timeout=120000)
    assert pp.table.rowCount() == 2 and float(pp.table.item(0, 2).text()) > 0.8
    pp.table.selectRow(1)
    assert pp.slab.dmap is pp.solutions[1].dmap
    pp.table.selectRow(0)
    save_screenshot(window, screenshot_dir, "phasing_charge_flipping")
    paths = pp.export(str(tmp_path / "out"))
    for key in ("fcf", "map", "res", "csv"):
        assert (tmp_path / "out" / paths[key].split("/")[-1]).exists()
    # outputs reopen in the app: the .fcf goes back to Phasing, the map's peaks as a structure to Generator
    window.open_path(paths["fcf"])
    qtbot.waitUntil(lambda: pp.problem is not None and pp.problem.source.endswith("solution.fcf"), timeout=30000)
    # PhAI with the shipped model on P2₁/c data
    window.open_path(str(needs_data("pairs", "water_Mn_P21c", "water.hkl")))
    qtbot.waitUntil(lambda: pp.problem is not None and pp.problem.source.endswith("water.hkl"), timeout=30000)
    pp.method.setCurrentIndex(1)
    pp.starts.setValue(1)
    pp.cycles.setValue(3)
    qtbot.mouseClick(pp.solve_button, QtCore.Qt.LeftButton)
    qtbot.waitUntil(lambda: bool(pp.solutions) and pp.solutions[0].method == "PhAI", timeout=120000)
    save_screenshot(window, screenshot_dir, "phasing_phai")
    # PhAI refuses a P2₁ data set with a message, not a crash
    window.open_path(str(needs_data("pairs", "sucrose_P21", "sucrose.hkl")))
    qtbot.waitUntil(lambda: pp.problem is not None and pp.problem.source.endswith("sucrose.hkl"), timeout=30000)
    pp.method.setCurrentIndex(1)
    window.last_error = None
    pp.solve()
    assert window.last_error and "P2₁/c" in window.last_error


def test_phasing_bad_file_message(window, qtbot, tmp_path):
    bad = tmp_path / "broken.hkl"
    bad.write_text("   1   2   3  100.0\n   1   2   4  xx.yy   1.00\n")
    window.open_path(str(bad))
    qtbot.waitUntil(lambda: window.last_error is not None, timeout=20000)
    assert "broken.hkl" in window.last_error and "line" in window.last_error


def test_diffuse_volume_factorise_refine_export(window, qtbot, tmp_path, screenshot_dir):
    dp = panel(window, "Diffuse")
    window.open_path(str(needs_data("diffuse", "meerkat2avg_visual-test.h5")))
    qtbot.waitUntil(lambda: dp.plane is not None, timeout=30000)
    assert "Yell 1.0" in dp.info.text() and dp.plane.label == "hk1"
    dp.qmax.setValue(5.0)
    prev = dp.plane
    qtbot.mouseClick(dp.cut_button, QtCore.Qt.LeftButton)
    qtbot.waitUntil(lambda: dp.plane is not prev, timeout=30000)
    # the readout names hkl on the plane
    ro = dp.images["measured plane"].readout_fn(128, 128)
    assert "h k l" in ro and ro.split("=")[1].split()[2].startswith("1.000")
    dp.passes.setValue(3)
    qtbot.mouseClick(dp.factorise_button, QtCore.Qt.LeftButton)
    qtbot.waitUntil(lambda: dp.result is not None, timeout=60000)
    assert dp.result.ff_std is not None and dp.alpha_table.rowCount() > 3
    dp.symmetry.setCurrentText("mm (square/rect.)")
    qtbot.mouseClick(dp.refine_button, QtCore.Qt.LeftButton)
    assert 0 < dp.alpha_table.rowCount() < 24
    save_screenshot(window, screenshot_dir, "diffuse_factorised")
    paths = dp.export(str(tmp_path / "fac"))
    assert "alpha" in paths and (tmp_path / "fac" / "sro.png").exists()
    window.open_path(str(needs_data("images", "fabio2011_run2_1_00148.cbf.bz2")))
    qtbot.waitUntil(lambda: "detector image" in dp.info.text(), timeout=30000)
    save_screenshot(window, screenshot_dir, "diffuse_detector_image")
