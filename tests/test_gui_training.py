"""Training panel: every shipped configuration round-trips through the panel unchanged; a run started
from the form trains live (curves, learning-rate drop, validation sample, stop with a checkpoint) and a
headless run can be followed (screenshots in tests/screenshots)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PySide6 import QtCore

from crystalstudio.resources import resource_dir
from crystalstudio.training.config import PhAITrainConfig, TrainConfig
from crystalstudio.training.phai_trainer import PhAITrainer
from crystalstudio.training.runlog import read_metrics
from tests.conftest import save_screenshot


CONFIGS = sorted((resource_dir() / "configs").glob("*.json"))
TINY = {"filters": 4, "dim": 32, "dim_exp": 32, "dim_token_exp": 8, "mlp_depth": 1, "cnn_depth": 1}


def training_panel(window):
    return next(p for p in window.panels if p.title == "Training")


def test_shipped_configs_exist():
    assert len(CONFIGS) >= 2 and {c.name for c in CONFIGS} >= {"phai_published.json", "phai_small_cpu.json"}


@pytest.mark.parametrize("path", CONFIGS, ids=[c.name for c in CONFIGS])
def test_shipped_config_round_trips_through_the_panel(window, tmp_path, path):
    tp = training_panel(window)
    original = json.loads(path.read_text())
    tp.load_config(str(path))
    assert tp.kind.currentText() == ("DSFU-Net" if original.get("kind") == "dsfu" else "PhAI")
    form = tp.form
    for key, value in original.items():  # the form shows the file's values
        if key in form.editors and not isinstance(value, (list, dict)):
            e = form.editor(key)
            shown = e.currentText() if hasattr(e, "currentText") else (e.isChecked() if hasattr(e, "isChecked")
                                                                       else e.text())
            assert str(shown).lower() == str(value).lower() or float(shown) == pytest.approx(value), key
    tp.save_config(str(tmp_path / path.name))
    assert json.loads((tmp_path / path.name).read_text()) == original  # Save changes nothing
    assert tp.config().to_dict(complete=False) == original  # nor does Start (it runs this object)
    # an edit changes exactly that field
    form.editor("steps").setValue(original.get("steps", 2000) + 1)
    tp.save_config(str(tmp_path / "edited.json"))
    assert json.loads((tmp_path / "edited.json").read_text()) == {**original, "steps": original.get("steps", 2000) + 1}


def test_panel_defaults_are_the_class_defaults(window):
    tp = training_panel(window)
    assert tp.cfg == PhAITrainConfig() and tp.form.editor("lr").text() == "0.0005"
    tp.kind.setCurrentIndex(1)
    assert tp.cfg.kind == "dsfu" and tp.form.editor("optimizer").currentText() == "adam"
    assert tp.form.editor("model.width").value() == 16
    bad = tp.form.editor("batch_size")
    bad.setValue(3)  # not a multiple of data_shards (2): refused, the object keeps 16
    assert tp.cfg.batch_size == 16 and "multiple of data_shards" in tp.status.text()


def test_training_start_live_lr_drop_stop_and_attach(window, qtbot, tmp_path, screenshot_dir):
    tp = training_panel(window)
    window.tabs.setCurrentWidget(tp)
    for name, value in TINY.items():  # sizes have no editor (the preset has): set on the object
        setattr(tp.cfg.model, name, value)
    tp.cfg.generator.content.max_atoms_asu = 10
    f = tp.form
    f.editor("batch_size").setValue(8)
    f.editor("steps").setValue(400)
    f.editor("val_every").setValue(3)
    f.editor("val_size").setValue(16)
    f.editor("checkpoint_every").setValue(3)
    f.editor("warmup_steps").setValue(0)
    f.editor("device").setText("cpu")
    f.editor("device").editingFinished.emit()
    f.editor("run_dir").setText(str(tmp_path / "run"))
    f.editor("run_dir").editingFinished.emit()
    assert tp.cfg.run_dir == str(tmp_path / "run") and tp.cfg.device == "cpu"
    tp.resume.setChecked(False)
    qtbot.mouseClick(tp.start_button, QtCore.Qt.LeftButton)
    assert not tp.form.isEnabled()  # no edits while the run holds its copy
    qtbot.waitUntil(lambda: len([r for r in tp.records if r.get("kind") == "validation"]) >= 1, timeout=120000)
    assert "loss" in tp.loss_plot._curves and "val_map_r" in tp.metric_plot._curves
    qtbot.mouseClick(tp.drop_button, QtCore.Qt.LeftButton)
    qtbot.waitUntil(lambda: any(r.get("event", "").startswith("learning rate") for r in tp.records), timeout=60000)
    qtbot.waitUntil(lambda: tp.true_slab.dmap is not None, timeout=60000)  # validation sample shown
    save_screenshot(window, screenshot_dir, "training_live")
    qtbot.mouseClick(tp.stop_button, QtCore.Qt.LeftButton)
    qtbot.waitUntil(lambda: tp.start_button.isEnabled(), timeout=60000)
    recs = read_metrics(tmp_path / "run")
    end = [r for r in recs if r["kind"] == "end"][-1]
    assert end["stopped"] and end["reason"] == "stop requested" and end["step"] < 400
    assert f"stop requested at step {end['step']}" in tp.status.text()
    drop_step = next(r["step"] for r in recs if r.get("event", "").startswith("learning rate"))
    lrs = {r["step"]: r["lr"] for r in recs if r["kind"] == "train"}
    assert lrs[drop_step + 1] < 0.51 * lrs[drop_step]  # halved (the cosine schedule changes little per step)
    ck = Path(tmp_path / "run" / "checkpoint_last.pt")
    import torch

    assert torch.load(ck, weights_only=True)["step"] == end["step"]  # the stop wrote a checkpoint of that step
    assert tp.cfg.steps == 400 and tp.cfg.to_dict(complete=False)["steps"] == 400  # the panel's object untouched
    # attach to a run written by a headless job
    cfg = TrainConfig.from_dict(dict(kind="phai", run_dir=str(tmp_path / "headless"), batch_size=8, steps=6,
                                     data_shards=2, val_every=3, val_size=16, checkpoint_every=3, device="cpu",
                                     model={"preset": "small", **TINY}, generator={"content": {"max_atoms_asu": 10}}))
    PhAITrainer(cfg, resume=False).run()
    tp.attach(str(tmp_path / "headless"))
    qtbot.waitUntil(lambda: any(r.get("kind") == "end" for r in tp.records), timeout=10000)
    assert tp.loss_plot._curves["loss"].getData()[0][-1] == 6
    assert tp.cfg.steps == 6 and tp.config_path.endswith("config.json")  # the run's configuration is shown
    save_screenshot(window, screenshot_dir, "training_attached")
