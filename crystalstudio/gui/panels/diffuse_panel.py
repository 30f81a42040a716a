"""Diffuse panel: open a Meerkat reconstruction, a plain plane (.npy / 256×256 TIFF or EDF, e.g. the DSFU-Net
demo input) or a detector image (inspection only); cut a plane onto a Cartesian Q grid (Bragg peaks found and
punched, symmetry averaging); factorise it with DSFU-Net into I_FF and I_SRO; refine Warren–Cowley ratios from
the measured plane and from the networks' I_SRO, with calibrated σ; export arrays, PNGs and the α table.

Every long step runs in a worker (cut, factorisation with progress and cancel inside each network pass, α
refinement, export); a plane with too few measured pixels keeps Factorise disabled and says why."""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Optional

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets

from ...diffuse.factorise import MIN_MEASURED_FRACTION, VOLUME_SUFFIXES, FactoriseSettings
from ...diffuse.warren_cowley import SYMMETRIES
from ...params import describe, tooltip
from ..views.image_view import ImageView
from .base import Panel

log = logging.getLogger("crystalstudio")

DETECTOR_SUFFIXES = (".cbf", ".img", ".mccd", ".cbf.bz2", ".img.bz2", ".mccd.bz2", ".bz2", ".gz")
PLANE_SUFFIXES = (".npy", ".tif", ".tiff", ".edf", ".edf.bz2")
IMAGE_SUFFIXES = DETECTOR_SUFFIXES + PLANE_SUFFIXES
METHOD_NAMES = {"plane": "measured plane / radial I_FF", "network": "networks' I_SRO"}
METHOD_SHORT = {"plane": "plane fit", "network": "networks"}  # two-line table headers that fit the column
MASK_PUNCHED = 2  # mask code of Bragg-peak pixels punched and filled (they feed the networks, never a fit)
MASK_LEGEND = {1: ("not measured", (120, 120, 120, 255)),
               MASK_PUNCHED: ("Bragg peak punched (filled, not fitted)", (0, 200, 255, 255))}
# name, quantity, unit, diverging, scale, tooltip — every intensity is relative (normalised to the plane's maximum)
VIEWS = [
    ("measured plane", "I", "rel.", False, "sqrt", "The plane as measured (relative intensity); grey: not measured, "
                                                   "blue: Bragg peaks punched and filled — left out of every fit"),
    ("I_FF", "I_FF", "rel.", False, "linear", "Form-factor component from the I_FF network (mean over the passes)"),
    ("I_SRO", "I_SRO", "rel.", False, "linear", "Short-range-order component from the I_SRO network (mean over the "
                                                "passes)"),
    ("product I_FF·I_SRO", "I", "rel.", False, "sqrt", "k·I_FF·I_SRO, k fitted to the measured pixels"),
    ("residual", "ΔI", "rel.", True, "linear", "Measured − product, on measured pixels only"),
    ("I_FF radial estimate", "I_FF", "rel.", False, "linear", "The smooth radial form factor the plane method divides "
                                                              "the measured plane by (no networks)"),
    ("I_FF spread", "spread, not a σ", "rel.", False, "linear", "Spread of I_FF over the N passes: how much the passes disagree, "
                                                       "not a calibrated σ"),
    ("I_SRO spread", "spread, not a σ", "rel.", False, "linear", "Spread of I_SRO over the N passes: how much the passes "
                                                        "disagree, not a calibrated σ"),
]
SHORTCUT_CUT = "Ctrl+K"
SHORTCUT_FACTORISE = "Ctrl+R"


def networks_value_text() -> str:
    """What the calibration benchmark measured about the networks' α (shown in the panel)."""
    from ...diffuse.calibration import calibration_summary

    h = calibration_summary()
    p, n = h.get("plane"), h.get("network")
    if not (p and n):
        return "α uncertainties are not calibrated (no calibration file): σ is the least-squares σ only."
    verdict = ("the shipped networks add no accuracy to α, so the table comes from the measured plane"
               if n["mean_abs_error"] >= p["mean_abs_error"] else "the networks' I_SRO gave the more accurate α")
    return (f"Measured on {p['planes']} held-out simulated alloy planes (bench/bench_alpha_calibration.py): mean "
            f"|error| of α {n['mean_abs_error']:.4f} from the networks' I_SRO, {p['mean_abs_error']:.4f} from the "
            f"measured plane / radial I_FF — {verdict}. The calibrated 2σ held the truth for "
            f"{100 * p['coverage_2sigma']:.1f} % (plane) and {100 * n['coverage_2sigma']:.1f} % (networks) of the "
            "ratios.")


class DiffusePanel(Panel):
    routing_priority = 1
    title = "Diffuse"
    suffixes = VOLUME_SUFFIXES + IMAGE_SUFFIXES

    def __init__(self, window, default_content: bool = True):
        super().__init__(window, default_content)
        self.volume = None
        self.plain_path: Optional[str] = None  # a plain plane file (no volume)
        self.plane = None
        self.result = None
        self._staged = None  # a result whose views are being shown (see _show_views_staged)
        self._factorise_task = None
        self._refine_task = None
        self._export_task = None
        d = FactoriseSettings()
        info = describe(FactoriseSettings)

        self.open_button = QtWidgets.QPushButton("Open volume / plane / image…")
        self.open_button.setToolTip("Open a Meerkat/Yell reconstruction (.h5), a plain plane (.npy, 256×256 TIFF/EDF) "
                                    "or a detector image (shown for inspection)")
        self.info = QtWidgets.QLabel("no volume")
        self.info.setWordWrap(True)
        self.info.setToolTip("What is open: layout, grid, cell, and anything odd the reader found")
        self.plane_edit = QtWidgets.QLineEdit(d.plane)
        self.plane_edit.setToolTip(tooltip(info["plane"]))
        self.qmax = QtWidgets.QDoubleSpinBox(decimals=2, minimum=0.1, maximum=50, value=7.0, singleStep=0.5)
        self.qmax.setToolTip(tooltip(info["q_max"]) + " (the networks were trained on 6–8 Å⁻¹)")
        self.qmax_auto = QtWidgets.QCheckBox("follow the data")
        self.qmax_auto.setChecked(True)
        self.qmax_auto.setToolTip("Q max = the volume's extent in the plane (the grid just holds the data)")
        self.qmax.setEnabled(False)
        self.average = QtWidgets.QComboBox()
        self.average.addItems(list(info["average"].choices))
        self.average.setCurrentText(d.average)
        self.average.setToolTip(tooltip(info["average"]))
        self.bragg = QtWidgets.QComboBox()
        self.bragg.addItems(list(info["bragg"].choices))
        self.bragg.setCurrentText(d.bragg)
        self.bragg.setToolTip(tooltip(info["bragg"]))
        self.scale = QtWidgets.QComboBox()
        self.scale.addItems(list(info["scale"].choices))
        self.scale.setToolTip(tooltip(info["scale"]))
        self.cell_edit = QtWidgets.QLineEdit()
        self.cell_edit.setPlaceholderText("a b c α β γ (Å, °)")
        self.cell_edit.setToolTip(info["cell"].help)
        self.extent_edit = QtWidgets.QLineEdit()
        self.extent_edit.setPlaceholderText("h0 h1 k0 k1")
        self.extent_edit.setToolTip(info["extent"].help)
        self.cut_button = QtWidgets.QPushButton(f"Cut plane ({SHORTCUT_CUT})")
        self.cut_button.setShortcut(QtGui.QKeySequence(SHORTCUT_CUT))
        self.cut_button.setToolTip(f"Cut the plane, find Bragg peaks, average ({SHORTCUT_CUT})")
        self.ff_model = QtWidgets.QLineEdit()
        self.ff_model.setPlaceholderText("I_FF generator: empty = shipped small model")
        self.ff_model.setToolTip("Form-factor generator file (published DSFU-Net .pth layout); empty: shipped model")
        self.sro_model = QtWidgets.QLineEdit()
        self.sro_model.setPlaceholderText("I_SRO generator: empty = shipped small model")
        self.sro_model.setToolTip("Short-range-order generator file (published .pth layout); empty: shipped model")
        self.passes = QtWidgets.QSpinBox(minimum=int(info["passes"].ge), maximum=int(info["passes"].le), value=d.passes)
        self.passes.setToolTip(tooltip(info["passes"]) + "; 1: deterministic (dropout off)")
        self.factorise_button = QtWidgets.QPushButton(f"Factorise ({SHORTCUT_FACTORISE})")
        self.factorise_button.setShortcut(QtGui.QKeySequence(SHORTCUT_FACTORISE))
        self.factorise_button.setToolTip(f"Run both networks on the plane and refine α ({SHORTCUT_FACTORISE}); "
                                         "progress and Cancel in the status bar")
        self.factorise_status = QtWidgets.QLabel("no plane yet")
        self.factorise_status.setWordWrap(True)
        self.factorise_status.setToolTip("Why Factorise is (not) available; the rule: at least "
                                         f"{100 * MIN_MEASURED_FRACTION:.0f} % of the grid measured")
        self.alpha_from = QtWidgets.QComboBox()
        self.alpha_from.addItems(list(info["alpha_from"].choices))
        self.alpha_from.setCurrentText(d.alpha_from)
        self.alpha_from.setToolTip(tooltip(info["alpha_from"]))
        self.symmetry = QtWidgets.QComboBox()
        self.symmetry.addItems(list(SYMMETRIES))
        self.symmetry.setToolTip(tooltip(info["symmetry"]))
        self.max_index = QtWidgets.QSpinBox(minimum=int(info["max_index"].ge), maximum=int(info["max_index"].le),
                                            value=d.max_index)
        self.max_index.setToolTip(tooltip(info["max_index"]))
        self.refine_button = QtWidgets.QPushButton("Refine α")
        self.refine_button.setToolTip("Refit α by both methods with the symmetry and range above (in the background)")
        self.alpha_table = QtWidgets.QTableWidget(0, 5)
        self._set_alpha_headers(d.alpha_from if d.alpha_from in METHOD_NAMES else "network")
        header = self.alpha_table.horizontalHeader()
        header.setSectionResizeMode(QtWidgets.QHeaderView.ResizeToContents)
        header.setStretchLastSection(True)
        header.setDefaultAlignment(QtCore.Qt.AlignCenter)
        self.alpha_table.verticalHeader().setVisible(False)  # the vector names the row
        self.alpha_table.setEditTriggers(QtWidgets.QAbstractItemView.NoEditTriggers)
        self.alpha_table.setToolTip("Warren–Cowley ratios (only ratios are determined); σ as stated below the table")
        self.sigma_note = QtWidgets.QLabel("")
        self.sigma_note.setWordWrap(True)
        self.sigma_note.setToolTip("What σ holds: calibrated on simulated planes, or not")
        note = QtWidgets.QLabel("The networks' outputs are normalised: only ratios of α are determined, not their "
                                "absolute values. Vectors with different w cannot be told apart on one integer "
                                "plane. " + networks_value_text())
        note.setWordWrap(True)
        note.setStyleSheet("color: #a05000")
        note.setToolTip("From bench/bench_alpha_calibration.py (resources/models/README.md)")
        self.value_note = note
        self.export_button = QtWidgets.QPushButton("Export arrays, PNGs, α table…")
        self.export_button.setToolTip("Write every map (.npy + .png with colour bar), the mask, alpha.csv and a "
                                      "summary into a folder (in the background)")

        form = QtWidgets.QFormLayout()
        form.addRow(self.open_button)
        form.addRow(self.info)
        form.addRow("Plane", self.plane_edit)
        qrow = QtWidgets.QHBoxLayout()
        qrow.addWidget(self.qmax, 1)
        qrow.addWidget(self.qmax_auto)
        form.addRow("Q max (Å⁻¹)", qrow)
        form.addRow("Average", self.average)
        form.addRow("Bragg peaks", self.bragg)
        self.plain_box = QtWidgets.QGroupBox("Plain plane")
        self.plain_box.setToolTip("How to read a plain plane image, and its geometry")
        pf = QtWidgets.QFormLayout(self.plain_box)
        pf.addRow("Values", self.scale)
        pf.addRow("Cell", self.cell_edit)
        pf.addRow("Extent", self.extent_edit)
        self.plain_box.setVisible(False)
        form.addRow(self.plain_box)
        form.addRow(self.cut_button)
        form.addRow("I_FF model", self.ff_model)
        form.addRow("I_SRO model", self.sro_model)
        form.addRow("Passes", self.passes)
        form.addRow(self.factorise_button)
        form.addRow(self.factorise_status)
        form.addRow("α from", self.alpha_from)
        form.addRow("α symmetry", self.symmetry)
        form.addRow("max |u|, |v|", self.max_index)
        form.addRow(self.refine_button)
        left = QtWidgets.QWidget()
        ll = QtWidgets.QVBoxLayout(left)
        ll.addLayout(form)
        ll.addWidget(self.alpha_table, 1)
        ll.addWidget(self.sigma_note)
        ll.addWidget(note)
        ll.addWidget(self.export_button)
        scroll = QtWidgets.QScrollArea()
        scroll.setWidget(left)
        scroll.setWidgetResizable(True)
        scroll.setMinimumWidth(380)

        self.view_names = [name for name, *_ in VIEWS]
        self.images = {name: ImageView(name, quantity=q, unit=u, diverging=div, colorbar="bar",
                                       x_axis=("Q_x", "Å⁻¹"), y_axis=("Q_y", "Å⁻¹"), scale=scale)
                       for name, q, u, div, scale, _ in VIEWS}
        for name, *_, tip in VIEWS:
            self.images[name].setToolTip(tip)
        self._axis_items: dict[str, list] = {n: [] for n in self.view_names}
        grid = QtWidgets.QGridLayout()
        for i, n in enumerate(self.view_names):
            grid.addWidget(self.images[n], i // 4, i % 4)
        right = QtWidgets.QWidget()
        right.setLayout(grid)
        self._images_area = right
        split = QtWidgets.QSplitter(QtCore.Qt.Horizontal)
        split.addWidget(scroll)
        split.addWidget(right)
        split.setStretchFactor(1, 1)
        split.setSizes([400, 1100])  # the eight views get the width (their colour bars and titles need it)
        lay = QtWidgets.QHBoxLayout(self)
        lay.addWidget(split)

        self.open_button.clicked.connect(self._ask_open)
        self.cut_button.clicked.connect(self.cut)
        self.factorise_button.clicked.connect(self.factorise)
        self.refine_button.clicked.connect(self.refine)
        self.export_button.clicked.connect(self._ask_export)
        self.alpha_from.currentTextChanged.connect(self._alpha_from_changed)
        self.qmax_auto.toggled.connect(lambda on: self.qmax.setEnabled(not on))
        self.plane_edit.textEdited.connect(self._plane_edited)
        for b in (self.cut_button, self.factorise_button, self.refine_button, self.export_button):
            b.setEnabled(False)

    # ------------------------------------------------------------------ settings
    def settings(self) -> FactoriseSettings:
        """The job's settings from the panel's fields (the same class and defaults as `crystalstudio factorise`)."""
        def numbers(edit, n, what):
            t = edit.text().replace(",", " ").split()
            if not t:
                return None
            try:
                vals = tuple(float(x) for x in t)
            except ValueError:
                vals = ()
            if len(vals) != n:
                from ...errors import InvalidInputError

                raise InvalidInputError(f"{what}: give {n} numbers")
            return vals

        return FactoriseSettings.from_dict(dict(
            plane=self.plane_edit.text().strip() or "hk1", q_max=None if self.qmax_auto.isChecked() else self.qmax.value(),
            average=self.average.currentText(), bragg=self.bragg.currentText(), passes=self.passes.value(),
            alpha_from=self.alpha_from.currentText(), symmetry=self.symmetry.currentText(),
            max_index=self.max_index.value(), scale=self.scale.currentText(), cell=numbers(self.cell_edit, 6, "cell"),
            extent=numbers(self.extent_edit, 4, "extent")))

    # ------------------------------------------------------------------ files
    def accepts(self, path: Path) -> bool:
        return path.name.lower().endswith(self.suffixes)

    def _ask_open(self):
        path, _ = QtWidgets.QFileDialog.getOpenFileName(
            self, "Volume, plane or image", self.window_.last_dir(".h5"),
            "Reconstructions, planes and images (*.h5 *.hdf5 *.nxs *.npy *.tif *.tiff *.edf *.cbf *.img *.mccd *.bz2);;"
            "All files (*)")
        if path:
            self.window_.open_path(path)

    def open_file(self, path: str) -> None:
        name = Path(path).name.lower()
        self._forget_plane()
        if name.endswith(VOLUME_SUFFIXES):
            from ...io.meerkat import read_meerkat

            self.run("open volume", read_meerkat, path, label=f"Reading {Path(path).name}", key="diffuse-open",
                     on_result=self._volume_loaded)
        else:
            view = self.images["measured plane"]
            area = self._images_area.size() * self.devicePixelRatioF()  # a detector frame gets the whole grid
            self.run("open image", _read_image_for_display, path, area.width() * area.height(), view.percentiles,
                     label=f"Reading {Path(path).name}", key="diffuse-open", on_result=self._image_loaded)

    def _forget_plane(self) -> None:
        """A new file or plane: nothing of the old one may stay on screen."""
        for t in (self._factorise_task, self._refine_task):
            if t is not None and not t.is_done:
                t.superseded = True
                t.cancel()
        self.plane = None
        self.result = None
        self._staged = None
        self.alpha_table.setRowCount(0)
        self.sigma_note.setText("")
        for name in self.view_names:
            self._show(name, None)
        for b in (self.refine_button, self.export_button):
            b.setEnabled(False)
        self._update_factorise_state()

    def _volume_loaded(self, vol) -> None:
        from ...diffuse.planes import volume_q_extent

        self.volume, self.plain_path = vol, None
        self.plain_box.setVisible(False)
        lim = [f"{'hkl'[i]} {vol.lower_limits[i]:g}…{vol.lower_limits[i] + (vol.shape[i] - 1) * vol.step_sizes[i]:g}"
               for i in range(3)]
        text = (f"{Path(vol.path).name}: {vol.layout}, {vol.shape[0]}×{vol.shape[1]}×{vol.shape[2]}, "
                f"steps {vol.step_sizes.round(4).tolist()}, {', '.join(lim)}; cell {vol.cell}")
        if vol.warnings:
            text += "\n⚠ " + "\n⚠ ".join(vol.warnings)
        self.info.setText(text)
        try:
            self.qmax.setValue(volume_q_extent(vol, self.plane_edit.text()))
        except Exception:  # noqa: BLE001 - a bad plane name is reported by the cut
            pass
        self.cut_button.setEnabled(True)
        self.cut()

    def _image_loaded(self, loaded) -> None:
        img, display = loaded
        path = img.path
        as_plane = display is None
        if as_plane:
            self.volume, self.plain_path = None, path
            self.plain_box.setVisible(True)
            self.info.setText(f"{Path(path).name}: plain plane {img.data.shape[1]}×{img.data.shape[0]} ({img.format}); "
                              "give the cell and extent for α refinement")
            self.cut_button.setEnabled(True)
            self.cut()
            return
        self.volume, self.plain_path = None, None
        self.plain_box.setVisible(False)
        self.info.setText(f"{Path(path).name}: detector image {img.data.shape[1]}×{img.data.shape[0]} "
                          f"({img.format}); shown for inspection (factorisation needs a reconstructed volume or a "
                          "256×256 plane)")
        for name in self.view_names:
            self._show(name, None)
        view = self.images["measured plane"]
        view.setVisible(True)
        view.plot.setTitle("detector image")
        view.set_detector_frame(img, scale="log", prepared=display)
        self.cut_button.setEnabled(False)
        self._update_factorise_state("a detector image: factorisation needs a reconstructed volume or a plane")

    def _show(self, name: str, data: Optional[np.ndarray], plane=None, mask: Optional[np.ndarray] = None,
              title: Optional[str] = None) -> None:
        """One view: hidden without data (only what applies is shown); axes in Q (Å⁻¹) with the h and k axes
        drawn through the origin, or h and k for plain planes on an index grid, or pixels without geometry."""
        view = self.images[name]
        for item in self._axis_items[name]:
            view.plot.removeItem(item)
        self._axis_items[name] = []
        view.plot.vb.invertY(False)
        view.plot.setTitle(title or name)
        if data is None:
            view.clear()
            view.setVisible(False)
            return
        view.setVisible(True)
        kw = {"mask": mask, "mask_legend": MASK_LEGEND, "nan_label": "not measured"}
        if plane is None or not plane.has_geometry:
            view.set_axes(("column", "pixel"), ("row", "pixel"))
            view.set_image(data, self._readout(plane) if plane is not None else None, **kw)
            return
        a, b = "hkl"[plane.geometry.inplane[0]], "hkl"[plane.geometry.inplane[1]]
        if plane.index_map is not None:
            A = plane.index_map
            view.set_axes((a, ""), (b, ""))
            t = QtGui.QTransform(A[0, 0], 0.0, 0.0, A[1, 1], A[0, 2] - A[0, 0] / 2, A[1, 2] - A[1, 1] / 2)
            view.set_image(data, self._readout(plane), transform=t, **kw)
            return
        q, n = plane.q_max, data.shape[0]
        half = q / (n - 1)  # the grid's pixel centres run from −Q max to Q max
        view.set_axes(("Q_x", "Å⁻¹"), ("Q_y", "Å⁻¹"))
        view.set_image(data, self._readout(plane), rect=(-q - half, -q - half, 2 * q + 2 * half, 2 * q + 2 * half), **kw)
        self._axis_items[name] = self._hkl_axes(view, plane, a, b)

    @staticmethod
    def _hkl_axes(view: ImageView, plane, a: str, b: str) -> list:
        """The plane's two index axes through its origin, ticked at integer indices and labelled."""
        geo, q = plane.geometry, plane.q_max
        o = geo.offset[:2]
        items = []
        for col, name, colour in ((0, a, (255, 255, 255, 170)), (1, b, (255, 255, 255, 170))):
            d = geo.M[:, col]  # Å⁻¹ per unit index
            # the segment of the axis line o + t·d inside the square ±q: the intersection of both coordinates' ranges
            t0, t1 = -np.inf, np.inf
            for k in range(2):
                if abs(d[k]) > 1e-12:
                    lo, hi = sorted(((-q - o[k]) / d[k], (q - o[k]) / d[k]))
                    t0, t1 = max(t0, lo), min(t1, hi)
                elif abs(o[k]) > q:
                    t1 = -np.inf
            if not np.isfinite(t0) or not np.isfinite(t1) or t1 <= t0:
                continue
            line = pg.PlotCurveItem([o[0] + t0 * d[0], o[0] + t1 * d[0]], [o[1] + t0 * d[1], o[1] + t1 * d[1]],
                                   pen=pg.mkPen(colour, width=1, style=QtCore.Qt.DashLine))
            ticks = np.arange(np.ceil(t0), np.floor(t1) + 1)
            dots = pg.ScatterPlotItem(o[0] + ticks * d[0], o[1] + ticks * d[1], size=4, pen=None,
                                      brush=pg.mkBrush(colour))
            label = pg.TextItem(name, color=(255, 255, 255), anchor=(0.5, 0.5))
            label.setPos(o[0] + (t1 - 0.35) * d[0], o[1] + (t1 - 0.35) * d[1])
            for it in (line, dots, label):
                view.plot.addItem(it)
                items.append(it)
        return items

    def _plane_edited(self, text: str) -> None:
        if self.volume is not None and self.qmax_auto.isChecked():
            from ...diffuse.planes import volume_q_extent

            try:
                self.qmax.setValue(volume_q_extent(self.volume, text))
            except Exception:  # noqa: BLE001 - not yet a valid plane name
                pass

    # ------------------------------------------------------------------ work
    def _readout(self, plane):
        if not plane.has_geometry:
            return lambda i, j: f"pixel x {j}, y {i} (no geometry)"
        B = plane.geometry.B

        def f(i, j):
            h = plane.hkl_at(i, j)
            return f"h k l = {h[0]:.3f} {h[1]:.3f} {h[2]:.3f}  |Q| = {np.linalg.norm(B @ h):.2f} Å⁻¹"

        return f

    def cut(self) -> None:
        from ...diffuse.factorise import load_plain_plane, load_volume_plane

        if self.volume is None and self.plain_path is None:
            return
        try:
            s = self.settings()
        except Exception as exc:  # noqa: BLE001 - bad field: say so, do nothing
            self.error("Cannot cut the plane", str(exc))
            return
        self._forget_plane()
        if self.volume is not None:
            self.run("cut plane", load_volume_plane, self.volume, s, label="Cutting plane", key="diffuse-cut",
                     on_result=self._plane_cut)
        else:
            self.run("read plane", load_plain_plane, self.plain_path, s, label="Reading plane", key="diffuse-cut",
                     on_result=self._plane_cut)

    def _plane_cut(self, plane) -> None:
        self.plane = plane
        self.result = None
        if plane.q_max is not None:
            self.qmax.setValue(plane.q_max)
        codes = np.where(plane.measured, 0, 1).astype(np.int16)
        if plane.bragg is not None and plane.bragg.count:
            codes[plane.bragg.pixels] = MASK_PUNCHED
        self._show("measured plane", plane.intensity, plane, mask=codes, title=f"measured {plane.label}")
        for n in self.view_names[1:]:
            self._show(n, None)
        for note in plane.notes:
            (log.warning if note.startswith("warning") else log.info)("%s: %s", plane.label, note)
        log.info("plane %s: %d of %d pixels measured", plane.label, plane.n_measured, plane.intensity.size)
        self._update_factorise_state()

    def _update_factorise_state(self, reason: Optional[str] = None) -> None:
        from ...diffuse.factorise import check_measured

        running = self._factorise_task is not None and not self._factorise_task.is_done
        ok = False
        if running:
            reason = "factorising… (Cancel in the status bar)"
        elif reason is None and self.plane is None:
            reason = "no plane cut yet"
        elif reason is None:
            try:
                check_measured(self.plane)
                ok = True
                reason = (f"plane {self.plane.label}: {self.plane.n_measured:,} of {self.plane.intensity.size:,} "
                          "pixels measured")
            except Exception as exc:  # noqa: BLE001 - the refusal, in words
                reason = f"Factorise disabled: {exc}"
        self.factorise_button.setEnabled(ok)
        self.factorise_status.setText(reason)

    def factorise(self) -> None:
        from ...diffuse.factorise import check_measured, factorise_plane, load_models

        if self.plane is None or (self._factorise_task is not None and not self._factorise_task.is_done):
            return
        try:
            check_measured(self.plane)
            s = self.settings()
        except Exception as exc:  # noqa: BLE001
            self._update_factorise_state()
            self.error("Cannot factorise", str(exc))
            return
        plane, ff_path, sro_path = self.plane, self.ff_model.text().strip(), self.sro_model.text().strip()
        device = self.window_.device()

        def job(progress=None, cancel=None):
            gf, gs, hashes = load_models(ff_path or None, sro_path or None)
            return factorise_plane(plane, gf, gs, s, model_hashes=hashes, device=device, progress=progress,
                                   cancel=cancel)

        self._factorise_task = self.run("factorise", job, label="Factorising", on_result=self._factorised,
                                        on_done=self._factorise_done)
        self._update_factorise_state()

    def _factorise_done(self) -> None:
        self._update_factorise_state()

    def _factorised(self, res) -> None:
        if res.plane is not self.plane:  # a new plane was cut meanwhile
            return
        n = res.passes
        ff_radial = res.wc_plane.form_factor if res.wc_plane is not None else None
        if ff_radial is not None:
            ff_radial = ff_radial / max(float(np.nanmax(ff_radial)), 1e-300)
        views = [(name, arr, f"{name} over {n} passes" if name.endswith("spread") else None)  # "not a σ": on its bar
                 for name, arr in (("I_FF", res.ff), ("I_SRO", res.sro), ("product I_FF·I_SRO", res.product),
                                   ("residual", res.residual), ("I_FF radial estimate", ff_radial),
                                   ("I_FF spread", res.ff_spread), ("I_SRO spread", res.sro_spread))]
        self._staged = res
        self._show_views_staged(res, views)

    VIEWS_PER_STAGE = 2

    def _show_views_staged(self, res, views: list) -> None:
        """The result's views a few at a time, the event loop running (and painting them) in between: all seven
        at once kept it ~100 ms. The result is the panel's (`self.result`, the α table, Refine and Export) when
        the last view is up; a new plane, file or factorisation meanwhile ends the staging."""
        if self._staged is not res or res.plane is not self.plane:
            return
        for name, arr, title in views[:self.VIEWS_PER_STAGE]:
            self._show(name, arr, res.plane, title=title)
        if views[self.VIEWS_PER_STAGE:]:
            # a 1 ms timer, not a queued call: the paint of these views is handled before the next stage
            QtCore.QTimer.singleShot(1, self, lambda: self._show_views_staged(res, views[self.VIEWS_PER_STAGE:]))
            return
        self._staged = None
        self.result = res
        self._show_alpha()
        for b in (self.refine_button, self.export_button):
            b.setEnabled(True)
        log.info("factorised %s in %.2f s; product residual R %.3f over the measured pixels", res.plane.label,
                 res.seconds["total"], res.product_r)
        if res.alpha_note:
            log.info("%s", res.alpha_note)

    def refine(self) -> None:
        from ...diffuse.factorise import refine_alpha

        if self.result is None or (self._refine_task is not None and not self._refine_task.is_done):
            return
        try:
            s = self.result.settings.replace(symmetry=self.symmetry.currentText(), max_index=self.max_index.value(),
                                             alpha_from=self.alpha_from.currentText())
        except Exception as exc:  # noqa: BLE001
            self.error("Cannot refine α", str(exc))
            return
        res = copy.copy(self.result)  # the worker fills its own copy; the shown result stays intact
        self.refine_button.setEnabled(False)

        def job(progress=None, cancel=None):
            return refine_alpha(res, s, progress=progress, cancel=cancel)

        self._refine_task = self.run("refine α", job, label="Refining α", on_result=self._refined,
                                     on_done=lambda: self.refine_button.setEnabled(self.result is not None))

    def _refined(self, res) -> None:
        if self.result is None or res.plane is not self.result.plane:
            return
        self.result = res
        self._show_alpha()

    def _alpha_from_changed(self, method: str) -> None:
        if self.result is None:
            return
        r = self.result
        wc = r.wc_plane if method == "plane" else r.wc_network
        if wc is not None:
            r.wc = wc
        self._show_alpha()

    def _set_alpha_headers(self, primary: str) -> None:
        """Short two-line headers (they fit the table's columns at 1500 px) with the full wording as tooltips."""
        other = "network" if primary == "plane" else "plane"
        how = {"network": "from the networks' I_SRO (Fourier coefficients of the I_SRO map)",
               "plane": "from the measured plane divided by the radial I_FF estimate (no networks)"}
        heads = [("vector\n(u v)", "Interatomic vector [u v] in lattice units of the plane: the α(uv) of this row "
                                  "(vectors with different w cannot be told apart on one integer plane)"),
                 (f"α/α00\n{METHOD_SHORT[primary]}", f"Warren–Cowley ratio α(uv)/α(00), {how[primary]} — the "
                                                     "method chosen in 'α from'; only ratios are determined"),
                 ("σ", f"Standard uncertainty of the {METHOD_SHORT[primary]} ratio to its left; what it holds "
                       "(calibrated or not) is stated under the table"),
                 (f"α/α00\n{METHOD_SHORT[other]}", f"The same ratio {how[other]}: the other method, for comparison"),
                 ("σ", f"Standard uncertainty of the {METHOD_SHORT[other]} ratio to its left")]
        for c, (text, tip) in enumerate(heads):
            item = QtWidgets.QTableWidgetItem(text)
            item.setToolTip(tip)
            self.alpha_table.setHorizontalHeaderItem(c, item)

    def _show_alpha(self) -> None:
        from ...diffuse.factorise import alpha_rows

        res = self.result
        if res is None or res.wc is None:
            self.alpha_table.setRowCount(0)
            self.sigma_note.setText(res.alpha_note if res is not None else "")
            return
        primary = "plane" if res.wc is res.wc_plane else "network"
        other = "network" if primary == "plane" else "plane"
        self._set_alpha_headers(primary)
        rows = alpha_rows(res)
        self.alpha_table.setRowCount(len(rows))
        for i, r in enumerate(rows):
            vals = [f"({r['u']} {r['v']})", f"{r['alpha']:+.4f}", f"{r['sigma']:.4f}",
                    f"{r[f'alpha_{other}']:+.4f}" if f"alpha_{other}" in r else "—",
                    f"{r[f'sigma_{other}']:.4f}" if f"sigma_{other}" in r else "—"]
            for c, v in enumerate(vals):
                self.alpha_table.setItem(i, c, QtWidgets.QTableWidgetItem(v))
        text = f"σ ({METHOD_NAMES[primary]}): {res.wc.sigma_kind}"
        if res.alpha_note:
            text += f"\n{res.alpha_note}"
        self.sigma_note.setText(text)

    # ------------------------------------------------------------------ export
    def export_actions(self) -> list:
        return [("Factorisation (arrays, PNGs, α table)…", self._ask_export)]

    def _ask_export(self) -> None:
        if self.result is None:
            self.error("Nothing to export", "factorise a plane first")
            return
        d = QtWidgets.QFileDialog.getExistingDirectory(self, "Export into folder", self.window_.last_dir("diffuse"))
        if d:
            self.export(d)

    def export(self, folder: str):
        """Write the factorisation into `folder` in a worker; returns the task (its result: the written paths)."""
        from ...diffuse.factorise import export_factorisation

        res = self.result
        self.window_.settings.setValue("dirs/diffuse", folder)
        self.export_button.setEnabled(False)
        self._export_task = self.run("export factorisation", export_factorisation, res, folder,
                                     label="Writing the factorisation",
                                     on_result=lambda paths: log.info("factorisation written to %s", folder),
                                     on_done=lambda: self.export_button.setEnabled(self.result is not None))
        return self._export_task


def _is_plain_plane(path: str, shape) -> bool:
    """A .npy array or a 256×256 image is read as a plane to factorise; anything else as a detector frame."""
    return str(path).lower().endswith(".npy") or tuple(shape) == (256, 256)


def _read_image_for_display(path: str, screen_px: int, percentiles) -> tuple:
    """(image, display): a detector frame's display image (block maxima, scale, mask, levels) is prepared here,
    in the reading worker, so the GUI thread only hands it to Qt; None for a plain plane."""
    from ...io.images import read_image
    from ..views.image_view import prepare_frame

    img = read_image(path)
    if _is_plain_plane(img.path, img.data.shape):
        return img, None
    return img, prepare_frame(img.data, img.pixel_mask(), scale="log", screen_px=max(int(screen_px), 500 * 500),
                              percentiles=tuple(percentiles))
