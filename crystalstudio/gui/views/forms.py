"""Forms built from a job's settings object (crystalstudio.params.Params), so the GUI, the config files and
the command line share one set of parameters: each field's label, unit, bounds, default and help come
from its declaration. A form edits the object it is given in place — fields it does not show (hidden,
unknown to the form, dicts) are never touched, so a loaded configuration saves back unchanged."""

from __future__ import annotations

import math
from typing import Any, Iterable, Optional

from PySide6 import QtCore, QtGui, QtWidgets

from ...params import ParamInfo, Params, ParamsError, describe, tooltip

_INT_MAX = 2**31 - 1


class FloatSpinBox(QtWidgets.QDoubleSpinBox):
    """A float editor that shows values as typed (0.0005, 1e-06, 212) instead of a fixed number of decimals."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setDecimals(12)

    def textFromValue(self, value: float) -> str:  # noqa: N802 - Qt API
        return f"{value:.7g}"

    def valueFromText(self, text: str) -> float:  # noqa: N802 - Qt API
        try:
            return float(text.replace(self.suffix(), "").strip())
        except ValueError:
            return self.value()

    def validate(self, text: str, pos: int):
        t = text.replace(self.suffix(), "").strip()
        if self.specialValueText() and t == self.specialValueText():
            return QtGui.QValidator.State.Acceptable, text, pos
        try:
            v = float(t)
        except ValueError:
            ok = t == "" or all(ch in "0123456789.eE+-" for ch in t)
            return (QtGui.QValidator.State.Intermediate if ok else QtGui.QValidator.State.Invalid), text, pos
        state = QtGui.QValidator.State.Acceptable if self.minimum() <= v <= self.maximum() else \
            QtGui.QValidator.State.Intermediate
        return state, text, pos


def _step(info: ParamInfo) -> float:
    if info.step is not None:
        return float(info.step)
    ref = info.default[0] if isinstance(info.default, tuple) else info.default
    if isinstance(ref, (int, float)) and ref:
        return 10.0 ** (math.floor(math.log10(abs(ref))) - 1)
    return 0.1


def _float_range(info: ParamInfo) -> tuple[float, float]:
    lo = info.ge if info.ge is not None else (info.gt + max(abs(info.gt) * 1e-9, 1e-12) if info.gt is not None else -1e12)
    hi = info.le if info.le is not None else (info.lt - max(abs(info.lt) * 1e-9, 1e-12) if info.lt is not None else 1e12)
    return float(lo), float(hi)


def _int_range(info: ParamInfo) -> tuple[int, int]:
    lo = info.ge if info.ge is not None else (info.gt + 1 if info.gt is not None else -_INT_MAX)
    hi = info.le if info.le is not None else (info.lt - 1 if info.lt is not None else _INT_MAX)
    return int(max(lo, -_INT_MAX)), int(min(hi, _INT_MAX))


class ParamsForm(QtWidgets.QGroupBox):
    """Editors for the fields of one Params object (nested sections as nested group boxes).

    The object is edited in place: a user's edit is validated by the object itself (bounds, types and
    cross-field rules); a rejected value leaves the object unchanged, marks the editor red and emits
    `invalid(path, message)`. `bind(obj)` edits another object (e.g. a loaded configuration).
    `include`/`exclude` take dotted paths ("steps", "generator.cell.a_min", "generator")."""

    changed = QtCore.Signal(str)  # dotted path of the field the user changed
    invalid = QtCore.Signal(str, str)  # dotted path, message

    def __init__(self, obj: Params, title: str = "", include: Optional[Iterable[str]] = None,
                 exclude: Iterable[str] = (), prefix: str = "", parent=None):
        super().__init__(title, parent)
        self.obj = obj
        self.prefix = prefix
        self.include = None if include is None else list(include)
        self.exclude = list(exclude)
        self.infos = {n: i for n, i in describe(type(obj), prefix).items() if self._shown(i)}
        self.editors: dict[str, Any] = {}  # field name → widget (or list of widgets for a range)
        self.sections: dict[str, "ParamsForm"] = {}
        self.errors: dict[str, str] = {}
        form = QtWidgets.QFormLayout(self)
        form.setFieldGrowthPolicy(QtWidgets.QFormLayout.AllNonFixedFieldsGrow)
        for name, info in self.infos.items():
            if info.kind == "section":
                sub = ParamsForm(getattr(obj, name), info.label, self.include, self.exclude, info.path + ".")
                sub.setObjectName(info.path)
                sub.changed.connect(self.changed)
                sub.invalid.connect(self.invalid)
                self.sections[name] = sub
                form.addRow(sub)
                continue
            w = self._editor(info)
            w.setObjectName(info.path)
            w.setToolTip(tooltip(info))
            label = QtWidgets.QLabel(self._label(info))
            label.setToolTip(tooltip(info))
            form.addRow(label, w)
        self.refresh()

    # ---- which fields
    def _shown(self, info: ParamInfo) -> bool:
        if not info.gui or info.kind == "other" or info.path in self.exclude:
            return False
        if any(info.path.startswith(e + ".") for e in self.exclude):
            return False
        if self.include is None:
            return True
        return any(i == info.path or i.startswith(info.path + ".") or info.path.startswith(i + ".")
                   for i in self.include)

    @staticmethod
    def _label(info: ParamInfo) -> str:
        if info.unit and info.unit not in info.label:
            return f"{info.label} ({info.unit})"
        return info.label

    # ---- editors
    def _editor(self, info: ParamInfo):
        name = info.name
        if info.kind == "bool":
            e = QtWidgets.QCheckBox()
            e.toggled.connect(lambda v, n=name: self._set(n, bool(v)))
        elif info.kind == "choice":
            e = QtWidgets.QComboBox()
            e.addItems([str(c) for c in info.choices])
            e.currentIndexChanged.connect(lambda i, n=name, c=info.choices: self._set(n, c[i]) if i >= 0 else None)
        elif info.kind == "int":
            e = QtWidgets.QSpinBox()
            lo, hi = _int_range(info)
            if info.optional:
                lo -= 1
                e.setSpecialValueText("auto")
            e.setRange(lo, hi)
            e.valueChanged.connect(lambda v, n=name, w=e: self._set(n, self._read_int(w)))
        elif info.kind == "float":
            e = self._float_box(info)
            e.valueChanged.connect(lambda v, n=name, w=e: self._set(n, self._read_float(w)))
        elif info.kind == "range":
            box = QtWidgets.QWidget()
            h = QtWidgets.QHBoxLayout(box)
            h.setContentsMargins(0, 0, 0, 0)
            pair = [self._float_box(info), self._float_box(info)]
            for i, b in enumerate(pair):
                b.setObjectName(f"{info.path}[{i}]")
                b.setToolTip(tooltip(info))
                b.valueChanged.connect(lambda v, n=name, p=pair: self._set(n, tuple(self._read_float(x) for x in p)))
                h.addWidget(b)
            self.editors[name] = pair
            return box
        else:  # str
            if info.suggestions:
                e = QtWidgets.QComboBox(editable=True)
                e.addItems(list(info.suggestions))
                e.lineEdit().editingFinished.connect(lambda n=name, w=e: self._set(n, w.currentText().strip()))
                e.activated.connect(lambda i, n=name, w=e: self._set(n, w.currentText().strip()))
            else:
                e = QtWidgets.QLineEdit()
                if info.optional:
                    e.setPlaceholderText("auto")
                e.editingFinished.connect(lambda n=name, w=e, o=info.optional: self._set(n, w.text().strip() or
                                                                                       (None if o else "")))
        self.editors[name] = e
        return e

    @staticmethod
    def _float_box(info: ParamInfo) -> FloatSpinBox:
        e = FloatSpinBox()
        lo, hi = _float_range(info)
        step = _step(info)
        if info.optional:
            lo -= step
            e.setSpecialValueText("auto")
        e.setRange(lo, hi)
        e.setSingleStep(step)
        return e

    @staticmethod
    def _read_int(w: QtWidgets.QSpinBox):
        return None if (w.specialValueText() and w.value() == w.minimum()) else w.value()

    @staticmethod
    def _read_float(w: FloatSpinBox):
        if w.specialValueText() and w.value() == w.minimum():
            return None
        return float(f"{w.value():.12g}")

    # ---- object ↔ editors
    def _set(self, name: str, value) -> None:
        info = self.infos[name]
        if getattr(self.obj, name) == value:  # nothing changed: the object (and what it saves) stays as it is
            self._mark(name, None)
            return
        old = getattr(self.obj, name)
        was_set = name in self.obj.model_fields_set
        try:
            setattr(self.obj, name, value)
            self.obj.check()  # cross-field rules (a_min ≤ a_max …): a value that breaks one is not kept
        except ParamsError as exc:
            if getattr(self.obj, name) != old or not was_set:
                self.obj.__dict__[name] = old
                if not was_set:
                    self.obj.model_fields_set.discard(name)
            self._mark(name, str(exc))
            self.invalid.emit(info.path, str(exc))
            return
        self._mark(name, None)
        self.changed.emit(info.path)

    def _widgets(self, name: str) -> list:
        e = self.editors[name]
        return e if isinstance(e, list) else [e]

    def _mark(self, name: str, message: Optional[str]) -> None:
        info = self.infos[name]
        if message is None:
            self.errors.pop(name, None)
        else:
            self.errors[name] = message
        for w in self._widgets(name):
            w.setStyleSheet("" if message is None else "background: #f7c6c6;")
            w.setToolTip(tooltip(info) if message is None else f"{message}\n\n{tooltip(info)}")

    def bind(self, obj: Params) -> None:
        """Edit `obj` from now on (same Params class); editors show its values."""
        if type(obj) is not type(self.obj):
            raise TypeError(f"form for {type(self.obj).__name__} cannot edit a {type(obj).__name__}")
        self.obj = obj
        for name, sub in self.sections.items():
            sub.bind(getattr(obj, name))
        self.refresh()

    def refresh(self) -> None:
        """Editors from the object (no signals; the object is not written)."""
        for name in self.editors:
            value = getattr(self.obj, name)
            info = self.infos[name]
            widgets = self._widgets(name)
            values = list(value) if info.kind == "range" else [value]
            for w, v in zip(widgets, values):
                w.blockSignals(True)
                try:
                    if isinstance(w, QtWidgets.QCheckBox):
                        w.setChecked(bool(v))
                    elif isinstance(w, QtWidgets.QComboBox) and not w.isEditable():
                        w.setCurrentIndex(list(info.choices).index(v) if v in info.choices else -1)
                    elif isinstance(w, QtWidgets.QComboBox):
                        w.setCurrentText("" if v is None else str(v))
                    elif isinstance(w, (QtWidgets.QSpinBox, QtWidgets.QDoubleSpinBox)):
                        w.setValue(w.minimum() if v is None else v)
                    else:
                        w.setText("" if v is None else str(v))
                finally:
                    w.blockSignals(False)
            self._mark(name, None)
        for sub in self.sections.values():
            sub.refresh()

    def editor(self, path: str):
        """The widget (or pair of widgets) editing the field at a dotted path below this form."""
        rel = path[len(self.prefix):] if path.startswith(self.prefix) else path
        head, _, rest = rel.partition(".")
        if rest:
            return self.sections[head].editor(path)
        return self.editors[head]
