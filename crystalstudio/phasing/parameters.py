"""One set of phasing parameters for the `phase` command, the Phasing panel and the Python API.

Each field has its default, bounds, unit and help once (crystalstudio.params): the command-line options
and the panel's spin boxes and tooltips are built from this class, so they cannot drift apart.
"""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import model_validator

from ..params import Params, param


class PhasingParameters(Params):
    method: Literal["charge-flipping", "phai"] = param(
        "charge-flipping", label="method",
        help="charge-flipping (any space group) or phai (the trained network; P2₁/c family only)")
    cf_starts: int = param(3, ge=1, le=64, label="CF starts",
                           help="charge flipping: random starts (no further start runs once one gives a solved model)")
    phai_starts: int = param(4, ge=0, le=64, label="PhAI starts",
                             help="PhAI: random starting phase sets besides the all-zero start")
    cf_iterations: int = param(1500, ge=50, le=20000, step=100, label="CF iterations",
                               help="charge flipping: maximum iterations per start")
    phai_cycles: int = param(10, ge=1, le=30, label="PhAI cycles",
                             help="PhAI: maximum recycling cycles (every cycle count is a candidate)")
    seed: int = param(0, ge=0, le=2**31 - 1, help="random seed of the starting phases")
    formula: Optional[str] = param(None, label="formula",
                                   help="cell content, e.g. C24H40N16Cl8Cu4 (per cell, or per formula unit with Z); "
                                        "empty: from a companion .ins/.res/.cif, else peak heights only")
    z: Optional[float] = param(None, gt=0, le=1000, label="Z", help="formula units per cell (multiplies the formula)")
    amplitudes: bool = param(False, label="amplitudes",
                             help="the reflection file holds |F| (HKLF 3 or a bare list), not intensities")
    build_model: bool = param(True, label="build model",
                              help="build, refine and judge a model from each candidate (atoms, elements, R1, verdict)")
    stop_when_solved: bool = param(True, label="stop when solved",
                                   help="stop trying further starts once a candidate explains the data (R1 ≤ 0.15)")

    @model_validator(mode="after")
    def _formula(self):
        if self.formula is not None and not self.formula.strip():
            object.__setattr__(self, "formula", None)
        if self.formula:
            from ..errors import InvalidInputError
            from .composition import parse_formula

            try:
                parse_formula(self.formula)
            except InvalidInputError as exc:
                raise ValueError(str(exc)) from None  # pydantic reports ValueErrors in the field's words
        if self.z is not None and not self.formula:
            raise ValueError("z needs a formula (Z multiplies the formula)")
        return self

    @property
    def starts(self) -> int:
        return self.phai_starts if self.method == "phai" else self.cf_starts


DEFAULTS = PhasingParameters()
