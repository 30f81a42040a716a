"""Generator panel: every generator parameter, live density slab / reciprocal plane / 3D views of one
generated (or opened) structure, batch export to shards, and statistics against a folder of CIFs."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Optional

import numpy as np
from PySide6 import QtCore, QtWidgets

from ...crystal.generator import GeneratorSettings
from ...crystal.generator.preview import preview_structure
from ...crystal.maps import CalculatedData, calculated_data
from ...crystal.scene import SceneData, build_scene
from ...errors import CrystalStudioError
from ..views.density_view import DensitySlabView
from ..views.forms import ParamsForm
from ..views.plots import HistogramPlot
from ..views.reciprocal_view import ReciprocalPlaneView
from ..views.structure_view import Structure3DView
from .base import Panel

log = logging.getLogger("crystalstudio")

def preview_with_scene(settings: GeneratorSettings, seed: int, d_min: float, iso_sigma: Optional[float],
                       cancel=None) -> tuple[CalculatedData, float, SceneData]:
    """Worker side of "Generate": the structure, its reflections and map, and the 3D geometry."""
    data, seconds = preview_structure(settings, seed, d_min, cancel=cancel)
    return data, seconds, build_scene(data.structure, data.dmap, iso_sigma)


class GeneratorPanel(Panel):
    title = "Generator"
    suffixes = (".cif", ".res", ".ins")

    def __init__(self, window, default_content: bool = True):
        super().__init__(window, default_content)
        self.settings = GeneratorSettings()
        self.seed = 1
        self.current: Optional[CalculatedData] = None
        self.current_title = ""
        self._click_time: Optional[float] = None
        self.last_redraw_ms: Optional[float] = None
        self._show_token = None  # the structure being shown (see show_data)
        self._redraw_s = 0.0
        self._prefetched = None  # (key, result) of the next seed, computed ahead
        self._prefetching = None  # key of the seed being computed ahead
        self._wanted = None  # key the user asked for while it was being computed ahead

        # ---- parameters
        top = QtWidgets.QGroupBox("Structure")
        tf = QtWidgets.QFormLayout(top)
        self.space_group = QtWidgets.QComboBox(editable=True)
        self.space_group.addItems(["P 1 21/c 1", "P 1 21/n 1", "P -1", "P 1", "P 1 21 1", "P 21 21 21", "C 1 2/c 1",
                                   "P b c a", "P n a 21", "P 4/n m m:2", "R -3 c:H"])
        self.space_group.setToolTip("Any space-group name gemmi knows (Hermann–Mauguin, Hall or number)")
        self.mode = QtWidgets.QComboBox()
        self.mode.addItems(["uniform", "molecules"])
        self.mode.setToolTip("uniform: random atoms with a minimum distance; molecules: bonded artificial molecules")
        self.seed_box = QtWidgets.QSpinBox(minimum=0, maximum=2**31 - 1, value=self.seed)
        self.seed_box.setToolTip("Random seed: a structure is reproducible from (parameters, seed)")
        tf.addRow("Space group", self.space_group)
        tf.addRow("Mode", self.mode)
        tf.addRow("Seed", self.seed_box)
        # forms built from the settings' declarations (label, unit, bounds, help); they edit self.settings in place
        self.cell_form = ParamsForm(self.settings.cell, "Unit cell")
        self.content_form = ParamsForm(self.settings.content, "Contents", exclude=["mode"])
        self.molecule_form = ParamsForm(self.settings.molecule, "Artificial molecules")
        self.generate_button = QtWidgets.QPushButton("Generate new structure")
        self.generate_button.setToolTip("Next seed; all views update")
        self.same_button = QtWidgets.QPushButton("Same seed")
        self.same_button.setToolTip("Regenerate with the current seed (after changing parameters; Enter in a field "
                                    "does the same)")
        self.defaults_button = QtWidgets.QPushButton("Defaults")
        self.defaults_button.setToolTip("Reset every generator parameter to its default (the seed is kept)")
        btns = QtWidgets.QHBoxLayout()
        for b in (self.generate_button, self.same_button, self.defaults_button):
            btns.addWidget(b)
        # busy indicator: shown when a preview takes longer than a moment (generations of 2–5 s)
        self.busy = QtWidgets.QProgressBar(minimum=0, maximum=0)
        self.busy.setTextVisible(False)
        self.busy.setMaximumHeight(10)
        self.busy.setToolTip("Generating the structure and calculating its reflections and map")
        self.busy_label = QtWidgets.QLabel("")
        busy_row = QtWidgets.QHBoxLayout()
        busy_row.addWidget(self.busy_label)
        busy_row.addWidget(self.busy, 1)
        for w in (self.busy, self.busy_label):  # keeps its place: nothing jumps when it appears
            policy = w.sizePolicy()
            policy.setRetainSizeWhenHidden(True)
            w.setSizePolicy(policy)
        self.busy.setVisible(False)
        self._busy_timer = QtCore.QTimer(self, singleShot=True, interval=250)
        self._busy_timer.timeout.connect(self._show_busy)
        self._pending_since: Optional[float] = None
        pbox = QtWidgets.QWidget()
        pl = QtWidgets.QVBoxLayout(pbox)
        pl.setContentsMargins(2, 2, 2, 2)
        for w in (top, self.cell_form, self.content_form, self.molecule_form):
            pl.addWidget(w)
        pl.addStretch(1)
        self.param_scroll = scroll = QtWidgets.QScrollArea()
        scroll.setWidget(pbox)
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(QtCore.Qt.ScrollBarAlwaysOff)
        # wide enough for every label and value: never a sideways scroll bar
        scroll.setMinimumWidth(pbox.minimumSizeHint().width() + scroll.verticalScrollBar().sizeHint().width() + 4)
        left = QtWidgets.QWidget()
        ll = QtWidgets.QVBoxLayout(left)
        ll.setContentsMargins(0, 0, 0, 0)
        ll.addWidget(scroll, 1)
        ll.addLayout(busy_row)
        ll.addLayout(btns)
        self._enter_timer = QtCore.QTimer(self, singleShot=True, interval=0)
        self._enter_timer.timeout.connect(self.generate)
        self._enter_generates(pbox)

        # ---- views
        self.slab = DensitySlabView(title="ρ slab")
        self.recip = ReciprocalPlaneView(title="reciprocal plane")
        self.view3d = Structure3DView()
        self.info = QtWidgets.QLabel("")
        self.info.setTextFormat(QtCore.Qt.AutoText)
        self.empty_warning = ""
        self.info.setWordWrap(True)
        self.info.setTextInteractionFlags(QtCore.Qt.TextSelectableByMouse)
        maps = QtWidgets.QSplitter(QtCore.Qt.Vertical)
        maps.setObjectName("maps")
        maps.addWidget(self.slab)
        maps.addWidget(self.recip)
        maps.setSizes([520, 400])
        views = QtWidgets.QSplitter(QtCore.Qt.Horizontal)
        views.setObjectName("views")
        views.addWidget(maps)
        views.addWidget(self.view3d)
        views.setSizes([480, 640])
        vtab = QtWidgets.QWidget()
        vl = QtWidgets.QVBoxLayout(vtab)
        vl.setContentsMargins(2, 2, 2, 2)
        vl.addWidget(views, 1)
        vl.addWidget(self.info)

        self.tabs = QtWidgets.QTabWidget()
        self.tabs.addTab(vtab, "Structure")
        self.tabs.addTab(self._make_export_tab(), "Batch export")
        self.tabs.addTab(self._make_stats_tab(), "Statistics")
        split = QtWidgets.QSplitter(QtCore.Qt.Horizontal)
        split.setObjectName("main")
        split.addWidget(left)
        split.addWidget(self.tabs)
        split.setStretchFactor(1, 1)
        split.setCollapsible(0, False)
        lay = QtWidgets.QHBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        lay.addWidget(split)

        self.generate_button.clicked.connect(self.generate_next)
        self.same_button.clicked.connect(self.generate)
        self.defaults_button.clicked.connect(self.reset_defaults)
        if default_content:
            QtCore.QTimer.singleShot(0, self.generate)

    # ------------------------------------------------------------------ generation
    def _enter_generates(self, pane: QtWidgets.QWidget) -> None:
        """Enter in any parameter field regenerates with the current seed (as "Same seed")."""
        for w in pane.findChildren(QtWidgets.QWidget):
            if isinstance(w, (QtWidgets.QAbstractSpinBox, QtWidgets.QLineEdit, QtWidgets.QComboBox)):
                w.installEventFilter(self)

    def eventFilter(self, obj, event) -> bool:
        if event.type() == QtCore.QEvent.KeyPress and event.key() in (QtCore.Qt.Key_Return, QtCore.Qt.Key_Enter):
            if isinstance(obj, QtWidgets.QComboBox) and obj.view().isVisible():
                return False  # choosing an entry in an open list
            self._enter_timer.start()  # after the field has taken its new value; one run per key press
        return False

    def _collect(self) -> GeneratorSettings:
        self.settings.space_group = self.space_group.currentText().strip()
        self.settings.content.mode = self.mode.currentText()
        self.seed = self.seed_box.value()
        return self.settings

    def generate_next(self) -> None:
        self.seed_box.setValue(self.seed_box.value() + 1)
        self.generate()

    def generate(self) -> None:
        try:
            s = GeneratorSettings.from_dict(self._collect().to_dict())  # a validated copy for the worker
        except CrystalStudioError as exc:
            self.error("Invalid generator settings", str(exc))
            return
        self._click_time = time.perf_counter()
        d_min = float(self.window_.settings.value("views/d_min", 0.8))
        key = (json.dumps(s.to_dict(), sort_keys=True), self.seed, d_min, self.view3d.iso_sigma())
        self._wanted = None
        if self._prefetched is not None and self._prefetched[0] == key:
            result, self._prefetched = self._prefetched[1], None
            self._preview_ready(result, key, s)
            return
        self._set_pending(True)
        if self._prefetching == key:  # computed ahead and not finished yet: show it when it is
            self._wanted = key
            return
        self.run("preview", preview_with_scene, s, self.seed, d_min, key[3], key="generator-preview",
                 track=False, label="Generate structure",
                 on_result=lambda r, key=key, s=s: self._preview_ready(r, key, s),
                 on_error=lambda msg, tb: self._preview_failed(msg, tb))

    # busy indicator of the preview the user waits for
    def _set_pending(self, pending: bool) -> None:
        if pending:
            self._pending_since = time.perf_counter()
            self._busy_timer.start()
        else:
            self._pending_since = None
            self._busy_timer.stop()
            self.busy.setVisible(False)
            self.busy_label.setText("")

    def _show_busy(self) -> None:
        if self._pending_since is not None:
            self.busy_label.setText(f"generating seed {self.seed}…")
            self.busy.setVisible(True)

    @property
    def busy_shown(self) -> bool:
        return self.busy.isVisible()

    def _preview_failed(self, msg: str, tb: str) -> None:
        self._set_pending(False)
        self.error("Generate structure failed", msg, tb)

    def _preview_ready(self, result, key, settings: GeneratorSettings) -> None:
        self._set_pending(False)
        self._show_preview(result)
        # the next seed is computed while the user looks at this one: "Next" then only redraws
        nxt = (key[0], key[1] + 1, key[2], key[3])
        self._prefetching = nxt
        self.run("prefetch", preview_with_scene, settings, nxt[1], nxt[2], nxt[3], key="generator-prefetch",
                 track=False, on_result=lambda r, k=nxt, s=settings: self._prefetch_done(r, k, s),
                 on_error=lambda msg, tb, k=nxt, s=settings: self._prefetch_failed(msg, tb, k, s))

    def _prefetch_done(self, result, key, settings: GeneratorSettings) -> None:
        if self._prefetching == key:
            self._prefetching = None
        if self._wanted == key:
            self._wanted = None
            self._preview_ready(result, key, settings)
        else:
            self._prefetched = (key, result)

    def _prefetch_failed(self, msg, tb, key, settings: GeneratorSettings) -> None:
        if self._prefetching == key:
            self._prefetching = None
        if self._wanted == key:  # the user asked for this seed: report as the direct run would
            self._wanted = None
            self._preview_failed(msg, tb)

    def _show_preview(self, result) -> None:
        data, seconds, scene = result
        st = data.structure
        self.show_data(data, f"generated: {st.space_group.name}, seed {self.seed}, {st.n_sites} atoms in the "
                             f"ASU, generated and calculated in {1e3 * seconds:.0f} ms", scene)

    def empty_reason(self, data: CalculatedData, generated: bool) -> str:
        """Why a structure has no atoms, in the user's words ('' when it has atoms)."""
        st = data.structure
        if st.n_sites:
            return ""
        if not generated:
            return "the file holds a cell and symmetry but no atoms"
        n_ops, v_lo = st.space_group.n_operations, self.settings.content.volume_per_atom[0]
        need = n_ops * v_lo
        if st.cell.volume < 0.5 * need:
            return (f"no atoms: {st.space_group.name} has {n_ops} symmetry operations, so one atom in the asymmetric "
                    f"unit needs V ≳ {need:.0f} Å³ at {v_lo:g} Å³ per atom, and this cell has V = {st.cell.volume:.0f} Å³ "
                    f"(raise V min / a min, or choose a group with fewer operations)")
        return ("no atoms: every atom was rejected by the distance rules (lower d min / the non-bonded minimum, "
                "or raise the tries)")

    def show_data(self, data: CalculatedData, title: str, scene: Optional[SceneData] = None,
                  generated: bool = True) -> None:
        """Show a structure: the slab, the reciprocal plane and the 3D view are set one per event-loop turn (a
        1 ms timer lets each be painted before the next is set: all three and their repaints in one turn kept
        the loop busy ~120 ms); `current` and the info line follow the last. A newer structure ends the staging."""
        self._show_token = token = object()
        st = data.structure
        steps = [lambda: self.slab.set_map(data.dmap, st),
                 lambda: self.recip.set_reflections(st.cell, st.space_group, data.hkl, np.abs(data.F)),
                 lambda: self.view3d.set_structure(st, data.dmap, scene_data=scene),
                 lambda: self._data_shown(data, title, generated)]
        self._redraw_s = 0.0
        self._show_staged(token, steps)

    def _show_staged(self, token, steps) -> None:
        if token is not self._show_token or not steps:
            return
        t0 = time.perf_counter()
        steps[0]()
        self._redraw_s += time.perf_counter() - t0
        if steps[1:]:
            QtCore.QTimer.singleShot(1, self, lambda: self._show_staged(token, steps[1:]))

    def _data_shown(self, data: CalculatedData, title: str, generated: bool) -> None:
        self.current, self.current_title = data, title
        st = data.structure
        comp = st.composition()
        formula = " ".join(f"{k}{v:g}" for k, v in sorted(comp.items(), key=lambda kv: (kv[0] != "C", kv[0] != "H", kv[0])))
        now = time.perf_counter()
        self.last_redraw_ms = 1e3 * self._redraw_s  # the views' own work, without the paints between them
        total = f"; click to redraw {1e3 * (now - self._click_time):.0f} ms" if self._click_time else ""
        self._click_time = None
        self.empty_warning = self.empty_reason(data, generated)
        text = (f"{title}. Cell {st.cell}, V = {st.cell.volume:.1f} Å³. Cell content {formula or '—'}. "
                f"{len(data.hkl)} unique reflections to {data.d_min} Å{total}.")
        if self.empty_warning:
            self.info.setText(f"<span style='color:#c00000'><b>⚠ {self.empty_warning}.</b></span> {text}")
            log.warning("%s: %s", title, self.empty_warning)
        else:
            self.info.setText(text)
            log.info("%s%s", title, total)

    def reset_defaults(self) -> None:
        d = GeneratorSettings()
        for name, form in (("cell", self.cell_form), ("content", self.content_form), ("molecule", self.molecule_form)):
            setattr(self.settings, name, getattr(d, name))
            form.bind(getattr(self.settings, name))
        self.space_group.setCurrentText(d.space_group)
        self.mode.setCurrentText(d.content.mode)

    # ------------------------------------------------------------------ files
    def open_file(self, path: str) -> None:
        from ...io.structures import read_structure

        d_min = float(self.window_.settings.value("views/d_min", 0.8))

        def load(path=path, cancel=None):
            return calculated_data(read_structure(path), d_min=d_min, cancel=cancel)

        self.run(f"open {Path(path).name}", load, label=f"Reading {Path(path).name}",
                 on_result=lambda data, p=path: self.show_data(data, f"{Path(p).name}: {data.structure.space_group.name}, "
                                                                     f"{data.structure.n_sites} atoms in the ASU",
                                                               generated=False))
        self.tabs.setCurrentIndex(0)

    def export_actions(self) -> list:
        return [("Structure as CIF…", self.export_cif), ("Structure as SHELX .res…", self.export_res),
                ("Calculated reflections as HKLF 4 .hkl…", self.export_hkl), ("Map as CCP4…", self.export_map)]

    def _need_structure(self) -> bool:
        if self.current is None:
            self.error("Nothing to export", "generate or open a structure first")
            return False
        return True

    def export_cif(self, path: Optional[str] = None) -> None:
        from ...io.cif import write_cif_structure

        if self._need_structure() and (path := path or self.save_path("Export structure", "structure.cif", "CIF (*.cif)")):
            write_cif_structure(path, self.current.structure, Path(path).stem)
            log.info("structure written to %s", path)

    def export_res(self, path: Optional[str] = None) -> None:
        from ...io.shelx import write_res

        if self._need_structure() and (path := path or self.save_path("Export structure", "structure.res", "SHELX (*.res *.ins)")):
            write_res(path, self.current.structure, title=self.current_title[:70])
            log.info("structure written to %s", path)

    def export_hkl(self, path: Optional[str] = None) -> None:
        """Calculated intensities I = |F|² of the unique reflections with σ(I) = 0.02 I + 0.001 max(I)."""
        from ...io.common import write_text_atomic
        from ...io.hkl import format_hklf4

        if self._need_structure() and (path := path or self.save_path("Export reflections", "structure.hkl", "HKLF 4 (*.hkl)")):
            I = np.abs(self.current.F) ** 2
            scale = 99999.0 / max(I.max(), 1e-12) if I.max() > 99999 else 1.0
            I = I * scale
            write_text_atomic(path, format_hklf4(self.current.hkl, I, 0.02 * I + 1e-3 * I.max()))
            log.info("reflections written to %s", path)

    def export_map(self, path: Optional[str] = None) -> None:
        from ...io.ccp4 import write_ccp4_map

        if self._need_structure() and (path := path or self.save_path("Export map", "structure.ccp4", "CCP4 (*.ccp4 *.map)")):
            write_ccp4_map(path, self.current.dmap)
            log.info("map written to %s", path)

    # ------------------------------------------------------------------ batch export
    def _make_export_tab(self) -> QtWidgets.QWidget:
        w = QtWidgets.QWidget()
        form = QtWidgets.QFormLayout(w)
        self.export_n = QtWidgets.QSpinBox(minimum=1, maximum=10**9, value=10000)
        self.export_n.setToolTip("Number of structures")
        self.export_shard = QtWidgets.QSpinBox(minimum=1, maximum=10**7, value=2000)
        self.export_shard.setToolTip("Structures per HDF5 shard (an interrupted run keeps complete shards)")
        self.export_maxidx = QtWidgets.QSpinBox(minimum=1, maximum=30, value=10)
        self.export_maxidx.setToolTip("Reflections with h²+k²+l² ≤ m² (the PhAI grid for m = 10)")
        self.export_dmin = QtWidgets.QDoubleSpinBox(decimals=2, minimum=0.0, maximum=5.0, value=1.0, singleStep=0.1)
        self.export_dmin.setToolTip("Resolution limit in Å (0: none); F is 0 beyond it")
        self.export_dir = QtWidgets.QLineEdit(str(Path.home() / "crystalstudio_shards"))
        self.export_dir.setToolTip("Folder for shard_00000.h5 …; complete shards already there with the same "
                                   "parameters are kept (resume)")
        browse = QtWidgets.QPushButton("…")
        browse.setToolTip("Choose the output folder")
        browse.clicked.connect(self._browse_export_dir)
        drow = QtWidgets.QHBoxLayout()
        drow.addWidget(self.export_dir, 1)
        drow.addWidget(browse)
        self.export_start = QtWidgets.QPushButton("Start export")
        self.export_start.setToolTip("Generate the structures with the current parameters and seed and write them "
                                     "with their reflections to HDF5 shards")
        self.export_cancel = QtWidgets.QPushButton("Cancel")
        self.export_cancel.setToolTip("Stop the export; complete shards are kept and Start again resumes")
        self.export_cancel.setEnabled(False)
        self.export_progress = QtWidgets.QProgressBar(maximum=1000)
        self.export_progress.setToolTip("Fraction of the structures written")
        self.export_eta = QtWidgets.QLabel("")
        b = QtWidgets.QHBoxLayout()
        b.addWidget(self.export_start)
        b.addWidget(self.export_cancel)
        form.addRow("Structures", self.export_n)
        form.addRow("Shard size", self.export_shard)
        form.addRow("Max index m", self.export_maxidx)
        form.addRow("d min (Å)", self.export_dmin)
        form.addRow("Output folder", drow)
        form.addRow(b)
        form.addRow(self.export_progress)
        form.addRow(self.export_eta)
        self.export_start.clicked.connect(self.start_export)
        self.export_cancel.clicked.connect(self.cancel_export)
        self.export_task = None
        return w

    def _browse_export_dir(self) -> None:
        d = QtWidgets.QFileDialog.getExistingDirectory(self, "Output folder", self.export_dir.text())
        if d:
            self.export_dir.setText(d)

    def start_export(self) -> None:
        from ...io.shard_export import export_shards

        s = GeneratorSettings.from_dict(self._collect().to_dict())
        self.export_t0 = time.perf_counter()
        self.export_start.setEnabled(False)
        self.export_cancel.setEnabled(True)
        self.export_progress.setValue(0)
        self.export_eta.setText("starting…")
        device = self.window_.device()
        self.export_task = self.run(
            "export", export_shards, self.export_dir.text(), self.export_n.value(), s, self.seed_box.value(),
            shard_size=self.export_shard.value(), max_index=self.export_maxidx.value(),
            d_min=self.export_dmin.value() or None, device=device, label="Batch export",
            on_progress=self._export_progress, on_result=self._export_done, on_cancelled=self._export_cancelled,
            on_done=self._export_ended)

    def _export_progress(self, f: float, msg: str) -> None:
        self.export_progress.setValue(int(1000 * f))
        el = time.perf_counter() - self.export_t0
        eta = f" — {el / f * (1 - f):.0f} s left" if f > 0.01 else ""
        self.export_eta.setText(f"{msg}{eta}")

    def _export_done(self, res) -> None:
        self.export_eta.setText(f"{res.n_structures} structures ({res.n_written} generated, {res.n_resumed} resumed) "
                                f"in {res.seconds:.1f} s → {self.export_dir.text()}")
        log.info("export: %s", self.export_eta.text())

    def _export_cancelled(self) -> None:
        self.export_eta.setText("cancelled — complete shards are kept; Start again resumes")
        log.info("export cancelled")

    def _export_ended(self) -> None:
        self.export_start.setEnabled(True)
        self.export_cancel.setEnabled(False)

    def cancel_export(self) -> None:
        if self.export_task is not None and not self.export_task.is_done:
            self.export_task.cancel()
            self.export_cancel.setEnabled(False)
            self.export_eta.setText("cancelling…")

    # ------------------------------------------------------------------ statistics
    def _make_stats_tab(self) -> QtWidgets.QWidget:
        w = QtWidgets.QWidget()
        lay = QtWidgets.QVBoxLayout(w)
        row = QtWidgets.QHBoxLayout()
        self.stats_dir = QtWidgets.QLineEdit()
        self.stats_dir.setPlaceholderText("folder of real CIFs")
        self.stats_dir.setToolTip("Folder of CIFs of real structures: their distributions are overlaid on the "
                                  "generated ones and give the log-normal volume fit and element tables")
        browse = QtWidgets.QPushButton("…")
        browse.setToolTip("Choose the folder of CIFs")
        browse.clicked.connect(self._browse_stats_dir)
        self.stats_n = QtWidgets.QSpinBox(minimum=0, maximum=100000, value=1000)
        self.stats_n.setToolTip("Generated structures to compare (current parameters)")
        self.stats_run = QtWidgets.QPushButton("Compute")
        self.stats_run.setToolTip("Read the CIFs and generate the structures in the background, then compare")
        for x in (QtWidgets.QLabel("CIF folder"), self.stats_dir, browse, QtWidgets.QLabel("generated"), self.stats_n,
                  self.stats_run):
            row.addWidget(x)
        lay.addLayout(row)
        row2 = QtWidgets.QHBoxLayout()
        self.stats_quantity = QtWidgets.QComboBox()
        from ...crystal.statistics import QUANTITIES

        for k, v in QUANTITIES.items():
            self.stats_quantity.addItem(v, k)
        self.stats_quantity.setToolTip("Distribution shown in the plot")
        self.stats_fit = QtWidgets.QLabel("")
        self.apply_fit = QtWidgets.QPushButton("Use log-normal V fit")
        self.apply_fit.setToolTip("Set the cell volume distribution to the log-normal fitted to the real CIFs")
        self.apply_tables = QtWidgets.QPushButton("Use element tables from CIFs")
        self.apply_tables.setToolTip("Draw elements with the frequencies found in the real CIFs (general and special "
                                     "positions separately)")
        self.apply_fit.setEnabled(False)
        self.apply_tables.setEnabled(False)
        for x in (QtWidgets.QLabel("show"), self.stats_quantity, self.apply_fit, self.apply_tables):
            row2.addWidget(x)
        row2.addStretch(1)
        lay.addLayout(row2)
        lay.addWidget(self.stats_fit)
        self.stats_plot = HistogramPlot(title="real vs generated", x_label="cell volume (Å³)",
                                        y_label="probability density (1/Å³)")
        self.stats_table = QtWidgets.QTableWidget(0, 3)
        self.stats_table.setHorizontalHeaderLabels(["quantity", "KS statistic", "Wasserstein-1"])
        for c, tip in enumerate(("The compared distribution",
                                 "Kolmogorov–Smirnov statistic: largest gap between the two cumulative "
                                 "distributions (0 = identical, 1 = disjoint)",
                                 "Wasserstein-1 (earth mover's) distance, in the quantity's unit: how far the "
                                 "generated distribution must be moved to match the real one")):
            self.stats_table.horizontalHeaderItem(c).setToolTip(tip)
        self.stats_table.setToolTip("Distances between the real and generated distributions")
        self.stats_table.horizontalHeader().setStretchLastSection(True)
        self.stats_table.setMaximumHeight(230)
        lay.addWidget(self.stats_plot, 1)
        lay.addWidget(self.stats_table)
        self.stats_real = self.stats_gen = None
        self.stats_run.clicked.connect(self.compute_statistics)
        self.stats_quantity.currentIndexChanged.connect(self._show_stats)
        self.apply_fit.clicked.connect(self.apply_lognormal_fit)
        self.apply_tables.clicked.connect(self.apply_element_tables)
        return w

    def _browse_stats_dir(self) -> None:
        d = QtWidgets.QFileDialog.getExistingDirectory(self, "Folder of CIFs", self.stats_dir.text())
        if d:
            self.stats_dir.setText(d)

    def compute_statistics(self) -> None:
        from ...crystal.generator import generate_batch
        from ...crystal.statistics import statistics_of_batch
        from ...io.structure_statistics import statistics_from_cif_folder

        folder = self.stats_dir.text().strip()
        s = GeneratorSettings.from_dict(self._collect().to_dict())
        n, seed = self.stats_n.value(), self.seed_box.value()

        def job(progress=None, cancel=None):
            real = statistics_from_cif_folder(folder, progress=lambda f, m: progress(0.7 * f, m), cancel=cancel) \
                if folder else None
            gen = None
            if n:
                progress(0.75, f"generating {n} structures")
                gen = statistics_of_batch(generate_batch(n, s, seed, cancel=cancel))
            progress(1.0, "done")
            return real, gen

        self.run("statistics", job, label="Statistics", on_result=self._stats_done)

    def _stats_done(self, result) -> None:
        from ...crystal.statistics import compare_statistics

        self.stats_real, self.stats_gen = result
        if self.stats_real is not None:
            mu, sigma = self.stats_real.lognormal_volume_fit()
            self.stats_fit.setText(f"{self.stats_real.n_structures} real structures; ln V ~ N({mu:.3f}, {sigma:.3f}²)")
            self.apply_fit.setEnabled(True)
            self.apply_tables.setEnabled(True)
            for line in self.stats_real.skipped:
                log.warning("statistics: skipped %s", line)
        if self.stats_real is not None and self.stats_gen is not None:
            cmp = compare_statistics(self.stats_real, self.stats_gen)
            self.stats_table.setRowCount(len(cmp))
            for r, (q, d) in enumerate(cmp.items()):
                for c, v in enumerate((q, f"{d['ks']:.3f}", f"{d['wasserstein']:.4g}")):
                    self.stats_table.setItem(r, c, QtWidgets.QTableWidgetItem(v))
            self.stats_table.resizeColumnToContents(0)  # "volume_per_atom" in full (was cut to "volume_per_...")
        self._show_stats()

    def _show_stats(self, *_) -> None:
        q = self.stats_quantity.currentData()
        name = self.stats_quantity.currentText()
        series = [(name_, s.samples[q]) for name_, s in (("real", self.stats_real), ("generated", self.stats_gen))
                  if s is not None]
        self.stats_plot.set_histograms(series)
        unit = name[name.rfind("(") + 1:-1] if name.endswith(")") else ""
        self.stats_plot.plot.setTitle(name)
        self.stats_plot.plot.setLabel("bottom", name)
        self.stats_plot.plot.setLabel("left", f"probability density (1/{unit})" if unit else "probability density")
        c = self.settings.cell
        if q == "volume" and c.volume_distribution == "lognormal":
            lo, hi = self.stats_plot.x_range() or (np.exp(c.lognormal_mu - 3 * c.lognormal_sigma),
                                                   np.exp(c.lognormal_mu + 3 * c.lognormal_sigma))
            v = np.linspace(max(lo, 1e-6), hi, 300)
            pdf = np.exp(-(np.log(v) - c.lognormal_mu) ** 2 / (2 * c.lognormal_sigma**2)) / (
                v * c.lognormal_sigma * np.sqrt(2 * np.pi))
            self.stats_plot.add_curve(f"log-normal used (μ {c.lognormal_mu:.3f}, σ {c.lognormal_sigma:.3f})", v, pdf)

    def apply_lognormal_fit(self) -> None:
        if self.stats_real is None:
            return
        mu, sigma = self.stats_real.lognormal_volume_fit()
        cell = self.settings.cell
        cell.volume_distribution, cell.lognormal_mu, cell.lognormal_sigma = "lognormal", round(mu, 3), round(sigma, 3)
        self.cell_form.refresh()
        log.info("cell volumes now log-normal with mu=%.3f sigma=%.3f", mu, sigma)
        self.stats_quantity.setCurrentIndex(self.stats_quantity.findData("volume"))
        self._show_stats()

    def apply_element_tables(self) -> None:
        if self.stats_real is None:
            return
        gen = self.stats_real.element_shares("general")
        spec = self.stats_real.element_shares("special")
        self.settings.content.general_table = gen or None
        self.settings.content.special_table = spec or None
        log.info("element tables from %d structures: general %s; special %s", self.stats_real.n_structures,
                 ", ".join(f"{k} {v:.2f}" for k, v in list(gen.items())[:6]),
                 ", ".join(f"{k} {v:.2f}" for k, v in list(spec.items())[:6]) or "(none: default table kept)")
