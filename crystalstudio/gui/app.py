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
    if getattr(app, "_crystalstudio_gc", None) is None:
        app._crystalstudio_gc = MainThreadGarbageCollector(app)
    return app


class MainThreadGarbageCollector:
    """Cyclic garbage collection on a timer in the GUI thread only.

    Python's automatic collection runs in whichever thread happens to allocate. When a worker thread
    collects a cycle that holds a Qt widget (a closed window, a rebuilt menu), the widget's C++
    destructor runs there: it takes Qt's lock and waits for the GIL while the GUI thread, holding the
    GIL, waits for that lock — a deadlock seen here with a training worker. So automatic collection is
    switched off and the generations are collected here, with the interpreter's own thresholds.
    """

    def __init__(self, parent, interval_ms: int = 500):
        import gc

        from PySide6 import QtCore

        self._gc = gc
        self.threshold = gc.get_threshold()
        gc.disable()
        self.timer = QtCore.QTimer(parent)
        self.timer.timeout.connect(self.check)
        self.timer.start(interval_ms)

    def check(self) -> None:
        gc = self._gc
        c0, c1, c2 = gc.get_count()
        if c0 > self.threshold[0]:
            generation = 2 if (c1 > self.threshold[1] and c2 > self.threshold[2]) else (1 if c1 > self.threshold[1] else 0)
            gc.collect(generation)


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
    window.tasks.shutdown()  # no worker thread may outlive the window (a QThread destroyed running aborts)
    sys.excepthook = old_hook
    window.deleteLater()
    del window
    return int(rc)
