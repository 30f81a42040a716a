"""Compute devices named by users ("auto", "cpu", "cuda", "cuda:1") checked in our words before any work.

`resolve_device` is what a job calls at its start: "cuda" on a machine (or a torch build) without a
usable GPU is refused with one line saying so, instead of torch's traceback half-way through.
"""

from __future__ import annotations

import re

from .errors import InvalidInputError

DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")
DEVICE_NAMES = "auto, cpu, cuda or cuda:N"


def check_device_name(name: str) -> str:
    """The name normalised (lower case, stripped), or InvalidInputError for names torch would not take."""
    n = str(name).strip().lower()
    if not DEVICE_PATTERN.match(n):
        hint = " (a GPU is 'cuda')" if n in ("gpu", "nvidia", "cuda0") else ""
        raise InvalidInputError(f"unknown device '{name}'{hint}: use {DEVICE_NAMES}")
    return n


def resolve_device(name: str = "auto", local_rank: int = 0):
    """torch.device for a device name: 'auto' picks the GPU when torch can use one, else the CPU;
    'cuda'/'cuda:N' without a usable GPU raise InvalidInputError naming the reason."""
    import torch

    n = check_device_name(name or "auto")
    if n == "cpu":
        return torch.device("cpu")
    available = torch.cuda.is_available()
    if n == "auto":
        if not available:
            return torch.device("cpu")
        return torch.device("cuda", local_rank % max(torch.cuda.device_count(), 1))
    if not available:
        build = "this torch build has no CUDA support (a CPU build)" if torch.version.cuda is None else \
            f"torch (CUDA {torch.version.cuda}) finds no usable GPU"
        raise InvalidInputError(f"device '{n}' requested but {build}; use --device cpu or auto")
    index = int(n.split(":")[1]) if ":" in n else local_rank % torch.cuda.device_count()
    if index >= torch.cuda.device_count():
        raise InvalidInputError(f"device '{n}' requested but only {torch.cuda.device_count()} GPU(s) are visible "
                                f"(cuda:0 … cuda:{torch.cuda.device_count() - 1})")
    return torch.device("cuda", index)
