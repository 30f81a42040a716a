"""The worker mechanism: results in the GUI thread, progress, cancel, errors, superseded tasks, and an
event loop that keeps serving while heavy work runs."""

import threading
import time

import numpy as np
import pytest
import torch
from PySide6 import QtCore

from crystalstudio.errors import InvalidInputError
from crystalstudio.gui.workers import TaskManager
from crystalstudio.jobs import check_cancel


@pytest.fixture
def manager(qtbot):
    from crystalstudio.gui.app import make_application

    make_application()
    m = TaskManager()
    yield m
    m.shutdown()
    qtbot.waitUntil(lambda: not m._tasks, timeout=10000)


def slow_sum(n, progress=None, cancel=None):
    total = 0
    for i in range(n):
        check_cancel(cancel)
        total += i
        time.sleep(0.002)
        progress((i + 1) / n, f"{i + 1}/{n}")
    return total, threading.current_thread().name


def test_result_progress_and_thread(manager, qtbot):
    got, prog = {}, []
    manager.start("sum", slow_sum, 50, on_result=lambda r: got.update(r=r, thread=threading.current_thread()),
                  on_progress=lambda f, m: prog.append(f))
    qtbot.waitUntil(lambda: "r" in got, timeout=5000)
    assert got["r"][0] == sum(range(50))
    assert got["thread"] is threading.main_thread()  # delivered in the GUI thread
    assert got["r"][1] != threading.main_thread().name  # computed elsewhere
    assert prog and prog[-1] == pytest.approx(1.0) and len(prog) < 50  # throttled


def test_cancel(manager, qtbot):
    events = []
    t = manager.start("sum", slow_sum, 5000, on_result=lambda r: events.append("result"),
                      on_cancelled=lambda: events.append("cancelled"))
    qtbot.wait(50)
    t.cancel()
    qtbot.waitUntil(lambda: bool(events), timeout=5000)
    assert events == ["cancelled"]


def test_error_is_reported_not_raised(manager, qtbot):
    errors = []

    def bad(progress=None, cancel=None):
        raise InvalidInputError("the cell is wrong")

    def crash():
        return 1 / 0

    manager.start("bad", bad, on_error=lambda m, tb: errors.append((m, tb)))
    manager.start("crash", crash, on_error=lambda m, tb: errors.append((m, tb)))
    qtbot.waitUntil(lambda: len(errors) == 2, timeout=5000)
    msgs = dict(errors)
    assert "the cell is wrong" in msgs and msgs["the cell is wrong"] == ""
    assert any(m.startswith("ZeroDivisionError") and "Traceback" in tb for m, tb in errors)


def test_superseded_results_never_arrive(manager, qtbot):
    seen = []
    manager.start("a", slow_sum, 300, key="k", on_result=lambda r: seen.append("first"))
    qtbot.wait(20)
    manager.start("b", slow_sum, 10, key="k", on_result=lambda r: seen.append("second"))
    qtbot.waitUntil(lambda: "second" in seen, timeout=5000)
    qtbot.wait(200)
    assert seen == ["second"]


def heavy(progress=None, cancel=None):
    """CPU-heavy numpy/torch work plus Python loops, ~1.5 s."""
    t0 = time.perf_counter()
    x = torch.randn(600, 600)
    while time.perf_counter() - t0 < 1.5:
        check_cancel(cancel)
        x = torch.tanh(x @ x / 600)
        sum(i * i for i in range(20000))
        progress(min((time.perf_counter() - t0) / 1.5, 1), "")
    return float(x.sum())


def test_event_loop_latency_during_heavy_job(manager, qtbot):
    lat, done = [], []
    last = [time.perf_counter()]

    def tick():
        now = time.perf_counter()
        lat.append(now - last[0] - 0.010)
        last[0] = now

    timer = QtCore.QTimer()
    timer.timeout.connect(tick)
    timer.start(10)
    manager.start("heavy", heavy, on_result=lambda r: done.append(r))
    qtbot.waitUntil(lambda: bool(done), timeout=10000)
    timer.stop()
    lat = np.array(lat[2:])
    print(f"event-loop latency during a heavy job: median {1e3 * np.median(lat):.1f} ms, max {1e3 * lat.max():.1f} ms")
    assert len(lat) > 50 and lat.max() < 0.1


def test_shutdown_with_running_tasks_returns_promptly(manager, qtbot):
    """Closing the window blocks the GUI thread while tasks end: their threads must not need it to stop."""
    for i in range(3):
        manager.start(f"job{i}", slow_sum, 100_000)
    qtbot.waitUntil(lambda: all(t.thread.isRunning() for t in manager._tasks), timeout=5000)
    t0 = time.perf_counter()
    assert manager.shutdown(10000)  # no event processing in between, as in closeEvent
    assert time.perf_counter() - t0 < 2.0
    assert all(t.thread.isFinished() for t in manager._tasks)


def test_cyclic_garbage_is_collected_in_the_gui_thread(qtbot):
    """While the GUI runs, automatic collection is off (a worker thread must never run Qt destructors) and
    the GUI-thread timer collects cycles, even those a worker's allocations would have collected;
    afterwards automatic collection is back as it was."""
    import gc
    import weakref

    from crystalstudio.gui.app import MainThreadGarbageCollector, make_application

    app = make_application()
    assert gc.isenabled()  # creating the application changes nothing process-wide
    threshold = gc.get_threshold()
    collector = MainThreadGarbageCollector(app, interval_ms=50).install()
    try:
        assert not gc.isenabled()

        class Node:
            pass

        collected_in = []
        a, b = Node(), Node()
        a.other, b.other = b, a
        weakref.finalize(a, lambda: collected_in.append(threading.current_thread().name))
        del a, b

        def allocate():  # far more than the generation-0 threshold, in a worker thread
            for _ in range(20 * threshold[0]):
                x = Node()
                x.self = x

        worker = threading.Thread(target=allocate, name="worker")
        worker.start()
        worker.join()
        assert collected_in == []  # the worker's allocations did not trigger a collection
        qtbot.waitUntil(lambda: bool(collected_in), timeout=5000)
        assert collected_in == [threading.main_thread().name]
    finally:
        collector.uninstall()
    assert gc.isenabled() and gc.get_threshold() == threshold


def test_nothing_starts_after_shutdown(manager, qtbot):
    """A late signal (a button pressed as the window closes) must not start a thread that would outlive
    the window: Qt aborts the process when a running QThread is destroyed."""
    manager.shutdown()
    ran = []
    task = manager.start("late", lambda: ran.append(1), on_result=lambda r: ran.append(2))
    qtbot.wait(200)
    assert task.is_done and task.thread is None and ran == [] and not manager._tasks
