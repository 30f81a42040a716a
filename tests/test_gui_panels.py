"""Training, Phasing and Diffuse panels driven end to end (screenshots in tests/screenshots)."""

import numpy as np
import pytest
from PySide6 import QtCore, QtGui

from crystalstudio.training.config import TrainConfig
from crystalstudio.training.phai_trainer import PhAITrainer
from crystalstudio.training.runlog import read_metrics
from tests.conftest import save_screenshot
from tests.realdata import needs_data


def panel(window, title):
    return next(p for p in window.panels if p.title == title)


def test_all_panels_present(window):
    assert [p.title for p in window.panels] == ["Generator", "Training", "Phasing", "Diffuse"]


def test_training_start_live_lr_drop_stop_and_attach(window, qtbot, tmp_path, screenshot_dir):
    tp = panel(window, "Training")
    window.tabs.setCurrentWidget(tp)
    tp.preset.setCurrentText("small")
    tp.batch.setValue(8)
    tp.steps.setValue(400)
    tp.val_every.setValue(5)
    tp.ckpt_every.setValue(5)
    tp.run_dir_edit.setText(str(tmp_path / "run"))
    tp.resume.setChecked(False)
    qtbot.mouseClick(tp.start_button, QtCore.Qt.LeftButton)
    qtbot.waitUntil(lambda: len([r for r in tp.records if r.get("kind") == "validation"]) >= 1, timeout=120000)
    assert "loss" in tp.loss_plot._curves and "val_map_r" in tp.metric_plot._curves
    qtbot.mouseClick(tp.drop_button, QtCore.Qt.LeftButton)
    qtbot.waitUntil(lambda: any(r.get("event", "").startswith("learning rate") for r in tp.records), timeout=60000)
    lr_before = [r["lr"] for r in tp.records if r.get("kind") == "train"]
    qtbot.waitUntil(lambda: tp.true_slab.dmap is not None, timeout=60000)  # validation sample shown
    save_screenshot(window, screenshot_dir, "training_live")
    qtbot.mouseClick(tp.stop_button, QtCore.Qt.LeftButton)
    qtbot.waitUntil(lambda: tp.start_button.isEnabled(), timeout=60000)
    recs = read_metrics(tmp_path / "run")
    ends = [r for r in recs if r["kind"] == "end"]
    assert ends and ends[-1]["stopped"] and ends[-1]["step"] < 400
    drop_step = next(r["step"] for r in recs if r.get("event", "").startswith("learning rate"))
    lrs = {r["step"]: r["lr"] for r in recs if r["kind"] == "train"}
    assert lrs[drop_step + 1] < 0.6 * lrs[drop_step]  # halved (the cosine schedule changes little per step)
    assert (tmp_path / "run" / "checkpoint_last.pt").exists()
    # attach to a run written by a headless job
    cfg = TrainConfig.from_dict(dict(kind="phai", run_dir=str(tmp_path / "headless"), batch_size=8, steps=6,
                                     data_shards=2, val_every=3, val_size=16, checkpoint_every=3, device="cpu",
                                     model={"preset": "small", "filters": 8, "dim": 64, "dim_exp": 64,
                                            "dim_token_exp": 16, "mlp_depth": 1, "cnn_depth": 1}))
    PhAITrainer(cfg, resume=False).run()
    tp.attach(str(tmp_path / "headless"))
    qtbot.waitUntil(lambda: any(r.get("kind") == "end" for r in tp.records), timeout=10000)
    assert tp.loss_plot._curves["loss"].getData()[0][-1] == 6
    save_screenshot(window, screenshot_dir, "training_attached")


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
