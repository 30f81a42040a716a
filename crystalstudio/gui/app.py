"""Application entry point: Qt set-up, error hook, Ctrl-C, the main window, clean exit."""

from __future__ import annotations

import gc
import locale
import os
import signal
import sys
from typing import Optional, Sequence


# what Qt's X11 platform plugin (libqxcb) loads, and the Debian/Ubuntu package that ships each library
XCB_LIBRARIES = {
    "libxcb.so.1": "libxcb1", "libX11.so.6": "libx11-6", "libX11-xcb.so.1": "libx11-xcb1",
    "libxcb-cursor.so.0": "libxcb-cursor0", "libxcb-icccm.so.4": "libxcb-icccm4", "libxcb-image.so.0": "libxcb-image0",
    "libxcb-keysyms.so.1": "libxcb-keysyms1", "libxcb-randr.so.0": "libxcb-randr0",
    "libxcb-render.so.0": "libxcb-render0", "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxcb-shape.so.0": "libxcb-shape0", "libxcb-shm.so.0": "libxcb-shm0", "libxcb-sync.so.1": "libxcb-sync1",
    "libxcb-util.so.1": "libxcb-util1", "libxcb-xfixes.so.0": "libxcb-xfixes0", "libxcb-xkb.so.1": "libxcb-xkb1",
    "libxkbcommon.so.0": "libxkbcommon0", "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
    "libGL.so.1": "libgl1", "libEGL.so.1": "libegl1", "libfontconfig.so.1": "libfontconfig1",
    "libglib-2.0.so.0": "libglib2.0-0", "libdbus-1.so.3": "libdbus-1-3",
}
# the whole GUI: the plugin's libraries plus Mesa's OpenGL drivers for the 3D views
GUI_PACKAGES = sorted(set(XCB_LIBRARIES.values()) | {"libgl1-mesa-dri", "libxcb-xinerama0"})


def apt_line(packages=GUI_PACKAGES) -> str:
    return "sudo apt-get install " + " ".join(packages)


def qt_platform_problem(env=None, load=None) -> Optional[str]:
    """Why Qt's platform plugin could not start a window here (None: it can), in our words with the
    Debian/Ubuntu packages to install — checked before Qt would abort the process.

    Only the X11 plugin (xcb, Qt's default on Linux) is checked; `load(soname)` opens a shared library
    (ctypes by default) and raises OSError when it is missing."""
    env = os.environ if env is None else env
    if not sys.platform.startswith("linux"):
        return None
    platform = env.get("QT_QPA_PLATFORM", "").split(":")[0].strip()
    if platform and platform != "xcb":
        return None  # offscreen, wayland, eglfs…: chosen on purpose
    if not platform and env.get("WAYLAND_DISPLAY"):
        return None  # Qt uses Wayland where it can
    if load is None:
        import ctypes

        def load(name):
            ctypes.CDLL(name)

    missing = []
    for soname in XCB_LIBRARIES:
        try:
            load(soname)
        except OSError:
            missing.append(soname)
    if missing:
        pkgs = sorted({XCB_LIBRARIES[m] for m in missing})
        return (f"cannot open the window: Qt's X11 platform plugin needs {', '.join(missing)}, which this "
                f"system lacks.\nOn Debian/Ubuntu install the GUI's system packages: {apt_line()}"
                f"  (missing now: {' '.join(pkgs)})")
    if not env.get("DISPLAY"):
        return ("cannot open the window: no X display (DISPLAY is not set). Start it on a desktop, over "
                "'ssh -X', or under 'xvfb-run -a crystalstudio'; the command-line jobs need no display.")
    return None


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


class MainThreadGarbageCollector:
    """Cyclic garbage collection in the GUI thread only, while the GUI runs (`install` … `uninstall`).

    Python's automatic collection runs in whichever thread happens to allocate. When a worker thread
    collects a cycle that holds a Qt object (a closed window, a rebuilt menu), the object's C++
    destructor runs there: it takes Qt's lock and waits for the GIL while the GUI thread, holding the
    GIL, waits for that lock — a deadlock seen here with a training worker. CPython has one collector
    for all threads, so the only way to keep collections out of the workers is to switch automatic
    collection off and collect here, on a timer, with the interpreter's own thresholds (pyqtgraph's
    GarbageCollector does the same). `uninstall` restores automatic collection as it was.
    """

    def __init__(self, parent=None, interval_ms: int = 500):
        from PySide6 import QtCore

        self.interval_ms = interval_ms
        self.timer = QtCore.QTimer(parent)
        self.timer.timeout.connect(self.check)
        self.installed = False
        self._was_enabled = True
        self.threshold = gc.get_threshold()

    def install(self) -> "MainThreadGarbageCollector":
        if not self.installed:
            self._was_enabled = gc.isenabled()
            self.threshold = gc.get_threshold()
            gc.disable()
            self.timer.start(self.interval_ms)
            self.installed = True
        return self

    def uninstall(self) -> None:
        if self.installed:
            self.timer.stop()
            gc.collect()  # what is left goes now, in this (the GUI) thread
            if self._was_enabled:
                gc.enable()
            self.installed = False

    def check(self) -> None:
        c0, c1, c2 = gc.get_count()
        t0, t1, t2 = self.threshold
        if c0 > t0:
            gc.collect(2 if (c1 > t1 and c2 > t2) else (1 if c1 > t1 else 0))


def run_gui(file: Optional[str] = None, fresh_preferences: bool = False, qt_args: Sequence[str] = ()) -> int:
    problem = qt_platform_problem()
    if problem:  # instead of Qt's abort (exit 134) naming one library
        print(f"crystalstudio: {problem}", file=sys.stderr)
        return 1
    from PySide6 import QtCore

    from .main_window import MainWindow

    app = make_application(qt_args)
    collector = MainThreadGarbageCollector(app).install()  # from the first widget to the last
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
    QtCore.QCoreApplication.sendPostedEvents(None, QtCore.QEvent.DeferredDelete)
    collector.uninstall()
    return int(rc)
