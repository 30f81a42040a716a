"""The Generator panel's forms come from the generator settings' declarations and edit the panel's settings
in place; settings that do not validate are reported in one readable dialog before any work starts."""

from __future__ import annotations

from crystalstudio.crystal.generator import GeneratorSettings
from crystalstudio.params import describe


def test_generator_forms_edit_the_settings_in_place(window, qtbot):
    panel = next(p for p in window.panels if p.title == "Generator")
    qtbot.waitUntil(lambda: panel.current is not None, timeout=30000)
    cell = panel.cell_form
    info = describe(type(panel.settings.cell))["a_max"]
    editor = cell.editor("a_max")
    assert "longest allowed cell length" in editor.toolTip() and "Å" in editor.toolTip()
    assert editor.minimum() > 0 and editor.maximum() == info.le  # the declared bounds
    editor.setValue(12.0)
    assert panel.settings.cell.a_max == 12.0  # in place: no apply step
    cell.editor("a_min").setValue(13.0)  # beyond a_max: refused, the settings keep 4 Å
    assert panel.settings.cell.a_min == 4.0 and "must not exceed" in cell.editor("a_min").toolTip()
    assert "mode" not in panel.content_form.editors  # the panel's own Mode box edits it
    panel.reset_defaults()
    assert panel.settings.cell == GeneratorSettings().cell and cell.editor("a_max").value() == 10.0
    panel.space_group.setCurrentText("Q99")
    window.last_error = None
    panel.generate()
    assert window.last_error == "unknown space group 'Q99'"
