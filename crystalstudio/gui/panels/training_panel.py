"""Training panel: run PhAI or DSFU-Net training in a worker thread (or attach to a run directory written
elsewhere, e.g. by `crystalstudio train` under torchrun on a cluster) and watch it: live loss and metric
curves, learning rate with a drop button, throughput, and a validation sample (true vs predicted)."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Optional

import numpy as np
from PySide6 import QtCore, QtWidgets

from ...training.config import TrainConfig
from ...training.runlog import MetricsFollower, RunControl
from ..views.density_view import DensitySlabView
from ..views.image_view import ImagePanel
from ..views.plots import CurvePlot
from .base import Panel
from .evaluation import open_evaluation

log = logging.getLogger("crystalstudio")


def _sample_map(amplitudes, phases_deg, max_index: int = 10):
    """A P2₁/c map (nominal 10 Å cubic cell: fractional coordinates matter) from PhAI-list data."""
    from ...crystal.cell import UnitCell
    from ...crystal.maps import density_map
    from ...crystal.symmetry import SpaceGroup, encode_hkl
    from ...phasing.phai_grid import PhAIGrid

    sg = SpaceGroup.from_name("P21/c")
    grid = PhAIGrid(max_index)
    keep = amplitudes > 0
    asu, _, _ = sg.to_asu(grid.hkl[keep])
    _, first = np.unique(encode_hkl(asu), return_index=True)
    hkl = grid.hkl[keep][first]
    F = amplitudes[keep][first] * np.exp(1j * np.radians(phases_deg[keep][first]))
    return density_map(UnitCell(10, 10, 10, 90, 90, 90), sg, hkl, F, grid=(24, 24, 24))


class TrainingPanel(Panel):
    routing_priority = 2
    title = "Training"
    suffixes = (".jsonl",)

    def __init__(self, window, default_content: bool = True):
        super().__init__(window, default_content)
        self.task = None
        self.control: Optional[RunControl] = None
        self.follower: Optional[MetricsFollower] = None
        self.run_dir: Optional[Path] = None
        self.records: list[dict] = []
        self._sample_mtime = 0.0

        # ---- settings
        self.kind = QtWidgets.QComboBox()
        self.kind.addItems(["PhAI", "DSFU-Net"])
        self.preset = QtWidgets.QComboBox()
        self.preset.addItems(["small", "published"])
        self.preset.setToolTip("PhAI size: small (1.3 M parameters, CPU) or the published 42.4 M configuration (GPU)")
        self.width = QtWidgets.QSpinBox(minimum=4, maximum=64, value=16)
        self.width.setToolTip("DSFU-Net channel width (64 = published, 29.2 M parameters)")
        self.batch = QtWidgets.QSpinBox(minimum=2, maximum=4096, value=32)
        self.steps = QtWidgets.QSpinBox(minimum=1, maximum=10**7, value=2000)
        self.lr = QtWidgets.QDoubleSpinBox(decimals=6, minimum=1e-6, maximum=1.0, singleStep=1e-4, value=1e-3)
        self.cycles = QtWidgets.QSpinBox(minimum=1, maximum=10, value=3)
        self.cycles.setToolTip("PhAI: recycling cycles drawn 1…n per batch")
        self.val_every = QtWidgets.QSpinBox(minimum=0, maximum=10**6, value=50)
        self.ckpt_every = QtWidgets.QSpinBox(minimum=0, maximum=10**6, value=100)
        self.run_dir_edit = QtWidgets.QLineEdit(str(Path.home() / "crystalstudio_runs" / "phai"))
        self.resume = QtWidgets.QCheckBox("resume from the run directory's checkpoint")
        self.resume.setChecked(True)
        form = QtWidgets.QFormLayout()
        for label, w in (("Network", self.kind), ("PhAI size", self.preset), ("DSFU width", self.width),
                         ("Batch (structures/planes)", self.batch), ("Steps", self.steps), ("Learning rate", self.lr),
                         ("Recycling cycles", self.cycles), ("Validate every", self.val_every),
                         ("Checkpoint every", self.ckpt_every), ("Run directory", self.run_dir_edit)):
            form.addRow(label, w)
        form.addRow(self.resume)
        self.load_cfg = QtWidgets.QPushButton("Load config…")
        self.save_cfg = QtWidgets.QPushButton("Save config…")
        self.start_button = QtWidgets.QPushButton("Start")
        self.pause_button = QtWidgets.QPushButton("Pause")
        self.pause_button.setCheckable(True)
        self.stop_button = QtWidgets.QPushButton("Stop")
        self.drop_button = QtWidgets.QPushButton("Drop LR ×0.5")
        self.drop_button.setToolTip("Halve the learning rate now (as the papers did on plateaus)")
        self.attach_button = QtWidgets.QPushButton("Attach to run…")
        self.attach_button.setToolTip("Follow a run directory written by a headless or cluster run")
        self.evaluate_button = QtWidgets.QPushButton("Evaluate on CIF folder…")
        self.evaluate_button.setToolTip("Measure a PhAI checkpoint on real P2₁/c-family CIFs (solved fraction, median "
                                        "map r, r against cell volume), as `crystalstudio evaluate` does")
        self.evaluate_button.clicked.connect(lambda: open_evaluation(self, self.run_dir_edit.text()))
        for b in (self.pause_button, self.stop_button, self.drop_button):
            b.setEnabled(False)
        grid = QtWidgets.QGridLayout()
        for i, b in enumerate((self.load_cfg, self.save_cfg, self.start_button, self.pause_button, self.stop_button,
                               self.drop_button, self.attach_button, self.evaluate_button)):
            grid.addWidget(b, i // 2, i % 2)
        self.status = QtWidgets.QLabel("idle")
        self.status.setWordWrap(True)
        left = QtWidgets.QWidget()
        ll = QtWidgets.QVBoxLayout(left)
        ll.addLayout(form)
        ll.addLayout(grid)
        ll.addWidget(self.status)
        ll.addStretch(1)

        # ---- views
        self.loss_plot = CurvePlot(title="training loss", x_label="step")
        self.metric_plot = CurvePlot(title="validation", x_label="step")
        self.lr_plot = CurvePlot(title="learning rate", x_label="step", log_y=True)
        self.true_slab = DensitySlabView(title="validation sample: true phases")
        self.pred_slab = DensitySlabView(title="predicted phases")
        self.sample_images = [ImagePanel(t) for t in ("input", "I_FF true", "I_FF predicted", "I_SRO true", "I_SRO predicted")]
        curves = QtWidgets.QSplitter(QtCore.Qt.Horizontal)
        for w in (self.loss_plot, self.metric_plot, self.lr_plot):
            curves.addWidget(w)
        self.sample_stack = QtWidgets.QStackedWidget()
        phai_sample = QtWidgets.QSplitter(QtCore.Qt.Horizontal)
        phai_sample.addWidget(self.true_slab)
        phai_sample.addWidget(self.pred_slab)
        dsfu_sample = QtWidgets.QSplitter(QtCore.Qt.Horizontal)
        for w in self.sample_images:
            dsfu_sample.addWidget(w)
        self.sample_stack.addWidget(phai_sample)
        self.sample_stack.addWidget(dsfu_sample)
        right = QtWidgets.QSplitter(QtCore.Qt.Vertical)
        right.addWidget(curves)
        right.addWidget(self.sample_stack)
        split = QtWidgets.QSplitter(QtCore.Qt.Horizontal)
        split.addWidget(left)
        split.addWidget(right)
        split.setStretchFactor(1, 1)
        lay = QtWidgets.QHBoxLayout(self)
        lay.addWidget(split)

        self.timer = QtCore.QTimer(self)
        self.timer.setInterval(400)
        self.timer.timeout.connect(self.poll)
        self.start_button.clicked.connect(self.start)
        self.stop_button.clicked.connect(self.stop)
        self.pause_button.toggled.connect(self.set_paused)
        self.drop_button.clicked.connect(self.drop_lr)
        self.attach_button.clicked.connect(self._ask_attach)
        self.load_cfg.clicked.connect(self._ask_load)
        self.save_cfg.clicked.connect(self._ask_save)
        self.kind.currentIndexChanged.connect(self._kind_changed)

    # ------------------------------------------------------------------ configuration
    def _kind_changed(self, *_):
        dsfu = self.kind.currentIndex() == 1
        self.sample_stack.setCurrentIndex(1 if dsfu else 0)
        if dsfu and self.lr.value() == 1e-3:
            self.lr.setValue(2e-4)
        sub = "dsfu" if dsfu else "phai"
        p = Path(self.run_dir_edit.text())
        if p.name in ("phai", "dsfu"):
            self.run_dir_edit.setText(str(p.parent / sub))

    def config(self) -> TrainConfig:
        dsfu = self.kind.currentIndex() == 1
        d = dict(kind="dsfu" if dsfu else "phai", run_dir=self.run_dir_edit.text(), batch_size=self.batch.value(),
                 steps=self.steps.value(), lr=self.lr.value(), cycles_max=self.cycles.value(),
                 val_every=self.val_every.value(), checkpoint_every=self.ckpt_every.value(),
                 device=self.window_.device(), warmup_steps=min(50, self.steps.value() // 10),
                 data_shards=2 if self.batch.value() % 2 == 0 else 1,
                 val_size=16 if dsfu else 128)
        if dsfu:
            d.update(model={"width": self.width.value()}, schedule="constant")
        else:
            d.update(model={"preset": self.preset.currentText()})
        return TrainConfig.from_dict(d)

    def apply_config(self, cfg: TrainConfig) -> None:
        self.kind.setCurrentIndex(1 if cfg.kind == "dsfu" else 0)
        self.run_dir_edit.setText(cfg.run_dir)
        self.batch.setValue(cfg.batch_size)
        self.steps.setValue(cfg.steps)
        self.lr.setValue(cfg.lr)
        self.cycles.setValue(cfg.cycles_max)
        self.val_every.setValue(cfg.val_every)
        self.ckpt_every.setValue(cfg.checkpoint_every)
        if cfg.kind == "dsfu":
            self.width.setValue(int(cfg.model.get("width", 16)))
        else:
            self.preset.setCurrentText(cfg.model.get("preset", "small"))

    def _ask_load(self):
        path, _ = QtWidgets.QFileDialog.getOpenFileName(self, "Training configuration", "", "JSON (*.json)")
        if path:
            try:
                self.apply_config(TrainConfig.load(path))
            except Exception as exc:  # noqa: BLE001
                self.error("Cannot read configuration", str(exc))

    def _ask_save(self):
        path = self.save_path("Save configuration", "train.json", "JSON (*.json)")
        if path:
            self.config().save(path)

    # ------------------------------------------------------------------ running
    def start(self) -> None:
        from ...training.phai_trainer import train

        try:
            cfg = self.config()
        except Exception as exc:  # noqa: BLE001
            self.error("Invalid configuration", str(exc))
            return
        self.control = RunControl(cfg.run_dir)
        self._follow(Path(cfg.run_dir), reset=True)
        self.task = self.run("training", train, cfg, resume=self.resume.isChecked(), control=self.control,
                             label=f"Training {cfg.kind}", on_result=self._finished, on_done=self._ended,
                             on_error=self._failed)
        self._set_running(True)
        self.status.setText(f"training {cfg.kind} in {cfg.run_dir} on {cfg.device}")

    def _set_running(self, running: bool) -> None:
        self.start_button.setEnabled(not running)
        for b in (self.pause_button, self.stop_button, self.drop_button):
            b.setEnabled(running or self.follower is not None)
        self.kind.setEnabled(not running)

    def stop(self) -> None:
        if self.task is not None and not self.task.is_done:
            self.control.request_stop()
            self.control.set_paused(False)
        elif self.run_dir is not None:
            RunControl.write_request(self.run_dir, stop=True)
        self.status.setText("stopping (a checkpoint is written)…")

    def set_paused(self, paused: bool) -> None:
        if self.task is not None and not self.task.is_done:
            self.control.set_paused(paused)
        elif self.run_dir is not None:
            RunControl.write_request(self.run_dir, pause=paused)
        self.pause_button.setText("Resume" if paused else "Pause")

    def drop_lr(self) -> None:
        if self.task is not None and not self.task.is_done:
            self.control.request_lr_drop(0.5)
        elif self.run_dir is not None:
            RunControl.write_request(self.run_dir, drop_lr=0.5)
        log.info("learning-rate drop ×0.5 requested")

    def _finished(self, result) -> None:
        self.status.setText("finished: " + ", ".join(f"{k} {v:.4g}" for k, v in result.items() if isinstance(v, float)))

    def _failed(self, msg, tb) -> None:
        self.error("Training failed", msg, tb)
        self.status.setText(f"failed: {msg}")

    def _ended(self) -> None:
        self.poll()
        self._set_running(False)
        self.pause_button.setChecked(False)

    # ------------------------------------------------------------------ following a run directory
    def _ask_attach(self) -> None:
        d = QtWidgets.QFileDialog.getExistingDirectory(self, "Run directory", self.run_dir_edit.text())
        if d:
            self.attach(d)

    def attach(self, run_dir) -> None:
        p = Path(run_dir)
        if not (p / "metrics.jsonl").exists():
            self.error("Cannot attach", f"{p}: no metrics.jsonl (not a CrystalStudio run directory)")
            return
        cfg_file = p / "config.json"
        if cfg_file.exists():
            try:
                self.apply_config(TrainConfig.load(cfg_file))
            except Exception:  # noqa: BLE001 - the curves work without the configuration
                pass
        self._follow(p, reset=True)
        self.status.setText(f"following {p}")
        for b in (self.pause_button, self.stop_button, self.drop_button):
            b.setEnabled(True)

    def open_file(self, path: str) -> None:
        self.attach(Path(path).parent)

    def accepts(self, path: Path) -> bool:
        return path.name == "metrics.jsonl"

    def _follow(self, run_dir: Path, reset: bool) -> None:
        self.run_dir = run_dir
        self.follower = MetricsFollower(run_dir)
        if reset:
            self.records = []
            self._sample_mtime = 0.0
            for p in (self.loss_plot, self.metric_plot, self.lr_plot):
                p.clear_curves()
        self.timer.start()

    def poll(self) -> None:
        if self.follower is None:
            return
        new = self.follower.poll()
        if new:
            if any(r.get("kind") == "start" for r in new):
                self.records = list(new)  # a (re)started run rewrote its log: `new` holds all of it
            else:
                self.records.extend(new)
            self._update_curves()
        sample = self.run_dir / "sample.npz" if self.run_dir else None
        if sample is not None and sample.exists():
            m = sample.stat().st_mtime
            if m > self._sample_mtime:
                self._sample_mtime = m
                self._show_sample(sample)

    def _update_curves(self) -> None:
        tr = [r for r in self.records if r.get("kind") == "train"]
        val = [r for r in self.records if r.get("kind") == "validation"]
        if tr:
            steps = [r["step"] for r in tr]
            self.loss_plot.set_curve("loss", steps, [r["loss"] for r in tr])
            self.lr_plot.set_curve("lr", steps, [r["lr"] for r in tr])
            last = tr[-1]
            rate = last.get("structures_per_s", last.get("planes_per_s", 0))
            unit = "structures/s" if "structures_per_s" in last else "planes/s"
            mem = f", GPU memory {last['gpu_memory_mb']:.0f} MB" if "gpu_memory_mb" in last else ""
            self.status.setText(f"step {last['step']}: loss {last['loss']:.4f}, lr {last['lr']:.2e}, {rate:.0f} {unit}{mem}")
        if val:
            steps = [r["step"] for r in val]
            for key in ("val_accuracy", "val_map_r", "val_random_map_r", "real_map_r", "val_mse_ff", "val_mse_sro",
                        "noise_mse_ff", "noise_mse_sro"):
                if key in val[-1]:
                    self.metric_plot.set_curve(key, steps, [r.get(key, np.nan) for r in val])

    def _show_sample(self, path: Path) -> None:
        try:
            with np.load(path) as z:
                d = {k: z[k] for k in z.files}
        except (OSError, ValueError):
            return
        if "amplitudes" in d:
            self.sample_stack.setCurrentIndex(0)
            self.true_slab.set_map(_sample_map(d["amplitudes"], d["true_phases"]))
            self.pred_slab.set_map(_sample_map(d["amplitudes"], d["predicted_phases"]))
        elif "input" in d:
            self.sample_stack.setCurrentIndex(1)
            from ...diffuse.planes import postprocess

            for panel, key in zip(self.sample_images, ("input", "ff_true", "ff_pred", "sro_true", "sro_pred")):
                panel.set_image(postprocess(d[key]))

    def shutdown(self) -> None:
        self.timer.stop()
        if self.task is not None and not self.task.is_done and self.control is not None:
            self.control.request_stop()
            self.control.set_paused(False)
