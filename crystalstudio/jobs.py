"""Progress and cancellation for long science functions (no Qt).

A long function takes ``progress`` (a callable ``progress(fraction, message)``; fraction in [0, 1])
and ``cancel`` (anything with ``is_set()``, e.g. ``threading.Event``). It never knows whether it
runs in a GUI thread, a worker, or a command-line job.
"""

from __future__ import annotations

from typing import Callable, Optional, Protocol

from .errors import Cancelled

ProgressCallback = Callable[[float, str], None]


class CancelFlag(Protocol):
    def is_set(self) -> bool: ...


def check_cancel(cancel: Optional[CancelFlag]) -> None:
    """Raise :class:`Cancelled` when the flag is set."""
    if cancel is not None and cancel.is_set():
        raise Cancelled("cancelled")


def report(progress: Optional[ProgressCallback], fraction: float, message: str = "") -> None:
    if progress is not None:
        progress(min(max(float(fraction), 0.0), 1.0), message)
