"""Audits of the main window used by the cross-panel tests: controls without a tooltip, table headers
without one."""

from __future__ import annotations

from PySide6 import QtWidgets

CONTROL_TYPES = (QtWidgets.QAbstractButton, QtWidgets.QAbstractSpinBox, QtWidgets.QLineEdit, QtWidgets.QComboBox,
                 QtWidgets.QSlider)
_QT_INTERNAL = {"QTableCornerButton", "QDockWidgetTitleButton", "QToolBarExtension", "QMenuBarExtension",
                "QLineEditIconButton"}


def _internal(w: QtWidgets.QWidget) -> bool:
    """Parts Qt builds inside other widgets (a spin box's line edit, tab-bar scroll arrows …)."""
    if type(w).__name__ in _QT_INTERNAL or w.objectName().startswith("qt_"):
        return True
    p = w.parentWidget()
    if isinstance(w, QtWidgets.QLineEdit) and isinstance(p, (QtWidgets.QAbstractSpinBox, QtWidgets.QComboBox)):
        return True
    return isinstance(p, (QtWidgets.QTabBar, QtWidgets.QScrollBar, QtWidgets.QDockWidget))


def owner_of(w: QtWidgets.QWidget, panels) -> str:
    p = w
    while p is not None:
        if p in panels:
            return p.title
        p = p.parentWidget()
    return "main window"


def name_of(w: QtWidgets.QWidget) -> str:
    text = ""
    if isinstance(w, QtWidgets.QAbstractButton):
        text = w.text()
    elif isinstance(w, QtWidgets.QLineEdit):
        text = w.placeholderText() or w.text()[:30]
    elif isinstance(w, QtWidgets.QComboBox):
        text = w.currentText()
    if not text:  # the form label in front of it
        parent = w.parentWidget()
        lay = parent.layout() if parent is not None else None
        for form in ([lay] if isinstance(lay, QtWidgets.QFormLayout) else []) + (
                parent.findChildren(QtWidgets.QFormLayout) if parent is not None else []):
            label = form.labelForField(w)
            if label is not None and hasattr(label, "text"):
                text = label.text()
                break
    return f"{type(w).__name__} '{text or w.objectName() or '?'}'"


def controls_without_tooltip(window) -> dict[str, list[str]]:
    """{panel title or 'main window': [controls without a tooltip]}; every button and input widget counts."""
    panels = list(window.panels)
    out: dict[str, list[str]] = {}
    for w in window.findChildren(QtWidgets.QWidget):
        if not isinstance(w, CONTROL_TYPES) or _internal(w) or w.toolTip().strip():
            continue
        out.setdefault(owner_of(w, panels), []).append(name_of(w))
    for table in window.findChildren(QtWidgets.QTableWidget):
        for c in range(table.columnCount()):
            item = table.horizontalHeaderItem(c)
            if item is None or not item.toolTip().strip():
                label = item.text() if item is not None else str(c)
                out.setdefault(owner_of(table, panels), []).append(f"column header '{label}'")
    return out
