"""Run directories: a metrics log (JSON lines) that other processes can follow, atomic checkpoints
loaded with weights_only=True, and a control file for pause/stop/learning-rate drops from outside.

A run directory holds config.json, metrics.jsonl, checkpoint_last.pt (and checkpoint_best.pt),
sample.npz (latest validation sample) and, when written by someone else, control.json.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any, Optional

import torch

from ..errors import ModelFileError
from ..io.common import atomic_path, write_text_atomic


class MetricsLog:
    """Appends one JSON object per line and flushes, so `follow` in another process sees whole lines."""

    def __init__(self, run_dir, enabled: bool = True):
        self.path = Path(run_dir) / "metrics.jsonl"
        self.enabled = enabled
        if enabled:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        line = json.dumps(record, separators=(",", ":")) + "\n"
        with open(self.path, "a") as f:
            f.write(line)
            f.flush()

    def truncate_after(self, step: int) -> None:
        """Drop records beyond `step` (a resumed run rewrites them identically)."""
        if not self.enabled or not self.path.exists():
            return
        keep = [r for r in read_metrics(self.path) if r.get("step", 0) <= step]
        write_text_atomic(self.path, "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in keep))


def read_metrics(path) -> list[dict]:
    out = []
    p = Path(path)
    if p.is_dir():
        p = p / "metrics.jsonl"
    if not p.exists():
        return out
    with open(p) as f:
        for line in f:
            if line.endswith("\n"):
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
    return out


class MetricsFollower:
    """Incremental reader of a growing metrics.jsonl (only complete lines)."""

    def __init__(self, run_dir):
        self.path = Path(run_dir) / "metrics.jsonl"
        self.offset = 0
        self.inode = None

    def poll(self) -> list[dict]:
        if not self.path.exists():
            return []
        st = self.path.stat()
        if st.st_size < self.offset or st.st_ino != self.inode:  # replaced or truncated (resume): start over
            self.offset = 0
            self.inode = st.st_ino
        out = []
        with open(self.path) as f:
            f.seek(self.offset)
            while True:
                line = f.readline()
                if not line or not line.endswith("\n"):
                    break
                self.offset += len(line.encode())
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    pass
        return out


def save_checkpoint(path, state: dict) -> None:
    with atomic_path(path, ".pt") as tmp:
        torch.save(state, tmp)


def load_checkpoint(path) -> dict:
    p = Path(path)
    if not p.is_file():
        raise ModelFileError(p, "checkpoint does not exist")
    try:
        obj = torch.load(str(p), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001
        raise ModelFileError(p, f"not a weights-only checkpoint ({str(exc).splitlines()[0][:200]})") from None
    if not isinstance(obj, dict) or "model" not in obj:
        raise ModelFileError(p, "not a CrystalStudio checkpoint (no 'model' entry)")
    return obj


class RunControl:
    """Pause / stop / learning-rate drop requests, from the GUI (methods) or from a file written into the
    run directory by anyone (`control.json`: {"stop": true} / {"pause": true} / {"drop_lr": 0.5})."""

    def __init__(self, run_dir: Optional[str] = None):
        self._lock = threading.Lock()
        self._stop = False
        self._pause = False
        self._drop: list[float] = []
        self.file = Path(run_dir) / "control.json" if run_dir else None

    def request_stop(self) -> None:
        with self._lock:
            self._stop = True

    def set_paused(self, paused: bool) -> None:
        with self._lock:
            self._pause = paused

    def request_lr_drop(self, factor: float = 0.5) -> None:
        with self._lock:
            self._drop.append(float(factor))

    def _read_file(self) -> None:
        if self.file is None or not self.file.exists():
            return
        try:
            d = json.loads(self.file.read_text())
            os.unlink(self.file)
        except (OSError, json.JSONDecodeError):
            return
        if d.get("stop"):
            self.request_stop()
        if "pause" in d:
            self.set_paused(bool(d["pause"]))
        if d.get("drop_lr"):
            self.request_lr_drop(float(d["drop_lr"]))

    def poll(self, cancel=None) -> tuple[bool, list[float]]:
        """(stop?, lr drop factors) — blocks while paused."""
        while True:
            self._read_file()
            with self._lock:
                stop = self._stop or (cancel is not None and cancel.is_set())
                drops, self._drop = self._drop, []
                paused = self._pause
            if stop or not paused:
                return stop, drops
            time.sleep(0.1)

    @staticmethod
    def write_request(run_dir, **request) -> None:
        write_text_atomic(Path(run_dir) / "control.json", json.dumps(request))
