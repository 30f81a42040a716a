"""'Evaluate on CIF folder…' (opened from the Training panel): a PhAI checkpoint measured on a folder of real
P2₁/c-family CIFs in a worker (progress, cancel), as `crystalstudio evaluate` does, with the result plotted:
map r against cell volume for the best candidate (the paper's pick) and the figure-of-merit pick (a user's)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtWidgets

from ..views.plots import ExportablePlot

log = logging.getLogger("crystalstudio")


class RVolumePlot(ExportablePlot):
    """Map r (y) against cell volume (x, Å³): one scatter series per pick, the solved threshold as a line."""

    SERIES = {"best by map r": ("o", (31, 119, 180)), "FOM pick": ("x", (214, 39, 40))}

    def __init__(self, parent=None):
        super().__init__(parent, title="map r against cell volume", x_label="cell volume (Å³)",
                         y_label="map correlation r")
        self.plot.setYRange(0, 1.02)
        self.legend.setOffset((-10, -10))  # bottom right: solved structures sit at the top

    def set_rows(self, rows: list[dict], solved_r: float = 0.8) -> None:
        self.plot.clear()
        self.legend.clear()
        self._table = {}
        v = np.array([r["volume"] for r in rows], dtype=float)
        for (name, (symbol, colour)), key in zip(self.SERIES.items(), ("best_r", "fom_r")):
            r = np.array([x[key] for x in rows], dtype=float)
            self.plot.addItem(pg.ScatterPlotItem(v, r, symbol=symbol, size=9, pen=pg.mkPen(colour, width=1.5),
                                                 brush=pg.mkBrush(*colour, 120), name=name))  # joins the legend
            self._table[name] = (v, r)
        self.plot.addItem(pg.InfiniteLine(pos=solved_r, angle=0, pen=pg.mkPen((90, 90, 90), style=QtCore.Qt.DashLine)))


class EvaluationDialog(QtWidgets.QDialog):
    """Model, CIF folder, output folder and scan size; Run/Cancel with progress; summary and plot."""

    def __init__(self, panel, model_path: str = "", out_dir: str = ""):
        super().__init__(panel)
        self.panel = panel
        self.task = None
        self.report = None
        self.setWindowTitle("Evaluate a PhAI model on real structures")
        self.model_edit = QtWidgets.QLineEdit(model_path)
        self.model_edit.setToolTip("PhAI weights: a run's checkpoint_best.pt / checkpoint_last.pt or a published "
                                   "PhAI_model.pth")
        self.folder_edit = QtWidgets.QLineEdit()
        self.folder_edit.setToolTip("Folder of .cif files (searched recursively); structures outside the P2₁/c "
                                    "family are listed as skipped")
        self.out_edit = QtWidgets.QLineEdit(out_dir)
        self.out_edit.setToolTip("Output folder: results.csv, skipped.csv, summary.txt, r_vs_volume.png "
                                 "(a re-run with the same settings resumes there)")
        browse = []
        for edit, kind in ((self.model_edit, "model"), (self.folder_edit, "folder"), (self.out_edit, "out")):
            b = QtWidgets.QToolButton(text="…")
            b.setToolTip({"model": "Choose the model file", "folder": "Choose the CIF folder",
                          "out": "Choose the output folder"}[kind])
            b.clicked.connect(lambda _=False, e=edit, k=kind: self._browse(e, k))
            browse.append(b)
        self.cycles = QtWidgets.QSpinBox(minimum=1, maximum=30, value=10)
        self.cycles.setToolTip("Recycling cycles 1…N are candidates (the paper scans 10)")
        self.starts = QtWidgets.QSpinBox(minimum=0, maximum=32, value=4)
        self.starts.setToolTip("Random starts besides the zero start (the paper uses 4)")
        self.d_min = QtWidgets.QDoubleSpinBox(decimals=2, minimum=0.0, maximum=5.0, singleStep=0.1, value=1.0)
        self.d_min.setToolTip("Resolution of |F| on the model's reflection list in Å (0: the whole list)")
        self.run_button = QtWidgets.QPushButton("Run")
        self.run_button.setToolTip("Evaluate in the background")
        self.cancel_button = QtWidgets.QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop after the current batch; finished structures stay in results.csv")
        self.cancel_button.setEnabled(False)
        self.progress = QtWidgets.QProgressBar(maximum=1000)
        self.progress.setToolTip("Structures evaluated so far")
        self.summary = QtWidgets.QPlainTextEdit(readOnly=True)
        self.summary.setToolTip("Solved fraction (r ≥ 0.8) and median map r for both picks, by cell size and class")
        self.summary.setMinimumHeight(150)
        font = self.summary.font()
        font.setFamily("monospace")
        font.setStyleHint(font.StyleHint.Monospace)
        self.summary.setFont(font)
        self.plot = RVolumePlot()
        form = QtWidgets.QGridLayout()
        for i, (label, edit) in enumerate((("Model", self.model_edit), ("CIF folder", self.folder_edit),
                                           ("Output folder", self.out_edit))):
            form.addWidget(QtWidgets.QLabel(label), i, 0)
            form.addWidget(edit, i, 1)
            form.addWidget(browse[i], i, 2)
        row = QtWidgets.QHBoxLayout()
        for label, w in (("cycles", self.cycles), ("random starts", self.starts), ("d_min (Å)", self.d_min)):
            row.addWidget(QtWidgets.QLabel(label))
            row.addWidget(w)
        row.addStretch(1)
        row.addWidget(self.run_button)
        row.addWidget(self.cancel_button)
        lay = QtWidgets.QVBoxLayout(self)
        lay.addLayout(form)
        lay.addLayout(row)
        lay.addWidget(self.progress)
        split = QtWidgets.QSplitter(QtCore.Qt.Vertical)
        split.addWidget(self.summary)
        split.addWidget(self.plot)
        split.setStretchFactor(1, 1)
        lay.addWidget(split, 1)
        self.resize(820, 760)
        self.run_button.clicked.connect(self.start)
        self.cancel_button.clicked.connect(self.cancel)

    def _browse(self, edit: QtWidgets.QLineEdit, kind: str) -> None:
        if kind == "model":
            path, _ = QtWidgets.QFileDialog.getOpenFileName(self, "PhAI model", edit.text(), "PyTorch (*.pt *.pth)")
        else:
            path = QtWidgets.QFileDialog.getExistingDirectory(self, "Folder", edit.text())
        if path:
            edit.setText(path)

    def start(self) -> None:
        from ...phasing.evaluate import EvaluateSettings, evaluate_model_file

        model, folder, out = (e.text().strip() for e in (self.model_edit, self.folder_edit, self.out_edit))
        if not (model and folder and out):
            self.panel.error("Evaluation", "give a model file, a CIF folder and an output folder")
            return
        try:
            settings = EvaluateSettings(max_cycles=self.cycles.value(), random_starts=self.starts.value(),
                                        d_min=self.d_min.value())
        except Exception as exc:  # noqa: BLE001 - settings errors are shown, not raised
            self.panel.error("Evaluation", str(exc))
            return
        self.progress.setValue(0)
        self.summary.setPlainText(f"evaluating {Path(model).name} on {folder} …")
        self._set_running(True)
        self.task = self.panel.run("evaluate", evaluate_model_file, model, folder, out, settings,
                                   label="Evaluating PhAI on CIFs", on_result=self._finished,
                                   on_progress=lambda f, m: self.progress.setValue(int(1000 * f)),
                                   on_cancelled=self._cancelled, on_done=lambda: self._set_running(False),
                                   on_error=self._failed)

    def cancel(self) -> None:
        if self.task is not None and not self.task.is_done:
            self.task.cancel()

    def _set_running(self, running: bool) -> None:
        self.run_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)

    def _finished(self, report) -> None:
        self.report = report
        self.summary.setPlainText(report.summary + "".join(f"skipped {s['file']}: {s['reason']}\n"
                                                           for s in report.skipped))
        self.plot.set_rows(report.rows)
        log.info("evaluation: %d structures, results in %s", len(report.rows), report.out_dir)

    def _cancelled(self) -> None:
        self.summary.appendPlainText("cancelled: finished structures are kept in results.csv; Run resumes")

    def _failed(self, msg, tb) -> None:
        self.summary.appendPlainText(f"failed: {msg}")
        self.panel.error("Evaluation failed", msg, tb)


def open_evaluation(panel, run_dir: Optional[str] = None) -> EvaluationDialog:
    """Show the dialog for a Training panel, with the run's best (else last) checkpoint as the model."""
    run = Path(run_dir) if run_dir else None
    model = ""
    if run is not None:
        model = next((str(run / n) for n in ("checkpoint_best.pt", "checkpoint_last.pt") if (run / n).exists()), "")
    dlg = getattr(panel, "_evaluation_dialog", None)
    if dlg is None:
        dlg = panel._evaluation_dialog = EvaluationDialog(panel, model, str(run / "evaluation") if run else "")
    elif model and not (dlg.task is not None and not dlg.task.is_done):
        dlg.model_edit.setText(model)
    dlg.show()
    dlg.raise_()
    return dlg
