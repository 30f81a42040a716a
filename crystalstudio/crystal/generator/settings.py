"""Parameters of the artificial-structure generator: one settings tree (crystalstudio.params) shared by
the command line, config files and the Generator panel. Lengths in Å, volumes in Å³, angles in
degrees, U in Å².

Defaults follow the generation paper (Acta Cryst. A 2025) where it states them; where a constant
was lost from its text, the default here is stated and exposed:
- ratio_max = 2.0 (max a2/a1 and a3/a2),
- bond window ±10 % of R_A + R_B (acceptance) and ±5 % sampling jitter,
- non-bonded minimum min(max(1.3 (R_A + R_B), 1.8 Å), 3.2 Å),
- exponential β sampling with a 10° scale, lower bound 93° for the 'lower_bound' shear mode.
"""

from __future__ import annotations

from typing import Literal, Optional

from ...params import FloatRange, Params, param, rule, section

SPACE_GROUP_SUGGESTIONS = ["P 1 21/c 1", "P 1 21/n 1", "P -1", "P 1", "P 1 21 1", "P 21 21 21", "C 1 2/c 1", "P b c a",
                           "P n a 21", "P 4/n m m:2", "R -3 c:H"]


class CellSettings(Params):
    sampling: Literal["volume", "naive"] = param(
        "volume", label="Cell sampling",
        help="volume: draw V first, then lengths (paper); naive: lengths uniform in [a_min, a_max] (skews V)")
    volume_distribution: Literal["uniform", "lognormal"] = param(
        "uniform", label="Volume distribution",
        help="uniform in [V min, V max] or log-normal (fit it from real CIFs: crystalstudio stats, Statistics tab)")
    volume_min: Optional[float] = param(None, unit="Å³", gt=0, label="V min", step=10, help="lower volume bound; auto = a_min³")
    volume_max: Optional[float] = param(None, unit="Å³", gt=0, label="V max", step=10, help="upper volume bound; auto = a_max³")
    lognormal_mu: float = param(6.2, unit="ln Å³", ge=0, le=15, label="log-normal μ", step=0.05,
                                help="mean of ln V (6.2: median 493 Å³)")
    lognormal_sigma: float = param(0.35, gt=0, le=5, label="log-normal σ", step=0.05, help="standard deviation of ln V")
    a_min: float = param(4.0, unit="Å", gt=0, le=1000, label="a min", step=0.5, help="shortest allowed cell length")
    a_max: float = param(10.0, unit="Å", gt=0, le=1000, label="a max", step=0.5, help="longest allowed cell length")
    ratio_max: float = param(2.0, ge=1, le=100, label="max ratio r", step=0.1,
                             help="upper bound of a2/a1 and a3/a2 for sorted lengths")
    shear: Literal["exponential", "lower_bound", "uniform", "uniform_beta", "none"] = param(
        "exponential", label="β sampling",
        help="none; uniform shear (over-weights large β); lower_bound (β ≥ bound); exponential (β − 90° ~ Exp, "
             "matches databases); uniform_beta")
    shear_variant: Literal["keep_volume", "keep_lengths"] = param(
        "keep_volume", label="Shear keeps", help="keep_volume: unit-determinant shear; keep_lengths: V changes")
    beta_max: float = param(125.0, unit="°", ge=90, lt=180, label="β max", step=1, help="largest monoclinic angle")
    beta_lower: float = param(93.0, unit="°", ge=90, lt=180, label="β lower bound", step=1,
                              help="smallest β for the lower_bound mode")
    beta_scale: float = param(10.0, unit="°", gt=0, le=90, label="β scale", step=1,
                              help="mean of β − 90° for the exponential mode")
    lengths_within_bounds: bool = param(True, label="sheared lengths ≤ a max", help="limit the shear so that |c'| ≤ a max")
    angle_min: float = param(60.0, unit="°", gt=0, le=90, label="triclinic angle min", step=1, help="smallest triclinic angle")
    angle_max: float = param(125.0, unit="°", ge=90, lt=180, label="triclinic angle max", step=1, help="largest triclinic angle")

    @rule
    def _ranges(self):
        if self.a_min > self.a_max:
            raise ValueError(f"a_min ({self.a_min:g} Å) must not exceed a_max ({self.a_max:g} Å)")
        lo, hi = self.volume_range()
        if lo >= hi:
            raise ValueError(f"the volume range [{lo:g}, {hi:g}] Å³ is empty")
        if self.beta_lower > self.beta_max:
            raise ValueError(f"beta_lower ({self.beta_lower:g}°) must not exceed beta_max ({self.beta_max:g}°)")

    def volume_range(self) -> tuple[float, float]:
        lo = self.volume_min if self.volume_min is not None else self.a_min**3
        hi = self.volume_max if self.volume_max is not None else self.a_max**3
        return float(lo), float(hi)


class ContentSettings(Params):
    mode: Literal["uniform", "molecules"] = param(
        "uniform", label="Mode", help="uniform: random atoms with a minimum distance; molecules: bonded artificial molecules")
    volume_per_atom: FloatRange(gt=0) = param((7.0, 22.0), unit="Å³", label="V per non-H atom", step=0.5,
                                              help="uniform range of cell volume per non-H atom")
    hydrogen_fraction: FloatRange(ge=0, le=0.95) = param((0.3, 0.6), label="H mole fraction", step=0.05,
                                                         help="uniform range of the H mole fraction x_H")
    include_hydrogen: bool = param(True, label="include hydrogen", help="add H atoms (non-H skeleton first)")
    u_iso: FloatRange(ge=0, le=1) = param((0.01, 0.1), unit="Å²", label="Uiso range", step=0.005,
                                          help="per-structure isotropic displacement, drawn uniformly")
    u_iso_deviation: float = param(0.005, unit="Å²", ge=0, le=0.5, label="Uiso ± per atom", step=0.001,
                                   help="uniform per-atom deviation from the structure's Uiso")
    d_min: float = param(1.2, unit="Å", gt=0, le=10, label="d min", step=0.05,
                         help="uniform mode: no two atoms (all images) closer than this")
    tries: int = param(10, ge=1, le=10000, label="tries per atom",
                       help="uniform mode: random positions tried before the atom is dropped")
    special_probability: float = param(0.05, ge=0, le=1, label="special-position p", step=0.01,
                                       help="each point special position (inversion centres in P2₁/c) occupied "
                                            "with this probability")
    max_atoms_asu: int = param(100, ge=1, le=100000, label="max non-H atoms / ASU",
                               help="cap on the asymmetric-unit count of non-H atoms")
    general_table: Optional[dict[str, float]] = param(
        None, gui=False, help="element shares on general positions (None: resources/elements/general_positions.csv)")
    special_table: Optional[dict[str, float]] = param(
        None, gui=False, help="element shares on special positions (None: resources/elements/special_positions.csv)")


class MoleculeSettings(Params):
    bond_window: float = param(0.10, gt=0, le=1, label="bond window ±", step=0.01,
                               help="accepted bond length (R_A + R_B)(1 ± w), Cordero covalent radii")
    bond_jitter: float = param(0.05, ge=0, le=1, label="bond jitter ±", step=0.01,
                               help="sampled bond length (R_A + R_B)(1 ± j)")
    nonbonded_factor: float = param(1.3, ge=1, le=5, label="non-bonded factor", step=0.05,
                                    help="non-bonded minimum = factor·(R_A + R_B), floored and capped")
    nonbonded_floor: float = param(1.8, unit="Å", gt=0, le=10, label="non-bonded floor", step=0.05,
                                   help="smallest non-bonded minimum distance")
    nonbonded_cap: float = param(3.2, unit="Å", gt=0, le=10, label="non-bonded cap", step=0.05,
                                 help="largest non-bonded minimum (alkali/alkaline-earth radii are large)")
    tries_per_anchor: int = param(20, ge=1, le=10000, label="tries per anchor",
                                  help="sphere points tried around the chosen bonded atom")
    elements_per_atom: int = param(2, ge=1, le=100, label="elements per atom",
                                   help="element choices before the atom is dropped")


class GeneratorSettings(Params):
    space_group: str = param("P 1 21/c 1", label="Space group", suggestions=SPACE_GROUP_SUGGESTIONS,
                             help="any space-group name gemmi knows (Hermann–Mauguin, Hall or number)")
    cell: CellSettings = section(CellSettings, "Unit cell")
    content: ContentSettings = section(ContentSettings, "Contents")
    molecule: MoleculeSettings = section(MoleculeSettings, "Artificial molecules")

    @rule
    def _space_group(self):
        from ..symmetry import SpaceGroup

        SpaceGroup.from_name(self.space_group)  # InvalidInputError names it
