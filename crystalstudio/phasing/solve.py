"""Point-and-click structure solution: read data, summarise them, phase with charge flipping or PhAI,
rank candidates, build maps and peak lists, compare with a reference model, export for refinement.

Everything here works in the setting of the input file; PhAI internally changes P2₁/n or P2₁/a to
P2₁/c and its phases are mapped back. Phases in radians, amplitudes |F| on the data's scale.
"""

from __future__ import annotations

import csv
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Optional

import numpy as np

from ..crystal.cell import UnitCell
from ..crystal.comparison import compare_phases
from ..crystal.elements import atomic_number, symbol_from_number
from ..crystal.maps import DensityMap, Peaks, density_map, find_peaks
from ..crystal.reflections import ReflectionData
from ..crystal.structure import Site, Structure
from ..crystal.structure_factors import structure_factors
from ..crystal.symmetry import SpaceGroup
from ..errors import InvalidInputError
from ..jobs import check_cancel, report


@dataclass
class PhasingProblem:
    """Merged unique data with cell and symmetry, plus what a user wants to know about them."""

    data: ReflectionData  # merged, unique, absences removed, in the input setting
    amplitudes: np.ndarray  # |F| (French–Wilson for intensities)
    sigmas: np.ndarray
    source: str
    n_measured: int
    r_int: float
    completeness: float
    d_min: float
    d_max: float
    i_over_sigma: float
    composition: dict = field(default_factory=dict)  # atoms per cell, when a companion file says
    reference: Optional[Structure] = None
    notes: list = field(default_factory=list)

    @property
    def cell(self) -> UnitCell:
        return self.data.cell

    @property
    def space_group(self) -> SpaceGroup:
        return self.data.space_group

    @property
    def hkl(self) -> np.ndarray:
        return self.data.hkl

    def summary(self) -> str:
        lines = [f"{Path(self.source).name}: {self.space_group} — {self.cell}",
                 f"{self.n_measured} measured → {len(self.hkl)} unique reflections, R_int "
                 f"{'—' if not np.isfinite(self.r_int) else f'{self.r_int:.3f}'}, "
                 f"d = {self.d_max:.2f}–{self.d_min:.3f} Å, completeness {100 * self.completeness:.1f} %, "
                 f"⟨I/σ⟩ {self.i_over_sigma:.1f}"]
        if self.composition:
            lines.append("cell content " + " ".join(f"{k}{v:g}" for k, v in self.composition.items()))
        if self.reference is not None:
            lines.append(f"reference model: {self.reference.n_sites} atoms ({self.reference.source or self.reference.title})")
        return "\n".join(lines + self.notes)


def prepare_problem(reflections, *, structure=None, cell: Optional[UnitCell] = None,
                    space_group: Optional[SpaceGroup] = None, min_reflections: int = 30) -> PhasingProblem:
    """Read (path or ReflectionData), attach cell/symmetry, merge, convert to |F|, summarise."""
    from ..io.reflections import read_reflections
    from ..io.structures import read_structure

    ref = None
    if structure is not None:
        ref = read_structure(structure) if not isinstance(structure, Structure) else structure
    if isinstance(reflections, ReflectionData):
        data = reflections
    else:
        data = read_reflections(reflections, cell=cell, space_group=space_group)
    data = data.with_symmetry(cell, space_group)
    if ref is not None and (data.cell is None or data.space_group is None):  # the model supplies what the file lacks
        data = data.with_symmetry(data.cell or ref.cell, data.space_group or ref.space_group)
        data.notes.append("cell and symmetry from the reference model")
    if data.cell is None or data.space_group is None:
        raise InvalidInputError(f"{data.source}: unknown cell or space group — open a companion .ins/.res/.cif or "
                                "enter them (--cell a b c al be ga --space-group NAME)")
    if ref is not None and not np.allclose(ref.cell.parameters, data.cell.parameters, rtol=0.02, atol=0.05):
        raise InvalidInputError(f"the reference model's cell ({ref.cell}) differs from the data's ({data.cell})")
    if ref is not None and ref.space_group != data.space_group:
        raise InvalidInputError(f"the reference model's space group ({ref.space_group}) differs from the data's "
                                f"({data.space_group})")
    m = data.merged()
    md = m.data
    if len(md) < min_reflections:
        raise InvalidInputError(f"{data.source}: only {len(md)} unique reflections — too few to solve a structure")
    F, sF = md.amplitudes()
    d = md.cell.d_spacing(md.hkl)
    comp = {}
    if ref is not None:
        comp = {k: round(v, 2) for k, v in ref.composition().items()}
    notes = list(data.notes)
    if m.n_absent_violations:
        notes.append(f"{m.n_absent_violations} systematically absent reflections have I > 3σ: is the space group right?")
    ios = float(np.mean(md.values / np.where(md.sigmas > 0, md.sigmas, np.inf))) if md.kind == "I" else float("nan")
    return PhasingProblem(md, F, sF, str(data.source), len(data), m.r_int, md.completeness(), float(d.min()),
                          float(d.max()), ios, comp, ref, notes)


@dataclass
class Solution:
    method: str  # 'charge flipping' or 'PhAI'
    label: str
    hkl: np.ndarray  # unique reflections (input setting)
    phases: np.ndarray  # radians
    amplitudes: np.ndarray
    fom: float
    details: dict = field(default_factory=dict)
    map_r: Optional[float] = None  # against the reference model's phases
    phase_error: Optional[float] = None
    dmap: Optional[DensityMap] = None
    peaks: Optional[Peaks] = None
    elements: list = field(default_factory=list)

    @property
    def F(self) -> np.ndarray:
        return self.amplitudes * np.exp(1j * self.phases)


def reference_phases(problem: PhasingProblem) -> Optional[np.ndarray]:
    if problem.reference is None:
        return None
    return np.angle(structure_factors(problem.reference, problem.hkl))


def compare_with_reference(problem: PhasingProblem, sol: Solution, ref_phases=None, align: bool = True) -> None:
    """Map r and phase error against the reference model; with `align`, move the solution to the model's
    origin (and hand), so that its map and peaks overlay the model."""
    ref_phases = reference_phases(problem) if ref_phases is None else ref_phases
    if ref_phases is None:
        return
    c = compare_phases(problem.hkl, problem.amplitudes, sol.phases, ref_phases, problem.space_group)
    sol.map_r, sol.phase_error = c.r, c.phase_error
    if align:
        ph = sol.phases - 2 * np.pi * (problem.hkl @ c.shift)
        sol.phases = -ph if c.inverted else ph
        sol.details["aligned to reference"] = f"origin shift {np.round(c.shift, 4).tolist()}" + (", inverted" if c.inverted else "")


def guess_elements(heights: np.ndarray, composition: Optional[dict] = None, z_asym: Optional[float] = None) -> list[str]:
    """Element per peak from its height: with a composition, the heaviest elements go to the highest
    peaks in their asymmetric-unit numbers; without one, Z ≈ 6·height/median(height) of the upper half
    (carbon-like), rounded to the nearest common element."""
    n = len(heights)
    if n == 0:
        return []
    order = np.argsort(-heights)
    out = ["Q"] * n
    if composition:
        heavy = sorted(((atomic_number(e), e, c) for e, c in composition.items() if e != "H"), reverse=True)
        per_asu = z_asym or 1.0
        seq = []
        for _, e, c in heavy:
            seq += [e] * max(1, int(round(c / per_asu)))
        for rank, i in enumerate(order):
            out[i] = seq[rank] if rank < len(seq) else "Q"
        return out
    ref = np.median(heights[order[: max(1, n // 2)]])
    common = [6, 7, 8, 9, 15, 16, 17, 26, 29, 35, 53]
    for i in range(n):
        z = 6.0 * heights[i] / max(ref, 1e-12)
        out[i] = symbol_from_number(min(common, key=lambda c: abs(c - z)))
    return out


def finish_solution(problem: PhasingProblem, sol: Solution, max_peaks: Optional[int] = None, ref_phases=None) -> Solution:
    """Comparison with the reference model (aligning the origin), map, peaks with element guesses."""
    compare_with_reference(problem, sol, ref_phases)
    dmap = density_map(problem.cell, problem.space_group, problem.hkl, sol.F, d_min=problem.d_min, sampling=3.0)
    if max_peaks is None:
        n_heavy = sum(v for k, v in problem.composition.items() if k != "H") if problem.composition else None
        max_peaks = int(np.ceil(n_heavy / problem.space_group.n_operations * 1.3)) + 5 if n_heavy else 40
    peaks = find_peaks(dmap, max_peaks=max_peaks, min_distance=0.9, threshold_sigma=1.0)
    z_asym = problem.space_group.n_operations
    sol.dmap, sol.peaks = dmap, peaks
    sol.elements = guess_elements(peaks.height, problem.composition or None, z_asym)
    return sol


def solve_charge_flipping(problem: PhasingProblem, settings=None, progress=None, cancel=None) -> list[Solution]:
    from .charge_flipping import ChargeFlippingSettings, charge_flipping

    t0 = time.perf_counter()
    res = charge_flipping(problem.hkl, problem.amplitudes, problem.cell, problem.space_group,
                          settings or ChargeFlippingSettings(),
                          progress=lambda f, m: report(progress, 0.9 * f, m), cancel=cancel)
    ref = reference_phases(problem)
    out = []
    for r in res:
        check_cancel(cancel)
        sol = Solution("charge flipping", f"CF start {r.start + 1} (δ = {r.delta_factor:g}σ)", problem.hkl, r.phases,
                       problem.amplitudes, r.fom,
                       {"R": r.r_factor, "symmetry agreement": r.symmetry_agreement, "iterations": r.iterations,
                        "converged": r.converged, "seconds": r.seconds})
        out.append(finish_solution(problem, sol, ref_phases=ref))
    report(progress, 1.0, f"charge flipping: {len(out)} solutions in {time.perf_counter() - t0:.1f} s")
    return out


def solve_phai(problem: PhasingProblem, model, *, max_cycles: int = 10, random_starts: int = 4, seed: int = 0,
               keep: int = 10, progress=None, cancel=None) -> list[Solution]:
    """PhAI scan in the P2₁/c setting; the best `keep` candidates by figure of merit come back in the
    input setting (amplitudes of all data, PhAI phases for reflections on its list)."""
    from .phai_grid import PhAIGrid
    from .phai_inference import phai_input_from_reflections, phai_scan
    from .settings import p21c_transform, transform_reflections

    tr = p21c_transform(problem.space_group, problem.cell)
    data = transform_reflections(replace(problem.data, values=problem.amplitudes, kind="F"), tr)
    inp = phai_input_from_reflections(data.hkl, data.values, data.space_group, PhAIGrid(model.config.max_index))
    grid = PhAIGrid(model.config.max_index)
    ref_grid = None
    if problem.reference is not None:
        from .settings import to_p21c

        ref_grid = np.degrees(np.angle(structure_factors(to_p21c(problem.reference), grid.hkl)))
    cands = phai_scan(model, inp.amplitudes, max_cycles=max_cycles, random_starts=random_starts, seed=seed,
                      reference_phases=ref_grid, progress=lambda f, m: report(progress, 0.9 * f, m), cancel=cancel)
    mapper = ListPhaseMapper(grid, data.hkl, data.space_group)
    ref = reference_phases(problem)
    out = []
    for c in cands[:keep]:
        check_cancel(cancel)
        ph_input = mapper(c.phases) - tr.phase_shift(data.hkl)
        amps = np.where(mapper.on_list, problem.amplitudes, 0.0)
        sol = Solution("PhAI", f"PhAI start {'zero' if c.start == 0 else c.start}, {c.cycles} cycles", problem.hkl,
                       ph_input, amps, c.fom,
                       {"confidence": c.confidence, "skewness": c.skewness, "stable": c.stable,
                        "list map r": c.map_r, "on PhAI list": int(mapper.on_list.sum())})
        out.append(finish_solution(problem, sol, ref_phases=ref))
    report(progress, 1.0, f"PhAI: {len(cands)} candidates")
    return out


class ListPhaseMapper:
    """Phases of the PhAI list (degrees, P2₁/c) → phases (radians) of data reflections (P2₁/c indices):
    both go through the reciprocal ASU with φ(h_asu) = s(φ(h) + shift), s = −1 for Friedel mates."""

    def __init__(self, grid, data_hkl, space_group: SpaceGroup):
        from ..crystal.symmetry import encode_hkl

        asu_l, self.shift_l, self.fr_l = space_group.to_asu(grid.hkl)
        asu_d, self.shift_d, self.fr_d = space_group.to_asu(data_hkl)
        pos = {k: i for i, k in enumerate(encode_hkl(asu_l))}
        kd = encode_hkl(asu_d)
        self.on_list = np.array([k in pos for k in kd], dtype=bool)
        self.idx = np.array([pos.get(k, 0) for k in kd], dtype=np.int64)

    def __call__(self, list_phases_deg) -> np.ndarray:
        ph = np.radians(np.asarray(list_phases_deg, dtype=np.float64))
        ph_asu = np.where(self.fr_l, -(ph + self.shift_l), ph + self.shift_l)[self.idx]
        return np.where(self.fr_d, -ph_asu, ph_asu) - self.shift_d


# ------------------------------------------------------------------------------------------ exports
def peaks_structure(problem: PhasingProblem, sol: Solution) -> Structure:
    sites = []
    counts: dict[str, int] = {}
    for x, e in zip(sol.peaks.xyz, sol.elements):
        el = e if e != "Q" else "C"
        counts[el] = counts.get(el, 0) + 1
        sites.append(Site(f"{el}{counts[el]}", el, x, 1.0, 0.03))
    return Structure(problem.cell, problem.space_group, sites, title=f"{sol.label}", wavelength=problem.data.wavelength)


def export_solution(problem: PhasingProblem, sol: Solution, out_dir) -> dict[str, str]:
    """solution.fcf (SHELXL LIST 3: Fo, σ, A, B), map.ccp4, peaks.res (atoms + Q-peaks), phases.csv."""
    from ..io.ccp4 import write_ccp4_map
    from ..io.cif import write_fcf
    from ..io.common import atomic_output
    from ..io.shelx import write_res

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    write_fcf(out / "solution.fcf", problem.hkl, problem.amplitudes, problem.sigmas, sol.F, problem.cell,
              problem.space_group, title=f"{Path(problem.source).stem} {sol.label}", wavelength=problem.data.wavelength)
    paths["fcf"] = str(out / "solution.fcf")
    write_ccp4_map(out / "map.ccp4", sol.dmap)
    paths["map"] = str(out / "map.ccp4")
    st = peaks_structure(problem, sol)
    assigned = [s for s, e in zip(st.sites, sol.elements) if e != "Q"]
    qpeaks = [(f"Q{i + 1}", x, h) for i, (x, h, e) in enumerate(zip(sol.peaks.xyz, sol.peaks.height_sigma, sol.elements))
              if e == "Q"]
    write_res(out / "peaks.res", replace(st, sites=assigned), q_peaks=qpeaks,
              extra_commands=[f"REM {sol.method}: {sol.label}, FOM {sol.fom:.4f}", "L.S. 10", "PLAN 20", "FMAP 2"])
    paths["res"] = str(out / "peaks.res")
    with atomic_output(out / "phases.csv") as f:
        w = csv.writer(f)
        w.writerow(["h", "k", "l", "F", "sigma_F", "phase_deg"])
        for (h, k, l), a, s, p in zip(problem.hkl, problem.amplitudes, problem.sigmas, np.degrees(sol.phases)):
            w.writerow([h, k, l, f"{a:.4f}", f"{s:.4f}", f"{p:.2f}"])
    paths["csv"] = str(out / "phases.csv")
    return paths
