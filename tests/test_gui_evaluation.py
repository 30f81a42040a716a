"""Training panel ▸ "Evaluate on CIF folder…": a checkpoint evaluated in a worker, cancelled and resumed, the
result plotted (screenshot in tests/screenshots)."""

import shutil

from PySide6 import QtCore

from crystalstudio.phasing.evaluate import read_results
from crystalstudio.resources import resource_path
from tests.conftest import save_screenshot
from tests.realdata import needs_data

NAMES = ["codtools_2007089-decomposition.cif", "structurefinder_1000002.cif", "nosphera2_cysteine.cif",
         "codtools_2204271.cif"]


def test_evaluate_checkpoint_from_training_panel(window, qtbot, tmp_path, screenshot_dir):
    src = needs_data("structures")
    folder = tmp_path / "cifs"
    folder.mkdir()
    for n in NAMES:
        shutil.copy(src / n, folder / n)
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(resource_path("models", "phai_small.pt"), run / "checkpoint_best.pt")
    tp = next(p for p in window.panels if p.title == "Training")
    window.tabs.setCurrentWidget(tp)
    tp.cfg.run_dir = str(run)
    qtbot.mouseClick(tp.evaluate_button, QtCore.Qt.LeftButton)
    dlg = tp._evaluation_dialog
    assert dlg.isVisible() and dlg.model_edit.text() == str(run / "checkpoint_best.pt")
    assert dlg.out_edit.text() == str(run / "evaluation")
    for w in (dlg.model_edit, dlg.folder_edit, dlg.out_edit, dlg.cycles, dlg.starts, dlg.d_min, dlg.run_button,
              dlg.cancel_button, dlg.progress, dlg.summary):
        assert w.toolTip(), w
    dlg.folder_edit.setText(str(folder))
    dlg.cycles.setValue(3)
    dlg.starts.setValue(1)
    # cancel at once: the dialog returns to idle and says what was kept
    qtbot.mouseClick(dlg.run_button, QtCore.Qt.LeftButton)
    assert dlg.cancel_button.isEnabled()
    qtbot.mouseClick(dlg.cancel_button, QtCore.Qt.LeftButton)
    qtbot.waitUntil(lambda: dlg.run_button.isEnabled(), timeout=60000)
    # run to the end (resuming whatever the cancelled run finished)
    qtbot.mouseClick(dlg.run_button, QtCore.Qt.LeftButton)
    qtbot.waitUntil(lambda: dlg.report is not None, timeout=120000)
    qtbot.waitUntil(lambda: dlg.run_button.isEnabled(), timeout=10000)
    rows = read_results(run / "evaluation" / "results.csv")
    assert len(rows) == 3 and len(dlg.report.skipped) == 1
    assert "f best" in dlg.summary.toPlainText() and "nosphera2_cysteine.cif" in dlg.summary.toPlainText()
    x, y = dlg.plot._table["FOM pick"]
    assert len(x) == 3 and sorted(y) == sorted(r["fom_r"] for r in rows)
    save_screenshot(dlg, screenshot_dir, "training_evaluation")
