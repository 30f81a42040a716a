"""Data made ahead of the training step: a background thread computes the next batches while the current
step runs, so that generation (mostly Python and small tensor operations) overlaps with the network's work.

The batches are those of direct calls: the producer computes fn(k) for consecutive k, and fn must be a
deterministic function of k (the trainers' per-step seeds make it so). Order, resume and cancel stay exact.
"""

from __future__ import annotations

import queue
import threading
from typing import Any, Callable


class Prefetcher:
    """fn(k) for k = start, start + 1, … < stop, computed up to `ahead` items before `get(k)` asks for them.

    `get(k)` returns fn(k); asking out of order (a resume, a skipped step) restarts the producer at k. An
    exception raised by fn is raised again by the `get` of that k. `close()` stops the thread (also on exit
    of a `with` block); it never waits for more than the item being computed.
    """

    def __init__(self, fn: Callable[[int], Any], start: int, stop: int, ahead: int = 1):
        self.fn, self.stop_at, self.ahead = fn, stop, max(1, int(ahead))
        self._thread = None
        self._start(start)

    def _start(self, k: int) -> None:
        self._queue: queue.Queue = queue.Queue(maxsize=self.ahead)
        self._halt = threading.Event()
        self._next = k
        self._thread = threading.Thread(target=self._produce, args=(k, self._queue, self._halt),
                                        name="crystalstudio-prefetch", daemon=True)
        self._thread.start()

    def _produce(self, k: int, q: queue.Queue, halt: threading.Event) -> None:
        while k < self.stop_at and not halt.is_set():
            try:
                item = (k, self.fn(k), None)
            except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
                item = (k, None, exc)
            while not halt.is_set():
                try:
                    q.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if item[2] is not None:
                return
            k += 1

    def get(self, k: int) -> Any:
        if k != self._next:
            self.close()
            self._start(k)
        while True:
            try:
                got, value, exc = self._queue.get(timeout=0.1)
                break
            except queue.Empty:
                if not self._thread.is_alive() and self._queue.empty():
                    raise RuntimeError(f"prefetching stopped before item {k}") from None
        self._next = got + 1
        if exc is not None:
            self._next = None
            raise exc
        return value

    def close(self) -> None:
        if self._thread is not None:
            self._halt.set()
            self._thread.join()
            self._thread = None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
