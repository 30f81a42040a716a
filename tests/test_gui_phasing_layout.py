"""Phasing panel layout: the progress message readable in full, the 3D view given a readable share."""

from __future__ import annotations

from PySide6 import QtWidgets


def phasing_panel(window):
    return next(p for p in window.panels if p.title == "Phasing")


def test_progress_message_elided_with_full_text_as_tooltip(window, qtbot):
    pp = phasing_panel(window)
    window.tabs.setCurrentWidget(pp)
    QtWidgets.QApplication.processEvents()
    msg = "PhAI: 2 candidates, 1041 of 2744 unique reflections on its list, 94.0 % complete; the others are left out"
    pp._progress(0.5, msg)
    shown = pp.progress.format()
    assert shown.endswith("…") and len(shown) < len(msg)  # was cut mid-word at 60 characters: "…on its l"
    assert pp.progress.fontMetrics().horizontalAdvance(shown) <= pp.progress.width()
    assert pp.progress.toolTip().endswith(msg)
    pp.progress.resize(pp.progress.width() * 3, pp.progress.height())  # wider: more of it (re-elided on resize)
    assert len(pp.progress.format()) > len(shown)
    pp._progress(0.6, "completeness 94.0 %")  # a percent sign shown as it is
    assert pp.progress.text() == "completeness 94.0 %"
    pp.clear_results()
    assert pp.progress.format() == "" and pp.progress.toolTip() == pp.PROGRESS_TIP


def test_3d_view_gets_a_readable_share_and_named_splitters(window, qtbot):
    pp = phasing_panel(window)
    window.tabs.setCurrentWidget(pp)
    QtWidgets.QApplication.processEvents()
    names = window._splitters()
    assert {"Phasing/map-3d", "Phasing/controls-views", "Phasing/candidates-atoms"} <= set(names)
    sp = names["Phasing/map-3d"]
    assert sp is pp.views_splitter and not sp.childrenCollapsible()
    map_h, view_h = sp.sizes()
    assert view_h >= 0.4 * (map_h + view_h) and view_h >= 250
