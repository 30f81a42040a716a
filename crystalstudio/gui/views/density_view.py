"""Density slab / projection view: ρ averaged over a slab along a, b or c, drawn in true (oblique) cell
geometry on the shared :class:`ImageView` (colour bar in σ of the slab, axes in Å, contrast, zoom to the cell),
with σ-scaled contour levels, the cell outline, atoms in the slab and a cursor readout in fractional
coordinates."""

from __future__ import annotations

from typing import Optional

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets

from ...crystal.maps import DensityMap, plane_basis
from ...crystal.structure import Structure
from ...crystal.elements import element_color
from ...crystal.scene import contour_lines
from .image_view import ImageView

AXES = "abc"


class DensitySlabView(QtWidgets.QWidget):
    """Shows one slab of a :class:`DensityMap`; emits `slab_changed(axis, start, thickness)`."""

    slab_changed = QtCore.Signal(int, float, float)

    def __init__(self, parent=None, title: str = ""):
        super().__init__(parent)
        self.dmap: Optional[DensityMap] = None
        self.structure: Optional[Structure] = None
        self.peaks: Optional[np.ndarray] = None
        self._image = None
        self._frame = None  # (map, axis) shown: the same frame keeps the user's zoom and contrast

        self.axis_box = QtWidgets.QComboBox()
        self.axis_box.addItems([f"along {a}" for a in AXES])
        self.axis_box.setCurrentIndex(2)
        self.axis_box.setToolTip("Slab normal: the map is averaged over layers along this cell axis")
        self.position = QtWidgets.QSlider(QtCore.Qt.Horizontal)
        self.position.setToolTip("Slab start (fractional coordinate along the chosen axis)")
        self.position_label = QtWidgets.QLabel("0.000")
        self.thickness = QtWidgets.QDoubleSpinBox(decimals=3, minimum=0.0, maximum=1.0, singleStep=0.05, value=0.1)
        self.thickness.setToolTip("Slab thickness as a fraction of the axis (1 = projection of the whole cell)")
        self.levels = QtWidgets.QDoubleSpinBox(decimals=2, minimum=0.25, maximum=20.0, singleStep=0.25, value=1.5)
        self.levels.setToolTip("Lowest contour in σ of the slab; contours step by this value (scroll to change)")
        self.n_levels = QtWidgets.QSpinBox(minimum=0, maximum=12, value=4)
        self.n_levels.setToolTip("Number of contour levels (0: none)")
        self.atoms_box = QtWidgets.QCheckBox("atoms")
        self.atoms_box.setChecked(True)
        self.atoms_box.setToolTip("Mark model atoms (or peaks) whose coordinate lies in the slab")
        controls = QtWidgets.QVBoxLayout()
        row1, row2 = QtWidgets.QHBoxLayout(), QtWidgets.QHBoxLayout()
        for w in (self.axis_box, QtWidgets.QLabel("start"), self.position, self.position_label):
            row1.addWidget(w)
        row1.setStretch(2, 1)
        for w in (QtWidgets.QLabel("thickness"), self.thickness, QtWidgets.QLabel("contours σ"), self.levels,
                  self.n_levels, self.atoms_box):
            row2.addWidget(w)
        row2.addStretch(1)
        controls.addLayout(row1)
        controls.addLayout(row2)

        self.view = ImageView(title, quantity="ρ", unit="σ", cmap="viridis", scales=("linear",),
                              x_axis=("x", "Å"), y_axis=("y", "Å"), axis_order="col-major", toolbar=False)
        for w in self.view.toolbar_widgets()[1:]:
            row2.addWidget(w)
        self.view.fit_button.setToolTip("Zoom to the cell (mouse: wheel zooms, drag pans)")
        self.plot = self.view.plot
        self.img = self.view.image_item
        self.outline = pg.PlotCurveItem(pen=pg.mkPen("w", width=1.5))
        self.plot.addItem(self.outline)
        self.scatter = pg.ScatterPlotItem(size=9, pen=pg.mkPen("k"))
        self.plot.addItem(self.scatter)
        # all σ contours as one NaN-separated curve in the image's pixel coordinates
        self.contours = pg.PlotCurveItem(pen=pg.mkPen((255, 255, 255, 200), width=1), connect="finite")
        self.contours.setParentItem(self.img)
        self.readout = self.view.readout
        lay = QtWidgets.QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        lay.addLayout(controls)
        lay.addWidget(self.view, 1)

        for sig in (self.axis_box.currentIndexChanged, self.position.valueChanged, self.thickness.valueChanged,
                    self.levels.valueChanged, self.n_levels.valueChanged, self.atoms_box.toggled):
            sig.connect(self.redraw)

    # ------------------------------------------------------------------ data
    def set_map(self, dmap: Optional[DensityMap], structure: Optional[Structure] = None,
                peaks: Optional[np.ndarray] = None) -> None:
        self.dmap, self.structure, self.peaks = dmap, structure, peaks
        self._sync_slider()
        self.redraw()

    def clear(self) -> None:
        self.set_map(None)

    def _sync_slider(self) -> None:
        if self.dmap is None:
            return
        n = self.dmap.shape[self.axis]
        self.position.blockSignals(True)
        self.position.setRange(0, n - 1)
        self.position.blockSignals(False)

    @property
    def axis(self) -> int:
        return self.axis_box.currentIndex()

    def set_slab(self, axis: int, start: float, thickness: float) -> None:
        self.axis_box.setCurrentIndex(axis)
        self._sync_slider()
        if self.dmap is not None:
            self.position.setValue(int(round(start * self.dmap.shape[axis])) % self.dmap.shape[axis])
        self.thickness.setValue(thickness)

    def slab_range(self) -> tuple[float, float]:
        if self.dmap is None:
            return 0.0, self.thickness.value()
        n = self.dmap.shape[self.axis]
        return self.position.value() / n, self.thickness.value()

    # ------------------------------------------------------------------ drawing
    def redraw(self, *_) -> None:
        if self.axis_box.count() and self.dmap is not None and self.position.maximum() != self.dmap.shape[self.axis] - 1:
            self._sync_slider()
        if self.dmap is None:
            self.view.clear()
            self.contours.setData([], [])
            self.outline.setData([], [])
            self.scatter.setData([])
            self.readout.setText("no map")
            return
        start, thick = self.slab_range()
        self.position_label.setText(f"{start:.3f}")
        ax = self.axis
        data = self.dmap.projection(ax) if thick >= 0.999 else self.dmap.slab(ax, start, max(thick, 1e-6))
        sd = float(np.std(data)) or 1.0
        mean = float(np.mean(data))
        z = (data - mean) / sd
        self._image = z
        ni, nj = z.shape
        M = plane_basis(self.dmap.cell, ax)
        tr = QtGui.QTransform(M[0, 0] / ni, M[1, 0] / ni, M[0, 1] / nj, M[1, 1] / nj, 0, 0)
        tr = QtGui.QTransform().translate(-0.5, -0.5) * tr
        others = [i for i in range(3) if i != ax]
        first = AXES[others[0]]
        self.view.set_axes((f"x ∥ {first}", "Å"), (f"y ⊥ {first}", "Å"))
        self.view.set_quantity("ρ", "σ" if thick < 0.999 else "σ, projection")
        corners = np.array([[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]], dtype=float)
        xy = corners @ M.T
        self.outline.setData(xy[:, 0], xy[:, 1])
        same_frame = self._frame == (id(self.dmap), ax)
        self._frame = (id(self.dmap), ax)
        self.view.set_image(z, self._readout_text, transform=tr, keep_levels=same_frame, keep_view=same_frame,
                            fit_items=[self.outline])
        self.readout.setText("move the cursor over the map for coordinates and ρ")
        step = self.levels.value()
        lines = contour_lines(z, [step * (k + 1) for k in range(self.n_levels.value())])
        self.contours.setData(lines[:, 0] + 0.5, lines[:, 1] + 0.5)  # grid point i is pixel centre i + 0.5
        self._draw_atoms(M, start, thick)
        self.slab_changed.emit(ax, start, thick)

    def _draw_atoms(self, M, start, thick) -> None:
        if not self.atoms_box.isChecked():
            self.scatter.setData([])
            return
        ax = self.axis
        others = [i for i in range(3) if i != ax]
        spots = []
        if self.structure is not None:
            p1 = self.structure.expand_to_p1()
            for s in p1.sites:
                w = (s.xyz[ax] - start) % 1.0
                if w <= thick + 1e-9 or thick >= 0.999:
                    uv = s.xyz[others] % 1.0
                    xy = M @ uv
                    spots.append({"pos": xy, "brush": pg.mkBrush(*[int(255 * c) for c in element_color(s.element)]),
                                  "symbol": "o", "size": 6 if s.element == "H" else 10, "data": s.label})
        if self.peaks is not None and len(self.peaks):
            for i, x in enumerate(self.peaks):
                w = (x[ax] - start) % 1.0
                if w <= thick + 1e-9 or thick >= 0.999:
                    xy = M @ (x[others] % 1.0)
                    spots.append({"pos": xy, "brush": pg.mkBrush(255, 80, 80), "symbol": "+", "size": 12,
                                  "data": f"Q{i + 1}"})
        self.scatter.setData(spots)

    def _readout_text(self, i: int, j: int) -> str:
        """Fractional coordinates of grid point (i, j) of the slab (the slab's mid-layer along its normal)."""
        ni, nj = self._image.shape
        ax = self.axis
        others = [k for k in range(3) if k != ax]
        frac = np.zeros(3)
        frac[others[0]], frac[others[1]] = i / ni, j / nj
        start, thick = self.slab_range()
        frac[ax] = start + thick / 2
        return "x = {:.3f}  y = {:.3f}  z = {:.3f}".format(*frac)

    def wheelEvent(self, event):  # scroll over the view steps the contour level when Ctrl is held
        if event.modifiers() & QtCore.Qt.ControlModifier:
            self.levels.setValue(self.levels.value() + (0.25 if event.angleDelta().y() > 0 else -0.25))
            event.accept()
        else:
            super().wheelEvent(event)
