"""Helpers for the hand-run benchmarks (not tests: they print ratios, they assert nothing)."""

import platform
import time

import torch


def header(title: str) -> None:
    dev = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA"
    print(f"# {title}\n# {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} thread(s), {dev}")


def timed(fn, repeat: int = 3):
    """Best wall time of `repeat` runs (seconds) and the last result."""
    best, out = float("inf"), None
    for _ in range(repeat):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return best, out
