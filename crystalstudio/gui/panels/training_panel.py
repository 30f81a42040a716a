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


def format_rate(rate, unit: str) -> str:
    """A throughput as a user reads it: "—" until measured (missing, zero or not finite), never "0 planes/s"."""
    try:
        rate = float(rate)
    except (TypeError, ValueError):
        return "—"
    if not np.isfinite(rate) or rate <= 0:
        return "—"
    return f"{rate:.0f} {unit}" if rate >= 100 else f"{rate:.3g} {unit}"


def format_duration(seconds) -> str:
    """"2 h 05 min", "3 min 20 s", "40 s"; "—" when unknown."""
    if seconds is None or not np.isfinite(seconds) or seconds < 0:
        return "—"
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    if s >= 60:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s} s"


def progress_figures(records: list[dict], total_steps: Optional[int], window: int = 20):
    """(throughput text, ETA text) from a run's records: the throughput is the median of the last `window`
    training steps' own figure (structures/s or planes/s); the ETA is the remaining steps times the median
    wall time per step (`step_s`, which includes validation and checkpoints). "—" where not measured yet,
    for an ended run, or when the run's length is unknown."""
    start = max((i for i, r in enumerate(records) if r.get("kind") == "start"), default=-1)
    current = records[start + 1:]
    tr = [r for r in current if r.get("kind") == "train"][-window:]
    ended = any(r.get("kind") == "end" for r in current)
    rate = "—"
    if tr:
        unit = "structures/s" if "structures_per_s" in tr[-1] else "planes/s"
        vals = [r.get("structures_per_s", r.get("planes_per_s")) for r in tr]
        vals = [float(v) for v in vals if isinstance(v, (int, float)) and np.isfinite(v) and v > 0]
        rate = format_rate(float(np.median(vals)) if vals else None, unit)
    if ended:
        return rate, "run ended"
    if not tr or not total_steps:
        return rate, "—"
    per_step = [float(r["step_s"]) for r in tr if isinstance(r.get("step_s"), (int, float)) and r["step_s"] > 0]
    if not per_step:
        return rate, "—"
    remaining = max(int(total_steps) - int(tr[-1]["step"]), 0)
    return rate, format_duration(remaining * float(np.median(per_step)))


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
        self._attached = False  # following a run directory written by another process
        self._run_steps: Optional[int] = None  # the followed run's length (for the ETA), when known
        self._shown_counts = (-1, -1)  # training and validation records drawn so far
        self._sample_token = None  # the validation sample being shown (see _show_sample_staged)
        self._final = None

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
        self.attach_button.setToolTip("Follow a run directory written by a headless or cluster run (its curves, "
                                       "validation sample and configuration; Pause, Stop and Drop LR act on it "
                                       "while it runs)")
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
        self.status.setToolTip("The run's last step: loss and learning rate, or how it ended")
        self.rate_label = QtWidgets.QLabel("—")
        self.rate_label.setToolTip("Throughput: median of the last 20 training steps (structures/s for PhAI, "
                                   "planes/s for DSFU-Net, data generation included); — until measured")
        self.eta_label = QtWidgets.QLabel("—")
        self.eta_label.setToolTip("Time to the run's last step: remaining steps × median wall time per step "
                                  "(validation and checkpoints included); — until measured")
        figures = QtWidgets.QFormLayout()
        figures.addRow("Throughput", self.rate_label)
        figures.addRow("ETA", self.eta_label)
        left = QtWidgets.QWidget()
        ll = QtWidgets.QVBoxLayout(left)
        top = QtWidgets.QFormLayout()
        top.addRow("Network", self.kind)
        ll.addLayout(top)
        ll.addWidget(self.form_area, 1)
        ll.addWidget(self.resume)
        ll.addLayout(grid)
        ll.addLayout(figures)
        ll.addWidget(self.status)

        # ---- views
        self.loss_plot = CurvePlot(title="training loss", x_label="optimiser step", y_label="loss")
        self.metric_plot = CurvePlot(title="validation", x_label="optimiser step", y_label="validation metric",
                                     markers="always")
        self.lr_plot = CurvePlot(title="learning rate", x_label="optimiser step", y_label="learning rate", log_y=True)
        self.true_slab = DensitySlabView(title="validation sample: true phases")
        self.pred_slab = DensitySlabView(title="predicted phases")
        self.sample_images = [ImagePanel(t, quantity="I", unit="relative", toolbar=False)
                              for t in ("input", "I_FF true", "I_FF predicted", "I_SRO true", "I_SRO predicted")]
        curves = QtWidgets.QSplitter(QtCore.Qt.Horizontal, objectName="curves")
        for w in (self.loss_plot, self.metric_plot, self.lr_plot):
            curves.addWidget(w)
        self.sample_stack = QtWidgets.QStackedWidget()
        phai_sample = QtWidgets.QSplitter(QtCore.Qt.Horizontal, objectName="phai_sample")
        phai_sample.addWidget(self.true_slab)
        phai_sample.addWidget(self.pred_slab)
        # DSFU-Net: the input large on the left; true and predicted side by side, I_FF above I_SRO
        dsfu_sample = QtWidgets.QWidget()
        g = QtWidgets.QGridLayout(dsfu_sample)
        g.setContentsMargins(0, 0, 0, 0)
        g.addWidget(self.sample_images[0], 0, 0, 2, 1)
        for k, w in enumerate(self.sample_images[1:]):
            g.addWidget(w, k // 2, 1 + k % 2)
        for c in range(3):
            g.setColumnStretch(c, 1)
        self.sample_stack.addWidget(phai_sample)
        self.sample_stack.addWidget(dsfu_sample)
        self.no_sample = QtWidgets.QLabel("The validation sample (true against predicted) appears here after the "
                                          "run's first validation.")
        self.no_sample.setAlignment(QtCore.Qt.AlignCenter)
        self.no_sample.setWordWrap(True)
        self.sample_stack.addWidget(self.no_sample)
        self.sample_stack.setCurrentWidget(self.no_sample)
        right = QtWidgets.QSplitter(QtCore.Qt.Vertical, objectName="views")
        right.addWidget(curves)
        right.addWidget(self.sample_stack)
        right.setStretchFactor(0, 2)
        right.setStretchFactor(1, 3)
        right.setSizes([260, 440])  # the sample images need the height (DSFU-Net: two rows)
        split = QtWidgets.QSplitter(QtCore.Qt.Horizontal, objectName="main")
        split.addWidget(left)
        split.addWidget(right)
        split.setStretchFactor(1, 1)
        lay = QtWidgets.QHBoxLayout(self)
        lay.addWidget(split)

        self.timer = QtCore.QTimer(self)
        self.timer.setInterval(400)
        self.timer.timeout.connect(lambda: self.poll(staged=True))
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
        self.form.changed.connect(lambda path: self._update_field_states())
        self.form_area.setWidget(self.form)
        self._update_field_states()
        self.kind.blockSignals(True)
        self.kind.setCurrentIndex(1 if self.cfg.kind == "dsfu" else 0)
        self.kind.blockSignals(False)
        if self.sample_stack.currentWidget() is not self.no_sample:
            self.sample_stack.setCurrentIndex(1 if self.cfg.kind == "dsfu" else 0)

    # fields that only act under another field's value: (field, condition on the configuration, why it is off)
    DEPENDENT_FIELDS = (
        ("betas", lambda c: c.optimizer in ("adam", "adamw"), "RMSprop has no betas"),
        ("step_every", lambda c: c.schedule == "step", "only the 'step' schedule uses it"),
    )

    def _update_field_states(self) -> None:
        """The form holds only the selected network's fields (switching the network rebuilds it); within it,
        a field that the current choices do not use is disabled, with the reason in its tooltip."""
        form = self.form
        if form is None:
            return
        for name, used, why in self.DEPENDENT_FIELDS:
            if name not in form.editors:
                continue
            on = bool(used(self.cfg))
            for w in form._widgets(name):
                w.setEnabled(on)
                tip = w.toolTip().split("\n\n(off: ")[0]
                w.setToolTip(tip if on else f"{tip}\n\n(off: {why})")

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
        self._attached = False
        self._run_steps = cfg.steps
        self._follow(Path(cfg.run_dir), reset=True)
        self._prepare_curves()
        self.task = self.run("training", train, cfg, resume=self.resume.isChecked(), control=self.control,
                             label=f"Training {cfg.kind}", on_result=self._finished, on_done=self._ended,
                             on_error=self._failed)
        self._set_running(True)
        self.status.setText(f"training {cfg.kind} in {cfg.run_dir} on {cfg.device}")

    def own_run_live(self) -> bool:
        return self.task is not None and not self.task.is_done

    def run_live(self) -> bool:
        """A run that Pause, Stop and Drop LR can act on: this panel's, or an attached one whose log has not
        ended (no 'end' record after its last 'start')."""
        if self.own_run_live():
            return True
        if not self._attached or self.follower is None:
            return False
        for r in reversed(self.records):
            if r.get("kind") in ("start", "end"):
                return r["kind"] == "start"
        return True  # attached to a log without start record yet: the run is starting

    def _set_running(self, running: bool) -> None:
        self.start_button.setEnabled(not running)
        self.kind.setEnabled(not running)
        self.load_cfg.setEnabled(not running)
        self.attach_button.setEnabled(not running)
        if self.form is not None:
            self.form.setEnabled(not running)
        self._refresh_run_controls()

    def _refresh_run_controls(self) -> None:
        live = self.run_live()
        for b in (self.pause_button, self.stop_button, self.drop_button):
            b.setEnabled(live)
        if not live and self.pause_button.isChecked():
            self.pause_button.blockSignals(True)  # the run is over: nothing to resume
            self.pause_button.setChecked(False)
            self.pause_button.blockSignals(False)
            self.pause_button.setText("Pause")

    def stop(self) -> None:
        if self.own_run_live():
            self.control.request_stop()
            self.control.set_paused(False)
        elif self.run_live() and self.run_dir is not None:
            RunControl.write_request(self.run_dir, stop=True)
        else:
            return
        self.status.setText("stopping (a checkpoint is written)…")

    def set_paused(self, paused: bool) -> None:
        if self.own_run_live():
            self.control.set_paused(paused)
        elif self.run_live() and self.run_dir is not None:
            RunControl.write_request(self.run_dir, pause=paused)
        self.pause_button.setText("Resume" if paused else "Pause")

    def drop_lr(self) -> None:
        if self.own_run_live():
            self.control.request_lr_drop(0.5)
        elif self.run_live() and self.run_dir is not None:
            RunControl.write_request(self.run_dir, drop_lr=0.5)
        else:
            return
        log.info("learning-rate drop ×0.5 requested")

    def _finished(self, result) -> None:
        vals = ", ".join(f"{k} {v:.4g}" for k, v in result.items() if isinstance(v, float) and k.startswith("val_"))
        self._final = f"{result['reason']} at step {result['step']}" + (f"; validation: {vals}" if vals else "")

    def _failed(self, msg, tb) -> None:
        self.error("Training failed", msg, tb)
        self._final = f"failed: {msg}"

    def _ended(self) -> None:
        self.poll(staged=True)  # the last records first, then the run's own summary
        self._set_running(False)
        if self._final:
            self.status.setText(self._final)
            self._final = None

    # ------------------------------------------------------------------ following a run directory
    def attach_start_dir(self) -> str:
        """Where "Attach to run…" starts browsing: the run followed now, else the configuration's run
        directory, else the nearest existing folder above it."""
        for d in (self.run_dir, Path(self.cfg.run_dir).expanduser()):
            if d is None:
                continue
            d = Path(d).absolute()
            while not d.is_dir() and d != d.parent:
                d = d.parent
            if d.is_dir():
                return str(d)
        return ""

    def _ask_attach(self) -> None:
        d = QtWidgets.QFileDialog.getExistingDirectory(self, "Run directory", self.attach_start_dir())
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
        self._attached = True
        self._run_steps = self.cfg.steps if cfg_file.exists() else None
        self._follow(p, reset=True)
        if cfg_file.exists():  # the run's own configuration names its curves
            self._prepare_curves()
        self.status.setText(f"following {p}")
        self.poll()  # what the log holds now (the run may have ended long ago)

    def open_file(self, path: str) -> None:
        self.attach(Path(path).parent)

    def accepts(self, path: Path) -> bool:
        return path.name == "metrics.jsonl"

    def _follow(self, run_dir: Path, reset: bool) -> None:
        self.run_dir = run_dir
        self.follower = MetricsFollower(run_dir)
        if reset:
            self.records = []
            self._shown_counts = (-1, -1)
            self._sample_mtime = 0.0
            for p in (self.loss_plot, self.metric_plot, self.lr_plot):
                p.clear_curves()
            self.sample_stack.setCurrentWidget(self.no_sample)  # the old run's sample is not this run's
            self._sample_token = None
            self.rate_label.setText("—")
            self.eta_label.setText("—")
        self.timer.start()

    VALIDATION_CURVES = {"phai": ("val_accuracy", "val_map_r", "val_random_map_r"),
                         "dsfu": ("val_mse_ff", "val_mse_sro", "noise_mse_ff", "noise_mse_sro")}

    def _prepare_curves(self) -> None:
        """The run's curves and legend entries created once, before its first records (then updated in place)."""
        self.loss_plot.prepare(["loss"])
        self.lr_plot.prepare(["lr"])
        names = list(self.VALIDATION_CURVES.get(self.cfg.kind, ()))
        if self.cfg.kind == "phai" and getattr(self.cfg, "real_validation", None):
            names.append("real_map_r")
        self.metric_plot.prepare(names)

    def poll(self, staged: bool = False) -> None:
        """Read the run's new records and update the curves and figures (`staged`: the three plots one per
        event-loop turn, as the live timer does; otherwise at once)."""
        if self.follower is None:
            return
        new = self.follower.poll()
        if new:
            if any(r.get("kind") == "start" for r in new):
                self.records = list(new)  # a (re)started run rewrote its log: `new` holds all of it
                self._shown_counts = (-1, -1)
            else:
                self.records.extend(new)
            self._update_curves(staged)
        self._refresh_run_controls()
        sample = self.run_dir / "sample.npz" if self.run_dir else None
        if sample is not None and sample.exists():
            m = sample.stat().st_mtime
            if m > self._sample_mtime:
                self._sample_mtime = m
                self._show_sample(sample)

    def _update_curves(self, staged: bool = False) -> None:
        tr = [r for r in self.records if r.get("kind") == "train"]
        val = [r for r in self.records if r.get("kind") == "validation"]
        # a curve is re-set only when its series grew (each set costs the GUI thread ~5-10 ms: a poll that
        # re-set all five kept the event loop busy > 100 ms together with the repaint), and while a run is
        # followed live, one plot per event-loop turn (a 1 ms timer lets each be painted before the next is set:
        # the three plots' repaints in one turn took ~60-100 ms)
        shown_tr, shown_val = self._shown_counts
        self._shown_counts = (len(tr), len(val))
        updates = []
        if tr and len(tr) != shown_tr:
            steps = [r["step"] for r in tr]
            updates.append(lambda: self.loss_plot.set_curve("loss", steps, [r["loss"] for r in tr]))
            updates.append(lambda: self.lr_plot.set_curve("lr", steps, [r["lr"] for r in tr]))
        if tr:
            last = tr[-1]
            total = self._run_steps
            mem = f", GPU memory {last['gpu_memory_mb']:.0f} MB" if "gpu_memory_mb" in last else ""
            of = f"/{total}" if total else ""
            self.status.setText(f"step {last['step']}{of}: loss {last['loss']:.4f}, lr {last['lr']:.2e}{mem}")
        ends = [r for r in self.records if r.get("kind") == "end"]
        if self._attached and ends and not self.run_live():
            self.status.setText(f"attached run ended: {ends[-1].get('reason', 'ended')} at step {ends[-1]['step']}")
        rate, eta = progress_figures(self.records, self._run_steps)
        self.rate_label.setText(rate)
        self.eta_label.setText(eta)
        if val and len(val) != shown_val:
            def metrics(steps=[r["step"] for r in val]):
                for key in ("val_accuracy", "val_map_r", "val_random_map_r", "real_map_r",
                            *self.VALIDATION_CURVES["dsfu"]):
                    if key in val[-1]:
                        self.metric_plot.set_curve(key, steps, [r.get(key, np.nan) for r in val])
                self.metric_plot.unlist_empty()  # metrics this run's log does not hold: not listed
            updates.append(metrics)
        if staged:
            self._set_staged(updates)
        else:
            for update in updates:
                update()

    def _set_staged(self, updates: list) -> None:
        if updates:
            updates[0]()
            if updates[1:]:
                QtCore.QTimer.singleShot(1, self, lambda: self._set_staged(updates[1:]))

    def _show_sample(self, path: Path) -> None:
        """Read and prepare the validation sample in a worker (maps by FFT); show it when ready."""
        self.run("validation sample", read_sample, str(path), key="training-sample", track=False,
                 on_result=self._sample_ready, on_error=lambda msg, tb: log.warning("validation sample: %s", msg))

    def _sample_ready(self, sample) -> None:
        if sample is None:
            return
        kind, items = sample
        views = [self.true_slab, self.pred_slab] if kind == "phai" else self.sample_images
        self.sample_stack.setCurrentIndex(0 if kind == "phai" else 1)
        self._sample_token = token = object()
        self._show_sample_staged(token, list(zip(views, items)))

    def _show_sample_staged(self, token, pairs) -> None:
        """One view per event-loop turn (a 1 ms timer lets each be painted before the next is set): the maps
        and the curves of a validation together kept the loop busy ~150 ms. A newer sample or run ends it."""
        if token is not self._sample_token or not pairs:
            return
        view, data = pairs[0]
        if isinstance(view, DensitySlabView):
            view.set_map(data)
        else:
            view.set_image(data)
        if pairs[1:]:
            QtCore.QTimer.singleShot(1, self, lambda: self._show_sample_staged(token, pairs[1:]))

    def shutdown(self) -> None:
        self.timer.stop()
        if self.task is not None and not self.task.is_done and self.control is not None:
            self.control.request_stop()
            self.control.set_paused(False)
