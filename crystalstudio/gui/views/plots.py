"""Histogram and curve plots (pyqtgraph) with export of what is shown to PNG and CSV."""

from __future__ import annotations

import csv
from typing import Optional, Sequence

import numpy as np
import pyqtgraph as pg
import pyqtgraph.exporters
from PySide6 import QtCore, QtWidgets

from ...io.common import atomic_output, atomic_path

PALETTE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75)]


def plain_numbers(axis: pg.AxisItem) -> None:
    """Tick labels as the numbers are (0.0005, 2500), never rescaled with a "(x0.001)" tacked onto the axis label.
    (pyqtgraph's enableAutoSIPrefix(False) keeps the scale computed for the range at that moment: reset it.)"""
    axis.enableAutoSIPrefix(False)
    axis.autoSIPrefixScale = 1.0
    axis.labelUnitPrefix = ""
    axis._updateLabel()
    axis.picture = None
    axis.update()


INK = "#333333"  # text on a white plot: pyqtgraph's default light grey reads faintly there


def dark_text(plot: pg.PlotItem, *axes: pg.AxisItem) -> None:
    """Title, axis labels and tick numbers of a plot on a white background in dark grey (also `axes`, e.g. a
    colour bar's); titles set later keep the colour."""
    for axis in (*(plot.getAxis(side) for side in ("left", "bottom", "right", "top")), *axes):
        axis.setTextPen(INK)
    plot.titleLabel.opts["color"] = INK
    if plot.titleLabel.text:  # (re-setting an empty title would give its hidden row a height)
        plot.titleLabel.setText(plot.titleLabel.text)


class DecadeLogAxis(pg.AxisItem):
    """A log-scale axis ticked at decades and at 2 and 5 times them only (pyqtgraph adds 2…9 × each decade,
    whose labels "9·10⁻⁵ 8·10⁻⁵ 7·10⁻⁵" run into each other on a small plot); all nine only when the range
    holds fewer than two of those."""

    def logTickValues(self, minVal, maxVal, size, stdTicks):
        lo, hi = sorted((minVal, maxVal))
        first, last = int(np.floor(lo)), int(np.ceil(hi))

        def within(factors):
            return [d + np.log10(f) for d in range(first, last + 1) for f in factors if lo <= d + np.log10(f) <= hi]

        decades, minor = within((1,)), within((2, 5))
        if len(decades) >= 4:  # several decades: those alone
            minor = []
        if len(decades) + len(minor) < 2:  # a narrow range: every integer multiple
            minor = within(range(2, 10))
        return [(1.0, decades), (None, minor)]


class ExportablePlot(QtWidgets.QWidget):
    """A plot with labelled axes (the y axis is labelled with the title when no y_label is given) and PNG/CSV
    export of what is shown."""

    def __init__(self, parent=None, title: str = "", x_label: str = "", y_label: str = "", log_y: bool = False):
        super().__init__(parent)
        self.plot = pg.PlotWidget(title=title, axisItems={"left": DecadeLogAxis("left")} if log_y else None)
        self.plot.setBackground("w")
        self.plot.showGrid(x=True, y=True, alpha=0.2)
        self.plot.setLabel("bottom", x_label)
        self.plot.setLabel("left", y_label or title)
        for side in ("bottom", "left"):  # the numbers as they are: no "(x0.001)" rescaling of the label
            plain_numbers(self.plot.getAxis(side))
        # on a light background, so that a curve passing under the legend does not run through its labels
        self.legend = self.plot.addLegend(offset=(-10, 10), brush=pg.mkBrush(255, 255, 255, 210))
        self.legend.setLabelTextColor(INK)
        dark_text(self.plot.plotItem)
        self.png_button = QtWidgets.QPushButton("PNG…")
        self.csv_button = QtWidgets.QPushButton("CSV…")
        self.png_button.setToolTip("Save the plot as a PNG image")
        self.csv_button.setToolTip("Save the plotted numbers as CSV")
        self.png_button.clicked.connect(self._ask_png)
        self.csv_button.clicked.connect(self._ask_csv)
        row = QtWidgets.QHBoxLayout()
        row.addStretch(1)
        row.addWidget(self.png_button)
        row.addWidget(self.csv_button)
        lay = QtWidgets.QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        lay.addWidget(self.plot, 1)
        lay.addLayout(row)
        self._table: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def export_png(self, path: str, width: int = 1200) -> None:
        exp = pg.exporters.ImageExporter(self.plot.plotItem)
        exp.parameters()["width"] = width
        with atomic_path(path, ".png") as tmp:
            exp.export(tmp)

    def export_csv(self, path: str) -> None:
        with atomic_output(path) as f:
            w = csv.writer(f)
            w.writerow(["series", "x", "y"])
            for name, (x, y) in self._table.items():
                for a, b in zip(x, y):
                    w.writerow([name, f"{a:.6g}", f"{b:.6g}"])

    def _ask_png(self) -> None:
        path, _ = QtWidgets.QFileDialog.getSaveFileName(self, "Save plot", "plot.png", "PNG (*.png)")
        if path:
            self.export_png(path)

    def _ask_csv(self) -> None:
        path, _ = QtWidgets.QFileDialog.getSaveFileName(self, "Save data", "plot.csv", "CSV (*.csv)")
        if path:
            self.export_csv(path)


class HistogramPlot(ExportablePlot):
    """Normalised histograms overlaid on common bins, optionally with model curves (a fitted density)."""

    def set_histograms(self, series: Sequence[tuple[str, np.ndarray]], bins: int = 40,
                       range_: Optional[tuple[float, float]] = None) -> None:
        """Normalised (density) histograms overlaid on common bins."""
        self.plot.clear()
        self.legend.clear()
        self._table = {}
        self._range = None
        data = [(n, np.asarray(x, dtype=float)) for n, x in series if x is not None and len(x)]
        if not data:
            return
        allx = np.concatenate([x for _, x in data])
        lo, hi = range_ or (np.percentile(allx, 0.5), np.percentile(allx, 99.5))
        if hi <= lo:
            hi = lo + 1.0
        edges = np.linspace(lo, hi, bins + 1)
        for k, (name, x) in enumerate(data):
            h, _ = np.histogram(x, bins=edges, density=True)
            c = PALETTE[k % len(PALETTE)]
            self.plot.plot(edges, h, stepMode="center", fillLevel=0, brush=(*c, 80), pen=pg.mkPen(c, width=2),
                           name=f"{name} ({len(x)})")
            self._table[name] = (0.5 * (edges[1:] + edges[:-1]), h)
        self._range = (float(edges[0]), float(edges[-1]))

    def x_range(self) -> Optional[tuple[float, float]]:
        """The binned range of the histograms shown (None when nothing is shown)."""
        return getattr(self, "_range", None) if self._table else None

    def add_curve(self, name: str, x, y) -> None:
        """A model curve over the histograms (e.g. the fitted probability density), dashed black."""
        x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
        self.plot.plot(x, y, pen=pg.mkPen((20, 20, 20), width=2, style=QtCore.Qt.DashLine), name=name)
        self._table[name] = (x, y)


class CurvePlot(ExportablePlot):
    """Curves against a common x; markers on every point while a curve has few (`markers="few"`, ≤ 60 points)
    or always (`markers="always"`, for sparse series such as validations), so a one-point curve is visible."""

    MANY = 60

    def __init__(self, *a, log_y: bool = False, markers: str = "few", **kw):
        super().__init__(*a, log_y=log_y, **kw)
        self.plot.setLogMode(y=log_y)
        self.markers = markers
        self._curves: dict[str, pg.PlotDataItem] = {}
        self._symbols: dict[str, tuple] = {}  # (symbol, size) set on each curve
        self._unlisted: set[str] = set()  # prepared curves taken off the legend while they have no points

    def prepare(self, names: Sequence[str]) -> None:
        """Create the (empty) curves and their legend entries now, e.g. when a run starts: creating a curve with
        its legend entry costs the GUI thread several ms, and a first validation created four at once."""
        for name in names:
            self._curve(name)

    def _curve(self, name: str) -> pg.PlotDataItem:
        if name not in self._curves:
            c = PALETTE[len(self._curves) % len(PALETTE)]
            self._curves[name] = self.plot.plot([], [], pen=pg.mkPen(c, width=2), name=name, symbol="o",
                                                symbolSize=6, symbolBrush=c, symbolPen=None)
            self._symbols[name] = ("o", 6)
        return self._curves[name]

    def set_curve(self, name: str, x, y) -> None:
        """Set a curve's points (created on first use unless prepared); updated in place."""
        x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
        item = self._curve(name)
        many = len(x) > self.MANY
        symbol = (None if many and self.markers != "always" else "o", 4 if many else 6)
        if symbol != self._symbols[name]:  # each setSymbol* re-renders the markers: only on a change
            item.setSymbol(symbol[0])
            item.setSymbolSize(symbol[1])
            self._symbols[name] = symbol
        item.setData(x, y)
        self._table[name] = (x, y)
        if name in self._unlisted and len(x):
            self.legend.addItem(item, name)
            self._unlisted.discard(name)

    def unlist_empty(self) -> None:
        """Take the prepared curves that have no points off the legend (e.g. metrics an older run's log does not
        hold), so that every series the legend lists is drawn; one that gets points later is listed again."""
        for name, item in self._curves.items():
            if name not in self._unlisted and not len(self._table.get(name, ((), ()))[0]):
                self.legend.removeItem(item)
                self._unlisted.add(name)

    def clear_curves(self) -> None:
        self.plot.clear()
        self.legend.clear()
        self._curves = {}
        self._symbols = {}
        self._unlisted = set()
        self._table = {}
