"""Running science functions in QThreads with progress, cancel, partial results and errors.

A science function takes keyword arguments ``progress(fraction, message)`` and ``cancel`` (an
object with ``is_set()``), and optionally ``partial(value)`` for intermediate results. It never
knows it runs in a thread. :class:`TaskManager` starts it on its own QThread; everything it reports
reaches the GUI thread through queued signals (throttled to ~20 Hz for progress). Starting a task
with the ``key`` of a running one cancels the old one and drops its results (the user moved the
slider again). Closing the window cancels all tasks and waits for their threads.
"""

from __future__ import annotations

import inspect
import threading
import time
import traceback
from typing import Any, Callable, Optional

from PySide6.QtCore import QObject, Qt, QThread, Signal, Slot

from ..errors import Cancelled, CrystalStudioError


class _Runner(QObject):
    """Lives in the worker thread; calls the function and emits what happens."""

    progress = Signal(float, str)
    partial = Signal(object)
    result = Signal(object)
    error = Signal(str, str)
    cancelled = Signal()
    ended = Signal()

    def __init__(self, fn: Callable, args: tuple, kwargs: dict, cancel: threading.Event, min_interval: float):
        super().__init__()
        self._fn, self._args, self._kwargs = fn, args, kwargs
        self._cancel = cancel
        self._min_interval = min_interval
        self._last = 0.0

    def _progress(self, fraction: float, message: str = "") -> None:
        now = time.monotonic()
        if fraction >= 1.0 or now - self._last >= self._min_interval:
            self._last = now
            self.progress.emit(float(fraction), str(message))

    def _partial(self, value: Any) -> None:
        self.partial.emit(value)

    @Slot()
    def run(self) -> None:
        kwargs = dict(self._kwargs)
        try:
            params = inspect.signature(self._fn).parameters
        except (TypeError, ValueError):
            params = {}
        accepts_any = any(p.kind == p.VAR_KEYWORD for p in params.values())
        if "progress" in params or accepts_any:
            kwargs.setdefault("progress", self._progress)
        if "cancel" in params or accepts_any:
            kwargs.setdefault("cancel", self._cancel)
        if "partial" in params:
            kwargs.setdefault("partial", self._partial)
        try:
            out = self._fn(*self._args, **kwargs)
        except Cancelled:
            self.cancelled.emit()
        except CrystalStudioError as exc:
            self.error.emit(str(exc), "")
        except MemoryError:
            self.error.emit("out of memory: try a smaller batch or grid", traceback.format_exc())
        except Exception as exc:  # noqa: BLE001 - everything else is reported, never lost
            self.error.emit(f"{type(exc).__name__}: {exc}", traceback.format_exc())
        else:
            if self._cancel.is_set():
                self.cancelled.emit()
            else:
                self.result.emit(out)
        finally:
            self.ended.emit()


class Task(QObject):
    """GUI-thread handle of a running function. Signals arrive in the GUI thread."""

    progress = Signal(float, str)
    partial = Signal(object)
    finished = Signal(object)  # the function's return value
    failed = Signal(str, str)  # readable message, traceback (empty for expected errors)
    cancelled = Signal()
    done = Signal()  # always, last
    thread_finished = Signal(object)

    def __init__(self, name: str, parent: Optional[QObject] = None):
        super().__init__(parent)
        self.name = name
        self.cancel_event = threading.Event()
        self.superseded = False
        self.thread: Optional[QThread] = None
        self.runner: Optional[_Runner] = None
        self.started_at = time.monotonic()
        self.is_done = False

    def cancel(self) -> None:
        self.cancel_event.set()

    # relays: queued from the runner's thread, re-emitted here unless superseded
    @Slot(float, str)
    def _on_progress(self, f, m):
        if not self.superseded:
            self.progress.emit(f, m)

    @Slot(object)
    def _on_partial(self, v):
        if not self.superseded:
            self.partial.emit(v)

    @Slot(object)
    def _on_result(self, v):
        if not self.superseded:
            self.finished.emit(v)

    @Slot(str, str)
    def _on_error(self, m, tb):
        if not self.superseded:
            self.failed.emit(m, tb)

    @Slot()
    def _on_cancelled(self):
        if not self.superseded:
            self.cancelled.emit()

    @Slot()
    def _on_ended(self):
        self.is_done = True
        self.done.emit()

    @Slot()
    def _on_thread_finished(self):
        self.thread_finished.emit(self)


class TaskManager(QObject):
    """Starts tasks on their own QThreads and keeps them alive until their threads have finished."""

    task_started = Signal(object)
    task_ended = Signal(object)

    def __init__(self, parent: Optional[QObject] = None, min_interval: float = 0.05):
        super().__init__(parent)
        self._tasks: list[Task] = []
        self._keyed: dict[str, Task] = {}
        self.min_interval = min_interval
        self.closed = False  # set by shutdown(): no task starts afterwards

    def start(self, name: str, fn: Callable, *args, key: Optional[str] = None, on_result=None, on_error=None,
              on_progress=None, on_partial=None, on_cancelled=None, on_done=None, **kwargs) -> Task:
        if self.closed:  # after shutdown (window closing): nothing new starts; the task never reports
            task = Task(name, self)
            task.superseded = task.is_done = True
            return task
        if key is not None and key in self._keyed and not self._keyed[key].is_done:
            old = self._keyed[key]
            old.superseded = True
            old.cancel()
        task = Task(name, self)
        for sig, cb in ((task.finished, on_result), (task.failed, on_error), (task.progress, on_progress),
                        (task.partial, on_partial), (task.cancelled, on_cancelled), (task.done, on_done)):
            if cb is not None:
                sig.connect(cb)
        thread = QThread()
        thread.setObjectName(f"task:{name}")
        runner = _Runner(fn, args, kwargs, task.cancel_event, self.min_interval)
        runner.moveToThread(thread)
        runner.progress.connect(task._on_progress)
        runner.partial.connect(task._on_partial)
        runner.result.connect(task._on_result)
        runner.error.connect(task._on_error)
        runner.cancelled.connect(task._on_cancelled)
        # QThread.quit is thread-safe: called directly from the worker, so the thread also ends while the GUI
        # thread is blocked (closing the window waits for it); a queued call would wait for the GUI thread
        runner.ended.connect(thread.quit, Qt.DirectConnection)
        runner.ended.connect(task._on_ended)
        thread.started.connect(runner.run)
        # forget the task only once its QThread has really finished (never drop a running QThread)
        thread.finished.connect(task._on_thread_finished)  # queued into the GUI thread
        task.thread_finished.connect(self._forget)
        task.thread, task.runner = thread, runner
        self._tasks.append(task)
        if key is not None:
            self._keyed[key] = task
        self.task_started.emit(task)
        thread.start()
        return task

    @Slot(object)
    def _forget(self, task: Task) -> None:
        if task in self._tasks:
            self._tasks.remove(task)
        for k, t in list(self._keyed.items()):
            if t is task:
                del self._keyed[k]
        self.task_ended.emit(task)
        task.runner.deleteLater()
        task.thread.deleteLater()
        task.deleteLater()

    @property
    def running(self) -> list[Task]:
        return [t for t in self._tasks if not t.is_done]

    def cancel_all(self) -> None:
        for t in list(self._tasks):
            t.superseded = True
            t.cancel()

    def wait_all(self, timeout_ms: int = 10000) -> bool:
        """Block until every thread has finished (used when closing). True if all finished."""
        ok = True
        deadline = time.monotonic() + timeout_ms / 1000
        for t in list(self._tasks):
            left = max(0, int(1000 * (deadline - time.monotonic())))
            if t.thread is not None and not t.thread.wait(left):
                ok = False
        return ok

    def shutdown(self, timeout_ms: int = 10000) -> bool:
        """Cancel every task and wait for its thread; afterwards `start` starts nothing."""
        self.closed = True
        self.cancel_all()
        for t in list(self._tasks):
            if t.thread is not None:
                t.thread.quit()  # the event loop ends as soon as the running function returns
        return self.wait_all(timeout_ms)
