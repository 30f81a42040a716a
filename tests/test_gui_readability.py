"""Text on white plots is dark enough to read (pyqtgraph's default grey was faint on white)."""

from __future__ import annotations

from PySide6 import QtGui


def _dark(color: QtGui.QColor) -> bool:
    return color.lightness() < 100


def test_white_plots_have_dark_text(qtbot):
    from crystalstudio.gui.views.plots import CurvePlot
    from crystalstudio.gui.views.reciprocal_view import ReciprocalPlaneView

    plot = CurvePlot(title="validation", x_label="optimiser step", y_label="validation metric")
    qtbot.addWidget(plot)
    plot.set_curve("val_accuracy", [1, 2], [0.5, 0.6])
    for side in ("left", "bottom"):
        axis = plot.plot.getAxis(side)
        assert _dark(axis.textPen().color()) and axis.labelStyle["color"] == "#333333"
    assert plot.plot.plotItem.titleLabel.opts["color"] == "#333333"
    plot.plot.setTitle("later title")  # a title set later keeps the colour
    assert "#333333" in plot.plot.plotItem.titleLabel.item.toHtml().lower() or \
        plot.plot.plotItem.titleLabel.opts["color"] == "#333333"
    assert all(_dark(label.item.defaultTextColor()) or "#333333" in label.item.toHtml().lower()
               for _, label in plot.legend.items)
    view = ReciprocalPlaneView()
    qtbot.addWidget(view)
    assert _dark(view.view.plot.getAxis("left").textPen().color()) and _dark(view.view.bar_axis.textPen().color())
    bar_label = view.view.colorbar.getAxis("left")
    assert bar_label.labelStyle["color"] == "#333333"
