"""The shared image view of every panel: a 2D array drawn with a colour bar that names the quantity and its unit,
labelled axes in the data's own units (Å, Å⁻¹, hkl, detector pixels), a contrast control (histogram with draggable
levels, or a compact draggable colour bar), percentile ("auto") contrast, linear/sqrt/log/asinh scaling, zoom to the
data, a cursor read-out (value and coordinates in the axis units) and an optional mask overlay with a legend.

Detector frames (:meth:`ImageView.set_detector_frame`) are drawn as ALBULA and adxv draw them: row 0 at the top; gap
(−1) and bad (−2) pixels of PILATUS/EIGER frames masked and counted in the legend; resolution rings and d under the
cursor when the header states the geometry; a warning on the image for a header-only or empty frame. A frame with
more than ~2× the view's screen pixels is drawn as block maxima (a one-pixel spot keeps its value), prepared in a
worker (:func:`prepare_frame`), with the frame's full-resolution pixels drawn over them where the user zooms in; the
read-out and the mask legend's counts always use the frame's own pixels.

Using it in a panel (the small API)::

    view = ImageView("I_SRO", quantity="I", unit="arb. units", x_axis=("Q_x", "Å⁻¹"), y_axis=("Q_y", "Å⁻¹"))
    view.set_image(array, rect=(-q, -q, 2 * q, 2 * q))          # array[row, column]; rows along y, columns along x
    view.set_image(array, readout=lambda i, j: f"h k l = …")    # replace the coordinate part of the read-out
    view.set_mask(codes, {1: ("not measured", (128, 128, 128, 200))})
    view.set_detector_frame(read_image(path))                   # detector mode
    view.set_detector_frame(frame, prepared=prepared)           # prepared = prepare_frame(…) in the reading worker
    view.clear()                                                # nothing shown, read-out and legend emptied
    view.plot.addItem(item)                                     # overlays in axis units (peaks, outlines …)

``colorbar="histogram"`` (default) puts pyqtgraph's HistogramLUTItem beside the image (histogram, draggable levels,
colour map); ``colorbar="bar"`` a compact ColorBarItem (draggable levels) for grids of small views. With a non-linear
scale the image holds the transformed values; the colour-bar ticks are labelled with the data values.
"""

from __future__ import annotations

import math
from typing import Callable, Optional, Sequence

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets

from .plots import dark_text, plain_numbers

SCALES = ("linear", "sqrt", "log", "asinh")
SCALE_TIPS = {
    "linear": "linear: colour ∝ value",
    "sqrt": "square root: compresses strong values (sign kept)",
    "log": "log₁₀: for counts over several decades (values ≤ 0 drawn at the floor)",
    "asinh": "asinh: linear near 0, logarithmic for strong values (sign kept)",
}
NO_DATA = -1  # mask code of non-finite pixels
NO_DATA_COLOUR = (120, 120, 120, 255)


# ---------------------------------------------------------------------- value scaling (Qt-free helpers)
def scale_parameter(name: str, sample: np.ndarray) -> float:
    """The scale's one parameter from a sample of finite values: the floor of "log" (smallest positive value,
    at least 10⁻⁶ of the largest) or the linear width of "asinh" (median |value| of the non-zero values)."""
    if name == "log":
        pos = sample[sample > 0]
        if pos.size == 0:
            return 1.0
        return float(max(pos.min(), 1e-6 * pos.max()))
    if name == "asinh":
        nz = np.abs(sample[sample != 0])
        return float(np.median(nz)) if nz.size else 1.0
    return 1.0


def scale_forward(name: str, x, p: float):
    x = np.asarray(x, dtype=np.float32 if isinstance(x, np.ndarray) and x.dtype == np.float32 else np.float64)
    if name == "sqrt":
        return np.sign(x) * np.sqrt(np.abs(x))
    if name == "log":
        with np.errstate(invalid="ignore"):
            return np.log10(np.maximum(x, p))
    if name == "asinh":
        return np.arcsinh(x / p)
    return x


def scale_inverse(name: str, t, p: float):
    t = np.asarray(t, dtype=np.float64)
    if name == "sqrt":
        return np.sign(t) * t * t
    if name == "log":
        return 10.0**t
    if name == "asinh":
        return p * np.sinh(t)
    return t


def _decade_candidates(lo: float, hi: float, with_zero: bool) -> list[float]:
    big = max(abs(lo), abs(hi), 1e-300)
    kmax = int(math.ceil(math.log10(big))) + 1
    kmin = kmax - 16
    out = [0.0] if with_zero else []
    for k in range(kmin, kmax + 1):
        for m in (1, 2, 5):
            v = m * 10.0**k
            out += [v, -v]
    return sorted(v for v in out if lo <= v <= hi)


def scaled_ticks(name: str, p: float, t_lo: float, t_hi: float, max_ticks: int) -> list[float]:
    """Tick positions (in scaled units) at round data values for a colour bar spanning [t_lo, t_hi]."""
    lo, hi = float(scale_inverse(name, t_lo, p)), float(scale_inverse(name, t_hi, p))
    if hi < lo:
        lo, hi = hi, lo
    vals = _decade_candidates(lo, hi, with_zero=name != "log")
    for keep in ((1, 2, 5), (1,)):
        sel = [v for v in vals if v == 0 or round(abs(v) / 10 ** math.floor(math.log10(abs(v)))) in keep]
        if len(sel) <= max_ticks:
            break
    while len(sel) > max_ticks:
        sel = sel[::2]
    return [float(scale_forward(name, v, p)) for v in sel]


def format_value(v: float) -> str:
    if v == 0 or not np.isfinite(v):
        return f"{v:g}"
    a = abs(v)
    return f"{v:.3g}" if 1e-3 <= a < 1e5 else f"{v:.2e}"


def auto_levels(values: np.ndarray, percentiles: tuple[float, float], diverging: bool = False) -> tuple[float, float]:
    """Colour levels at `percentiles` of finite `values` (symmetric about 0 when diverging)."""
    if values.size == 0:
        return 0.0, 1.0
    if diverging:
        v = float(np.percentile(np.abs(values), percentiles[1])) or 1.0
        return -v, v
    lo, hi = (float(x) for x in np.percentile(values, percentiles))
    if hi <= lo:
        lo, hi = float(values.min()), float(values.max())
    return lo, hi


def block_size_for(shape: tuple[int, int], screen_px: int, oversample: float = 2.0) -> int:
    """The smallest block edge b (pixels) whose b×b block maxima of a `shape` frame hold at most `oversample` ×
    `screen_px` display pixels (1: the frame is shown as it is)."""
    rows, cols = shape
    b = 1
    while -(-rows // b) * -(-cols // b) > oversample * max(screen_px, 1):
        b += 1
    return b


class FrameDisplay:
    """A detector frame's display image, prepared off the GUI thread (:func:`prepare_frame`).

    ``shown`` holds the maxima over b×b pixel blocks of the valid (unmasked, finite) pixels, so a one-pixel Bragg
    spot keeps its full value at any zoom-out; a block all of whose pixels are masked is NaN and carries the
    largest code of its pixels in ``shown_codes``. ``codes`` (full resolution), ``counts`` (exact pixel counts per
    code) and ``sample`` (a regular sample of the valid pixels at full resolution, for the scale's parameter and
    the auto contrast) describe the whole frame; the read-out uses the frame's own pixels, never the blocks.
    ``display`` and ``levels`` are the scaled image and auto-contrast levels for ``scale``."""

    def __init__(self, block, shown, shown_codes, codes, counts, sample, scale, scale_p, display, levels):
        self.block, self.shown, self.shown_codes, self.codes = block, shown, shown_codes, codes
        self.counts, self.sample, self.scale, self.scale_p = counts, sample, scale, scale_p
        self.display, self.levels = display, levels


def frame_codes(data: np.ndarray, mask: Optional[np.ndarray]) -> np.ndarray:
    """int16 mask codes of a frame: the given codes, and NO_DATA on non-finite pixels that carry no code."""
    codes = np.zeros(data.shape, np.int16) if mask is None else np.asarray(mask).astype(np.int16)
    if data.dtype.kind == "f":
        bad = ~np.isfinite(data)
        if bad.any():
            codes[bad & (codes == 0)] = NO_DATA
    return codes


def prepare_frame(data: np.ndarray, mask: Optional[np.ndarray], *, scale: str, screen_px: int,
                  percentiles: tuple[float, float] = (0.5, 99.8), oversample: float = 2.0,
                  n_sample: int = 400_000) -> FrameDisplay:
    """The display image of a frame (2D counts, `mask` int codes 0 = valid): block maxima when the frame has
    more than `oversample` × `screen_px` pixels, scaled with `scale`, NaN where masked, auto levels. Numpy only:
    run it in a worker so the GUI thread only hands the small image to Qt."""
    codes = frame_codes(data, mask)
    rows, cols = data.shape
    b = block_size_for((rows, cols), screen_px, oversample)
    masked = codes != 0
    step = max(1, data.size // n_sample)
    flat = data.reshape(-1)[::step].astype(np.float32)
    sample = flat[~masked.reshape(-1)[::step]]
    sample = sample[np.isfinite(sample)]
    lo_code = int(codes.min(initial=0))
    counts = {int(c) + lo_code: int(n) for c, n in enumerate(np.bincount((codes.reshape(-1) - lo_code).astype(np.intp)))
              if n and int(c) + lo_code != 0}
    if b == 1:
        shown = data.astype(np.float32)
        shown[masked] = np.nan
        shown_codes = codes
    else:
        R, C = -(-rows // b), -(-cols // b)
        pad = np.full((R * b, C * b), -np.inf, np.float32)
        pad[:rows, :cols] = data
        pad[:rows, :cols][masked] = -np.inf
        shown = pad.reshape(R, b, C, b).max(axis=(1, 3))
        empty = shown == -np.inf
        shown[empty] = np.nan
        cpad = np.full((R * b, C * b), np.iinfo(np.int16).min, np.int16)
        cpad[:rows, :cols] = codes
        shown_codes = cpad.reshape(R, b, C, b).max(axis=(1, 3))
        shown_codes[~empty | (shown_codes == np.iinfo(np.int16).min)] = 0
    p = scale_parameter(scale, sample)
    display = np.asarray(scale_forward(scale, shown, p), dtype=np.float32)
    if display is shown and b == 1:
        display = display.copy()
    levels = auto_levels(np.asarray(scale_forward(scale, sample, p)), percentiles)
    return FrameDisplay(b, shown, shown_codes, codes, counts, sample, scale, p, display, levels)


# ---------------------------------------------------------------------- the view
def _shrinkable(label: pg.LabelItem) -> None:
    """A plot title that never makes its plot wider than the view: pyqtgraph sets a title's minimum width to
    its text's, and a long title in a narrow view then pushes the colour bar out of sight; here the text is
    cut at the view's edge instead (its full wording stays in the view's tooltip)."""
    update = label.updateMin

    def update_min():
        update()
        label.setMinimumWidth(0)
        hint = label._sizeHint
        hint[QtCore.Qt.SizeHint.MinimumSize] = (0, hint[QtCore.Qt.SizeHint.MinimumSize][1])
        label.updateGeometry()

    label.updateMin = update_min
    update_min()


class ImageView(QtWidgets.QWidget):
    """A 2D array with colour bar, labelled axes, contrast, zoom to data, read-out and mask overlay."""

    levels_changed = QtCore.Signal()

    def __init__(self, title: str = "", parent=None, *, quantity: str = "I", unit: str = "",
                 x_axis: tuple[str, str] = ("x", "pixel"), y_axis: tuple[str, str] = ("y", "pixel"),
                 cmap: str = "magma", diverging: bool = False, colorbar: str = "histogram",
                 scales: Sequence[str] = SCALES, scale: Optional[str] = None, axis_order: str = "row-major",
                 percentiles: tuple[float, float] = (0.5, 99.8), background="k", toolbar: bool = True):
        super().__init__(parent)
        self.title = title
        self.quantity, self.unit = quantity, unit
        self.diverging = diverging
        self.percentiles = percentiles
        self.axis_order = axis_order
        self.data: Optional[np.ndarray] = None
        self.display: Optional[np.ndarray] = None  # scaled values, masked pixels NaN
        self.mask: Optional[np.ndarray] = None  # int codes, 0 = valid
        self.mask_legend_spec: dict[int, tuple[str, tuple]] = {}
        self.readout_fn: Optional[Callable[[int, int], str]] = None
        self.detector = None  # the DetectorImage shown in detector mode
        self.warnings: list[str] = []
        self._scale_p = 1.0
        self._fit_items: list = []
        self._overlays: list = []  # rings, warning texts: removed by clear()
        self._value_format = format_value
        self._rect = None
        self._mask_counts: dict[str, int] = {}
        self._data32: Optional[np.ndarray] = None
        self._values_mode = False  # colour bar for non-image content (set_values)
        self._setting_levels = False
        self.mask_report = ""
        self._frame: Optional[FrameDisplay] = None  # a detector frame's prepared display (block maxima)
        self.ring_resolutions: list[float] = []
        self.no_rings_reason = ""

        # ---- toolbar: scale, auto contrast, zoom to data
        self.scale = QtWidgets.QComboBox(self)
        scales = list(scales) if not diverging else [s for s in scales if s in ("linear", "asinh")]
        for s in scales:
            self.scale.addItem(s)
            self.scale.setItemData(self.scale.count() - 1, SCALE_TIPS[s], QtCore.Qt.ToolTipRole)
        self.scale.setToolTip("Intensity scale of the colours: " + "; ".join(SCALE_TIPS[s] for s in scales))
        if scale in scales:
            self.scale.setCurrentText(scale)
        self.scale.setVisible(len(scales) > 1)
        self.auto_button = QtWidgets.QToolButton(self, text="auto")
        self.auto_button.setToolTip(f"Auto contrast: colour levels at the {percentiles[0]:g}th and {percentiles[1]:g}th "
                                    "percentiles of the shown values (drag the colour-bar levels to set them by hand)")
        self.fit_button = QtWidgets.QToolButton(self, text="fit")
        self.fit_button.setToolTip("Zoom to the data (mouse: wheel zooms, drag pans, right click for more)")
        self.toolbar = QtWidgets.QHBoxLayout()
        self.toolbar.setContentsMargins(0, 0, 0, 0)
        for w in (self.scale, self.auto_button, self.fit_button):
            self.toolbar.addWidget(w)
        self.toolbar.addStretch(1)

        # ---- plot, image, mask overlay, colour bar
        self.graphics = pg.GraphicsLayoutWidget()
        self.graphics.setBackground(background)
        self.graphics.setMinimumSize(120, 120)
        self.plot = pg.PlotItem(title=title or None)
        _shrinkable(self.plot.titleLabel)
        self.graphics.addItem(self.plot, 0, 0)
        self.plot.setAspectLocked(True)
        self.plot.setMenuEnabled(False)
        self.image_item = pg.ImageItem(axisOrder=axis_order)
        self.image_item.setZValue(-10)
        self.plot.addItem(self.image_item)
        self.mask_item = pg.ImageItem(axisOrder=axis_order)
        self.mask_item.setZValue(-5)
        self.plot.addItem(self.mask_item)
        # a frame shown as block maxima gets its full-resolution pixels back where the user zooms in: the visible
        # part (and a margin) at full resolution over the blocks, once the zoom or pan has settled
        self.detail_item = pg.ImageItem(axisOrder=axis_order)
        self.detail_item.setZValue(-8)
        self.detail_mask_item = pg.ImageItem(axisOrder=axis_order)
        self.detail_mask_item.setZValue(-4)
        for item in (self.detail_item, self.detail_mask_item):
            item.setVisible(False)
            self.plot.addItem(item)
        self._detail_timer = QtCore.QTimer(self, singleShot=True, interval=120)
        self._detail_timer.timeout.connect(self._update_detail)
        self.plot.vb.sigRangeChanged.connect(self._range_changed)
        # the mask legend sits under the plot (never over the data): colour, meaning and pixel count per class
        self.mask_legend = QtWidgets.QLabel("")
        self.mask_legend.setWordWrap(True)
        self.mask_legend.setTextFormat(QtCore.Qt.RichText)
        self.mask_legend.setVisible(False)
        self.colormap = pg.colormap.get("CET-D1" if diverging else cmap)
        self.colorbar_kind = colorbar
        self.histogram = self.colorbar = None
        if colorbar == "histogram":
            self.histogram = pg.HistogramLUTItem(image=self.image_item, fillHistogram=True)
            self.histogram.gradient.setColorMap(self.colormap)
            # the colour map's 256 stops become 256 gradient ticks, each an item painted at every repaint of the
            # bar (~3 ms per view and paint): hidden, as the colour map is not edited by hand here
            self.histogram.gradient.showTicks(False)
            self.histogram.vb.setMinimumWidth(24)
            self.histogram.vb.setMaximumWidth(48)  # histogram beside the bar, not a second plot
            self.histogram.sigLevelsChanged.connect(self._user_levels)
            self.histogram.sigLookupTableChanged.connect(self._sync_detail)
            self.graphics.addItem(self.histogram, 0, 1)
            self.bar_axis = self.histogram.axis
        else:
            self.colorbar = pg.ColorBarItem(colorMap=self.colormap, width=12, interactive=True, rounding=1e-6)
            # the full-resolution detail of a frame follows the bar's levels and colour map with the image
            self.colorbar.setImageItem([self.image_item, self.detail_item], insert_in=self.plot)
            self.colorbar.sigLevelsChanged.connect(self._user_levels)
            self.bar_axis = self.colorbar.axis
        self._install_ticks(self.bar_axis)
        plain_numbers(self.bar_axis)  # a flat map's bar read "ρ (σ) (x1e-06)"
        if background in ("w", "white"):
            dark_text(self.plot, self.bar_axis)
            if self.colorbar is not None:  # its quantity label is set on the bar's own axes
                dark_text(self.colorbar)
        self.set_axes(x_axis, y_axis)
        self.set_quantity(quantity, unit)

        # ---- read-out
        self.readout = QtWidgets.QLabel("")
        self.readout.setTextInteractionFlags(QtCore.Qt.TextSelectableByMouse)
        self.readout.setToolTip("Value and position under the cursor")
        self.readout.setMinimumWidth(40)
        self.label = self.readout  # older name

        lay = QtWidgets.QVBoxLayout(self)
        lay.setContentsMargins(1, 1, 1, 1)
        lay.setSpacing(2)
        if toolbar:
            lay.addLayout(self.toolbar)
        lay.addWidget(self.graphics, 1)
        lay.addWidget(self.mask_legend)
        lay.addWidget(self.readout)

        self.scale.currentIndexChanged.connect(self._rescale)
        self.auto_button.clicked.connect(self.auto_contrast)
        self.fit_button.clicked.connect(self.zoom_to_data)
        self.plot.scene().sigMouseMoved.connect(self._mouse_moved)

    def toolbar_widgets(self) -> list[QtWidgets.QWidget]:
        """Scale box, "auto" and "fit": for a view made with toolbar=False, to place in the owner's own row."""
        return [self.scale, self.auto_button, self.fit_button]

    # ------------------------------------------------------------------ configuration
    def set_axes(self, x_axis: tuple[str, str], y_axis: tuple[str, str]) -> None:
        """Axis names and units, e.g. ("x", "Å"), ("h", "") (hkl: no unit), ("Q_x", "Å⁻¹")."""
        self.x_axis, self.y_axis = tuple(x_axis), tuple(y_axis)
        for side, (name, unit) in (("bottom", self.x_axis), ("left", self.y_axis)):
            self.plot.setLabel(side, f"{name} ({unit})" if unit else name)
            plain_numbers(self.plot.getAxis(side))  # no "(x0.001)" after the unit

    def set_quantity(self, quantity: str, unit: str = "") -> None:
        """What the colours mean, e.g. ("I", "counts"), ("ρ", "σ"), ("|F|", "e")."""
        self.quantity, self.unit = quantity, unit
        self._update_bar_label()

    def _update_bar_label(self) -> None:
        text = f"{self.quantity} ({self.unit})" if self.unit else self.quantity
        s = self.scale_name
        if s != "linear":
            text += f", {s} scale"
        if self.histogram is not None:
            self.histogram.axis.setLabel(text)
        else:
            self.colorbar.getAxis("left").setLabel(text)

    @property
    def scale_name(self) -> str:
        return self.scale.currentText() or "linear"

    def set_scale(self, name: str) -> None:
        self.scale.setCurrentText(name)

    def _install_ticks(self, axis: pg.AxisItem) -> None:
        """Colour-bar ticks at round data values whatever the scale."""
        view = self
        base_values, base_strings = axis.tickValues, axis.tickStrings

        def tick_values(minVal, maxVal, size):
            name = view.scale_name
            if name == "linear" or not (np.isfinite(minVal) and np.isfinite(maxVal)):
                return base_values(minVal, maxVal, size)
            if name == "sqrt":  # round values evenly spaced in data units
                lo, hi = (float(scale_inverse(name, v, 1.0)) for v in (minVal, maxVal))
                levels = base_values(lo, hi, size)
                return [(sp, [float(scale_forward(name, v, 1.0)) for v in vals]) for sp, vals in levels[:1]]
            n = max(2, int(size / 28))
            return [(1.0, scaled_ticks(view.scale_name, view._scale_p, minVal, maxVal, n))]

        def tick_strings(values, scale, spacing):
            if view.scale_name == "linear":
                return base_strings(values, scale, spacing)
            return [format_value(float(scale_inverse(view.scale_name, v, view._scale_p))) for v in values]

        axis.tickValues = tick_values
        axis.tickStrings = tick_strings

    # ------------------------------------------------------------------ data
    def set_image(self, data: Optional[np.ndarray], readout: Optional[Callable[[int, int], str]] = None, *,
                  rect=None, transform: Optional[QtGui.QTransform] = None, mask: Optional[np.ndarray] = None,
                  mask_legend: Optional[dict] = None, nan_label: str = "no data", quantity: Optional[str] = None,
                  unit: Optional[str] = None, keep_levels: bool = False, keep_view: bool = False,
                  fit_items: Sequence = ()) -> None:
        """Show `data` (None clears). rect = (x0, y0, width, height) in axis units, or `transform` (pixel →
        axis units, e.g. an oblique cell); otherwise one pixel per axis unit. `readout(i, j)` names the position
        of data[i, j] (default: the axis coordinates). `mask`: bool (True = masked) or int codes (0 = valid) with
        `mask_legend` {code: (label, RGBA)}; non-finite pixels are masked as `nan_label`."""
        if self.detector is not None:
            self._leave_detector_mode()
        self._values_mode = False
        self._set(data, readout, rect=rect, transform=transform, mask=mask, mask_legend=mask_legend,
                  nan_label=nan_label, quantity=quantity, unit=unit, keep_levels=keep_levels, keep_view=keep_view,
                  fit_items=fit_items)

    def _set(self, data, readout, *, rect=None, transform=None, mask=None, mask_legend=None, nan_label="no data",
             quantity=None, unit=None, keep_levels=False, keep_view=False, fit_items=()) -> None:
        self._clear_overlays()
        self._drop_frame()
        if quantity is not None or unit is not None:
            self.set_quantity(quantity if quantity is not None else self.quantity, unit if unit is not None else self.unit)
        self.readout_fn = readout
        self._fit_items = list(fit_items)
        if data is None:
            self.data = self.display = self.mask = None
            self.image_item.clear()
            self.mask_item.clear()
            self.mask_legend.setVisible(False)
            self.readout.setText("")
            return
        new_shape = self.data is None or self.data.shape != np.shape(data)
        self.readout.setText("")  # a read-out of the previous image would describe data no longer shown
        self.data = np.asarray(data)
        self._data32 = None
        finite = np.isfinite(self.data)
        codes = None
        if mask is not None:
            mask = np.asarray(mask)
            codes = mask.astype(np.int8 if mask.dtype in (bool, np.int8) else np.int16, copy=False)
            if mask.dtype == bool:
                mask_legend = mask_legend or {1: ("masked", (60, 160, 255, 200))}
        if not finite.all():
            codes = np.zeros(self.data.shape, np.int16) if codes is None else codes.copy()
            codes[~finite & (codes == 0)] = NO_DATA
        self.mask = codes
        self.mask_legend_spec = dict(mask_legend or {})
        if codes is not None and (codes == NO_DATA).any():
            self.mask_legend_spec[NO_DATA] = (nan_label, NO_DATA_COLOUR)
        if transform is not None:
            self.image_item.setTransform(transform)
            self.mask_item.setTransform(transform)
        else:
            self.image_item.setTransform(QtGui.QTransform())
            self.mask_item.setTransform(QtGui.QTransform())
        self._rect = rect
        self._rescale(keep_levels=keep_levels)
        self._draw_mask()
        if rect is not None:
            r = QtCore.QRectF(*rect)
            self.image_item.setRect(r)
            self.mask_item.setRect(r)
        if not keep_view or new_shape:
            self.zoom_to_data()

    def set_values(self, values: Optional[np.ndarray], *, quantity: Optional[str] = None, unit: Optional[str] = None,
                   keep_levels: bool = False) -> None:
        """Use the colour bar, scale and contrast for content that is not an image (discs of a reciprocal plane,
        markers): the levels come from `values`; :meth:`colors_for` gives their colours. `levels_changed` is
        emitted whenever the user changes the levels or the scale, to recolour."""
        if self.detector is not None:
            self._leave_detector_mode()
        self._clear_overlays()
        self._drop_frame()
        if quantity is not None or unit is not None:
            self.set_quantity(quantity if quantity is not None else self.quantity, unit if unit is not None else self.unit)
        self.image_item.clear()
        self.mask_item.clear()
        self.mask_legend.setVisible(False)
        self.mask = None
        self._values_mode = values is not None
        if values is None:
            self.data = self.display = None
            self.readout.setText("")
            return
        self.data = np.asarray(values, dtype=np.float64).ravel()
        self._data32 = None
        self._rescale(keep_levels=keep_levels)

    def normalised(self, values) -> np.ndarray:
        """`values` (data units) as 0…1 between the current colour levels, after the scale."""
        lo, hi = self.levels() or (0.0, 1.0)
        t = scale_forward(self.scale_name, np.asarray(values, dtype=np.float64), self._scale_p)
        return np.clip((t - lo) / ((hi - lo) or 1.0), 0.0, 1.0)

    def colors_for(self, values) -> list:
        """QColors of `values` through the colour map and the current levels."""
        return self.colormap.map(self.normalised(values), mode="qcolor")

    def set_mask(self, mask: Optional[np.ndarray], legend: Optional[dict] = None) -> None:
        """Overlay `mask` (bool or int codes, 0 = valid) on the current image; legend {code: (label, RGBA)}."""
        if self.data is None:
            return
        legend = dict(legend or ({1: ("masked", (60, 160, 255, 200))} if mask is not None else {}))
        if self._frame is not None:  # a detector frame: its display image is prepared again with this mask
            self._set_frame(self.data, prepare_frame(self.data, mask, scale=self.scale_name,
                                                     screen_px=self.screen_pixels(), percentiles=self.percentiles),
                            legend)
            return
        finite = np.isfinite(self.data)
        codes = np.zeros(self.data.shape, np.int16) if mask is None else np.asarray(mask).astype(np.int16)
        if not finite.all():
            codes[~finite & (codes == 0)] = NO_DATA
            legend[NO_DATA] = self.mask_legend_spec.get(NO_DATA, ("no data", NO_DATA_COLOUR))
        self.mask, self.mask_legend_spec = codes, legend
        self._rescale(keep_levels=True)
        self._draw_mask()

    def _sample(self, values: np.ndarray, n: int = 400_000) -> np.ndarray:
        flat = values.ravel()
        step = max(1, flat.size // n)
        s = flat[::step]
        return s[np.isfinite(s)]

    def _rescale(self, *_, keep_levels: bool = False) -> None:
        """Recompute the shown (scaled) values; masked pixels become NaN (transparent under the mask colour)."""
        if self.data is None:
            self._update_bar_label()
            return
        name = self.scale_name
        fr = self._frame
        if fr is not None:  # a detector frame: its block maxima are shown, its full-resolution sample sets the scale
            if fr.scale == name:
                self._scale_p, self.display = fr.scale_p, fr.display
            else:
                self._scale_p = scale_parameter(name, fr.sample)
                self.display = np.asarray(scale_forward(name, fr.shown, self._scale_p), dtype=np.float32)
            old = self.levels()
            self.image_item.setImage(self.display, autoLevels=False, levels=old or (0.0, 1.0))
            self._update_bar_label()
            self.bar_axis.picture = None
            if keep_levels and old is not None:
                self.set_levels(*old)
            elif fr.scale == name:
                self.set_levels(*fr.levels)
            else:
                self.auto_contrast()
            self.image_item.setRect(QtCore.QRectF(*self._rect))
            if self.detail_item.isVisible():
                self._update_detail()  # a new scale: the detail redrawn with it
            return
        if self._data32 is None or self._data32.shape != self.data.shape:
            self._data32 = self.data.astype(np.float32)
        masked = None if self.mask is None else self.mask != 0
        sample = self._sample(self._data32 if masked is None else np.where(masked, np.float32(np.nan), self._data32)
                              if self._data32.size <= 400_000 else self._masked_sample(masked))
        self._scale_p = scale_parameter(name, sample)
        disp = scale_forward(name, self._data32, self._scale_p)
        if disp is self._data32 or np.shares_memory(disp, self._data32):
            disp = disp.copy()
        if masked is not None:
            disp[masked] = np.nan
        self.display = disp.astype(np.float32, copy=False)
        old = self.levels()
        if not self._values_mode:
            self.image_item.setImage(self.display, autoLevels=False, levels=old or (0.0, 1.0))
        self._update_bar_label()
        self.bar_axis.picture = None
        if keep_levels and old is not None:
            self.set_levels(*old)
        else:
            self.auto_contrast()
        if self._rect is not None and not self._values_mode:
            self.image_item.setRect(QtCore.QRectF(*self._rect))

    def _masked_sample(self, masked: np.ndarray, n: int = 400_000) -> np.ndarray:
        step = max(1, self._data32.size // n)
        v = self._data32.ravel()[::step]
        return v[~masked.ravel()[::step] & np.isfinite(v)]

    def levels(self) -> Optional[tuple[float, float]]:
        """Current colour levels in scaled units (None before any image)."""
        if self.display is None:
            return None
        if self.histogram is not None:
            return tuple(self.histogram.getLevels())
        return tuple(self.colorbar.levels())

    def data_levels(self) -> Optional[tuple[float, float]]:
        """Current colour levels in data units."""
        lv = self.levels()
        return None if lv is None else tuple(float(scale_inverse(self.scale_name, v, self._scale_p)) for v in lv)

    def _user_levels(self, *_) -> None:
        self._sync_detail()
        if not self._setting_levels:
            self.levels_changed.emit()

    def set_levels(self, lo: float, hi: float) -> None:
        """Colour levels in scaled units; emits `levels_changed`."""
        self._setting_levels = True
        try:
            self._set_levels(lo, hi)
        finally:
            self._setting_levels = False
        self.levels_changed.emit()

    def _set_levels(self, lo: float, hi: float) -> None:
        if hi <= lo:
            hi = lo + (abs(lo) * 1e-6 or 1e-6)
        if self.histogram is not None:
            self.histogram.setLevels(lo, hi)
            span = hi - lo
            vals = self._sample(self.display) if self.display is not None else np.array([lo, hi])
            full_lo = min(lo, float(vals.min())) if vals.size else lo
            full_hi = max(hi, float(vals.max())) if vals.size else hi
            self.histogram.setHistogramRange(max(full_lo, lo - span), min(full_hi, hi + span), padding=0.05)
        else:
            self.colorbar.rounding = (hi - lo) * 1e-4
            self.colorbar.setLevels((lo, hi))
        if not self._values_mode:
            self.image_item.setLevels((lo, hi))
        self._sync_detail()
        self.bar_axis.picture = None
        self.bar_axis.update()

    def auto_contrast(self) -> None:
        """Levels at the view's percentiles of the shown values (symmetric about 0 when diverging)."""
        if self.display is None:
            return
        if self._frame is not None:  # the frame's own pixels, not the block maxima
            vals = np.asarray(scale_forward(self.scale_name, self._frame.sample, self._scale_p))
        else:
            vals = self._sample(self.display)
        self.set_levels(*auto_levels(vals, self.percentiles, self.diverging))

    def zoom_to_data(self) -> None:
        if self.data is None:
            return
        items = [*self._fit_items] if self._values_mode else [self.image_item, *self._fit_items]
        if items:
            self.plot.vb.autoRange(items=items, padding=0.02)

    def set_fit_items(self, items: Sequence) -> None:
        """Items whose extent "fit" zooms to besides the image (a cell outline, the discs of a plane)."""
        self._fit_items = list(items)

    def clear(self) -> None:
        """Show nothing: image, mask, legend, rings, warnings and read-out are cleared."""
        if self.detector is not None:
            self._leave_detector_mode()
        self._values_mode = False
        self._set(None, None)

    # ------------------------------------------------------------------ mask
    def _draw_mask(self) -> None:
        fr = self._frame
        codes = self.mask if fr is None else fr.shown_codes  # the overlay: per block for a frame's block maxima
        self.mask_legend.setText("")
        self._mask_counts = {}
        if codes is None:
            self.mask_item.clear()
            self.mask_legend.setVisible(False)
            return
        # only the masked pixels are visited (a 6-megapixel frame has ~0.5 M): their codes, counts per code, and
        # their colours through a table indexed by code; every other pixel of the overlay stays transparent
        lo = min(0, int(min(self.mask_legend_spec, default=0)))
        hi = max(0, int(max(self.mask_legend_spec, default=0)))
        flat = codes.reshape(-1)
        where = np.flatnonzero(flat)
        masked = flat[where]
        lut = np.zeros((hi - lo + 1, 4), np.uint8)
        lines, html = [], []
        for code, (label, colour) in self.mask_legend_spec.items():
            n = int(np.count_nonzero(masked == code)) if fr is None else fr.counts.get(code, 0)  # exact counts
            if not n:
                continue
            lut[code - lo] = colour
            self._mask_counts[label] = n
            r, g, b = colour[:3]
            html.append(f"<span style='color:rgb({r},{g},{b})'>■</span>&nbsp;{label}:&nbsp;{n:,}&nbsp;px"
                        .replace(",", "&nbsp;"))  # Qt breaks lines at a narrow no-break space: not inside a count
            lines.append(f"{label}: {n} pixels{self._positions(self.mask == code) if n <= 200 else ''}")
        if not lines:
            self.mask_item.clear()
            self.mask_legend.setVisible(False)
            return
        self._mask_lut = (lut, lo)
        rgba = self._mask_rgba(codes)
        # no levels: pyqtgraph wraps the RGBA bytes in a QImage as they are (levels sent it through makeARGB,
        # a copy of every pixel at each paint, ~60 ms for a 6-megapixel frame)
        self.mask_item.setImage(rgba, autoLevels=False, levels=None)
        if self._rect is not None:
            self.mask_item.setRect(QtCore.QRectF(*self._rect))
        self.mask_legend.setText("masked: " + " &nbsp; ".join(html))
        self.mask_legend.setVisible(True)
        self.mask_report = "\n".join(lines)
        self.mask_legend.setToolTip(self.mask_report)

    def _mask_rgba(self, codes: np.ndarray) -> np.ndarray:
        """RGBA per pixel of mask `codes` through the legend's colours (transparent where 0)."""
        lut, lo = self._mask_lut
        flat = codes.reshape(-1)
        where = np.flatnonzero(flat)
        rgba32 = np.zeros(flat.size, np.uint32)
        rgba32[where] = lut.view(np.uint32).ravel()[flat[where].astype(np.intp) - lo]
        return rgba32.view(np.uint8).reshape(codes.shape + (4,))

    def _positions(self, sel: np.ndarray, n: int = 12) -> str:
        if sel.sum() > 200:
            return ""
        ij = np.argwhere(sel)[:n]
        name = "x, y" if self.detector is not None else "i, j"
        pts = ", ".join(f"({j}, {i})" if self.detector is not None else f"({i}, {j})" for i, j in ij)
        more = " …" if sel.sum() > n else ""
        return f" at ({name}) {pts}{more}"

    def masked_counts(self) -> dict[str, int]:
        """{legend label: number of pixels} of the current mask."""
        return dict(self._mask_counts) if self.mask is not None else {}

    # ------------------------------------------------------------------ detector mode
    def screen_pixels(self) -> int:
        """Device pixels of the plot area (at least 500 × 500): what a frame's display image is sized for."""
        dpr = self.devicePixelRatioF()
        return int(max(self.graphics.width(), 500) * max(self.graphics.height(), 500) * dpr * dpr)

    def prepare_frame(self, frame, scale: Optional[str] = None, screen_px: Optional[int] = None) -> FrameDisplay:
        """The display image of `frame` for this view (:func:`prepare_frame`): numpy only, so a panel calls it in
        its reading worker (with `screen_px` taken in the GUI thread) and hands the result to
        :meth:`set_detector_frame`."""
        return prepare_frame(frame.data, frame.pixel_mask(), scale=scale or self.scale_name,
                             screen_px=screen_px or self.screen_pixels(), percentiles=self.percentiles)

    def set_detector_frame(self, frame, rings: bool = True, scale: Optional[str] = None,
                           prepared: Optional[FrameDisplay] = None) -> None:
        """A detector frame (:class:`crystalstudio.io.images.DetectorImage`): row 0 on top, pixel axes, gap and bad
        pixels masked, resolution rings and d under the cursor when the geometry is known, warnings on the image.

        A frame with more than ~2× the view's screen pixels is drawn as block maxima (single-pixel spots kept),
        with its full-resolution pixels drawn where the user zooms in; the read-out and the mask legend's counts are
        always the frame's own pixels. `prepared` (:meth:`prepare_frame`, computed in a worker) leaves the GUI
        thread only the drawing."""
        from ...io.images import MASK_BAD, MASK_GAP, MASK_LABELS

        if self.detector is not None:
            self._leave_detector_mode()
        self.detector = frame
        self.plot.vb.invertY(True)
        self.set_axes(("x", "pixel"), ("y", "pixel"))
        if scale:
            self.scale.blockSignals(True)
            self.scale.setCurrentText(scale)
            self.scale.blockSignals(False)
        if prepared is None or prepared.shown.size == 0:
            prepared = self.prepare_frame(frame)
        legend = {MASK_GAP: (MASK_LABELS[MASK_GAP], (60, 80, 140, 255)), MASK_BAD: (MASK_LABELS[MASK_BAD], (255, 40, 40, 255))}
        self._set_frame(frame.data, prepared, legend)
        self.warnings = list(frame.warnings)
        geo = frame.geometry
        if rings and geo is not None:
            self._draw_rings(geo, frame.data.shape)
        notes = list(self.warnings)
        if geo is None:
            why = (f"detector 2θ = {frame.two_theta_deg:g}°" if frame.two_theta_deg not in (None, 0.0)
                   else "the header gives no usable beam centre, distance and wavelength")
            self.no_rings_reason = f"no resolution rings: {why}"
        else:
            self.no_rings_reason = ""
        if notes:
            import textwrap

            text = pg.TextItem("\n".join(textwrap.fill("⚠ " + n, 34) for n in notes), color=(255, 70, 70),
                               fill=(0, 0, 0, 200), anchor=(0.5, 0.5))
            rows, cols = frame.data.shape
            text.setPos(cols / 2, rows / 2)
            self.plot.addItem(text)
            self._overlays.append(text)
        self.readout.setText("⚠ " + notes[0] if notes else (self.no_rings_reason or ""))

    def _set_frame(self, data: np.ndarray, fr: FrameDisplay, legend: dict) -> None:
        self._clear_overlays()
        self._drop_frame()
        self._values_mode = False
        self.set_quantity("I", "counts")
        self.readout_fn = None
        self._fit_items = []
        self.readout.setText("")
        self.data, self._data32, self.mask, self._frame = np.asarray(data), None, fr.codes, fr
        self.mask_legend_spec = dict(legend)
        if NO_DATA in fr.counts:
            self.mask_legend_spec[NO_DATA] = ("no data", NO_DATA_COLOUR)
        for item in (self.image_item, self.mask_item):
            item.setTransform(QtGui.QTransform())
        rows, cols = fr.shown.shape
        self._rect = (0, 0, cols * fr.block, rows * fr.block)  # a shown pixel covers block × block frame pixels
        self._rescale()
        self._draw_mask()
        self.zoom_to_data()

    @property
    def block(self) -> int:
        """Frame pixels per shown pixel along each axis (1 unless a large frame is shown as block maxima)."""
        return self._frame.block if self._frame is not None else 1

    def _drop_frame(self) -> None:
        self._frame = None
        self._detail_timer.stop()
        for item in (self.detail_item, self.detail_mask_item):
            item.setVisible(False)
            item.clear()

    def _range_changed(self, *_) -> None:
        if self._frame is not None and self._frame.block > 1:
            self._detail_timer.start()

    def _update_detail(self) -> None:
        """Where the view shows at most ~2× its screen pixels of a block-maxima frame, draw that part (and a 10 %
        margin) at full resolution over the blocks; hide it when zoomed out again."""
        fr = self._frame
        if fr is None or fr.block == 1 or self.data is None:
            return
        (x0, x1), (y0, y1) = self.plot.vb.viewRange()
        rows, cols = self.data.shape
        dpr = self.devicePixelRatioF()
        screen = max(self.plot.vb.width() * self.plot.vb.height() * dpr * dpr, 1.0)
        c0, c1 = max(0, math.floor(x0)), min(cols, math.ceil(x1))
        r0, r1 = max(0, math.floor(y0)), min(rows, math.ceil(y1))
        if c1 <= c0 or r1 <= r0 or (c1 - c0) * (r1 - r0) > 2.0 * screen:
            for item in (self.detail_item, self.detail_mask_item):
                item.setVisible(False)
            return
        mc, mr = (c1 - c0) // 10 + 1, (r1 - r0) // 10 + 1
        c0, c1, r0, r1 = max(0, c0 - mc), min(cols, c1 + mc), max(0, r0 - mr), min(rows, r1 + mr)
        raw = self.data[r0:r1, c0:c1].astype(np.float32)
        codes = self.mask[r0:r1, c0:c1]
        raw[codes != 0] = np.nan
        disp = np.asarray(scale_forward(self.scale_name, raw, self._scale_p), dtype=np.float32)
        rect = QtCore.QRectF(c0, r0, c1 - c0, r1 - r0)
        self.detail_item.setImage(disp, autoLevels=False, levels=self.image_item.levels)
        self.detail_item.setRect(rect)
        self._sync_detail()
        self.detail_item.setVisible(True)
        if codes.any() and getattr(self, "_mask_lut", None) is not None:
            self.detail_mask_item.setImage(self._mask_rgba(codes), autoLevels=False, levels=None)
            self.detail_mask_item.setRect(rect)
            self.detail_mask_item.setVisible(True)
        else:
            self.detail_mask_item.setVisible(False)

    def _sync_detail(self, *_) -> None:
        """The full-resolution detail drawn with the blocks' colour map and levels."""
        if self._frame is None or not self.detail_item.isVisible() and self.detail_item.image is None:
            return
        self.detail_item.setLookupTable(self.image_item.lut)
        if self.image_item.levels is not None:
            self.detail_item.setLevels(self.image_item.levels)

    @property
    def detail_shown(self) -> bool:
        """Whether the full-resolution detail of a block-maxima frame is drawn (the user zoomed in)."""
        return self.detail_item.isVisible()

    def _leave_detector_mode(self) -> None:
        self._drop_frame()
        self.detector = None
        self.warnings = []
        self.plot.vb.invertY(False)

    def _draw_rings(self, geo, shape) -> None:
        pen = pg.mkPen((90, 255, 90, 230), width=1.5, style=QtCore.Qt.DashLine)
        t = np.linspace(0, 2 * np.pi, 361)
        self.ring_resolutions = []
        for d in geo.ring_resolutions(shape):
            r = geo.ring_radius_mm(d)
            if not np.isfinite(r):
                continue
            x = geo.beam_x + 0.5 + r / geo.pixel_x * np.cos(t)  # pixel x occupies [x, x + 1]: centre x + 0.5
            y = geo.beam_y + 0.5 + r / geo.pixel_y * np.sin(t)
            curve = pg.PlotCurveItem(x, y, pen=pen)
            self.plot.addItem(curve)
            label = pg.TextItem(f"{d:g} Å", color=(90, 255, 90), anchor=(0, 1), fill=(0, 0, 0, 140))
            ang = np.deg2rad(-40)
            label.setPos(geo.beam_x + r / geo.pixel_x * np.cos(ang), geo.beam_y + r / geo.pixel_y * np.sin(ang))
            self.plot.addItem(label)
            self._overlays += [curve, label]
            self.ring_resolutions.append(d)
        centre = pg.ScatterPlotItem([geo.beam_x + 0.5], [geo.beam_y + 0.5], symbol="+", size=14,
                                    pen=pg.mkPen((120, 255, 120), width=1.5), brush=None)
        self.plot.addItem(centre)
        self._overlays.append(centre)

    def _clear_overlays(self) -> None:
        for item in self._overlays:
            self.plot.removeItem(item)
        self._overlays = []
        self.ring_resolutions = []
        self.mask_report = ""

    # ------------------------------------------------------------------ read-out
    def pixel_at(self, scene_pos) -> Optional[tuple[int, int]]:
        """(i, j) index of data under a scene position, or None outside the image."""
        if self.data is None or self._values_mode:
            return None
        p = self.image_item.mapFromScene(scene_pos)
        b = self.block  # item coordinates count shown pixels: block maxima cover b × b frame pixels
        px, py = math.floor(p.x() * b), math.floor(p.y() * b)
        i, j = (py, px) if self.axis_order == "row-major" else (px, py)
        if 0 <= i < self.data.shape[0] and 0 <= j < self.data.shape[1]:
            return i, j
        return None

    def describe(self, i: int, j: int, x: Optional[float] = None, y: Optional[float] = None) -> str:
        """The read-out text for data[i, j] (position, value or mask label, resolution in detector mode)."""
        if self.detector is not None:
            where = f"x {j}, y {i}"
            geo = self.detector.geometry
            if geo is not None:
                d = float(geo.d_spacing(j, i))
                tth = float(np.degrees(geo.two_theta(j, i)))
                where += f"   d = {d:.3f} Å, 2θ = {tth:.2f}°" if np.isfinite(d) else "   (beam centre)"
        elif self.readout_fn is not None:
            where = self.readout_fn(i, j)
        else:
            xn, xu = self.x_axis
            yn, yu = self.y_axis
            where = f"{xn} = {x:.3f}{' ' + xu if xu else ''}, {yn} = {y:.3f}{' ' + yu if yu else ''}" \
                if x is not None else f"({i}, {j})"
        v = self.data[i, j]
        code = int(self.mask[i, j]) if self.mask is not None else 0
        if code != 0 and code in self.mask_legend_spec:
            value = self.mask_legend_spec[code][0]
        elif not np.isfinite(v):
            value = "no data"
        else:
            value = f"{self.quantity} = {self._value_format(float(v))}{' ' + self.unit if self.unit else ''}"
        return f"{where}   {value}"

    def _mouse_moved(self, pos) -> None:
        ij = self.pixel_at(pos)
        if ij is None:
            return
        p = self.plot.vb.mapSceneToView(pos)
        self.readout.setText(self.describe(*ij, p.x(), p.y()))

    def save_png(self, path: str) -> None:
        self.grab().save(path)


class ImagePanel(ImageView):
    """The former small image panel (compact colour bar); kept so panels not yet moved keep working."""

    def __init__(self, title: str = "", parent=None, cmap: str = "magma", diverging: bool = False, **kw):
        kw.setdefault("colorbar", "bar")
        super().__init__(title, parent, cmap=cmap, diverging=diverging, **kw)
