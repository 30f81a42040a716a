"""One generated structure with its reflections and map, for the Generator panel's live views."""

from __future__ import annotations

import time
from typing import Optional

from ..maps import CalculatedData, calculated_data
from .batch import generate_batch
from .settings import GeneratorSettings


def preview_structure(settings: Optional[GeneratorSettings] = None, seed: int = 0, d_min: float = 0.8,
                      cancel=None) -> tuple[CalculatedData, float]:
    """(structure + reflections to d_min Å + map, seconds taken)."""
    t0 = time.perf_counter()
    batch = generate_batch(1, settings or GeneratorSettings(), seed, cancel=cancel)
    data = calculated_data(batch.structure(0), d_min=d_min, cancel=cancel)
    return data, time.perf_counter() - t0
