"""Training panel (issue 14): Attach to run… through the dialog, curves that read (y labels, markers on a
one-point validation), run controls enabled only while a run is live (also an attached one), only the
selected network's fields, throughput and ETA that never read "0 planes/s"."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PySide6 import QtCore, QtWidgets

from crystalstudio.gui.panels.training_panel import format_duration, format_rate, progress_figures
from crystalstudio.training.config import DSFUTrainConfig, PhAITrainConfig
from crystalstudio.training.runlog import MetricsLog
from tests.conftest import save_screenshot
from tests.gui_audit import controls_without_tooltip


def training_panel(window):
    return next(p for p in window.panels if p.title == "Training")


def write_run(run_dir: Path, cfg, records: list[dict]) -> Path:
    """A run directory as `crystalstudio train` leaves it: config.json and metrics.jsonl (the loop's records)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg.run_dir = str(run_dir)
    cfg.save(str(run_dir / "config.json"))
    log = MetricsLog(run_dir)
    for r in records:
        log.write(r)
    return run_dir


def dsfu_records(steps: int, rate: float = 0.4, step_s: float = 40.0, end: bool = True) -> list[dict]:
    """A slow DSFU-Net run on a CPU: 0.4 planes/s (what "{:.0f}" showed as "0 planes/s"), one validation."""
    recs = [{"step": 0, "kind": "start", "parameters": 123456, "device": "cpu", "world": 1, "resumed": False,
             "time": 1.0e9}]
    for s in range(1, steps + 1):
        recs.append({"step": s, "kind": "train", "loss": 3.0 - 0.1 * s, "l1": 0.02, "joint": 0.1, "d_loss": 0.5,
                     "generation_s": 1.0, "planes_per_s": rate, "lr": 2e-4, "step_s": step_s})
    recs.append({"step": steps, "kind": "validation", "val_mse_ff": 0.012, "val_mse_sro": 0.034})
    if end:
        recs.append({"step": steps, "kind": "end", "stopped": False, "reason": "completed", "time": 1.0e9 + 100})
    return recs


def test_rate_and_duration_formats():
    assert format_rate(0.4, "planes/s") == "0.4 planes/s" and format_rate(174.4, "structures/s") == "174 structures/s"
    assert format_rate(12.345, "planes/s") == "12.3 planes/s"
    for unmeasured in (0, 0.0, -1, None, float("nan"), float("inf"), "x"):
        assert format_rate(unmeasured, "planes/s") == "—"
    assert format_duration(40.4) == "40 s" and format_duration(180) == "3 min 00 s"
    assert format_duration(2 * 3600 + 5 * 60 + 20) == "2 h 05 min" and format_duration(None) == "—"
    # ETA: remaining steps × median wall time per step; — before the first step and for an unknown length
    recs = dsfu_records(10, step_s=2.0, end=False)
    recs[1]["step_s"] = 30.0  # the first step includes start-up: the median ignores it
    assert progress_figures(recs, 100) == ("0.4 planes/s", "3 min 00 s")
    assert progress_figures(recs[:1], 100) == ("—", "—")
    assert progress_figures(recs, None) == ("0.4 planes/s", "—")
    assert progress_figures(dsfu_records(3), 100)[1] == "run ended"


def test_attach_button_shows_a_finished_run(window, qtbot, tmp_path, monkeypatch, screenshot_dir):
    tp = training_panel(window)
    window.tabs.setCurrentWidget(tp)
    (tmp_path / "runs").mkdir()
    tp.form.editor("run_dir").setText(str(tmp_path / "runs" / "phai"))  # not created yet: browse from its parent
    tp.form.editor("run_dir").editingFinished.emit()
    run = write_run(tmp_path / "runs" / "dsfu_cpu", DSFUTrainConfig(steps=8, val_every=8), dsfu_records(8))
    asked = []

    def fake_dialog(parent, caption, start, *a, **kw):
        asked.append(start)
        return str(run)

    monkeypatch.setattr(QtWidgets.QFileDialog, "getExistingDirectory", staticmethod(fake_dialog))
    qtbot.mouseClick(tp.attach_button, QtCore.Qt.LeftButton)  # was an AttributeError (run_dir_edit)
    assert asked == [str(tmp_path / "runs")]
    assert tp.run_dir == run and tp.cfg.kind == "dsfu" and tp.kind.currentText() == "DSFU-Net"
    assert tp.loss_plot._curves["loss"].getData()[0].tolist() == list(range(1, 9))
    # the one validation point is drawn (a marker), on a plot with labelled axes
    for key in ("val_mse_ff", "val_mse_sro"):
        item = tp.metric_plot._curves[key]
        assert len(item.getData()[0]) == 1 and item.opts["symbol"] == "o"
    # the legend lists only the series drawn: this log has no noise_mse_* (an older run's log)
    assert [label.text for _, label in tp.metric_plot.legend.items] == ["val_mse_ff", "val_mse_sro"]
    for plot, label in ((tp.loss_plot, "loss"), (tp.metric_plot, "validation metric"), (tp.lr_plot, "learning rate")):
        assert plot.plot.getAxis("left").labelText == label and plot.plot.getAxis("bottom").labelText
        assert not plot.plot.getAxis("left").autoSIPrefix  # no "(x0.001)" tacked onto the label
    # a finished run: nothing to pause, stop or drop; throughput in its real size, no ETA
    assert not any(b.isEnabled() for b in (tp.pause_button, tp.stop_button, tp.drop_button))
    assert tp.rate_label.text() == "0.4 planes/s" and tp.eta_label.text() == "run ended"
    assert "attached run ended: completed at step 8" in tp.status.text()
    assert tp.sample_stack.currentWidget() is tp.no_sample  # no sample.npz: says when one comes
    # the run's validation sample (as DSFUHooks writes it: network outputs in [-1, 1]) is shown when it appears
    y, x = np.mgrid[-1:1:64j, -1:1:64j]
    planes = {k: np.cos(8 * f * np.hypot(x, y)) * np.exp(-2 * (x * x + y * y)) for f, k in
              enumerate(("input", "ff_true", "ff_pred", "sro_true", "sro_pred"), 1)}
    np.savez(run / "sample.npz", step=8, **planes)
    qtbot.waitUntil(lambda: all(p.data is not None for p in tp.sample_images), timeout=20000)
    assert tp.sample_stack.currentIndex() == 1
    assert np.allclose(tp.sample_images[1].data, ((np.clip(planes["ff_true"], -1, 1) + 1) / 2) ** 2)
    save_screenshot(window, screenshot_dir, "training_attached_finished")
    # the next Attach starts in the run followed now
    qtbot.mouseClick(tp.attach_button, QtCore.Qt.LeftButton)
    assert asked[-1] == str(run)
    # a cancelled dialog changes nothing
    monkeypatch.setattr(QtWidgets.QFileDialog, "getExistingDirectory", staticmethod(lambda *a, **k: ""))
    qtbot.mouseClick(tp.attach_button, QtCore.Qt.LeftButton)
    assert tp.run_dir == run
    # another run: nothing of the first stays (curves, validation sample, figures)
    other = write_run(tmp_path / "runs" / "other", DSFUTrainConfig(steps=50), dsfu_records(3, rate=20.0, end=False))
    tp.attach(str(other))
    assert tp.loss_plot._curves["loss"].getData()[0].tolist() == [1, 2, 3]
    assert "val_mse_ff" in tp.metric_plot._curves and len(tp.metric_plot._curves["val_mse_ff"].getData()[0]) == 1
    assert tp.metric_plot._curves["val_mse_ff"].getData()[0][0] == 3
    assert tp.sample_stack.currentWidget() is tp.no_sample
    assert tp.rate_label.text() == "20 planes/s" and tp.eta_label.text() == "31 min 20 s"  # 47 steps × 40 s
    assert tp.stop_button.isEnabled()  # this one is live


def test_attached_live_run_controls_follow_its_end(window, qtbot, tmp_path):
    tp = training_panel(window)
    cfg = PhAITrainConfig(steps=100)
    recs = [r for r in dsfu_records(10, step_s=2.0, end=False) if r["kind"] != "validation"]
    for r in recs:  # a PhAI run's figures
        if r["kind"] == "train":
            r["structures_per_s"] = r.pop("planes_per_s") * 500
    run = write_run(tmp_path / "live", cfg, recs)
    tp.attach(str(run))
    assert all(b.isEnabled() for b in (tp.pause_button, tp.stop_button, tp.drop_button))
    assert tp.rate_label.text() == "200 structures/s" and tp.eta_label.text() == "3 min 00 s"
    assert tp.status.text().startswith("step 10/100:")
    # the buttons act on the other process's run through its control file
    qtbot.mouseClick(tp.drop_button, QtCore.Qt.LeftButton)
    assert json.loads((run / "control.json").read_text()) == {"drop_lr": 0.5}
    (run / "control.json").unlink()  # read by the run
    qtbot.mouseClick(tp.pause_button, QtCore.Qt.LeftButton)
    assert tp.pause_button.text() == "Resume" and json.loads((run / "control.json").read_text()) == {"pause": True}
    (run / "control.json").unlink()
    # the run ends (stopped elsewhere): the controls go off, the pause button is reset without a request
    MetricsLog(run).write({"step": 10, "kind": "end", "stopped": True, "reason": "stop requested", "time": 2e9})
    qtbot.waitUntil(lambda: not tp.stop_button.isEnabled(), timeout=5000)
    assert not tp.pause_button.isEnabled() and not tp.drop_button.isEnabled()
    assert not tp.pause_button.isChecked() and tp.pause_button.text() == "Pause"
    assert not (run / "control.json").exists()
    assert tp.eta_label.text() == "run ended" and "stop requested at step 10" in tp.status.text()
    # a controls click on an ended run writes nothing either
    tp.stop()
    tp.drop_lr()
    assert not (run / "control.json").exists()
    # the run is resumed by its owner: a new start record makes it live again
    MetricsLog(run).write({"step": 10, "kind": "start", "parameters": 1, "device": "cpu", "world": 1,
                           "resumed": True, "time": 3e9})
    qtbot.waitUntil(lambda: tp.stop_button.isEnabled(), timeout=5000)


def test_only_the_selected_networks_fields(window):
    tp = training_panel(window)
    assert not any(b.isEnabled() for b in (tp.pause_button, tp.stop_button, tp.drop_button))  # nothing runs
    phai_only, dsfu_only = {"cycles_max", "d_min_range", "drop_max", "pool_size", "weight_structures"}, {"model"}
    assert phai_only <= set(tp.form.editors) and tp.form.sections["model"].editors.keys() == {"preset"}
    tp.kind.setCurrentIndex(1)
    assert not phai_only & set(tp.form.editors) and tp.form.sections["model"].editors.keys() == {"width"}
    assert dsfu_only <= set(tp.form.sections)
    # within a network: a field the current choices do not use is off, and says why
    f = tp.form
    betas = f.editor("betas")
    assert all(b.isEnabled() for b in betas)  # adam
    f.editor("optimizer").setCurrentText("rmsprop")
    assert tp.cfg.optimizer == "rmsprop" and not any(b.isEnabled() for b in betas)
    assert "RMSprop has no betas" in betas[0].toolTip()
    f.editor("optimizer").setCurrentText("adamw")
    assert all(b.isEnabled() for b in betas) and "(off:" not in betas[0].toolTip()
    assert not f.editor("step_every").isEnabled()  # constant schedule
    f.editor("schedule").setCurrentText("step")
    assert f.editor("step_every").isEnabled()
    tp.kind.setCurrentIndex(0)  # PhAI default: cosine
    assert not tp.form.editor("step_every").isEnabled() and tp.form.editor("cycles_max").isEnabled()
    # every control of the panel (and the evaluation dialog it opens) explains itself
    tp.evaluate_button.click()
    assert not controls_without_tooltip(window).get("Training"), controls_without_tooltip(window).get("Training")
    dlg = tp._evaluation_dialog
    missing = [w for w in dlg.findChildren(QtWidgets.QWidget) if isinstance(w, (QtWidgets.QAbstractButton,
               QtWidgets.QLineEdit, QtWidgets.QAbstractSpinBox)) and not w.toolTip()
               and not isinstance(w.parentWidget(), QtWidgets.QAbstractSpinBox)]
    dlg.close()
    assert not missing, [type(w).__name__ for w in missing]


@pytest.mark.parametrize("rate", [0.004, 0.4])
def test_slow_rates_are_never_zero(rate):
    assert not format_rate(rate, "planes/s").startswith("0 ")


def test_saved_dsfu_configuration_loads_as_dsfu(window, tmp_path):
    """Network DSFU-Net, Save config…, Load config…: the form comes back as DSFU-Net (the kind was not saved)."""
    tp = training_panel(window)
    tp.kind.setCurrentIndex(1)
    tp.save_config(str(tmp_path / "dsfu.json"))
    assert json.loads((tmp_path / "dsfu.json").read_text()) == {"kind": "dsfu"}
    tp.kind.setCurrentIndex(0)
    tp.load_config(str(tmp_path / "dsfu.json"))
    assert tp.cfg.kind == "dsfu" and tp.kind.currentText() == "DSFU-Net"


def test_log_axis_ticks_decades_and_2_5_only(qtbot):
    """The learning-rate axis: pyqtgraph's 2…9 × decade labels ran into each other on a small plot."""
    from crystalstudio.gui.views.plots import CurvePlot
    plot = CurvePlot(title="learning rate", y_label="learning rate", log_y=True)
    qtbot.addWidget(plot)
    axis = plot.plot.getAxis("left")
    levels = axis.tickValues(np.log10(6.5e-5), np.log10(6e-4), 150)
    shown = sorted(round(10 ** v, 12) for _, values in levels for v in values)
    assert shown == [1e-4, 2e-4, 5e-4]
    levels = axis.tickValues(np.log10(1e-7), np.log10(1e-2), 150)  # many decades: the decades alone
    assert sorted(round(10 ** v, 14) for _, values in levels for v in values) == [1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2]
    levels = axis.tickValues(np.log10(2.2e-4), np.log10(4.8e-4), 150)  # narrow: every integer multiple
    assert sorted(round(10 ** v, 12) for _, values in levels for v in values) == [3e-4, 4e-4]
