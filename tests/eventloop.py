"""Measure how long the GUI event loop is blocked: a 5 ms timer records the gaps between its ticks while a panel
runs its job. Two figures per gap: wall time (what a user feels) and the CPU time the GUI thread spent in it
(the work done in the GUI thread). On an idle machine the two agree; on a shared machine the wall time is
stretched by the other processes, so the CPU figure is the one compared with the 100 ms goal (with margin),
and the wall figure only has to stay below a freeze limit."""

from __future__ import annotations

import time

import numpy as np
from PySide6 import QtCore


class EventLoopMonitor:
    def __init__(self, interval_ms: int = 5):
        self.interval = interval_ms / 1000
        self.gaps: list[float] = []  # wall seconds beyond the interval
        self.cpu: list[float] = []  # GUI-thread CPU seconds in the same gaps
        self._last = None
        self.timer = QtCore.QTimer()
        self.timer.setTimerType(QtCore.Qt.PreciseTimer)
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self._tick)

    def _tick(self) -> None:
        now, cpu = time.perf_counter(), time.thread_time()
        if self._last is not None:
            self.gaps.append(max(0.0, now - self._last[0] - self.interval))
            self.cpu.append(cpu - self._last[1])
        self._last = (now, cpu)

    def __enter__(self) -> "EventLoopMonitor":
        self.gaps, self.cpu, self._last = [], [], None
        self.timer.start()
        return self

    def __exit__(self, *exc) -> None:
        self.timer.stop()

    @property
    def longest_ms(self) -> float:
        """Longest wall-time gap (ms)."""
        return 1e3 * max(self.gaps, default=0.0)

    @property
    def longest_cpu_ms(self) -> float:
        """Most GUI-thread CPU time spent within one gap (ms)."""
        return 1e3 * max(self.cpu, default=0.0)

    def summary(self) -> str:
        g = np.array(self.gaps or [0.0]) * 1e3
        c = np.array(self.cpu or [0.0]) * 1e3
        return (f"longest gap {g.max():.0f} ms wall, {c.max():.0f} ms GUI-thread CPU (99th percentile "
                f"{np.percentile(g, 99):.0f} ms wall) over {len(g)} ticks")
