"""Phasing panel: open or drop reflections, see what the data are, solve with charge flipping or PhAI in a
worker, compare candidates (FOM, and map r / phase error against a reference model), look at the map
and peaks, export .fcf/map/.res/CSV."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import numpy as np
from PySide6 import QtCore, QtWidgets

from ...phasing.solve import PhasingProblem, Solution
from ..views.density_view import DensitySlabView
from ..views.structure_view import Structure3DView
from .base import Panel

log = logging.getLogger("crystalstudio")

REFLECTION_SUFFIXES = (".hkl", ".fcf", ".mtz", ".mtz.gz", ".xds")


def cif_has_reflections(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(4 * 1024 * 1024).decode("latin-1").lower()
    except OSError:
        return False
    return ("_refln_index_h" in head or "_refln.index_h" in head or "_shelx_hkl_file" in head
            or "_diffrn_refln_index_h" in head)


class PhasingPanel(Panel):
    routing_priority = 0
    title = "Phasing"

    def __init__(self, window, default_content: bool = True):
        super().__init__(window, default_content)
        self.problem: Optional[PhasingProblem] = None
        self.solutions: list[Solution] = []
        self.reflection_path: Optional[str] = None
        self.reference_path: Optional[str] = None
        self.task = None

        self.open_button = QtWidgets.QPushButton("Open reflections…")
        self.ref_button = QtWidgets.QPushButton("Reference model…")
        self.ref_button.setToolTip("Optional published model: r and phase error are shown per candidate")
        self.cell_edit = QtWidgets.QLineEdit()
        self.cell_edit.setPlaceholderText("a b c α β γ (from the file or a companion .ins/.res/.cif)")
        self.sg_edit = QtWidgets.QLineEdit()
        self.sg_edit.setPlaceholderText("space group, e.g. P21/c")
        self.reload_button = QtWidgets.QPushButton("Apply cell / group")
        self.summary = QtWidgets.QPlainTextEdit(readOnly=True)
        self.summary.setMaximumHeight(130)
        self.method = QtWidgets.QComboBox()
        self.method.addItems(["charge flipping", "PhAI"])
        self.starts = QtWidgets.QSpinBox(minimum=0, maximum=64, value=3)
        self.starts.setToolTip("Random starts (charge flipping) / random starts besides the zero start (PhAI)")
        self.iterations = QtWidgets.QSpinBox(minimum=50, maximum=20000, value=1500, singleStep=100)
        self.iterations.setToolTip("Charge flipping: maximum iterations per start")
        self.cycles = QtWidgets.QSpinBox(minimum=1, maximum=30, value=10)
        self.cycles.setToolTip("PhAI: maximum recycling cycles (every cycle count is a candidate)")
        self.model_edit = QtWidgets.QLineEdit()
        self.model_edit.setPlaceholderText("PhAI weights: empty = the shipped small model; or PhAI_model.pth / checkpoint")
        model_browse = QtWidgets.QPushButton("…")
        model_browse.clicked.connect(self._browse_model)
        self.solve_button = QtWidgets.QPushButton("Solve")
        self.cancel_button = QtWidgets.QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.progress = QtWidgets.QProgressBar(maximum=1000)
        self.table = QtWidgets.QTableWidget(0, 6)
        self.table.setHorizontalHeaderLabels(["candidate", "FOM", "map r", "phase error (°)", "peaks", "details"])
        self.table.setSelectionBehavior(QtWidgets.QAbstractItemView.SelectRows)
        self.table.setSelectionMode(QtWidgets.QAbstractItemView.SingleSelection)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.export_button = QtWidgets.QPushButton("Export solution…")
        self.export_button.setToolTip("solution.fcf (SHELXL LIST 3), map.ccp4, peaks.res, phases.csv into a folder")
        self.export_button.setEnabled(False)

        top = QtWidgets.QGridLayout()
        top.addWidget(self.open_button, 0, 0)
        top.addWidget(self.ref_button, 0, 1)
        top.addWidget(QtWidgets.QLabel("cell"), 1, 0)
        top.addWidget(self.cell_edit, 1, 1)
        top.addWidget(QtWidgets.QLabel("group"), 2, 0)
        top.addWidget(self.sg_edit, 2, 1)
        top.addWidget(self.reload_button, 3, 1)
        form = QtWidgets.QFormLayout()
        form.addRow("Method", self.method)
        form.addRow("Random starts", self.starts)
        form.addRow("CF iterations", self.iterations)
        form.addRow("PhAI cycles", self.cycles)
        mrow = QtWidgets.QHBoxLayout()
        mrow.addWidget(self.model_edit, 1)
        mrow.addWidget(model_browse)
        form.addRow("PhAI model", mrow)
        brow = QtWidgets.QHBoxLayout()
        brow.addWidget(self.solve_button)
        brow.addWidget(self.cancel_button)
        left = QtWidgets.QWidget()
        ll = QtWidgets.QVBoxLayout(left)
        ll.addLayout(top)
        ll.addWidget(self.summary)
        ll.addLayout(form)
        ll.addLayout(brow)
        ll.addWidget(self.progress)
        ll.addWidget(self.table, 1)
        ll.addWidget(self.export_button)

        self.slab = DensitySlabView(title="map (peaks +)")
        self.slab.thickness.setValue(1.0)
        self.view3d = Structure3DView()
        views = QtWidgets.QSplitter(QtCore.Qt.Vertical)
        views.addWidget(self.slab)
        views.addWidget(self.view3d)
        views.setSizes([560, 360])
        split = QtWidgets.QSplitter(QtCore.Qt.Horizontal)
        split.addWidget(left)
        split.addWidget(views)
        split.setStretchFactor(1, 1)
        lay = QtWidgets.QHBoxLayout(self)
        lay.addWidget(split)

        self.open_button.clicked.connect(self._ask_open)
        self.ref_button.clicked.connect(self._ask_reference)
        self.reload_button.clicked.connect(self._reload)
        self.solve_button.clicked.connect(self.solve)
        self.cancel_button.clicked.connect(self.cancel)
        self.table.itemSelectionChanged.connect(self._selected)
        self.export_button.clicked.connect(self._ask_export)

    # ------------------------------------------------------------------ files
    def accepts(self, path: Path) -> bool:
        name = path.name.lower()
        if name.endswith(REFLECTION_SUFFIXES) or name == "xds_ascii.hkl":
            return True
        return name.endswith(".cif") and cif_has_reflections(path)

    def open_file(self, path: str) -> None:
        if self.reflection_path and Path(path).parent != Path(self.reflection_path).parent:
            self.reference_path = None  # a reference model belongs to its own data set
        self.reflection_path = str(path)
        self.cell_edit.clear()
        self.sg_edit.clear()
        self._load()

    def _ask_open(self):
        path, _ = QtWidgets.QFileDialog.getOpenFileName(self, "Reflections", self.window_.last_dir(".hkl"),
                                                        "Reflections (*.hkl *.fcf *.cif *.mtz *.HKL);;All files (*)")
        if path:
            self.window_.open_path(path)

    def _ask_reference(self):
        path, _ = QtWidgets.QFileDialog.getOpenFileName(self, "Reference model", self.window_.last_dir(".cif"),
                                                        "Structures (*.cif *.res *.ins)")
        if path:
            self.set_reference(path)

    def set_reference(self, path: Optional[str]) -> None:
        self.reference_path = path
        if self.reflection_path:
            self._load()

    def _browse_model(self):
        path, _ = QtWidgets.QFileDialog.getOpenFileName(self, "PhAI weights", "", "PyTorch (*.pth *.pt)")
        if path:
            self.model_edit.setText(path)

    def _overrides(self):
        from ...crystal.cell import UnitCell
        from ...crystal.symmetry import SpaceGroup

        cell = sg = None
        t = self.cell_edit.text().replace(",", " ").split()
        if t:
            cell = UnitCell(*map(float, t))
        if self.sg_edit.text().strip():
            sg = SpaceGroup.from_name(self.sg_edit.text().strip())
        return cell, sg

    def _reload(self):
        if self.reflection_path:
            self._load()

    def _load(self) -> None:
        from ...phasing.solve import prepare_problem

        try:
            cell, sg = self._overrides()
        except Exception as exc:  # noqa: BLE001
            self.error("Invalid cell or space group", str(exc))
            return
        path, ref = self.reflection_path, self.reference_path

        def job(cancel=None):
            return prepare_problem(path, structure=ref, cell=cell, space_group=sg)

        self.run("read reflections", job, label=f"Reading {Path(path).name}", key="phasing-load", on_result=self._loaded,
                 on_error=self._load_failed)

    def _load_failed(self, msg, tb):
        self.summary.setPlainText(f"cannot use the data: {msg}")
        self.error("Cannot use the reflections", msg, tb)

    def _loaded(self, problem: PhasingProblem) -> None:
        self.problem = problem
        self.summary.setPlainText(problem.summary())
        self.cell_edit.setText(" ".join(f"{x:.4f}" for x in problem.cell.parameters))
        self.sg_edit.setText(problem.space_group.short_name)
        if problem.space_group.number != 14:
            self.method.setCurrentIndex(0)  # PhAI solves P2₁/c only
        self.solutions = []
        self.table.setRowCount(0)
        self.export_button.setEnabled(False)
        log.info("reflections: %s", problem.summary().splitlines()[1])

    # ------------------------------------------------------------------ solving
    def solve(self) -> None:
        if self.problem is None:
            self.error("Nothing to solve", "open a reflection file first")
            return
        problem = self.problem
        if self.method.currentIndex() == 1:
            from ...phasing.models import default_phai_model
            from ...phasing.phai_inference import load_phai
            from ...phasing.solve import solve_phai

            if problem.space_group.number != 14:
                self.error("PhAI needs P2₁/c", f"the data are in {problem.space_group}; PhAI solves P2₁/c (No. 14) "
                                                "only — use charge flipping")
                return
            model_file = self.model_edit.text().strip()
            if not model_file:
                from ...phasing.models import shipped_phai_note

                log.warning(shipped_phai_note())

            def job(progress=None, cancel=None):
                model = load_phai(model_file) if model_file else default_phai_model()
                return solve_phai(problem, model, max_cycles=self.cycles.value(), random_starts=self.starts.value(),
                                  keep=10, progress=progress, cancel=cancel)
        else:
            from ...phasing.charge_flipping import ChargeFlippingSettings
            from ...phasing.solve import solve_charge_flipping

            settings = ChargeFlippingSettings(random_starts=max(1, self.starts.value()),
                                              max_iterations=self.iterations.value())

            def job(progress=None, cancel=None):
                return solve_charge_flipping(problem, settings, progress=progress, cancel=cancel)

        self.solve_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.progress.setValue(0)
        self.task = self.run("solve", job, label=f"Solving ({self.method.currentText()})", on_result=self._solved,
                             on_progress=lambda f, m: self.progress.setValue(int(1000 * f)),
                             on_cancelled=lambda: log.info("solving cancelled"), on_done=self._done)

    def cancel(self) -> None:
        if self.task is not None:
            self.task.cancel()

    def _done(self) -> None:
        self.solve_button.setEnabled(True)
        self.cancel_button.setEnabled(False)

    def _solved(self, sols: list[Solution]) -> None:
        self.solutions = sorted(sols, key=lambda s: -s.fom)
        self.table.setRowCount(len(self.solutions))
        for r, s in enumerate(self.solutions):
            cells = [s.label, f"{s.fom:.4f}", "—" if s.map_r is None else f"{s.map_r:.3f}",
                     "—" if s.phase_error is None else f"{s.phase_error:.1f}", str(len(s.peaks) if s.peaks else 0),
                     ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in s.details.items())]
            for c, v in enumerate(cells):
                self.table.setItem(r, c, QtWidgets.QTableWidgetItem(v))
        self.table.resizeColumnsToContents()
        if self.solutions:
            self.table.selectRow(0)
            best = self.solutions[0]
            extra = f", map r {best.map_r:.3f}" if best.map_r is not None else ""
            log.info("best solution: %s (FOM %.4f%s)", best.label, best.fom, extra)
        self.export_button.setEnabled(bool(self.solutions))

    def current(self) -> Optional[Solution]:
        rows = self.table.selectionModel().selectedRows() if self.table.selectionModel() else []
        if not rows or not self.solutions:
            return self.solutions[0] if self.solutions else None
        return self.solutions[rows[0].row()]

    def _selected(self) -> None:
        s = self.current()
        if s is None or s.dmap is None:
            return
        from ...phasing.solve import peaks_structure

        self.slab.set_map(s.dmap, self.problem.reference, s.peaks.xyz if s.peaks is not None else None)
        self.view3d.set_structure(peaks_structure(self.problem, s), s.dmap)

    # ------------------------------------------------------------------ export
    def export_actions(self) -> list:
        return [("Solution (fcf, map, res, CSV)…", self._ask_export)]

    def _ask_export(self) -> None:
        if self.current() is None:
            self.error("Nothing to export", "solve first")
            return
        d = QtWidgets.QFileDialog.getExistingDirectory(self, "Export into folder", self.window_.last_dir("solution"))
        if d:
            self.export(d)

    def export(self, folder: str) -> dict:
        from ...phasing.solve import export_solution

        paths = export_solution(self.problem, self.current(), folder)
        self.window_.settings.setValue("dirs/solution", folder)
        log.info("solution written: %s", ", ".join(paths.values()))
        return paths
