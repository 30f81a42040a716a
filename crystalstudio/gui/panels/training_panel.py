"""Training panel: run PhAI or DSFU-Net training in a worker thread (or attach to a run directory written
elsewhere, e.g. by `crystalstudio train` under torchrun on a cluster) and watch it: live loss and metric
curves, learning rate with a drop button, throughput, and a validation sample (true vs predicted)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import numpy as np
from PySide6 import QtCore, QtWidgets

from ...errors import CrystalStudioError
from ...training.config import DSFUTrainConfig, PhAITrainConfig, TrainConfig
from ...training.runlog import MetricsFollower, RunControl
from ..views.density_view import DensitySlabView
from ..views.forms import ParamsForm
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


def read_sample(path: str):
    """("phai", (true map, predicted map)) or ("dsfu", five planes) from a run's sample.npz; None when the
    file is being replaced (worker side)."""
    try:
        with np.load(path) as z:
            d = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError):
        return None
    if "amplitudes" in d:
        return "phai", (_sample_map(d["amplitudes"], d["true_phases"]), _sample_map(d["amplitudes"], d["predicted_phases"]))
    from ...diffuse.planes import postprocess

    return "dsfu", [postprocess(d[k]) for k in ("input", "ff_true", "ff_pred", "sro_true", "sro_pred")]


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
        self.cfg: TrainConfig = PhAITrainConfig()
        self.config_path: Optional[str] = None

        # ---- settings: one form built from the configuration class, editing self.cfg in place
        self.kind = QtWidgets.QComboBox()
        self.kind.addItems(["PhAI", "DSFU-Net"])
        self.kind.setToolTip("The network to train; switching starts from that network's default configuration")
        self.form_area = QtWidgets.QScrollArea()
        self.form_area.setWidgetResizable(True)
        self.form_area.setMinimumWidth(360)
        self.form: Optional[ParamsForm] = None
        self.resume = QtWidgets.QCheckBox("resume from the run directory's checkpoint")
        self.resume.setToolTip("Continue where the run directory's last checkpoint left off "
                               "(off: start at step 0; an older metrics log is kept beside)")
        self.resume.setChecked(True)
        self.load_cfg = QtWidgets.QPushButton("Load config…")
        self.load_cfg.setToolTip("Open a training configuration (JSON): the form edits it, Save writes it back")
        self.save_cfg = QtWidgets.QPushButton("Save config…")
        self.save_cfg.setToolTip("Write the configuration as loaded plus your edits (fields you did not touch stay "
                                 "as they were)")
        self.start_button = QtWidgets.QPushButton("Start")
        self.start_button.setToolTip("Train with this configuration in a worker thread")
        self.pause_button = QtWidgets.QPushButton("Pause")
        self.pause_button.setCheckable(True)
        self.pause_button.setToolTip("Pause or resume the run between two steps")
        self.stop_button = QtWidgets.QPushButton("Stop")
        self.stop_button.setToolTip("Stop after the current step; a checkpoint is written")
        self.drop_button = QtWidgets.QPushButton("Drop LR ×0.5")
        self.drop_button.setToolTip("Halve the learning rate now (as the papers did on plateaus)")
        self.attach_button = QtWidgets.QPushButton("Attach to run…")
        self.attach_button.setToolTip("Follow a run directory written by a headless or cluster run")
        self.evaluate_button = QtWidgets.QPushButton("Evaluate on CIF folder…")
        self.evaluate_button.setToolTip("Measure a PhAI checkpoint on real P2₁/c-family CIFs (solved fraction, median "
                                        "map r, r against cell volume), as `crystalstudio evaluate` does")
        self.evaluate_button.clicked.connect(lambda: open_evaluation(self, str(self.run_dir or self.cfg.run_dir)))
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
        top = QtWidgets.QFormLayout()
        top.addRow("Network", self.kind)
        ll.addLayout(top)
        ll.addWidget(self.form_area, 1)
        ll.addWidget(self.resume)
        ll.addLayout(grid)
        ll.addWidget(self.status)

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
        self._build_form()

    # ------------------------------------------------------------------ configuration
    def _build_form(self) -> None:
        """A form for self.cfg; the generator section is kept as loaded (structures are designed in the
        Generator panel) and so are fields without an editor."""
        self.form = ParamsForm(self.cfg, "Run configuration", exclude=["generator"])
        self.form.invalid.connect(lambda path, msg: self.status.setText(f"{path}: {msg}"))
        self.form_area.setWidget(self.form)
        self.kind.blockSignals(True)
        self.kind.setCurrentIndex(1 if self.cfg.kind == "dsfu" else 0)
        self.kind.blockSignals(False)
        self.sample_stack.setCurrentIndex(1 if self.cfg.kind == "dsfu" else 0)

    def _kind_changed(self, index: int) -> None:
        self.set_config(DSFUTrainConfig() if index == 1 else PhAITrainConfig(), None)

    def set_config(self, cfg: TrainConfig, path: Optional[str] = None) -> None:
        """Edit `cfg` (in place) from now on."""
        self.cfg, self.config_path = cfg, path
        self._build_form()
        self.status.setText(f"configuration {path}" if path else f"default {cfg.kind} configuration")

    def config(self) -> TrainConfig:
        """The configuration a run starts with: the edited object, checked (the worker gets a copy)."""
        return self.cfg.check()

    def load_config(self, path: str) -> None:
        self.set_config(TrainConfig.load(path), path)

    def save_config(self, path: str) -> None:
        self.cfg.save(path)
        self.config_path = path

    def _ask_load(self):
        path, _ = QtWidgets.QFileDialog.getOpenFileName(self, "Training configuration", "", "JSON (*.json)")
        if path:
            try:
                self.load_config(path)
            except CrystalStudioError as exc:
                self.error("Cannot read configuration", str(exc))

    def _ask_save(self):
        path = self.save_path("Save configuration", Path(self.config_path or "train.json").name, "JSON (*.json)")
        if path:
            try:
                self.save_config(path)
            except OSError as exc:
                self.error("Cannot save configuration", f"{path}: {exc.strerror or exc}")

    # ------------------------------------------------------------------ running
    def start(self) -> None:
        from ...training.phai_trainer import train

        try:
            cfg = self.config().copy()
        except CrystalStudioError as exc:
            self.error("Invalid configuration", str(exc))
            return
        if cfg.device == "auto" and "device" not in cfg.model_fields_set and self.window_.device() == "cpu":
            cfg.device = "cpu"  # the preferences say CPU and the configuration names no device
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
        self.load_cfg.setEnabled(not running)
        if self.form is not None:
            self.form.setEnabled(not running)

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
        vals = ", ".join(f"{k} {v:.4g}" for k, v in result.items() if isinstance(v, float) and k.startswith("val_"))
        self._final = f"{result['reason']} at step {result['step']}" + (f"; validation: {vals}" if vals else "")

    def _failed(self, msg, tb) -> None:
        self.error("Training failed", msg, tb)
        self._final = f"failed: {msg}"

    def _ended(self) -> None:
        self.poll()  # the last records first, then the run's own summary
        self._set_running(False)
        self.pause_button.setChecked(False)
        if getattr(self, "_final", None):
            self.status.setText(self._final)
            self._final = None

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
                self.set_config(TrainConfig.load(cfg_file), str(cfg_file))
            except CrystalStudioError as exc:  # the curves work without the configuration
                log.warning("%s", exc)
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
        """Read and prepare the validation sample in a worker (maps by FFT); show it when ready."""
        self.run("validation sample", read_sample, str(path), key="training-sample", track=False,
                 on_result=self._sample_ready, on_error=lambda msg, tb: log.warning("validation sample: %s", msg))

    def _sample_ready(self, sample) -> None:
        if sample is None:
            return
        kind, items = sample
        if kind == "phai":
            self.sample_stack.setCurrentIndex(0)
            self.true_slab.set_map(items[0])
            self.pred_slab.set_map(items[1])
        else:
            self.sample_stack.setCurrentIndex(1)
            for panel, image in zip(self.sample_images, items):
                panel.set_image(image)

    def shutdown(self) -> None:
        self.timer.stop()
        if self.task is not None and not self.task.is_done and self.control is not None:
            self.control.request_stop()
            self.control.set_paused(False)
