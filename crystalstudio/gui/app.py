"""Application entry point: Qt set-up, error hook, Ctrl-C, the main window, clean exit."""

from __future__ import annotations

import locale
import os
import signal
import sys
from typing import Optional, Sequence


def make_application(qt_args: Sequence[str] = ()):
    from PySide6 import QtCore, QtWidgets

    os.environ.setdefault("HDF5_USE_FILE_LOCKING", "FALSE")  # volumes on network/read-only file systems
    try:
        locale.setlocale(locale.LC_NUMERIC, "C")
    except locale.Error:
        pass
    app = QtWidgets.QApplication.instance()
    if app is None:
        app = QtWidgets.QApplication([sys.argv[0], *qt_args])
    app.setApplicationName("CrystalStudio")
    app.setOrganizationName("CrystalStudio")
    app.setDesktopFileName("crystalstudio")
    QtCore.QLocale.setDefault(QtCore.QLocale.c())
    import pyqtgraph as pg

    pg.setConfigOptions(antialias=True)
    return app


def run_gui(file: Optional[str] = None, fresh_preferences: bool = False, qt_args: Sequence[str] = ()) -> int:
    from PySide6 import QtCore

    from .main_window import MainWindow

    app = make_application(qt_args)
    window = MainWindow(fresh_preferences=fresh_preferences)
    old_hook = sys.excepthook
    sys.excepthook = window.excepthook
    # Ctrl-C in the terminal closes the window (the interpreter gets control every 200 ms)
    signal.signal(signal.SIGINT, lambda *_: window.close())
    timer = QtCore.QTimer()
    timer.timeout.connect(lambda: None)
    timer.start(200)
    window.show()
    if file:
        QtCore.QTimer.singleShot(0, lambda: window.open_path(file))
    rc = app.exec()
    timer.stop()
    sys.excepthook = old_hook
    window.deleteLater()
    del window
    return int(rc)
