"""One set of phasing parameters for the `phase` command, the Phasing panel and the Python API.

Each field has its default, bounds and help here once; the command line and the panel read them from
this class (the panel's spin boxes take their ranges and tooltips from `FIELDS`).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Optional

from ..errors import InvalidInputError

METHODS = ("charge-flipping", "phai")


@dataclass(frozen=True)
class FieldInfo:
    help: str
    minimum: Optional[float] = None
    maximum: Optional[float] = None
    unit: str = ""


FIELDS: dict[str, FieldInfo] = {
    "method": FieldInfo("charge-flipping (any space group) or phai (P2₁/c family, trained network)"),
    "cf_starts": FieldInfo("charge flipping: random starts (stops early once a start gives a solved model)", 1, 64),
    "phai_starts": FieldInfo("PhAI: random starts besides the zero start", 0, 64),
    "cf_iterations": FieldInfo("charge flipping: maximum iterations per start", 50, 20000),
    "phai_cycles": FieldInfo("PhAI: maximum recycling cycles (every cycle count is a candidate)", 1, 30),
    "seed": FieldInfo("random seed of the starting phases", 0, 2**31 - 1),
    "formula": FieldInfo("cell content, e.g. C24H40N16Cl8Cu4 (per cell, or per formula unit with Z)"),
    "z": FieldInfo("formula units per cell for the formula", 0.01, 1000),
    "amplitudes": FieldInfo("the reflection file holds |F| (HKLF 3 or a bare list), not intensities"),
    "build_model": FieldInfo("build, refine and judge a model from each candidate (atoms, elements, R1, verdict)"),
    "stop_when_solved": FieldInfo("stop trying further starts once a candidate is judged solved"),
}


@dataclass
class PhasingParameters:
    method: str = "charge-flipping"
    cf_starts: int = 3
    phai_starts: int = 4
    cf_iterations: int = 1500
    phai_cycles: int = 10
    seed: int = 0
    formula: Optional[str] = None
    z: Optional[float] = None
    amplitudes: bool = False
    build_model: bool = True
    stop_when_solved: bool = True

    def __post_init__(self):
        self.validate()

    def validate(self) -> "PhasingParameters":
        if self.method not in METHODS:
            raise InvalidInputError(f"method must be one of {', '.join(METHODS)}, got '{self.method}'")
        for f in fields(self):
            info = FIELDS[f.name]
            v = getattr(self, f.name)
            if v is None or isinstance(v, (bool, str)):
                continue
            if info.minimum is not None and v < info.minimum or info.maximum is not None and v > info.maximum:
                raise InvalidInputError(f"{f.name.replace('_', ' ')} must lie in [{info.minimum:g}, {info.maximum:g}], "
                                        f"got {v:g}")
        return self

    @property
    def starts(self) -> int:
        return self.phai_starts if self.method == "phai" else self.cf_starts


DEFAULTS = PhasingParameters()
