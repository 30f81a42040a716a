"""Parameters of the artificial-structure generator (one dataclass tree shared by the command line,
config files and the Generator panel). Lengths in Å, volumes in Å³, angles in degrees, U in Å².

Defaults follow the generation paper (Acta Cryst. A 2025) where it states them; where a constant
was lost from its text, the default here is stated and exposed:
- ratio_max = 2.0 (max a2/a1 and a3/a2),
- bond window ±10 % of R_A + R_B (acceptance) and ±5 % sampling jitter,
- non-bonded minimum min(max(1.3 (R_A + R_B), 1.8 Å), 3.2 Å),
- exponential β sampling with a 10° scale, lower bound 93° for the 'lower_bound' shear mode.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Optional


@dataclass
class CellSettings:
    sampling: str = "volume"  # 'volume' (volume first, then lengths) or 'naive' (lengths uniform)
    volume_distribution: str = "uniform"  # 'uniform' or 'lognormal'
    volume_min: Optional[float] = None  # default a_min³
    volume_max: Optional[float] = None  # default a_max³
    lognormal_mu: float = 6.2  # ln(Å³): median e^6.2 ≈ 493 Å³
    lognormal_sigma: float = 0.35
    a_min: float = 4.0
    a_max: float = 10.0
    ratio_max: float = 2.0
    shear: str = "exponential"  # 'none', 'uniform', 'lower_bound', 'exponential', 'uniform_beta'
    shear_variant: str = "keep_volume"  # 'keep_volume' (unit-determinant shear) or 'keep_lengths'
    beta_max: float = 125.0
    beta_lower: float = 93.0  # lower bound of β for shear='lower_bound'
    beta_scale: float = 10.0  # mean of β − 90° for shear='exponential'
    lengths_within_bounds: bool = True  # keep sheared lengths ≤ a_max
    angle_min: float = 60.0  # triclinic angle range
    angle_max: float = 125.0

    def volume_range(self) -> tuple[float, float]:
        lo = self.volume_min if self.volume_min is not None else self.a_min**3
        hi = self.volume_max if self.volume_max is not None else self.a_max**3
        return float(lo), float(hi)


@dataclass
class ContentSettings:
    mode: str = "uniform"  # 'uniform' or 'molecules'
    volume_per_atom: tuple[float, float] = (7.0, 22.0)  # Å³ per non-H atom
    hydrogen_fraction: tuple[float, float] = (0.3, 0.6)  # H mole fraction x_H
    include_hydrogen: bool = True
    u_iso: tuple[float, float] = (0.01, 0.1)  # per-structure Uiso, Å²
    u_iso_deviation: float = 0.005  # per-atom ± deviation, Å²
    d_min: float = 1.2  # uniform mode: minimum interatomic distance, Å
    tries: int = 10  # uniform mode: tries per atom before it is dropped
    special_probability: float = 0.05  # each point special position occupied independently
    max_atoms_asu: int = 100  # cap on non-H atoms in the asymmetric unit
    general_table: Optional[dict[str, float]] = None  # None: resources/elements/general_positions.csv
    special_table: Optional[dict[str, float]] = None  # None: resources/elements/special_positions.csv


@dataclass
class MoleculeSettings:
    bond_window: float = 0.10  # accepted bond length R_A + R_B within ±10 %
    bond_jitter: float = 0.05  # sampled bond length (R_A + R_B)·(1 ± 5 %)
    nonbonded_factor: float = 1.3  # non-bonded minimum = max(factor·(R_A + R_B), floor)
    nonbonded_floor: float = 1.8  # Å
    nonbonded_cap: float = 3.2  # Å: no non-bonded minimum exceeds this (alkali/alkaline-earth radii are large)
    tries_per_anchor: int = 20
    elements_per_atom: int = 2  # element choices before an atom is dropped


@dataclass
class GeneratorSettings:
    space_group: str = "P 1 21/c 1"
    cell: CellSettings = field(default_factory=CellSettings)
    content: ContentSettings = field(default_factory=ContentSettings)
    molecule: MoleculeSettings = field(default_factory=MoleculeSettings)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Optional[dict[str, Any]]) -> "GeneratorSettings":
        d = dict(d or {})
        out = cls()
        for key, sub in (("cell", CellSettings), ("content", ContentSettings), ("molecule", MoleculeSettings)):
            if key in d:
                vals = dict(d.pop(key) or {})
                unknown = set(vals) - {f.name for f in dataclasses.fields(sub)}
                if unknown:
                    raise ValueError(f"unknown {key} setting(s): {', '.join(sorted(unknown))}")
                for k, v in vals.items():
                    if isinstance(getattr(sub(), k), tuple) and isinstance(v, list):
                        v = tuple(v)
                    setattr(getattr(out, key), k, v)
        if "space_group" in d:
            out.space_group = str(d.pop("space_group"))
        if d:
            raise ValueError(f"unknown generator setting(s): {', '.join(sorted(d))}")
        return out
