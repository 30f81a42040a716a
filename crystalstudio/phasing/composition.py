"""Cell content for structure solution: how many atoms of which element the unit cell holds.

Sources, in the order a run uses them: a formula typed by the user (`--formula`, the cell content, or one
formula unit times `--z`), the atoms of a reference model (`--structure`), a companion SHELX file
(SFAC/UNIT: the cell content), a CIF's `_chemical_formula_sum` × `_cell_formula_units_Z`. Counts are atoms
per unit cell; the expected atoms in the asymmetric unit are counts / number of symmetry operations
(centring included).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

from ..crystal.elements import atomic_number, normalize_symbol
from ..errors import InvalidInputError

_TOKEN = re.compile(r"\s*(?:(\()|(\))\s*(\d*\.?\d*)|([A-Z][a-z]?)\s*(\d*\.?\d*)|([,;\s]))")


def parse_formula(text: str) -> dict[str, float]:
    """'C24H40N16Cl8Cu4', 'C18 H19 N O4', 'Cl3 Cs In0.07 Sn0.9', 'Cu(NO3)2·2H2O' → {element: count}.

    Element symbols are case-sensitive as chemists write them (Co is cobalt, CO is carbon + oxygen);
    parts joined by '·', '*' or '+' may start with a multiplier.
    """
    s = str(text).strip().strip("'\"")
    if not s:
        raise InvalidInputError("empty formula")
    parts = [p.strip() for p in re.split(r"[·*+]", s)]
    if len(parts) > 1:
        total: dict[str, float] = {}
        for part in parts:
            m = re.match(r"(\d+\.?\d*)\s*(.*)", part)
            mult, body = (float(m.group(1)), m.group(2)) if m else (1.0, part)
            for e, c in parse_formula(body).items():
                total[e] = total.get(e, 0.0) + mult * c
        return total
    stack: list[dict[str, float]] = [{}]
    pos = 0
    while pos < len(s):
        m = _TOKEN.match(s, pos)
        if not m or m.end() == pos:
            raise InvalidInputError(f"formula '{text}': cannot read '{s[pos:pos + 8]}' (write elements as C, Cl, Cu …)")
        pos = m.end()
        if m.group(1):
            stack.append({})
        elif m.group(2):
            if len(stack) == 1:
                raise InvalidInputError(f"formula '{text}': ')' without '('")
            group = stack.pop()
            mult = float(m.group(3)) if m.group(3) else 1.0
            for e, c in group.items():
                stack[-1][e] = stack[-1].get(e, 0.0) + c * mult
        elif m.group(4):
            try:
                el = normalize_symbol(m.group(4))
            except InvalidInputError:
                raise InvalidInputError(f"formula '{text}': unknown element '{m.group(4)}'") from None
            if el != m.group(4) and m.group(4) != "D":
                raise InvalidInputError(f"formula '{text}': unknown element '{m.group(4)}'")
            n = float(m.group(5)) if m.group(5) else 1.0
            stack[-1][el] = stack[-1].get(el, 0.0) + n
    if len(stack) != 1:
        raise InvalidInputError(f"formula '{text}': '(' without ')'")
    out = {e: c for e, c in stack[0].items() if c > 0}
    if not out:
        raise InvalidInputError(f"formula '{text}' names no atoms")
    return out


@dataclass
class Composition:
    """Atoms per unit cell by element, and where that came from (said to the user)."""

    counts: dict[str, float]
    source: str

    @classmethod
    def from_formula(cls, text: str, z: Optional[float] = None, source: Optional[str] = None) -> "Composition":
        counts = parse_formula(text)
        if z is not None:
            if not z > 0:
                raise InvalidInputError(f"Z must be positive, got {z}")
            counts = {e: c * z for e, c in counts.items()}
        src = source or (f"formula {text}" + (f" × Z {z:g}" if z is not None else " (cell content)"))
        return cls(counts, src)

    @property
    def non_hydrogen(self) -> dict[str, float]:
        return {e: c for e, c in self.counts.items() if e != "H"}

    def n_non_hydrogen(self) -> float:
        return float(sum(self.non_hydrogen.values()))

    def expected_asu(self, n_operations: int) -> dict[str, float]:
        """Expected non-H atoms in the asymmetric unit (fractions where atoms sit on special positions)."""
        return {e: c / n_operations for e, c in self.non_hydrogen.items()}

    def heaviest_first(self) -> list[str]:
        return sorted(self.non_hydrogen, key=lambda e: -atomic_number(e))

    def volume_per_atom(self, volume: float) -> float:
        """Å³ per non-H atom of the cell (organic crystals: ~17–19; far above 30 suggests a missing Z)."""
        n = self.n_non_hydrogen()
        return volume / n if n > 0 else float("inf")

    def formula(self) -> str:
        order = sorted(self.counts, key=lambda e: (e not in ("C", "H"), e != "C", e))
        return " ".join(f"{e}{c:g}" for e, c in ((e, self.counts[e]) for e in order))

    def __str__(self) -> str:
        return f"{self.formula()} per cell ({self.source})"


def composition_from_structure(structure, source: str) -> Composition:
    """Cell content of a structure model (occupancy-weighted, special positions counted once)."""
    return Composition({e: round(c, 3) for e, c in structure.composition().items()}, source)


def composition_from_shelx(sfac, unit, source: str) -> Optional[Composition]:
    """SFAC/UNIT of a .ins/.res: UNIT is the cell content in SFAC order (None when UNIT is missing or short)."""
    if not sfac or len(unit) < len(sfac):
        return None
    counts: dict[str, float] = {}
    for e, n in zip(sfac, unit):
        if n > 0:
            counts[e] = counts.get(e, 0.0) + float(n)
    return Composition(counts, source) if counts else None


def composition_from_cif_block(block, source: str) -> Optional[Composition]:
    """`_chemical_formula_sum` × `_cell_formula_units_Z` of a CIF block (gemmi), or None."""
    from ..io.cif import _number, _text

    f = _text(block, "_chemical_formula_sum")
    if not f:
        return None
    z = _number(_text(block, "_cell_formula_units_Z"))
    try:
        counts = parse_formula(f)
    except InvalidInputError:
        return None
    zz = z if z == z and z > 0 else 1.0
    return Composition({e: c * zz for e, c in counts.items()}, f"{source}: _chemical_formula_sum '{f}' × Z {zz:g}")


def composition_from_file(path) -> Optional[Composition]:
    """The cell content a structure or reflection file states (SFAC/UNIT, CIF formula × Z), or None."""
    from pathlib import Path

    p = Path(path)
    name = p.name
    if p.suffix.lower() in (".ins", ".res"):
        from ..io.shelx import read_shelx

        sh = read_shelx(p)
        return composition_from_shelx(sh.sfac, sh.unit, f"{name} SFAC/UNIT")
    if p.suffix.lower() in (".cif", ".fcf"):
        from ..io.cif import read_cif_document

        for block in read_cif_document(p):
            c = composition_from_cif_block(block, name)
            if c is not None:
                return c
    return None
