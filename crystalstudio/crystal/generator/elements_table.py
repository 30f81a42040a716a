"""Element frequency tables for the generator (editable CSV resources; symbol → relative weight)."""

from __future__ import annotations

import csv
import functools
from pathlib import Path
from typing import Mapping, Optional

import numpy as np

from ...errors import InputFileError, InvalidInputError
from ...resources import resource_path
from ..elements import normalize_symbol


class ElementTable:
    """A discrete distribution over element symbols."""

    def __init__(self, weights: Mapping[str, float]):
        items = [(normalize_symbol(k), float(v)) for k, v in weights.items() if float(v) > 0]
        if not items:
            raise InvalidInputError("element table has no positive weights")
        merged: dict[str, float] = {}
        for k, v in items:
            merged[k] = merged.get(k, 0.0) + v
        self.symbols = list(merged)
        w = np.array([merged[s] for s in self.symbols])
        self.probabilities = w / w.sum()

    @classmethod
    def from_csv(cls, path) -> "ElementTable":
        p = Path(path)
        try:
            with open(p) as f:
                rows = [ln for ln in f if ln.strip() and not ln.lstrip().startswith("#")]
            reader = csv.DictReader(rows)
            return cls({r["symbol"]: float(r["weight"]) for r in reader})
        except (KeyError, ValueError, TypeError) as exc:
            raise InputFileError(p, f"element table needs columns 'symbol,weight': {exc}") from None

    @classmethod
    def default(cls, which: str) -> "ElementTable":
        """'general' or 'special' from resources/elements (read once per process)."""
        return _default_table(which)

    @classmethod
    def resolve(cls, table: Optional[Mapping[str, float]], which: str) -> "ElementTable":
        return cls(table) if table else cls.default(which)

    def as_dict(self) -> dict[str, float]:
        return {s: float(p) for s, p in zip(self.symbols, self.probabilities)}

    def share(self, symbols) -> float:
        return float(sum(p for s, p in zip(self.symbols, self.probabilities) if s in set(symbols)))

    def write_csv(self, path, comment: str = "") -> None:
        from ...io.common import atomic_output

        with atomic_output(path) as f:
            if comment:
                f.write(f"# {comment}\n")
            f.write("symbol,weight\n")
            for s, p in zip(self.symbols, self.probabilities):
                f.write(f"{s},{p:.6f}\n")


@functools.lru_cache(maxsize=4)
def _default_table(which: str) -> ElementTable:
    return ElementTable.from_csv(resource_path("elements", f"{which}_positions.csv"))
