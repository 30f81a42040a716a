"""Reciprocal-lattice plane view: the reflections of one plane (hk n, h n l or n k l) drawn at their true
reciprocal positions (Å⁻¹, oblique axes respected) as discs sized and coloured by |F| or I (linear, sqrt or log),
on the shared :class:`ImageView` (colour bar with the quantity, draggable levels, axes in Å⁻¹, zoom to the plane),
with an hkl readout under the cursor."""

from __future__ import annotations

from typing import Optional

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtWidgets

from ...crystal.cell import UnitCell
from ...crystal.symmetry import SpaceGroup
from .image_view import ImageView

PLANES = [("hk n", 2), ("h n l", 1), ("n k l", 0)]


class ReciprocalPlaneView(QtWidgets.QWidget):
    def __init__(self, parent=None, title: str = ""):
        super().__init__(parent)
        self.cell: Optional[UnitCell] = None
        self.hkl = np.zeros((0, 3), dtype=int)
        self.values = np.zeros(0)
        self._shown = None
        self._brushes = None
        self.plane_box = QtWidgets.QComboBox()
        self.plane_box.addItems([p for p, _ in PLANES])
        self.plane_box.setToolTip("Which reciprocal plane: the index named n is fixed")
        self.index = QtWidgets.QSpinBox(minimum=-50, maximum=50, value=0)
        self.index.setToolTip("n: the fixed index of the plane (0 gives hk0, h0l or 0kl)")
        self.quantity = QtWidgets.QComboBox()
        self.quantity.addItems(["|F|", "I = |F|²"])
        self.quantity.setToolTip("Colour and disc size by the amplitude |F| or the intensity I = |F|²")
        self.view = ImageView(title, quantity="|F|", unit="e", cmap="inferno", colorbar="bar",
                              scales=("sqrt", "log", "linear"), x_axis=("x", "Å⁻¹"), y_axis=("y", "Å⁻¹"),
                              percentiles=(2.0, 100.0), background="w", toolbar=False)
        self.view.fit_button.setToolTip("Zoom to the reflections of the plane")
        self.scale = self.view.scale
        row = QtWidgets.QHBoxLayout()
        for w in (QtWidgets.QLabel("plane"), self.plane_box, QtWidgets.QLabel("n"), self.index, self.quantity,
                  *self.view.toolbar_widgets()):
            row.addWidget(w)
        row.addStretch(1)
        self.plot = self.view.plot
        self.scatter = pg.ScatterPlotItem(pen=None)
        self.plot.addItem(self.scatter)
        self.view.set_fit_items([self.scatter])
        self.readout = self.view.readout
        lay = QtWidgets.QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        lay.addLayout(row)
        lay.addWidget(self.view, 1)
        for sig in (self.plane_box.currentIndexChanged, self.index.valueChanged, self.quantity.currentIndexChanged):
            sig.connect(self.redraw)
        self.view.levels_changed.connect(self._recolour)
        self.plot.scene().sigMouseMoved.connect(self._mouse_moved)

    def set_reflections(self, cell: Optional[UnitCell], space_group: Optional[SpaceGroup], hkl, amplitudes,
                        expand: bool = True) -> None:
        """Amplitudes |F| of a unique set; expanded by symmetry (and Friedel) when a group is given."""
        self.cell = cell
        if cell is None or hkl is None or len(hkl) == 0:
            self.hkl, self.values = np.zeros((0, 3), dtype=int), np.zeros(0)
        else:
            hkl = np.asarray(hkl, dtype=np.int64)
            amp = np.abs(np.asarray(amplitudes, dtype=np.float64))
            if expand and space_group is not None:
                hp, _, src = space_group.expand_to_p1(hkl)
                self.hkl, self.values = hp, amp[src]
            else:
                self.hkl = np.concatenate([hkl, -hkl])
                self.values = np.concatenate([amp, amp])
        self.redraw()

    def redraw(self, *_) -> None:
        if self.cell is None or len(self.hkl) == 0:
            self.scatter.setData([])
            self.view.set_values(None)
            self._shown = None
            return
        _, fixed = PLANES[self.plane_box.currentIndex()]
        sel = self.hkl[:, fixed] == self.index.value()
        h, v = self.hkl[sel], self.values[sel]
        amplitude = self.quantity.currentIndex() == 0
        if not amplitude:
            v = v**2
        others = [i for i in range(3) if i != fixed]
        names = ["a*", "b*", "c*"]
        self.view.set_axes((f"x ∥ {names[others[0]]}", "Å⁻¹"), (f"y ⊥ {names[others[0]]}", "Å⁻¹"))
        if len(h) == 0:
            self.scatter.setData([])
            self.view.set_values(None)
            self._shown = None
            self.readout.setText("no reflections in this plane")
            return
        B = self.cell.reciprocal_matrix  # columns a*, b*, c* (Å⁻¹)
        s = h @ B.T
        # in-plane axes: project onto the first in-plane reciprocal axis and its perpendicular in the plane
        e1 = B[:, others[0]] / np.linalg.norm(B[:, others[0]])
        normal = np.cross(B[:, others[0]], B[:, others[1]])
        normal /= np.linalg.norm(normal)
        e2 = np.cross(normal, e1)
        xy = np.stack([s @ e1, s @ e2], axis=1)
        self._spacing = min(np.linalg.norm(B[:, others[0]]), np.linalg.norm(B[:, others[1]]))
        self._shown = (h, v, xy)
        self.view.set_values(v, quantity="|F|" if amplitude else "I", unit="e" if amplitude else "e²")  # recolours
        self.view.zoom_to_data()
        self.readout.setText(f"{len(h)} reflections in the plane; max {v.max():.4g}")

    def _recolour(self) -> None:
        """Disc colours and sizes from the colour bar's levels and scale (the strongest disc almost touches its
        neighbours)."""
        if self._shown is None:
            return
        h, v, xy = self._shown
        t = self.view.normalised(v)
        sizes = self._spacing * (0.12 + 0.85 * t)  # Å⁻¹
        # colours quantised to 64 steps of the map: shared brush objects draw much faster than one per disc
        k = np.minimum((t * 64).astype(int), 63)
        if self._brushes is None or self._brushes[0] is not self.view.colormap:
            lut = self.view.colormap.map(np.linspace(0, 1, 64), mode="qcolor")
            self._brushes = (self.view.colormap, [pg.mkBrush(c) for c in lut])
        brushes = [self._brushes[1][i] for i in k]
        self.scatter.setData(x=xy[:, 0], y=xy[:, 1], size=sizes, brush=brushes, pen=None, pxMode=False,
                             data=np.arange(len(h)))

    def _mouse_moved(self, pos) -> None:
        if self._shown is None:
            return
        p = self.plot.vb.mapSceneToView(pos)
        h, v, xy = self._shown
        d = np.hypot(xy[:, 0] - p.x(), xy[:, 1] - p.y())
        k = int(np.argmin(d))
        dsp = 1.0 / max(np.linalg.norm(h[k] @ self.cell.reciprocal_matrix.T), 1e-12)
        label = "|F|" if self.quantity.currentIndex() == 0 else "I"
        self.readout.setText(f"h k l = {h[k][0]} {h[k][1]} {h[k][2]}   {label} = {v[k]:.4g}   d = {dsp:.3f} Å")
