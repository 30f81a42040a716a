"""Element frequency tables for the generator (symbol → relative weight; CSV text 'symbol,weight' with
'#' comments). The shipped defaults are resources/elements/{general,special}_positions.csv; user
tables are read and written by crystalstudio.io.element_tables."""

from __future__ import annotations

import csv
import functools
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
    def from_csv_text(cls, text: str, source=None) -> "ElementTable":
        """Parse 'symbol,weight' CSV text; errors name `source` (a file) and the line."""
        lines = text.splitlines()
        rows = [(i + 1, ln) for i, ln in enumerate(lines) if ln.strip() and not ln.lstrip().startswith("#")]
        if not rows or [c.strip() for c in rows[0][1].split(",")][:2] != ["symbol", "weight"]:
            raise InputFileError(source, "element table needs a header line 'symbol,weight'",
                                 rows[0][0] if rows else None)
        weights: dict[str, float] = {}
        for lineno, row in rows[1:]:
            cells = next(csv.reader([row]))
            try:
                symbol, weight = cells[0].strip(), float(cells[1])
            except (IndexError, ValueError):
                raise InputFileError(source, f"expected 'symbol,weight', got {row.strip()!r}", lineno) from None
            weights[symbol] = weights.get(symbol, 0.0) + weight
        try:
            return cls(weights)
        except InvalidInputError as exc:
            raise InputFileError(source, str(exc)) from None

    def to_csv_text(self, comment: str = "") -> str:
        head = f"# {comment}\n" if comment else ""
        return head + "symbol,weight\n" + "".join(f"{s},{p:.6f}\n" for s, p in zip(self.symbols, self.probabilities))

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



@functools.lru_cache(maxsize=4)
def _default_table(which: str) -> ElementTable:
    path = resource_path("elements", f"{which}_positions.csv")
    return ElementTable.from_csv_text(path.read_text(encoding="utf-8"), path)
