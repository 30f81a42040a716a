"""Reciprocal-lattice plane view: the reflections of one plane (hk n, h n l or n k l) drawn at their true
reciprocal positions (Å⁻¹, oblique axes respected) as discs scaled by |F| or I (linear, sqrt or log),
with an hkl readout under the cursor."""

from __future__ import annotations

from typing import Optional

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtWidgets

from ...crystal.cell import UnitCell
from ...crystal.symmetry import SpaceGroup

PLANES = [("hk n", 2), ("h n l", 1), ("n k l", 0)]


class ReciprocalPlaneView(QtWidgets.QWidget):
    def __init__(self, parent=None, title: str = ""):
        super().__init__(parent)
        self.cell: Optional[UnitCell] = None
        self.hkl = np.zeros((0, 3), dtype=int)
        self.values = np.zeros(0)
        self._shown = None
        self.plane_box = QtWidgets.QComboBox()
        self.plane_box.addItems([p for p, _ in PLANES])
        self.plane_box.setToolTip("Which reciprocal plane: the index named n is fixed")
        self.index = QtWidgets.QSpinBox(minimum=-50, maximum=50, value=0)
        self.index.setToolTip("n: the fixed index of the plane (0 gives hk0, h0l or 0kl)")
        self.quantity = QtWidgets.QComboBox()
        self.quantity.addItems(["|F|", "I = |F|²"])
        self.scale = QtWidgets.QComboBox()
        self.scale.addItems(["sqrt", "log", "linear"])
        self.scale.setToolTip("Disc size/colour scale")
        row = QtWidgets.QVBoxLayout()
        r1, r2 = QtWidgets.QHBoxLayout(), QtWidgets.QHBoxLayout()
        for w in (QtWidgets.QLabel("plane"), self.plane_box, QtWidgets.QLabel("n"), self.index):
            r1.addWidget(w)
        for w in (self.quantity, self.scale):
            r2.addWidget(w)
        r1.addStretch(1)
        r2.addStretch(1)
        row.addLayout(r1)
        row.addLayout(r2)
        self.plot = pg.PlotWidget(title=title)
        self.plot.setAspectLocked(True)
        self.plot.setLabel("bottom", "Å⁻¹")
        self.plot.setLabel("left", "Å⁻¹")
        self.plot.setBackground("w")
        self.scatter = pg.ScatterPlotItem(pen=None)
        self.plot.addItem(self.scatter)
        self.readout = QtWidgets.QLabel("")
        lay = QtWidgets.QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        lay.addLayout(row)
        lay.addWidget(self.plot, 1)
        lay.addWidget(self.readout)
        for sig in (self.plane_box.currentIndexChanged, self.index.valueChanged, self.quantity.currentIndexChanged,
                    self.scale.currentIndexChanged):
            sig.connect(self.redraw)
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
            self._shown = None
            return
        _, fixed = PLANES[self.plane_box.currentIndex()]
        sel = self.hkl[:, fixed] == self.index.value()
        h, v = self.hkl[sel], self.values[sel]
        if self.quantity.currentIndex() == 1:
            v = v**2
        if len(h) == 0:
            self.scatter.setData([])
            self._shown = None
            self.readout.setText("no reflections in this plane")
            return
        vmax = max(v.max(), 1e-12)
        mode = self.scale.currentText()
        if mode == "sqrt":
            t = np.sqrt(v / vmax)
        elif mode == "log":
            t = np.log1p(1000 * v / vmax) / np.log1p(1000)
        else:
            t = v / vmax
        B = self.cell.reciprocal_matrix  # columns a*, b*, c* (Å⁻¹)
        s = h @ B.T
        others = [i for i in range(3) if i != fixed]
        # in-plane axes: project onto the first in-plane reciprocal axis and its perpendicular in the plane
        e1 = B[:, others[0]] / np.linalg.norm(B[:, others[0]])
        normal = np.cross(B[:, others[0]], B[:, others[1]])
        normal /= np.linalg.norm(normal)
        e2 = np.cross(normal, e1)
        xy = np.stack([s @ e1, s @ e2], axis=1)
        cmap = pg.colormap.get("inferno")
        colors = cmap.map(0.15 + 0.8 * t, mode="qcolor")
        spacing = min(np.linalg.norm(B[:, others[0]]), np.linalg.norm(B[:, others[1]]))
        sizes = spacing * (0.12 + 0.85 * t)  # Å⁻¹: the strongest disc almost touches its neighbours
        self.scatter.setData(x=xy[:, 0], y=xy[:, 1], size=sizes, brush=colors, pxMode=False, data=np.arange(len(h)))
        self._shown = (h, v, xy)
        self.readout.setText(f"{len(h)} reflections in the plane; max {vmax:.4g}")

    def _mouse_moved(self, pos) -> None:
        if self._shown is None:
            return
        p = self.plot.plotItem.vb.mapSceneToView(pos)
        h, v, xy = self._shown
        d = np.hypot(xy[:, 0] - p.x(), xy[:, 1] - p.y())
        k = int(np.argmin(d))
        dsp = 1.0 / max(np.linalg.norm(h[k] @ self.cell.reciprocal_matrix.T), 1e-12)
        label = "|F|" if self.quantity.currentIndex() == 0 else "I"
        self.readout.setText(f"h k l = {h[k][0]} {h[k][1]} {h[k][2]}   {label} = {v[k]:.4g}   d = {dsp:.3f} Å")
