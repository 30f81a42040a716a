"""Training and Diffuse panels driven end to end (screenshots in tests/screenshots); Phasing: test_gui_phasing.py."""

from PySide6 import QtCore

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
