"""Parameter forms built from the science packages' settings dataclasses, so the GUI, the config files
and the command line share one set of parameters. Each field gets a label, a tooltip and a range."""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

from PySide6 import QtCore, QtWidgets


@dataclasses.dataclass
class FieldSpec:
    label: str
    tooltip: str
    minimum: float = 0.0
    maximum: float = 1e6
    step: float = 0.1
    decimals: int = 3
    choices: Optional[list[str]] = None


class DataclassForm(QtWidgets.QGroupBox):
    """Editors for the fields of one dataclass instance that have a FieldSpec; emits `changed`."""

    changed = QtCore.Signal()

    def __init__(self, title: str, obj: Any, specs: dict[str, FieldSpec], parent=None):
        super().__init__(title, parent)
        self.obj = obj
        self.specs = specs
        self.editors: dict[str, Any] = {}
        form = QtWidgets.QFormLayout(self)
        form.setFieldGrowthPolicy(QtWidgets.QFormLayout.AllNonFixedFieldsGrow)
        for f in dataclasses.fields(obj):
            spec = specs.get(f.name)
            if spec is None:
                continue
            value = getattr(obj, f.name)
            if isinstance(value, tuple):
                editors = [self._scalar_editor(spec, v) for v in value]
                box = QtWidgets.QWidget()
                h = QtWidgets.QHBoxLayout(box)
                h.setContentsMargins(0, 0, 0, 0)
                for e in editors:
                    h.addWidget(e)
                box.setToolTip(spec.tooltip)
                self.editors[f.name] = editors
                form.addRow(spec.label, box)
            else:
                e = self._scalar_editor(spec, value)
                self.editors[f.name] = e
                form.addRow(spec.label, e)

    def _scalar_editor(self, spec: FieldSpec, value):
        if spec.choices is not None:
            e = QtWidgets.QComboBox()
            e.addItems(spec.choices)
            e.setCurrentText(str(value))
            e.currentIndexChanged.connect(self._on_change)
        elif isinstance(value, bool):
            e = QtWidgets.QCheckBox()
            e.setChecked(value)
            e.toggled.connect(self._on_change)
        elif isinstance(value, int):
            e = QtWidgets.QSpinBox(minimum=int(spec.minimum), maximum=int(min(spec.maximum, 2**31 - 1)))
            e.setValue(value)
            e.valueChanged.connect(self._on_change)
        elif value is None or isinstance(value, float):
            e = QtWidgets.QDoubleSpinBox(decimals=spec.decimals, minimum=spec.minimum, maximum=spec.maximum,
                                         singleStep=spec.step)
            e.setValue(float(value) if value is not None else spec.minimum)
            if value is None:
                e.setSpecialValueText("auto")
            e.valueChanged.connect(self._on_change)
        else:
            e = QtWidgets.QLineEdit(str(value))
            e.editingFinished.connect(self._on_change)
        e.setToolTip(spec.tooltip)
        return e

    @staticmethod
    def _read(e):
        if isinstance(e, QtWidgets.QComboBox):
            return e.currentText()
        if isinstance(e, QtWidgets.QCheckBox):
            return e.isChecked()
        if isinstance(e, QtWidgets.QSpinBox):
            return e.value()
        if isinstance(e, QtWidgets.QDoubleSpinBox):
            return None if (e.specialValueText() and e.value() == e.minimum()) else e.value()
        return e.text()

    def _on_change(self, *_):
        self.apply()
        self.changed.emit()

    def apply(self) -> None:
        """Write the editors' values into the dataclass instance."""
        for name, e in self.editors.items():
            if isinstance(e, list):
                setattr(self.obj, name, tuple(self._read(x) for x in e))
            else:
                setattr(self.obj, name, self._read(e))

    def set_value(self, name: str, value) -> None:
        e = self.editors[name]
        targets = e if isinstance(e, list) else [e]
        values = value if isinstance(e, list) else [value]
        for t, v in zip(targets, values):
            t.blockSignals(True)
            if isinstance(t, QtWidgets.QComboBox):
                t.setCurrentText(str(v))
            elif isinstance(t, QtWidgets.QCheckBox):
                t.setChecked(bool(v))
            elif isinstance(t, (QtWidgets.QSpinBox, QtWidgets.QDoubleSpinBox)):
                t.setValue(v if v is not None else t.minimum())
            else:
                t.setText(str(v))
            t.blockSignals(False)
        self.apply()
