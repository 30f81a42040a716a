"""Shared fixtures (the real-data folder, the screenshot folder, the main window) and the gui/gl markers,
set here from the fixtures a test uses so that `-m "not gl"` or `-m "not gui"` selects without Qt/OpenGL."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.realdata import DATA, ROOT


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if DATA is None:
        pytest.skip("real data folder ../shared/data is absent")
    return DATA


@pytest.fixture(scope="session")
def screenshot_dir() -> Path:
    d = ROOT / "tests" / "screenshots"
    d.mkdir(parents=True, exist_ok=True)
    return d


def pytest_collection_modifyitems(config, items):
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        if "qtbot" in names or "window" in names:
            item.add_marker(pytest.mark.gui)
        if "window" in names:
            item.add_marker(pytest.mark.gl)


def pytest_configure(config):
    import os

    # one OpenMP thread per process (subprocesses inherit it): the suite's networks are small, and on a busy
    # 2-core machine OpenMP threads spinning for each other cost ten times the work (measured here: the DSFU
    # training test 34 s with one thread, over 300 s with two). Set OMP_NUM_THREADS to override.
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    # GUI tests: a real X display (xvfb-run) gives OpenGL for the 3D views; without one, Qt runs offscreen
    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


@pytest.fixture
def window(qtbot, tmp_path):
    """The main window with throw-away preferences; closed (tasks cancelled and joined) at the end."""
    from PySide6 import QtCore

    from crystalstudio.gui.app import MainThreadGarbageCollector, make_application
    from crystalstudio.gui.main_window import MainWindow

    app = make_application()
    collector = MainThreadGarbageCollector(app).install()  # as run_gui does: no Qt destructor in a worker
    settings = QtCore.QSettings(str(tmp_path / "prefs.ini"), QtCore.QSettings.IniFormat)
    w = MainWindow(settings=settings)
    qtbot.addWidget(w)
    w.show()
    qtbot.waitExposed(w)
    yield w
    w.close()
    qtbot.waitUntil(lambda: not w.tasks._tasks, timeout=20000)  # every QThread finished and released
    collector.uninstall()  # the closed window's widgets are collected here, in the GUI thread


def save_screenshot(widget, directory, name: str) -> str:
    """The widget as a user sees it: pending layout requests are handled first (a plot axis widens for its
    tick labels in a relayout after the data arrive; grabbed before it, the labels that do not fit are left out)."""
    from PySide6 import QtWidgets

    for _ in range(3):
        QtWidgets.QApplication.processEvents()
    path = str(directory / f"{name}.png")
    widget.grab().save(path)
    return path
