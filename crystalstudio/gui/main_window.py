"""The main window: one tab per panel, a shared log dock, a status bar with the running task's progress
and cancel button, File menu (Open, recent files, export, preferences), a Run menu with each panel's main
action and its shortcut, drag and drop (a reflection file dropped with a model goes to Phasing with the model as
the reference), splitter positions and window layout remembered between runs, About.

Recent files hold only files that opened: a file enters the list when the panel's reading task delivers its
result, leaves it when reading fails, and files deleted since are dropped when the menu is built."""

from __future__ import annotations

import logging
import os
import platform
from pathlib import Path
from typing import Optional

from PySide6 import QtCore, QtGui, QtWidgets

from .. import __version__
from .workers import Task, TaskManager

log = logging.getLogger("crystalstudio")

#: main actions of panels that do not declare `main_actions()` themselves: (menu text, button attribute, shortcut).
#: A shortcut the panel's button already carries wins over the one here. Ctrl+R runs the current panel's job.
MAIN_ACTIONS = {
    "Generator": [("Generate next structure", "generate_button", "Ctrl+G"),
                  ("Regenerate with the same seed", "same_button", "Ctrl+Shift+G")],
    "Training": [("Start training", "start_button", "Ctrl+T")],
    "Phasing": [("Solve", "solve_button", "Ctrl+R")],
    "Diffuse": [("Cut plane", "cut_button", "Ctrl+K"), ("Factorise", "factorise_button", "Ctrl+R")],
}
STRUCTURE_SUFFIXES = (".cif", ".res", ".ins")

FILE_FILTER = ("All supported (*.cif *.res *.ins *.hkl *.fcf *.mtz *.HKL *.ccp4 *.map *.mrc *.h5 *.hdf5 *.nxs "
               "*.cbf *.edf *.tif *.tiff *.img *.mccd *.bz2 *.npy *.json *.jsonl);;All files (*)")
MAX_RECENT = 10


class _LogBridge(QtCore.QObject, logging.Handler):
    """Forwards log records from any thread into the GUI thread's log view."""

    record = QtCore.Signal(str, int)

    def __init__(self):
        QtCore.QObject.__init__(self)
        logging.Handler.__init__(self)
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))

    def emit(self, rec):  # logging.Handler API
        try:
            self.record.emit(self.format(rec), rec.levelno)
        except RuntimeError:
            pass


class MainWindow(QtWidgets.QMainWindow):
    def __init__(self, fresh_preferences: bool = False, settings: Optional[QtCore.QSettings] = None,
                 default_content: bool = True):
        super().__init__()
        self.setWindowTitle(f"CrystalStudio {__version__}")
        self.setAcceptDrops(True)
        self.settings = settings or QtCore.QSettings()
        if fresh_preferences:
            self.settings.clear()
        self.tasks = TaskManager(self)
        self.last_error: Optional[str] = None
        self._dialogs: list[QtWidgets.QDialog] = []
        self._tracked: Optional[Task] = None

        self.tabs = QtWidgets.QTabWidget()
        self.setCentralWidget(self.tabs)
        self.panels = []
        self._make_log_dock()
        self._make_status_bar()
        self.main_actions: dict[str, QtGui.QAction] = {}  # menu text → action (Run menu, with shortcuts)
        self._make_panels(default_content)
        self._make_menus()
        self.tabs.currentChanged.connect(self._rebuild_export_menu)
        geo = self.settings.value("window/geometry")
        if geo is not None and not fresh_preferences:
            self.restoreGeometry(geo)
        else:
            self.resize(1500, 950)
        state = self.settings.value("window/state")
        if state is not None and not fresh_preferences:
            self.restoreState(state)
        self.restore_splitters()
        # everything built so far (imported libraries, widgets) lives for the whole session: take it out of the
        # cyclic collector's full passes, which otherwise stall the event loop for up to a second
        import gc

        gc.freeze()

    # ------------------------------------------------------------------ construction
    def _make_panels(self, default_content: bool) -> None:
        from .panels import available_panels

        for cls in available_panels():
            panel = cls(self, default_content=default_content)
            self.panels.append(panel)
            self.tabs.addTab(panel, panel.title)

    def _make_log_dock(self) -> None:
        self.log_view = QtWidgets.QPlainTextEdit(readOnly=True)
        self.log_view.setMaximumBlockCount(5000)
        dock = QtWidgets.QDockWidget("Log", self)
        dock.setObjectName("log_dock")
        dock.setWidget(self.log_view)
        self.addDockWidget(QtCore.Qt.BottomDockWidgetArea, dock)
        self.resizeDocks([dock], [120], QtCore.Qt.Vertical)
        self.log_dock = dock
        self._bridge = _LogBridge()
        self._bridge.record.connect(self._append_log)
        log.addHandler(self._bridge)
        log.setLevel(logging.INFO)

    def _make_status_bar(self) -> None:
        sb = self.statusBar()
        self.progress = QtWidgets.QProgressBar(maximumWidth=260, maximum=1000)
        self.progress.setVisible(False)
        self.progress_label = QtWidgets.QLabel("")
        self.cancel_button = QtWidgets.QPushButton("Cancel")
        self.cancel_button.setToolTip("Cancel the job shown beside (its partial results are discarded or kept as "
                                      "the job says in the log)")
        self.cancel_button.setVisible(False)
        self.progress.setToolTip("Progress of the running job")
        self.cancel_button.clicked.connect(self._cancel_tracked)
        self.device_label = QtWidgets.QLabel(self.device_description())
        sb.addPermanentWidget(self.progress_label)
        sb.addPermanentWidget(self.progress)
        sb.addPermanentWidget(self.cancel_button)
        sb.addPermanentWidget(self.device_label)

    def _make_menus(self) -> None:
        mb = self.menuBar()
        fm = mb.addMenu("&File")
        act = fm.addAction("&Open…", self.open_dialog)
        act.setShortcut(QtGui.QKeySequence.Open)
        self.recent_menu = fm.addMenu("Open &recent")
        self.export_menu = fm.addMenu("&Export")
        fm.addSeparator()
        fm.addAction("&Preferences…", self.preferences_dialog)
        fm.addSeparator()
        q = fm.addAction("&Quit", self.close)
        q.setShortcut(QtGui.QKeySequence.Quit)
        self.run_menu = mb.addMenu("&Run")
        self._make_main_actions()
        vm = mb.addMenu("&View")
        vm.addAction(self.log_dock.toggleViewAction())
        hm = mb.addMenu("&Help")
        hm.addAction("&About CrystalStudio", self.about_dialog)
        self._rebuild_recent_menu()
        self._rebuild_export_menu()

    # ------------------------------------------------------------------ main actions and shortcuts
    def _make_main_actions(self) -> None:
        """The Run menu: one entry per panel main action. A panel declares them with `main_actions()` →
        [(menu text, button, shortcut)]; otherwise MAIN_ACTIONS names its buttons.

        Each key sequence has one owner, the window: a key shared by several panels (Ctrl+R: Solve, Factorise)
        runs the current panel's action, or the only panel's that has it; a button's or panel's own shortcut
        for the same key is handed over to the window, so that Qt never sees two owners (an ambiguous
        shortcut fires nothing)."""
        self.main_action_keys: dict[str, str] = {}
        self.shortcut_actions: dict[str, QtGui.QAction] = {}
        by_key: dict[str, list] = {}
        for panel in self.panels:
            entries = panel.main_actions() if hasattr(panel, "main_actions") else None
            if not entries:
                entries = [(t, getattr(panel, attr, None), key) for t, attr, key in MAIN_ACTIONS.get(panel.title, [])]
            for text, button, key in entries:
                if button is None:
                    continue
                own = button.shortcut()
                if not own.isEmpty():  # the panel's own choice of key, now served by the window
                    key = own.toString()
                    button.setShortcut(QtGui.QKeySequence())
                seq = QtGui.QKeySequence(key)
                for sc in panel.findChildren(QtGui.QShortcut):
                    if sc.key() == seq:
                        sc.setEnabled(False)
                self.register_action(panel, text, button, seq)
                by_key.setdefault(seq.toString(), []).append((panel, text, button))
            self.run_menu.addSeparator()
        for key, entries in by_key.items():
            act = QtGui.QAction(self)
            act.setShortcut(QtGui.QKeySequence(key))
            act.setShortcutContext(QtCore.Qt.WindowShortcut)
            act.triggered.connect(lambda *_, e=entries, k=key: self._dispatch_shortcut(k, e))
            self.addAction(act)
            self.shortcut_actions[key] = act

    def register_action(self, panel, text: str, button: QtWidgets.QAbstractButton,
                        shortcut: QtGui.QKeySequence) -> QtGui.QAction:
        """A Run-menu entry that shows `panel` and clicks `button` (when the button is enabled; otherwise the
        status bar says why nothing happened); the entry and the button's tooltip name the shortcut."""
        key = shortcut.toString(QtGui.QKeySequence.NativeText)
        act = QtGui.QAction(f"{panel.title}: {text}\t{key}", self)  # the key is shown; the window owns it
        act.triggered.connect(lambda *_, p=panel, b=button, t=text: self.trigger_main_action(p, b, t))
        self.run_menu.addAction(act)
        tip = button.toolTip() or text
        if key not in tip:
            button.setToolTip(f"{tip} ({key})")
        self.main_actions[text] = act
        self.main_action_keys[text] = shortcut.toString()
        return act

    def _dispatch_shortcut(self, key: str, entries: list) -> None:
        current = self.tabs.currentWidget()
        here = [e for e in entries if e[0] is current]
        if here or len(entries) == 1:
            panel, text, button = (here or entries)[0]
            self.trigger_main_action(panel, button, text)
            return
        names = ", ".join(f"{text} ({panel.title})" for panel, text, _ in entries)
        self.statusBar().showMessage(f"{key} runs {names}: show that panel first", 6000)

    def trigger_main_action(self, panel, button: QtWidgets.QAbstractButton, text: str) -> bool:
        self.tabs.setCurrentWidget(panel)
        if not button.isEnabled():
            self.statusBar().showMessage(f"{text} is not available now: {self._why_disabled(panel, text)}", 6000)
            return False
        button.click()
        return True

    @staticmethod
    def _why_disabled(panel, text: str) -> str:
        if text in ("Cut plane", "Factorise"):
            return "open a reconstructed volume first" if text == "Cut plane" else "cut a plane first"
        return "a job is running or its input is missing"

    # ------------------------------------------------------------------ layout memory
    def _splitters(self) -> dict[str, QtWidgets.QSplitter]:
        """Every splitter of every panel by a stable name (panel title and creation order)."""
        out = {}
        for panel in self.panels:
            for k, sp in enumerate(panel.findChildren(QtWidgets.QSplitter)):
                out[f"{panel.title}/{sp.objectName() or k}"] = sp
        return out

    def save_splitters(self) -> None:
        for name, sp in self._splitters().items():
            self.settings.setValue(f"splitters/{name}", sp.saveState())

    def restore_splitters(self) -> None:
        for name, sp in self._splitters().items():
            state = self.settings.value(f"splitters/{name}")
            if state is not None:
                sp.restoreState(state)

    # ------------------------------------------------------------------ logging and errors
    @QtCore.Slot(str, int)
    def _append_log(self, text: str, level: int) -> None:
        self.log_view.appendPlainText(text)
        if level >= logging.WARNING:
            self.statusBar().showMessage(text.split(" ", 2)[-1], 8000)

    def show_error(self, title: str, message: str, details: str = "") -> None:
        """A readable, non-blocking error dialog (and a log line); never a traceback in the face."""
        self.last_error = message
        log.error("%s: %s", title, message)
        if details:
            log.debug(details)
        box = QtWidgets.QMessageBox(QtWidgets.QMessageBox.Warning, title, message, QtWidgets.QMessageBox.Ok, self)
        if details:
            box.setDetailedText(details)
        box.setWindowModality(QtCore.Qt.NonModal)
        box.finished.connect(lambda *_: self._dialogs.remove(box) if box in self._dialogs else None)
        self._dialogs.append(box)
        box.show()

    def excepthook(self, etype, value, tb) -> None:
        import traceback

        self.show_error("Unexpected error", f"{etype.__name__}: {value}", "".join(traceback.format_exception(etype, value, tb)))

    # ------------------------------------------------------------------ tasks in the status bar
    def run_task(self, name: str, fn, *args, label: Optional[str] = None, track: bool = True, on_error=None,
                 **kwargs) -> Task:
        """Start a task; errors go to an error dialog unless `on_error` is given; progress shows in the
        status bar when `track`."""
        def default_error(msg, tb, name=name):
            self.show_error(f"{label or name} failed", msg, tb)

        task = self.tasks.start(name, fn, *args, on_error=on_error or default_error, **kwargs)
        if track:
            self.track(task, label or name)
        return task

    def track(self, task: Task, label: str) -> None:
        self._tracked = task
        self.progress.setVisible(True)
        self.progress.setValue(0)
        self.cancel_button.setVisible(True)
        self.progress_label.setText(label)
        task.progress.connect(self._tracked_progress)
        task.done.connect(lambda t=task: self._untrack(t))

    @QtCore.Slot(float, str)
    def _tracked_progress(self, f: float, msg: str) -> None:
        self.progress.setValue(int(1000 * f))
        if msg:
            self.progress_label.setText(msg)

    def _untrack(self, task: Task) -> None:
        if self._tracked is task:
            self._tracked = None
            self.progress.setVisible(False)
            self.cancel_button.setVisible(False)
            self.progress_label.setText("")

    def _cancel_tracked(self) -> None:
        if self._tracked is not None:
            self._tracked.cancel()
            log.info("cancelling %s", self._tracked.name)

    # ------------------------------------------------------------------ files
    def panel_for(self, path: str):
        p = Path(path)
        # reflection files (also CIFs with reflections) go to Phasing before structures go to Generator
        for panel in sorted(self.panels, key=lambda x: x.routing_priority):
            if panel.accepts(p):
                return panel
        return None

    def open_path(self, path: str, then=None) -> bool:
        """Send a file to the panel that reads it. True when a panel took it; the file joins Recent files once
        the panel has read it (and leaves it if reading fails). `then(panel)` runs right after the panel was
        given the file (tasks it starts count as reading the file too)."""
        path = str(path)
        if not os.path.exists(path):
            self.show_error("Cannot open file", f"{path}: the file does not exist (moved or deleted?)")
            self.remove_recent(path)
            return False
        panel = self.panel_for(path)
        if panel is None:
            self.show_error("Cannot open file", f"{Path(path).name}: CrystalStudio does not read this kind of file. "
                                                "It opens structures (.cif .res .ins), reflections (.hkl .fcf .mtz, "
                                                "XDS_ASCII), maps (.ccp4), reconstructions (.h5) and detector images "
                                                "(.cbf .edf .img …)")
            return False
        self.tabs.setCurrentWidget(panel)
        self.settings.setValue(f"dirs/{Path(path).suffix.lower()}", str(Path(path).parent))
        log.info("opening %s in %s", path, panel.title)
        started: list[Task] = []

        def collect(task):
            started.append(task)

        self.tasks.task_started.connect(collect)
        errors_before = self.last_error
        try:
            panel.open_file(path)
            if then is not None:
                then(panel)
        finally:
            self.tasks.task_started.disconnect(collect)
        if not started:  # read at once, in the GUI thread
            if self.last_error is errors_before:
                self.add_recent(path)
            else:
                self.remove_recent(path)
        for task in started:
            task.finished.connect(lambda *_, p=path: self.add_recent(p))
            task.failed.connect(lambda *_, p=path: self.remove_recent(p))
        return True

    def open_dialog(self) -> None:
        start = self.settings.value("dirs/last", str(Path.home()))
        path, _ = QtWidgets.QFileDialog.getOpenFileName(self, "Open", start, FILE_FILTER)
        if path:
            self.settings.setValue("dirs/last", str(Path(path).parent))
            self.open_path(path)

    def last_dir(self, suffix: str) -> str:
        return str(self.settings.value(f"dirs/{suffix}", self.settings.value("dirs/last", str(Path.home()))))

    def recent_files(self) -> list[str]:
        v = self.settings.value("recent", [])
        return [v] if isinstance(v, str) else list(v or [])

    def add_recent(self, path: str) -> None:
        path = str(path)
        rec = [p for p in self.recent_files() if p != path]
        rec.insert(0, path)
        self.settings.setValue("recent", rec[:MAX_RECENT])
        self._rebuild_recent_menu()

    def remove_recent(self, path: str) -> None:
        rec = self.recent_files()
        if str(path) in rec:
            self.settings.setValue("recent", [p for p in rec if p != str(path)])
            self._rebuild_recent_menu()

    def _rebuild_recent_menu(self) -> None:
        existing = [p for p in self.recent_files() if os.path.exists(p)]  # deleted files leave the list
        if existing != self.recent_files():
            self.settings.setValue("recent", existing)
        self.recent_menu.clear()
        for k, p in enumerate(existing):
            act = self.recent_menu.addAction(f"&{(k + 1) % 10}  {Path(p).name}", lambda p=p: self.open_path(p))
            act.setToolTip(p)
            act.setStatusTip(p)
        self.recent_menu.setToolTipsVisible(True)
        self.recent_menu.setEnabled(bool(existing))

    def _rebuild_export_menu(self, *_) -> None:
        self.export_menu.clear()
        panel = self.tabs.currentWidget()
        for label, cb in (panel.export_actions() if panel is not None else []):
            self.export_menu.addAction(label, cb)
        self.export_menu.setEnabled(not self.export_menu.isEmpty())

    def dragEnterEvent(self, e: QtGui.QDragEnterEvent) -> None:
        if e.mimeData().hasUrls():
            e.acceptProposedAction()

    def dropEvent(self, e: QtGui.QDropEvent) -> None:
        paths = [url.toLocalFile() for url in e.mimeData().urls() if url.isLocalFile()]
        self.open_paths(paths)
        e.acceptProposedAction()

    def open_paths(self, paths: list[str]) -> None:
        """Open several files at once (a drop). Reflections dropped together with a structure model go to
        Phasing with the model as the reference; everything else opens as if dropped alone."""
        phasing = next((p for p in self.panels if p.title == "Phasing"), None)
        data = [p for p in paths if phasing is not None and os.path.exists(p) and phasing.accepts(Path(p))]
        models = [p for p in paths if p not in data and p.lower().endswith(STRUCTURE_SUFFIXES)]
        if data and models and hasattr(phasing, "set_reference"):
            if len(data) > 1 or len(models) > 1:
                self.statusBar().showMessage(f"{len(data)} reflection files and {len(models)} models dropped: "
                                             f"using {Path(data[0]).name} with {Path(models[0]).name}", 8000)
            log.info("reference model for %s: %s", Path(data[0]).name, models[0])
            self.open_path(data[0], then=lambda panel, m=models[0]: panel.set_reference(m))
            rest = [p for p in paths if p not in (data[0], models[0])]
        else:
            rest = paths
        for p in rest:
            self.open_path(p)

    # ------------------------------------------------------------------ dialogs
    def device(self) -> str:
        import torch

        want = str(self.settings.value("compute/device", "auto"))
        if want == "cpu" or not torch.cuda.is_available():
            return "cpu"
        return "cuda"

    def device_description(self) -> str:
        import torch

        if self.device() == "cuda":
            return f"GPU: {torch.cuda.get_device_name(0)}"
        return f"CPU ({torch.get_num_threads()} threads)"

    def preferences_dialog(self) -> None:
        import torch

        dlg = QtWidgets.QDialog(self)
        dlg.setWindowTitle("Preferences")
        form = QtWidgets.QFormLayout(dlg)
        dev = QtWidgets.QComboBox()
        dev.addItems(["auto", "cpu"] + (["cuda"] if torch.cuda.is_available() else []))
        dev.setCurrentText(str(self.settings.value("compute/device", "auto")))
        dev.setToolTip("Where training and batched calculations run; 'auto' uses a GPU when there is one")
        threads = QtWidgets.QSpinBox(minimum=1, maximum=max(1, os.cpu_count() or 1))
        threads.setValue(int(self.settings.value("compute/threads", torch.get_num_threads())))
        dmin = QtWidgets.QDoubleSpinBox(decimals=2, minimum=0.4, maximum=3.0, singleStep=0.1)
        dmin.setValue(float(self.settings.value("views/d_min", 0.8)))
        dmin.setToolTip("Resolution (Å) of maps calculated from models")
        form.addRow("Compute device", dev)
        form.addRow("CPU threads", threads)
        form.addRow("Map resolution from models (Å)", dmin)
        bb = QtWidgets.QDialogButtonBox(QtWidgets.QDialogButtonBox.Ok | QtWidgets.QDialogButtonBox.Cancel)
        form.addRow(bb)
        bb.accepted.connect(dlg.accept)
        bb.rejected.connect(dlg.reject)

        def save():
            self.settings.setValue("compute/device", dev.currentText())
            self.settings.setValue("compute/threads", threads.value())
            self.settings.setValue("views/d_min", dmin.value())
            torch.set_num_threads(threads.value())
            self.device_label.setText(self.device_description())

        dlg.accepted.connect(save)
        self._dialogs.append(dlg)
        dlg.open()

    def about_text(self) -> str:
        import gemmi
        import torch
        from PySide6 import __version__ as pyside_version

        return (f"<b>CrystalStudio {__version__}</b><br>Deep-learning crystallography from the desktop.<br><br>"
                f"Python {platform.python_version()}, Qt {QtCore.qVersion()} (PySide6 {pyside_version})<br>"
                f"torch {torch.__version__}, gemmi {gemmi.__version__}<br>Compute device: {self.device_description()}")

    def about_dialog(self) -> None:
        box = QtWidgets.QMessageBox(QtWidgets.QMessageBox.Information, "About CrystalStudio", self.about_text(),
                                    QtWidgets.QMessageBox.Ok, self)
        self._dialogs.append(box)
        box.open()

    # ------------------------------------------------------------------ closing
    def closeEvent(self, e: QtGui.QCloseEvent) -> None:
        for panel in self.panels:
            panel.shutdown()
        if not self.tasks.shutdown(15000):
            log.warning("some tasks did not stop within 15 s")
        self.settings.setValue("window/geometry", self.saveGeometry())
        self.settings.setValue("window/state", self.saveState())
        self.save_splitters()
        log.removeHandler(self._bridge)
        import gc

        gc.unfreeze()  # the closed window's objects can be collected again
        e.accept()
