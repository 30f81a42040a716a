"""Phasing panel: open or drop reflections, see what the data allow, solve with charge flipping or PhAI in a
worker, compare candidates by their verdict and R1, look at the map and the model, edit the model (change an
element, delete an atom) and re-refine it in one click, export for SHELXL/Olex2.

Everything long runs in a worker; the values of the form are read in the GUI thread before a job starts."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Optional

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets

from ...crystal.maps import plane_basis
from ...errors import CrystalStudioError, InvalidInputError
from ...phasing.parameters import PhasingParameters
from ...phasing.solve import PhasingProblem, Solution
from ..views.density_view import DensitySlabView
from ..views.forms import ParamsForm
from ..views.structure_view import Structure3DView
from .base import Panel

log = logging.getLogger("crystalstudio")

REFLECTION_SUFFIXES = (".hkl", ".fcf", ".mtz", ".mtz.gz", ".xds")
COMMON_ELEMENTS = ("C", "N", "O", "F", "Si", "P", "S", "Cl", "Br", "I", "Fe", "Co", "Ni", "Cu", "Zn")

CANDIDATE_COLUMNS = [
    ("candidate", "Which method and start produced the phases"),
    ("verdict", "solved: the refined model explains the data (R1 ≤ 0.15), holds the expected atoms at bonding "
                "distances with plausible Uiso, and the data allow a judgement; partial: part of that; not solved: "
                "the data or the model rule it out. Calibrated on real and generated data (bench/calibrate_verdict.py)"),
    ("R1", "R1 = Σ||Fo| − |Fc|| / Σ|Fo| over reflections with Fo > 4σ(Fo), of the isotropic model without H after "
           "least-squares refinement on F² (SHELXL's R1). Right structures: about 0.03–0.12"),
    ("FOM", "Figure of merit of the phasing method (charge flipping: symmetry agreement × (1 − R_CF); PhAI: map "
            "skewness × stability × confidence). Higher is better, but it does not tell right from wrong: the "
            "verdict does"),
    ("map r", "Map correlation with the reference model's phases (only with a reference model): 1 = identical "
              "maps, ≥ 0.8 counts as solved in the papers"),
    ("phase err", "Amplitude-weighted mean phase error against the reference model, degrees"),
    ("atoms", "Atoms in the refined model (asymmetric unit) / expected from the cell content"),
]
ATOM_COLUMNS = [
    ("label", "Atom label as written to model.res"),
    ("element", "Element (from the electrons at the site and the cell content); change it here, then Re-refine"),
    ("peak (e/Å³)", "Height of the atom in the Fo map with model phases, absolute scale"),
    ("x", "Fractional coordinate x"), ("y", "Fractional coordinate y"), ("z", "Fractional coordinate z"),
    ("Uiso (Å²)", "Refined isotropic displacement parameter (Ueq = trace(U_cart)/3 where U_ij were refined: "
                  "≥ 10 reflections per parameter); a very large value marks a peak that is no atom or a disordered site"),
    ("shortest contact (Å)", "Distance to the nearest atom (symmetry images included) and its label"),
]


def cif_has_reflections(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(4 * 1024 * 1024).decode("latin-1").lower()
    except OSError:
        return False
    return ("_refln_index_h" in head or "_refln.index_h" in head or "_shelx_hkl_file" in head
            or "_diffrn_refln_index_h" in head)


def parse_cell_text(text: str):
    """A UnitCell from 'a b c α β γ' typed in the cell field, or None when empty; errors in the user's words."""
    from ...crystal.cell import UnitCell

    parts = text.replace(",", " ").split()
    if not parts:
        return None
    try:
        values = [float(p) for p in parts]
    except ValueError:
        bad = next(p for p in parts if not _is_float(p))
        raise InvalidInputError(f"the cell needs six numbers a b c α β γ (Å and degrees); '{bad}' is not a number")
    if len(values) != 6:
        raise InvalidInputError(f"the cell needs six numbers a b c α β γ (Å and degrees); {len(values)} given")
    return UnitCell(*values)


def _is_float(t: str) -> bool:
    try:
        float(t)
        return True
    except ValueError:
        return False


class PhasingPanel(Panel):
    routing_priority = 0
    title = "Phasing"

    def __init__(self, window, default_content: bool = True):
        super().__init__(window, default_content)
        self.problem: Optional[PhasingProblem] = None
        self.solutions: list[Solution] = []
        self.reflection_path: Optional[str] = None
        self.reference_path: Optional[str] = None
        self.params = PhasingParameters()
        self.task = None
        self._shown: Optional[Solution] = None
        self._deleted: set[int] = set()  # atom rows marked for deletion in the shown model
        self._scenes: dict = {}  # id(solution) → (what it was built for, SceneData)

        # ---- data
        self.open_button = QtWidgets.QPushButton("Open reflections…")
        self.open_button.setToolTip("Open .hkl (HKLF 4/3), .fcf, hkl-CIF, CIF with embedded reflections, .mtz or "
                                    "XDS_ASCII (also by dropping the file on the window; Ctrl+O)")
        self.ref_button = QtWidgets.QPushButton("Reference model…")
        self.ref_button.setToolTip("Optional published model: map r and phase error are shown per candidate and the "
                                   "solution is moved onto its origin")
        self.cell_edit = QtWidgets.QLineEdit()
        self.cell_edit.setPlaceholderText("a b c α β γ — from the file or a companion .ins/.res/.cif")
        self.cell_edit.setToolTip("Cell parameters a b c (Å) α β γ (°); what you type here wins over the file and "
                                  "its companion. Enter applies")
        self.sg_edit = QtWidgets.QLineEdit()
        self.sg_edit.setPlaceholderText("space group, e.g. P21/c")
        self.sg_edit.setToolTip("Space group (Hermann–Mauguin, e.g. P21/c, P-1, C2/c, or its number); wins over the "
                                "file and its companion. Enter applies")
        self.reload_button = QtWidgets.QPushButton("Apply")
        self.reload_button.setToolTip("Read the data again with this cell, space group and cell content")
        self.data_form = ParamsForm(self.params, "Cell content", include=["formula", "z", "amplitudes"])
        self.data_form.setToolTip("Cell content for the element assignment (else from a companion file; without "
                                  "one the elements are guesses from the electrons at each site)")
        self.summary = QtWidgets.QPlainTextEdit(readOnly=True)
        self.summary.setToolTip("What the data are and what they allow: the checks run before solving")
        self.summary.setMinimumHeight(110)
        # ---- solving
        self.solve_form = ParamsForm(self.params, "Solving", include=[
            "method", "cf_starts", "phai_starts", "cf_iterations", "phai_cycles", "seed", "build_model",
            "stop_when_solved"])
        self.model_edit = QtWidgets.QLineEdit()
        self.model_edit.setPlaceholderText("PhAI weights: empty = the shipped small model")
        self.model_edit.setToolTip("PhAI weights (published PhAI_model.pth or a CrystalStudio checkpoint); empty: "
                                   "the small model shipped with CrystalStudio")
        self.model_browse = QtWidgets.QPushButton("…")
        self.model_browse.setToolTip("Choose a PhAI weights file")
        self.model_browse.clicked.connect(self._browse_model)
        self.solve_button = QtWidgets.QPushButton("Solve")
        self.solve_button.setToolTip("Phase, build and refine a model, and judge it (Ctrl+R or F5)")
        self.cancel_button = QtWidgets.QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop the running job (what finished so far is kept)")
        self.cancel_button.setEnabled(False)
        self.progress = QtWidgets.QProgressBar(maximum=1000)
        self.progress.setToolTip(self.PROGRESS_TIP)
        self.progress.setFormat("")
        self._progress_text = ""
        self.progress.installEventFilter(self)  # re-elide its text when it is resized
        # ---- candidates and verdict
        self.table = QtWidgets.QTableWidget(0, len(CANDIDATE_COLUMNS))
        self._headers(self.table, CANDIDATE_COLUMNS)
        self.table.setSelectionBehavior(QtWidgets.QAbstractItemView.SelectRows)
        self.table.setSelectionMode(QtWidgets.QAbstractItemView.SingleSelection)
        self.table.setEditTriggers(QtWidgets.QAbstractItemView.NoEditTriggers)
        self.table.setHorizontalScrollBarPolicy(QtCore.Qt.ScrollBarAlwaysOff)
        self.table.horizontalHeader().setSectionResizeMode(0, QtWidgets.QHeaderView.Stretch)
        self.table.setToolTip("Candidates, best first (solved before partial before not solved, then by R1); "
                              "select one to see its map and model")
        self.verdict_label = QtWidgets.QLabel("")
        self.verdict_label.setWordWrap(True)
        self.verdict_label.setTextInteractionFlags(QtCore.Qt.TextSelectableByMouse)
        self.verdict_label.setToolTip("The verdict on the selected candidate: solved / partial / not solved, R1 and why")
        # the shipped PhAI weights are a demonstration model: said on screen whenever they are chosen or their
        # candidates are shown, not only in the log
        self.phai_note = QtWidgets.QLabel("")
        self.phai_note.setObjectName("phai_note")
        self.phai_note.setWordWrap(True)
        self.phai_note.setTextInteractionFlags(QtCore.Qt.TextSelectableByMouse)
        self.phai_note.setStyleSheet("QLabel#phai_note { background: #fff3cd; color: #5c4400; border: 1px solid "
                                     "#d9b44a; padding: 3px; }")
        self.phai_note.setMinimumHeight(3 * self.phai_note.fontMetrics().lineSpacing() + 8)  # never clipped
        self.phai_note.setVisible(False)
        # ---- atoms
        self.atoms = QtWidgets.QTableWidget(0, len(ATOM_COLUMNS))
        self._headers(self.atoms, ATOM_COLUMNS)
        self.atoms.setSelectionBehavior(QtWidgets.QAbstractItemView.SelectRows)
        self.atoms.setEditTriggers(QtWidgets.QAbstractItemView.NoEditTriggers)
        self.atoms.setToolTip("The refined model of the selected candidate; select an atom to find it in the map and "
                              "the 3D view")
        self.delete_button = QtWidgets.QPushButton("Delete atom")
        self.delete_button.setToolTip("Mark the selected atoms for deletion (Del); Re-refine applies")
        self.refine_button = QtWidgets.QPushButton("Re-refine")
        self.refine_button.setToolTip("Refine the edited model (changed elements, deleted atoms) and judge it again")
        self.export_button = QtWidgets.QPushButton("Export solution…")
        self.export_button.setToolTip("model.res + model.hkl (SHELXL-ready), solution.fcf (LIST 3, phased reflections "
                                      "only), map.ccp4, peaks.res, phases.csv into a folder")
        for b in (self.delete_button, self.refine_button, self.export_button):
            b.setEnabled(False)

        # ---- layout
        grid = QtWidgets.QGridLayout()
        grid.addWidget(self.open_button, 0, 0, 1, 2)
        grid.addWidget(self.ref_button, 0, 2)
        for r, (text, w, tip) in enumerate([("cell", self.cell_edit, self.cell_edit.toolTip()),
                                            ("group", self.sg_edit, self.sg_edit.toolTip())], start=1):
            lab = QtWidgets.QLabel(text)
            lab.setToolTip(tip)
            grid.addWidget(lab, r, 0)
            grid.addWidget(w, r, 1, 1, 2)
        grid.addWidget(self.reload_button, 2, 3)
        grid.setColumnStretch(1, 1)
        mrow = QtWidgets.QHBoxLayout()
        lab = QtWidgets.QLabel("PhAI model")
        lab.setToolTip(self.model_edit.toolTip())
        mrow.addWidget(lab)
        mrow.addWidget(self.model_edit, 1)
        mrow.addWidget(self.model_browse)
        brow = QtWidgets.QHBoxLayout()
        brow.addWidget(self.solve_button)
        brow.addWidget(self.cancel_button)
        brow.addWidget(self.progress, 1)
        forms = QtWidgets.QHBoxLayout()
        forms.addWidget(self.solve_form, 3)
        forms.addWidget(self.data_form, 2)
        arow = QtWidgets.QHBoxLayout()
        for b in (self.delete_button, self.refine_button):
            arow.addWidget(b)
        arow.addStretch(1)
        arow.addWidget(self.export_button)
        settings = QtWidgets.QWidget()
        sl = QtWidgets.QVBoxLayout(settings)
        sl.setContentsMargins(0, 0, 0, 0)
        sl.addLayout(forms)
        sl.addLayout(mrow)
        self.tabs = QtWidgets.QTabWidget()
        self.tabs.setToolTip("The data and their checks, and the settings of the solution")
        self.tabs.addTab(self.summary, "Data and checks")
        self.tabs.addTab(settings, "Settings")
        self.tabs.setMaximumHeight(250)
        results = QtWidgets.QSplitter(QtCore.Qt.Vertical)
        results.setChildrenCollapsible(False)
        top = QtWidgets.QWidget()
        tl = QtWidgets.QVBoxLayout(top)
        tl.setContentsMargins(0, 0, 0, 0)
        tl.addWidget(self.table, 1)
        tl.addWidget(self.verdict_label)
        bottom = QtWidgets.QWidget()
        bl = QtWidgets.QVBoxLayout(bottom)
        bl.setContentsMargins(0, 0, 0, 0)
        bl.addWidget(self.atoms, 1)
        bl.addLayout(arow)
        results.addWidget(top)
        results.addWidget(bottom)
        results.setSizes([190, 330])
        left = QtWidgets.QWidget()
        ll = QtWidgets.QVBoxLayout(left)
        ll.addLayout(grid)
        ll.addWidget(self.tabs)
        ll.addWidget(self.phai_note)
        ll.addLayout(brow)
        ll.addWidget(results, 1)
        left.setMinimumWidth(640)

        self.slab = DensitySlabView(title="map (model atoms; + peaks without a model)")
        self.slab.thickness.setValue(1.0)
        self.highlight = pg.ScatterPlotItem(size=26, pen=pg.mkPen((255, 220, 0), width=3), brush=None, symbol="o")
        self.slab.plot.addItem(self.highlight)
        self.view3d = Structure3DView()
        for box, tip in ((self.view3d.show_iso, "Draw the density isosurface at the level (σ) beside"),
                         (self.view3d.show_bonds, "Draw bonds between atoms closer than 1.15 × the sum of covalent "
                                                  "radii")):
            if not box.toolTip():
                box.setToolTip(tip)
        self._hl3d = None
        # named splitters: their sizes are remembered under these names (a state saved by an older layout, under
        # the creation index, gave the map most of the column and left the 3D view a strip)
        results.setObjectName("candidates-atoms")
        views = QtWidgets.QSplitter(QtCore.Qt.Vertical)
        views.setObjectName("map-3d")
        views.setChildrenCollapsible(False)
        views.addWidget(self.slab)
        views.addWidget(self.view3d)
        views.setStretchFactor(0, 1)
        views.setStretchFactor(1, 1)
        views.setSizes([500, 480])
        self.views_splitter = views
        split = QtWidgets.QSplitter(QtCore.Qt.Horizontal)
        split.setObjectName("controls-views")
        split.addWidget(left)
        split.addWidget(views)
        split.setStretchFactor(0, 0)
        split.setStretchFactor(1, 1)
        split.setSizes([660, 840])
        lay = QtWidgets.QHBoxLayout(self)
        lay.addWidget(split)

        self.open_button.clicked.connect(self._ask_open)
        self.ref_button.clicked.connect(self._ask_reference)
        self.reload_button.clicked.connect(self._reload)
        self.cell_edit.returnPressed.connect(self._reload)
        self.sg_edit.returnPressed.connect(self._reload)
        self.solve_button.clicked.connect(self.solve)
        self.solve_form.changed.connect(lambda _name: self._update_phai_note())
        self.model_edit.textChanged.connect(lambda _text: self._update_phai_note())
        self.cancel_button.clicked.connect(self.cancel)
        self.table.itemSelectionChanged.connect(self._candidate_selected)
        self.atoms.itemSelectionChanged.connect(self._atom_selected)
        self.delete_button.clicked.connect(self.delete_selected_atoms)
        self.refine_button.clicked.connect(self.rerefine)
        self.export_button.clicked.connect(self._ask_export)
        for seq in ("Ctrl+R", "F5"):
            sc = QtGui.QShortcut(QtGui.QKeySequence(seq), self, activated=self.solve)
            sc.setContext(QtCore.Qt.WidgetWithChildrenShortcut)
        sc = QtGui.QShortcut(QtGui.QKeySequence.Delete, self.atoms, activated=self.delete_selected_atoms)
        sc.setContext(QtCore.Qt.WidgetShortcut)

    @staticmethod
    def _headers(table: QtWidgets.QTableWidget, columns) -> None:
        for i, (name, tip) in enumerate(columns):
            item = QtWidgets.QTableWidgetItem(name)
            item.setToolTip(tip)
            table.setHorizontalHeaderItem(i, item)
        table.verticalHeader().setVisible(False)

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
        self.clear_results()
        self._load()

    def clear_results(self) -> None:
        """Forget the previous data's solutions: map, 3D view, tables, verdict and progress."""
        self.problem = None
        self.solutions = []
        self._scenes.clear()
        self._shown = None
        self._deleted.clear()
        self.table.setRowCount(0)
        self.atoms.setRowCount(0)
        self.verdict_label.setText("")
        self.verdict_label.setStyleSheet("")
        self.progress.setValue(0)
        self._progress_text = ""
        self._show_progress_text()
        self.slab.clear()
        self.highlight.setData([])
        self.view3d.set_structure(None)
        self._set_3d_highlight(None)
        for b in (self.delete_button, self.refine_button, self.export_button):
            b.setEnabled(False)
        self._update_phai_note()

    def _update_phai_note(self) -> None:
        """Show the demonstration-model note while PhAI with the shipped weights is chosen, or while a candidate
        those weights produced is shown."""
        from ...phasing.models import shipped_phai_note, shipped_phai_summary

        chosen = self.params.method == "phai" and not self.model_edit.text().strip()
        s = self._shown
        shown = s is not None and s.method == "PhAI" and bool(s.details.get("shipped_model"))
        if shown:
            text = "⚠ These phases come from the shipped PhAI model, a " + shipped_phai_summary()
        elif chosen:
            text = "⚠ The shipped PhAI model is a " + shipped_phai_summary()
        else:
            text = ""
        self.phai_note.setText(text)
        self.phai_note.setToolTip(shipped_phai_note() if text else "")
        self.phai_note.setVisible(bool(text))

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
        from ...crystal.symmetry import SpaceGroup

        cell = parse_cell_text(self.cell_edit.text())
        text = self.sg_edit.text().strip()
        return cell, (SpaceGroup.from_name(text) if text else None)

    def _reload(self):
        if self.reflection_path:
            self.clear_results()
            self._load()

    def _load(self) -> None:
        from ...phasing.solve import prepare_problem

        try:
            cell, sg = self._overrides()
        except CrystalStudioError as exc:
            self.error("Cell or space group", str(exc))
            return
        path, ref = self.reflection_path, self.reference_path
        p = self.params.copy()  # read in the GUI thread; the worker sees only these values

        def job(cancel=None):
            return prepare_problem(path, structure=ref, cell=cell, space_group=sg, formula=p.formula, z=p.z,
                                   amplitudes=p.amplitudes)

        self.run("read reflections", job, label=f"Reading {Path(path).name}", key="phasing-load", on_result=self._loaded,
                 on_error=self._load_failed)

    def _load_failed(self, msg, tb):
        self.summary.setPlainText(f"cannot use the data: {msg}")
        self.error("Cannot use the reflections", msg, tb)

    def _loaded(self, problem: PhasingProblem) -> None:
        self.clear_results()
        self.problem = problem
        self.summary.setPlainText(problem.summary())
        self.cell_edit.setText(" ".join(f"{x:.4f}".rstrip("0").rstrip(".") for x in problem.cell.parameters))
        self.cell_edit.setCursorPosition(0)
        self.sg_edit.setText(problem.space_group.short_name)
        self._choose_axis()
        from ...phasing.settings import phai_supports

        if not phai_supports(problem.space_group) and self.params.method == "phai":
            self.params.method = "charge-flipping"  # PhAI solves the P2₁/c family only
            self.solve_form.refresh()
            self._update_phai_note()
        log.info("reflections: %s", problem.summary().splitlines()[1])

    # ------------------------------------------------------------------ solving
    def solve(self) -> None:
        if self.problem is None:
            self.error("Nothing to solve", "open a reflection file first")
            return
        if self.task is not None and not self.task.is_done:
            return
        problem = self.problem
        p = self.params.copy()  # the form's values, read here in the GUI thread
        model_file = self.model_edit.text().strip()
        if p.method == "phai":
            from ...phasing.settings import require_phai_group
            from ...phasing.solve import solve_phai

            try:
                require_phai_group(problem.space_group)
            except InvalidInputError as exc:
                self.error("PhAI needs P2₁/c", str(exc))
                return
            if not model_file:
                from ...phasing.models import shipped_phai_note

                log.warning(shipped_phai_note())  # and on screen: self.phai_note

            def job(progress=None, cancel=None):
                from ...phasing.models import default_phai_model
                from ...phasing.phai_inference import load_phai
                from ...phasing.solve import phai_domain_warnings

                model = load_phai(model_file) if model_file else default_phai_model()
                warnings = phai_domain_warnings(problem, model)
                sols = solve_phai(problem, model, max_cycles=p.phai_cycles, random_starts=p.phai_starts, seed=p.seed,
                                  keep=10, build=p.build_model, stop_when_solved=p.stop_when_solved,
                                  progress=progress, cancel=cancel)
                for s in sols:
                    s.details["shipped_model"] = not model_file
                return sols, warnings
        else:
            from ...phasing.charge_flipping import ChargeFlippingSettings
            from ...phasing.solve import solve_charge_flipping

            settings = ChargeFlippingSettings(random_starts=p.cf_starts, max_iterations=p.cf_iterations, seed=p.seed)

            def job(progress=None, cancel=None):
                return solve_charge_flipping(problem, settings, progress=progress, cancel=cancel, build=p.build_model,
                                             stop_when_solved=p.stop_when_solved), []

        self._busy(True)
        self.task = self.run("solve", job, label=f"Solving ({p.method})", on_result=self._solved,
                             on_progress=self._progress, on_cancelled=lambda: log.info("solving cancelled"),
                             on_done=lambda: self._busy(False))

    PROGRESS_TIP = "Progress of the running job"

    def _progress(self, f: float, msg: str) -> None:
        """The job's message in the bar, elided to the bar's width; all of it in the bar's tooltip."""
        self.progress.setValue(int(1000 * f))
        self._progress_text = msg
        self._show_progress_text()

    def eventFilter(self, obj, event) -> bool:
        if obj is self.progress and event.type() == QtCore.QEvent.Resize:
            self._show_progress_text()
        return super().eventFilter(obj, event)

    def _show_progress_text(self) -> None:
        msg = self._progress_text
        room = max(self.progress.width() - 16, 40)
        self.progress.setFormat(self.progress.fontMetrics().elidedText(msg, QtCore.Qt.ElideRight, room))
        self.progress.setToolTip(f"{self.PROGRESS_TIP}: {msg}" if msg else self.PROGRESS_TIP)

    def _busy(self, busy: bool) -> None:
        self.solve_button.setEnabled(not busy)
        self.cancel_button.setEnabled(busy)
        self.refine_button.setEnabled(not busy and self._shown is not None and self._shown.model is not None)
        if not busy:
            self.progress.setValue(1000 if self.solutions else 0)

    def cancel(self) -> None:
        if self.task is not None:
            self.task.cancel()

    def _solved(self, result) -> None:
        sols, warnings = result
        for w in warnings:
            log.warning("%s", w)
        if sols and sols[0].phased is not None and not sols[0].phased.all():
            n = int(sols[0].phased.sum())
            log.info("PhAI phased %d of %d unique reflections (its list); the others are left out of the map and "
                     "solution.fcf", n, len(sols[0].hkl))
        self.solutions = list(sols)
        self._fill_candidates()
        if self.solutions:
            best = self.solutions[0]
            log.info("best: %s — %s", best.label, best.verdict.line() if best.verdict else "no model built")
        self.export_button.setEnabled(bool(self.solutions))

    def _fill_candidates(self, select: int = 0) -> None:
        self.table.blockSignals(True)
        self.table.clearSelection()
        self.table.setRowCount(len(self.solutions))
        for r, s in enumerate(self.solutions):
            self._fill_candidate_row(r, s)
        self.table.resizeColumnsToContents()
        self.table.horizontalHeader().setSectionResizeMode(0, QtWidgets.QHeaderView.Stretch)
        self.table.blockSignals(False)
        if self.solutions:
            self.table.selectRow(select)
            self.show_solution(self.solutions[select])  # also when the row was already selected (no signal then)

    def _fill_candidate_row(self, r: int, s: Solution) -> None:
        m = s.model
        exp = f"/{m.expected_atoms:.0f}" if m is not None and m.expected_atoms else ""
        cells = [s.label, "—" if s.verdict is None else s.verdict.status,
                 "—" if s.r1 is None else f"{s.r1:.3f}", f"{s.fom:.3f}",
                 "—" if s.map_r is None else f"{s.map_r:.3f}",
                 "—" if s.phase_error is None else f"{s.phase_error:.0f}",
                 "—" if m is None else f"{m.n_atoms}{exp}"]
        colour = {"solved": QtGui.QColor(200, 240, 200), "partial": QtGui.QColor(250, 235, 190),
                  "not solved": QtGui.QColor(245, 205, 205)}.get(s.verdict.status if s.verdict else "", None)
        for c, v in enumerate(cells):
            item = QtWidgets.QTableWidgetItem(v)
            if c == 1 and colour is not None:
                item.setBackground(colour)
            if c == 1 and s.verdict is not None:
                item.setToolTip(s.verdict.line())
            self.table.setItem(r, c, item)

    def current(self) -> Optional[Solution]:
        rows = self.table.selectionModel().selectedRows() if self.table.selectionModel() else []
        if not rows or not self.solutions:
            return self.solutions[0] if self.solutions else None
        return self.solutions[rows[0].row()]

    def _candidate_selected(self) -> None:
        s = self.current()
        if s is not None:
            self.show_solution(s)

    def show_solution(self, s: Solution) -> None:
        """Map, 3D view, verdict and atom table of one candidate."""
        self._shown = s
        self._deleted.clear()
        structure = s.model.structure if s.model is not None and s.model.n_atoms else None
        peaks = None if structure is not None else (s.peaks.xyz if s.peaks is not None else None)
        self.slab.set_map(s.dmap, structure if structure is not None else self.problem.reference, peaks)  # fits the cell
        self.highlight.setData([])
        self._show_3d(s, structure, peaks)
        self._set_3d_highlight(None)
        v = s.verdict
        self.verdict_label.setText(v.line() if v is not None else "no model built for this candidate")
        self.verdict_label.setStyleSheet({"solved": "color: #176b1b;", "partial": "color: #8a5a00;",
                                          "not solved": "color: #a01818;"}.get(v.status if v else "", ""))
        self._fill_atoms()
        self.export_button.setEnabled(True)
        self._update_phai_note()

    def _show_3d(self, s: Solution, structure, peaks) -> None:
        """The 3D view of a candidate; its P1 expansion, bonds and isosurface are built in a worker (the
        event loop stays free), the view shows them when they arrive if the candidate is still shown."""
        from ...crystal.scene import build_scene

        iso = self.view3d.iso_sigma()
        key = (id(structure), id(s.dmap), iso)
        cached = self._scenes.get(id(s))
        if cached is not None and cached[0] == key:
            self.view3d.set_structure(structure, s.dmap, peaks, scene_data=cached[1])
            return
        self.view3d.set_structure(None)
        dmap = s.dmap

        def job(cancel=None):
            return build_scene(structure, dmap, iso)

        def done(sd, s=s):
            self._scenes[id(s)] = (key, sd)
            if self._shown is s:
                self.view3d.set_structure(structure, dmap, peaks, scene_data=sd)

        self.run("3D scene", job, key="phasing-scene", track=False, on_result=done)

    def _choose_axis(self) -> None:
        """The projection axis whose cell face best matches the shape of the map view (least empty margin)."""
        if self.problem is None:
            return
        size = self.slab.plot.size()
        want = max(size.width(), 1) / max(size.height(), 1)
        best, score = self.slab.axis, -1.0
        for ax in range(3):
            M = plane_basis(self.problem.cell, ax)
            xy = np.array([[0, 0], [1, 0], [1, 1], [0, 1]]) @ M.T
            w, h = np.ptp(xy[:, 0]), np.ptp(xy[:, 1])
            r = (w / max(h, 1e-9)) / want
            fill = min(r, 1 / r)  # fraction of the view the face fills
            if fill > score + 1e-6:
                best, score = ax, fill
        self.slab.axis_box.setCurrentIndex(best)

    # ------------------------------------------------------------------ atoms
    def _fill_atoms(self) -> None:
        s = self._shown
        self.atoms.blockSignals(True)
        self.atoms.clearContents()
        rows = s.model.atoms if s is not None and s.model is not None else []
        self.atoms.setRowCount(len(rows))
        comp = self.problem.composition if self.problem is not None else None
        choices = list(dict.fromkeys((list(comp.non_hydrogen) if comp else []) + list(COMMON_ELEMENTS)))
        for r, a in enumerate(rows):
            vals = [a.label, None, f"{a.peak_height:.2f}", f"{a.xyz[0]:.4f}", f"{a.xyz[1]:.4f}", f"{a.xyz[2]:.4f}",
                    f"{a.u_iso:.4f}", f"{a.contact:.2f} {a.contact_label}"]
            for c, v in enumerate(vals):
                if v is None:
                    combo = QtWidgets.QComboBox()
                    combo.addItems(list(dict.fromkeys([a.element] + choices)))
                    combo.setCurrentText(a.element)
                    esd = f" ± {a.electrons_esd:.1f}" if np.isfinite(a.electrons_esd) else ""
                    combo.setToolTip(f"{a.label}: {a.electrons:.1f}{esd} electrons estimated at the site; choose "
                                     "another element, then Re-refine")
                    combo.currentTextChanged.connect(lambda *_: self._edited())
                    self.atoms.setCellWidget(r, c, combo)
                    continue
                item = QtWidgets.QTableWidgetItem(v)
                if c == 6 and a.u_iso > 0.1:
                    item.setBackground(QtGui.QColor(250, 225, 190))
                self.atoms.setItem(r, c, item)
        self.atoms.resizeColumnsToContents()
        self.atoms.blockSignals(False)
        has = bool(rows)
        self.delete_button.setEnabled(has)
        self.refine_button.setEnabled(has and (self.task is None or self.task.is_done))

    def element_of_row(self, r: int) -> str:
        return self.atoms.cellWidget(r, 1).currentText()

    def set_element(self, r: int, element: str) -> None:
        self.atoms.cellWidget(r, 1).setCurrentText(element)

    def _edited(self) -> None:
        self.refine_button.setText("Re-refine *")

    def delete_selected_atoms(self) -> None:
        rows = sorted({i.row() for i in self.atoms.selectedIndexes()})
        for r in rows:
            self._deleted.add(r)
            for c in range(self.atoms.columnCount()):
                it = self.atoms.item(r, c)
                if it is not None:
                    f = it.font()
                    f.setStrikeOut(True)
                    it.setFont(f)
                    it.setForeground(QtGui.QColor(150, 150, 150))
        if rows:
            self._edited()

    def edited_structure(self):
        """The shown model with the elements chosen in the table and without the atoms marked deleted."""
        s = self._shown
        st = s.model.structure
        sites = []
        for r, site in enumerate(st.sites):
            if r in self._deleted:
                continue
            sites.append(replace(site, element=self.element_of_row(r)))
        return replace(st, sites=sites)

    def rerefine(self) -> None:
        s = self._shown
        if s is None or s.model is None or self.problem is None:
            return
        if self.task is not None and not self.task.is_done:
            return
        structure = self.edited_structure()
        problem, model = self.problem, s.model

        def job(progress=None, cancel=None):
            from ...phasing.model_building import label_atoms, refine_model
            from ...phasing.verdict import judge

            st = replace(structure, sites=[replace(x, label=lab) for x, lab in
                                           zip(structure.sites, label_atoms([x.element for x in structure.sites]))])
            new = refine_model(st, problem.observed, problem.composition, model.expected_atoms,
                               model.notes + ["edited by hand and refined again"], cancel=cancel)
            return new, judge(problem.checks, new)

        self._busy(True)
        self.task = self.run("re-refine", job, label="Refining the edited model",
                             on_result=lambda res, sol=s: self._rerefined(sol, *res), on_done=lambda: self._busy(False))

    def _rerefined(self, sol: Solution, model, verdict) -> None:
        sol.model, sol.verdict = model, verdict
        self.refine_button.setText("Re-refine")
        log.info("re-refined: %s", verdict.line())
        if sol in self.solutions:
            self._fill_candidates(self.solutions.index(sol))

    def _atom_selected(self) -> None:
        s = self._shown
        rows = sorted({i.row() for i in self.atoms.selectedIndexes()})
        if s is None or s.model is None or not rows or rows[0] >= s.model.n_atoms:
            self.highlight.setData([])
            self._set_3d_highlight(None)
            return
        x = s.model.structure.sites[rows[0]].xyz % 1.0
        # the map: a slab through the atom, with a ring around it
        ax = self.slab.axis
        if self.slab.thickness.value() < 0.999:
            self.slab.set_slab(ax, (x[ax] - self.slab.thickness.value() / 2) % 1.0, self.slab.thickness.value())
        others = [i for i in range(3) if i != ax]
        xy = plane_basis(s.dmap.cell, ax) @ x[others]
        self.highlight.setData([{"pos": xy, "data": s.model.structure.sites[rows[0]].label}])
        self._set_3d_highlight(s.model.structure.cell.orthogonalization @ x)

    def _set_3d_highlight(self, cart: Optional[np.ndarray]) -> None:
        v = self.view3d
        if getattr(v, "canvas", None) is None:
            return
        if self._hl3d is None:
            self._hl3d = v._scene.visuals.Markers(parent=v.view.scene)
        if cart is None:
            self._hl3d.set_data(np.zeros((1, 3)), size=0)
        else:
            self._hl3d.set_data(np.asarray(cart, dtype=float)[None], face_color=(1, 0.85, 0, 0.6), size=30,
                                edge_color=(0.6, 0.4, 0, 1), edge_width=2)
        v.canvas.update()

    @property
    def highlighted(self) -> Optional[str]:
        """Label of the atom ringed in the map (for tests and the status line)."""
        pts = self.highlight.data
        return pts[0]["data"] if len(pts) else None

    # ------------------------------------------------------------------ export
    def export_actions(self) -> list:
        return [("Solution (model.res + .hkl, fcf, map, res, CSV)…", self._ask_export)]

    def _ask_export(self) -> None:
        if self.current() is None:
            self.error("Nothing to export", "solve first")
            return
        d = QtWidgets.QFileDialog.getExistingDirectory(self, "Export into folder", self.window_.last_dir("solution"))
        if d:
            self.export(d)

    def export(self, folder: str, wait: bool = False):
        """Write the shown candidate's files into `folder` in a worker; returns the task."""
        from ...phasing.solve import export_solution

        problem, sol = self.problem, self._shown or self.current()

        def job(cancel=None):
            return export_solution(problem, sol, folder)

        def done(paths):
            self.window_.settings.setValue("dirs/solution", folder)
            self.exported = paths
            log.info("solution written: %s", ", ".join(paths.values()))

        self.exported = None
        return self.run("export", job, label=f"Writing into {folder}", on_result=done)
