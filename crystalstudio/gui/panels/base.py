"""What every panel offers the main window."""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6 import QtWidgets

log = logging.getLogger("crystalstudio")


class Panel(QtWidgets.QWidget):
    title = "Panel"
    suffixes: tuple[str, ...] = ()
    routing_priority = 10  # lower: asked first whether it opens a file

    def __init__(self, window, default_content: bool = True):
        super().__init__()
        self.window_ = window

    def accepts(self, path: Path) -> bool:
        name = path.name.lower()
        return any(name.endswith(s) for s in self.suffixes)

    def open_file(self, path: str) -> None:
        raise NotImplementedError

    def export_actions(self) -> list:
        return []

    def main_actions(self) -> list:
        """[(menu text, button, shortcut)]: the panel's main jobs, offered in the Run menu with window-wide
        shortcuts (the window clicks the button, so a disabled button is never bypassed). Empty: the window's
        MAIN_ACTIONS table is used."""
        return []

    def shutdown(self) -> None:
        """Called before the window closes (tasks are cancelled by the window afterwards)."""

    # helpers
    def run(self, name, fn, *args, **kwargs):
        return self.window_.run_task(name, fn, *args, **kwargs)

    def error(self, title: str, message: str, details: str = "") -> None:
        self.window_.show_error(title, message, details)

    def save_path(self, caption: str, default_name: str, filt: str) -> str:
        suffix = Path(default_name).suffix.lower()
        start = str(Path(self.window_.last_dir(suffix)) / default_name)
        path, _ = QtWidgets.QFileDialog.getSaveFileName(self, caption, start, filt)
        if path:
            self.window_.settings.setValue(f"dirs/{suffix}", str(Path(path).parent))
        return path
