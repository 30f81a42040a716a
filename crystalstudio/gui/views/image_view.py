"""A 2D image view for reciprocal planes and network outputs: percentile (auto) contrast, linear/sqrt/log
scale, NaN shown as mask, and a cursor readout that names the reciprocal-space position."""

from __future__ import annotations

from typing import Callable, Optional

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtWidgets


class ImagePanel(QtWidgets.QWidget):
    def __init__(self, title: str = "", parent=None, cmap: str = "magma", diverging: bool = False):
        super().__init__(parent)
        self.title = title
        self.data: Optional[np.ndarray] = None
        self.readout_fn: Optional[Callable[[int, int], str]] = None
        self.plot = pg.PlotWidget(title=title)
        self.plot.setAspectLocked(True)
        self.plot.hideAxis("left")
        self.plot.hideAxis("bottom")
        self.img = pg.ImageItem(axisOrder="row-major")
        self.img.setColorMap(pg.colormap.get("CET-D1" if diverging else cmap))
        self.plot.addItem(self.img)
        self.diverging = diverging
        self.scale = QtWidgets.QComboBox()
        self.scale.addItems(["linear", "sqrt", "log"])
        self.scale.setToolTip("Intensity scale")
        self.scale.setVisible(not diverging)
        self.label = QtWidgets.QLabel("")
        row = QtWidgets.QHBoxLayout()
        row.addWidget(self.scale)
        row.addWidget(self.label, 1)
        lay = QtWidgets.QVBoxLayout(self)
        lay.setContentsMargins(1, 1, 1, 1)
        lay.addWidget(self.plot, 1)
        lay.addLayout(row)
        self.scale.currentIndexChanged.connect(self._redraw)
        self.plot.scene().sigMouseMoved.connect(self._moved)

    def set_image(self, data: Optional[np.ndarray], readout: Optional[Callable[[int, int], str]] = None) -> None:
        self.data = None if data is None else np.asarray(data, dtype=np.float64)
        self.readout_fn = readout
        self._redraw()

    def _redraw(self, *_):
        if self.data is None:
            self.img.clear()
            return
        d = self.data.copy()
        finite = np.isfinite(d)
        if self.diverging:
            v = np.nanpercentile(np.abs(d), 99.5) if finite.any() else 1.0
            lv = (-v, v)
        else:
            mode = self.scale.currentText()
            lo = np.nanmin(d) if finite.any() else 0.0
            if mode == "sqrt":
                d = np.sqrt(np.maximum(d - lo, 0))
            elif mode == "log":
                d = np.log10(np.maximum(d - lo, 0) + 1e-3 * (np.nanmax(d) - lo + 1e-12))
            lv = tuple(np.nanpercentile(d, [1.0, 99.7])) if finite.any() else (0.0, 1.0)
        d[~finite] = 0.0 if self.diverging else lv[0]  # masked pixels: neutral (diverging) or background
        self.img.setImage(d, levels=lv, autoLevels=False)
        self.plot.autoRange()

    def _moved(self, pos):
        if self.data is None:
            return
        p = self.img.mapFromScene(pos)
        j, i = int(p.x()), int(p.y())
        if 0 <= i < self.data.shape[0] and 0 <= j < self.data.shape[1]:
            v = self.data[i, j]
            where = self.readout_fn(i, j) if self.readout_fn else f"({i}, {j})"
            self.label.setText(f"{where}   {'masked' if not np.isfinite(v) else f'{v:.4g}'}")

    def save_png(self, path: str) -> None:
        self.grab().save(path)
