"""Point-and-click structure solution: read data, check them, phase with charge flipping or PhAI, build
and refine a model from each candidate, judge it (solved / partial / not solved with R1 and the reason),
compare with a reference model when one is given, export for refinement.

Everything here works in the setting of the input file; PhAI internally changes P2₁/n or P2₁/a to
P2₁/c and its phases are mapped back. Phases in radians, amplitudes |F| on the data's scale.
"""

from __future__ import annotations

import csv
import shutil
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
from ..errors import CrystalStudioError, InvalidInputError
from ..jobs import check_cancel, report
from .composition import Composition, composition_from_file, composition_from_structure
from .data_checks import check_data, drop_unusable
from .model_building import StructureModel, build_model, expected_asu_atoms
from .refinement import ObservedData
from .verdict import Verdict, judge

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
    composition: Optional[Composition] = None
    reference: Optional[Structure] = None
    notes: list = field(default_factory=list)
    checks: list = field(default_factory=list)  # DataCheck
    observed: Optional[ObservedData] = None  # Fo², σ(Fo²) of the unique data, for refinement
    raw: Optional[ReflectionData] = None  # the usable records as read (unmerged), for model.hkl
    expected_atoms: Optional[float] = None  # non-H atoms in the asymmetric unit (from the composition or V/18 Å³)

    @property
    def cell(self) -> UnitCell:
        return self.data.cell

    @property
    def space_group(self) -> SpaceGroup:
        return self.data.space_group

    @property
    def hkl(self) -> np.ndarray:
        return self.data.hkl

    @property
    def blocked(self) -> bool:
        return any(c.blocking for c in self.checks)

    def summary(self) -> str:
        lines = [f"{Path(self.source).name}: {self.space_group} — {self.cell}",
                 f"{self.n_measured} measured → {len(self.hkl)} unique reflections, R_int "
                 f"{'—' if not np.isfinite(self.r_int) else f'{self.r_int:.3f}'}, "
                 f"d = {self.d_max:.2f}–{self.d_min:.3f} Å, completeness {100 * self.completeness:.1f} %, "
                 f"⟨I/σ⟩ {self.i_over_sigma:.1f}"]
        if self.composition is not None:
            n = self.composition.n_non_hydrogen() / self.space_group.n_operations
            lines.append(f"cell content {self.composition} → {n:.1f} non-H atoms in the asymmetric unit")
        else:
            lines.append("cell content unknown: elements from peak heights only (give a formula)")
        if self.reference is not None:
            lines.append(f"reference model: {self.reference.n_sites} atoms ({self.reference.source or self.reference.title})")
        lines += self.notes
        if self.checks:
            lines.append("data checks:")
            lines += [c.line() for c in self.checks]
        return "\n".join(lines)


def _read_companion(path: Path, notes: list):
    """(companion path, its structure, its SHELX file) for the .ins/.res/.cif beside a reflection file (None
    where absent or unreadable); an unreadable companion becomes a note, never an error."""
    from ..io.reflections import find_companion
    from ..io.structures import read_structure

    comp = find_companion(path)
    if comp is None:
        return None, None, None
    try:
        if comp.suffix.lower() in (".ins", ".res"):
            from ..io.shelx import read_shelx

            sh = read_shelx(comp)
            return comp, sh.structure, sh
        return comp, read_structure(comp), None
    except CrystalStudioError as exc:
        notes.append(f"companion {comp.name} ignored: {exc}")
        return comp, None, None


def prepare_problem(reflections, *, structure=None, cell: Optional[UnitCell] = None,
                    space_group: Optional[SpaceGroup] = None, formula: Optional[str] = None, z: Optional[float] = None,
                    amplitudes: bool = False, min_reflections: int = 30) -> PhasingProblem:
    """Read (path or ReflectionData), attach cell/symmetry, drop unusable records, merge, convert to |F|,
    find the cell content, check the data.

    Cell and symmetry: `cell`/`space_group` given here, else the file's own, else the reference `structure`,
    else the companion .ins/.res/.cif (same stem, any case). Composition: `formula` (× `z`), else the
    reference structure, else the companion (SFAC/UNIT or CIF formula × Z), else the reflection CIF itself.
    `amplitudes`: the file holds |F| (also taken from a companion's HKLF 3).
    """
    from ..io.reflections import read_reflections
    from ..io.structures import read_structure

    ref = None
    if structure is not None:
        ref = read_structure(structure) if not isinstance(structure, Structure) else structure
    notes: list[str] = []
    comp_path = comp_st = comp_sh = None
    if isinstance(reflections, ReflectionData):
        data = reflections
        path = Path(data.source) if data.source else None
    else:
        path = Path(reflections)
        from ..io.reflections import _sniff
        from ..io.common import check_readable

        check_readable(path)
        is_hklf = _sniff(path) == "hklf"
        comp_path, comp_st, comp_sh = _read_companion(path, notes)
        code = 3 if amplitudes or (is_hklf and comp_sh is not None and comp_sh.hklf == 3) else 4
        data = read_reflections(path, cell=cell, space_group=space_group, hklf_code=code, companion=False)
        if is_hklf and code == 3 and not amplitudes:
            notes.append(f"{comp_path.name} says HKLF 3: the file is read as amplitudes |F|")
        if amplitudes and data.kind == "I":
            data = replace(data, kind="F")
    data = data.with_symmetry(cell, space_group)
    if data.cell is None or data.space_group is None:
        for what, st in (("the reference model", ref), (comp_path.name if comp_path else "", comp_st)):
            if st is not None:
                data = data.with_symmetry(data.cell or st.cell, data.space_group or st.space_group)
                notes.append(f"cell and symmetry from {what}")
                data.wavelength = data.wavelength or st.wavelength
                break
    if data.cell is None or data.space_group is None:
        missing = ("the cell and the space group are" if data.cell is None and data.space_group is None else
                   "the cell is" if data.cell is None else "the space group is")
        it = "them" if missing.endswith("are") else "it"
        raise InvalidInputError(f"{data.source}: {missing} unknown — neither the file nor a companion .ins/.res/.cif "
                                f"beside it gives {it}; give the cell (a b c α β γ) and the space group, or a "
                                "reference structure")
    if ref is not None and not np.allclose(ref.cell.parameters, data.cell.parameters, rtol=0.02, atol=0.05):
        raise InvalidInputError(f"the reference model's cell ({ref.cell}) differs from the data's ({data.cell})")
    if ref is not None and ref.space_group != data.space_group:
        raise InvalidInputError(f"the reference model's space group ({ref.space_group}) differs from the data's "
                                f"({data.space_group})")
    # composition
    comp = None
    if formula:
        comp = Composition.from_formula(formula, z)
    elif ref is not None:
        comp = composition_from_structure(ref, f"reference model {Path(ref.source).name if ref.source else ''}".strip())
    else:
        for cand in ([comp_path] if comp_path is not None else []) + ([path] if path is not None else []):
            if cand is None or (cand == comp_path and comp_st is None and comp_sh is None):
                continue
            try:
                comp = composition_from_file(cand)
            except CrystalStudioError as exc:
                notes.append(f"cell content of {cand.name} unreadable: {exc}")
                comp = None
            if comp is not None:
                break
    if comp is not None:
        vpa = comp.volume_per_atom(data.cell.volume)
        if vpa > 35 and formula:
            notes.append(f"the formula gives {vpa:.0f} Å³ per non-H atom (organic crystals: ~18): is it one formula "
                         "unit? give Z")
    usable, n_bad_sigma, n_placeholder = drop_unusable(data)
    if len(usable) == 0:
        if not np.any(np.isfinite(data.sigmas)):
            raise InvalidInputError(f"{data.source}: the file gives no σ for its {len(data)} reflections — the "
                                    "weights and R1 (Fo > 4σ) need them (powder intensities or calculated values?)")
        raise InvalidInputError(f"{data.source}: no usable reflection — every record has σ ≤ 0 or a placeholder value")
    raw = usable
    m = usable.merged()
    md = m.data
    if len(md) < min_reflections:
        raise InvalidInputError(f"{data.source}: only {len(md)} unique reflections — too few to solve a structure")
    F, sF = md.amplitudes()
    d = md.cell.d_spacing(md.hkl)
    notes = list(data.notes) + notes
    if m.n_absent_violations:
        notes.append(f"{m.n_absent_violations} systematically absent reflections have I > 3σ: is the space group right?")
    ios = float(np.mean(md.values / md.sigmas)) if md.kind == "I" else float("nan")
    completeness = md.completeness()
    n_exp = expected_asu_atoms(comp, md.cell, md.space_group)
    checks = check_data(n_unique=len(md), completeness=completeness, d_min=float(d.min()), expected_atoms=n_exp,
                        n_dropped_sigma=n_bad_sigma, n_placeholder=n_placeholder, n_records=len(data), kind=md.kind,
                        amplitude_source="as asked (amplitudes)" if amplitudes else "the file's own columns or HKLF 3")
    return PhasingProblem(md, F, sF, str(data.source), len(data), m.r_int, completeness, float(d.min()),
                          float(d.max()), ios, comp, ref, notes, checks, ObservedData.from_reflections(md), raw, n_exp)


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
    phased: Optional[np.ndarray] = None  # (M,) bool: reflections this method phased (PhAI: on its list)
    model: Optional[StructureModel] = None
    verdict: Optional[Verdict] = None

    @property
    def F(self) -> np.ndarray:
        return self.amplitudes * np.exp(1j * self.phases)

    @property
    def r1(self) -> Optional[float]:
        return None if self.model is None or self.model.n_atoms == 0 else self.model.statistics.r1


def rank_key(sol: Solution):
    """Best first: solved before partial before not solved, then lower R1, then higher figure of merit."""
    order = {"solved": 0, "partial": 1, "not solved": 2}
    v = order.get(sol.verdict.status, 3) if sol.verdict is not None else 3
    r1 = sol.r1 if sol.r1 is not None and np.isfinite(sol.r1) else np.inf
    return (v, r1, -sol.fom)


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
    on = sol.phased if sol.phased is not None else np.ones(len(problem.hkl), dtype=bool)
    c = compare_phases(problem.hkl[on], problem.amplitudes[on], sol.phases[on], ref_phases[on], problem.space_group)
    sol.map_r, sol.phase_error = c.r, c.phase_error
    if align:
        ph = sol.phases - 2 * np.pi * (problem.hkl @ c.shift)
        sol.phases = -ph if c.inverted else ph
        sol.details["aligned to reference"] = f"origin shift {np.round(c.shift, 4).tolist()}" + (", inverted" if c.inverted else "")


def guess_elements(heights: np.ndarray, composition=None, z_asym: Optional[float] = None) -> list[str]:
    """Element per peak from its height (for the peak list): with a composition, the heaviest elements go
    to the highest peaks in their asymmetric-unit numbers, the rest are Q-peaks; without one,
    Z ≈ 6·height/median(height) of the upper half (carbon-like), rounded to the nearest common element."""
    n = len(heights)
    if n == 0:
        return []
    counts = composition.counts if isinstance(composition, Composition) else composition
    order = np.argsort(-heights)
    out = ["Q"] * n
    if counts:
        heavy = sorted(((atomic_number(e), e, c) for e, c in counts.items() if e != "H"), reverse=True)
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


def finish_solution(problem: PhasingProblem, sol: Solution, max_peaks: Optional[int] = None, ref_phases=None,
                    build: bool = True, progress=None, cancel=None) -> Solution:
    """Comparison with the reference model (aligning the origin), map, peaks; with `build`, a refined model
    with elements and the verdict on it."""
    compare_with_reference(problem, sol, ref_phases)
    on = sol.phased if sol.phased is not None else np.ones(len(problem.hkl), dtype=bool)
    dmap = density_map(problem.cell, problem.space_group, problem.hkl[on], sol.F[on], d_min=problem.d_min, sampling=3.0)
    if max_peaks is None:
        max_peaks = int(np.ceil(1.3 * (problem.expected_atoms or 20))) + 5
    peaks = find_peaks(dmap, max_peaks=max_peaks, min_distance=0.9, threshold_sigma=1.0)
    sol.dmap, sol.peaks = dmap, peaks
    sol.elements = guess_elements(peaks.height, problem.composition, problem.space_group.n_operations)
    if build:
        sol.model = build_model(problem.observed, problem.hkl[on], problem.amplitudes[on], sol.phases[on],
                                problem.composition, title=f"{Path(problem.source).stem} {sol.label}",
                                wavelength=problem.data.wavelength, progress=progress, cancel=cancel)
        sol.verdict = judge(problem.checks, sol.model)
    else:
        sol.verdict = judge(problem.checks, None) if problem.blocked else None
    return sol


def solve_charge_flipping(problem: PhasingProblem, settings=None, progress=None, cancel=None, *, build: bool = True,
                          stop_when_solved: bool = True) -> list[Solution]:
    """Charge flipping, start by start; with `build`, every start's phases become a refined, judged model and,
    with `stop_when_solved`, no further start runs once one is solved or settled (R1 ≤ 0.15: another start
    would find the same structure). Best first (see :func:`rank_key`)."""
    from .charge_flipping import ChargeFlippingSettings, charge_flipping

    t0 = time.perf_counter()
    s = settings or ChargeFlippingSettings()
    ref = reference_phases(problem)
    out: list[Solution] = []

    def on_start(r) -> bool:
        check_cancel(cancel)
        sol = Solution("charge flipping", f"CF start {r.start + 1} (δ = {r.delta_factor:g}σ)", problem.hkl, r.phases,
                       problem.amplitudes, r.fom,
                       {"R": r.r_factor, "symmetry agreement": r.symmetry_agreement, "iterations": r.iterations,
                        "converged": r.converged, "seconds": r.seconds})
        frac = min(0.95, (r.start + 1) / max(s.random_starts, 1))
        # once a model explains the data roughly (partial), a later start is built only if it looks better
        found = [o for o in out if o.verdict is not None and o.verdict.status != "not solved" and o.model is not None]
        do_build = build and (not found or r.fom > max(o.fom for o in found))
        report(progress, frac, f"start {r.start + 1}: " + ("building a model" if do_build else "no better than the model in hand"))
        finish_solution(problem, sol, ref_phases=ref, build=do_build, cancel=cancel)
        out.append(sol)
        return bool(build and stop_when_solved and sol.verdict is not None and sol.verdict.settled)

    charge_flipping(problem.hkl, problem.amplitudes, problem.cell, problem.space_group, s,
                    progress=lambda f, m: report(progress, 0.95 * f, m), cancel=cancel, on_result=on_start)
    out.sort(key=rank_key)
    report(progress, 1.0, f"charge flipping: {len(out)} candidates in {time.perf_counter() - t0:.1f} s")
    return out


def phai_domain_warnings(problem: PhasingProblem, model) -> list[str]:
    """Where the data lie outside what the PhAI model was trained on (cell axes of the P2₁/c setting)."""
    from .settings import p21c_transform

    dom = getattr(model, "domain", None) or {}
    a_max = float(dom.get("a_max", 10.0))
    cell = p21c_transform(problem.space_group, problem.cell).cell(problem.cell)
    long = [f"{n} = {v:.2f} Å" for n, v in zip("abc", cell.parameters[:3]) if v > a_max + 1e-6]
    if long:
        return [f"cell outside the PhAI model's training domain (axes ≤ {a_max:g} Å): {', '.join(long)} — "
                "expect PhAI to fail; charge flipping does not have this limit"]
    return []


def solve_phai(problem: PhasingProblem, model, *, max_cycles: int = 10, random_starts: int = 4, seed: int = 0,
               keep: int = 10, build: bool = True, build_top: int = 3, stop_when_solved: bool = True,
               progress=None, cancel=None) -> list[Solution]:
    """PhAI scan in the P2₁/c setting; the best `keep` candidates by figure of merit come back in the
    input setting. Only reflections on the PhAI list carry phases (`Solution.phased`); maps and models use
    those. With `build`, the `build_top` best candidates become refined, judged models."""
    from .phai_grid import PhAIGrid
    from .phai_inference import phai_input_from_reflections, phai_scan
    from .settings import p21c_transform, transform_reflections

    tr = p21c_transform(problem.space_group, problem.cell)
    data = transform_reflections(replace(problem.data, values=problem.amplitudes, kind="F"), tr)
    grid = PhAIGrid(model.config.max_index)
    inp = phai_input_from_reflections(data.hkl, data.values, data.space_group, grid)
    ref_grid = None
    if problem.reference is not None:
        from .settings import to_p21c

        ref_grid = np.degrees(np.angle(structure_factors(to_p21c(problem.reference), grid.hkl)))
    cands = phai_scan(model, inp.amplitudes, max_cycles=max_cycles, random_starts=random_starts, seed=seed,
                      reference_phases=ref_grid, progress=lambda f, m: report(progress, 0.6 * f, m), cancel=cancel)
    mapper = ListPhaseMapper(grid, data.hkl, data.space_group)
    ref = reference_phases(problem)
    out = []
    n_on = int(mapper.on_list.sum())
    solved = False
    for i, c in enumerate(cands[:keep]):
        check_cancel(cancel)
        ph_input = mapper(c.phases) - tr.phase_shift(data.hkl)
        sol = Solution("PhAI", f"PhAI start {'zero' if c.start == 0 else c.start}, {c.cycles} cycles", problem.hkl,
                       np.where(mapper.on_list, ph_input, 0.0), problem.amplitudes.copy(), c.fom,
                       {"confidence": c.confidence, "skewness": c.skewness, "stable": c.stable,
                        "list map r": c.map_r, "on PhAI list": n_on}, phased=mapper.on_list.copy())
        do_build = build and i < build_top and not solved
        report(progress, 0.6 + 0.4 * i / max(min(keep, len(cands)), 1), f"candidate {i + 1}" + (": building a model" if do_build else ""))
        finish_solution(problem, sol, ref_phases=ref, build=do_build, cancel=cancel)
        solved = solved or bool(stop_when_solved and sol.verdict is not None and sol.verdict.settled)
        out.append(sol)
    out.sort(key=rank_key)
    report(progress, 1.0, f"PhAI: {len(cands)} candidates, {n_on} of {len(problem.hkl)} unique reflections on its list")
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
    """solution.fcf (SHELXL LIST 3: Fo, σ, A, B — only phased reflections), map.ccp4, peaks.res (atoms +
    Q-peaks), phases.csv and, with a model, model.res (SHELXL-ready) with model.hkl beside it."""
    from ..io.ccp4 import write_ccp4_map
    from ..io.cif import write_fcf
    from ..io.common import atomic_output
    from ..io.shelx import write_res

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    on = sol.phased if sol.phased is not None else np.ones(len(problem.hkl), dtype=bool)
    write_fcf(out / "solution.fcf", problem.hkl[on], problem.amplitudes[on], problem.sigmas[on], sol.F[on], problem.cell,
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
        for (h, k, l), a, s, p in zip(problem.hkl[on], problem.amplitudes[on], problem.sigmas[on], np.degrees(sol.phases[on])):
            w.writerow([h, k, l, f"{a:.4f}", f"{s:.4f}", f"{p:.2f}"])
    paths["csv"] = str(out / "phases.csv")
    if sol.model is not None and sol.model.n_atoms:
        paths.update(export_model(problem, sol, out))
    return paths


def export_model(problem: PhasingProblem, sol: Solution, out_dir) -> dict[str, str]:
    """model.res (TITL … HKLF, END; atoms with Uiso, or ANIS U11 U22 U33 U23 U13 U12 where refined; FVAR = the refined scale, WGHT as refined) and the
    reflections as model.hkl (the input .hkl copied as it is; other formats written as HKLF 4, or HKLF 3
    for amplitudes), so that `shelxl model` runs in that folder."""
    from ..io.common import write_text_atomic
    from ..io.hkl import format_hklf4
    from ..io.shelx import write_res

    out = Path(out_dir)
    model = sol.model
    stats = model.statistics
    code = 3 if problem.data.kind == "F" else 4
    comp = problem.composition
    sfac = list(dict.fromkeys(sorted(model.structure.elements, key=lambda e: (e != "C", atomic_number(e)))))
    unit = {}
    if comp is not None:
        for e in comp.counts:
            if e not in sfac:
                sfac.append(e)
        unit = {e: comp.counts.get(e, 0.0) for e in sfac}
    verdict = sol.verdict.line() if sol.verdict is not None else ""
    extra = [f"REM CrystalStudio {sol.method}: {sol.label}",
             f"REM {stats.line()}",
             *([f"REM isotropic before U_ij: {model.isotropic_statistics.line()}"]
               if model.isotropic_statistics is not None else []),
             f"REM {verdict}"[:200],
             "L.S. 10", "PLAN 20", "FMAP 2", f"WGHT {stats.weight_a:.4f} {stats.weight_b:.4f}".rstrip()]
    write_res(out / "model.res", model.structure, title=f"{Path(problem.source).stem} solved by CrystalStudio",
              wavelength=problem.data.wavelength, extra_commands=extra, hklf=code, sfac=sfac, unit=unit or None,
              fvar=[stats.osf])
    src = Path(problem.source)
    if src.suffix.lower() == ".hkl" and src.is_file() and _is_shelx_hkl(src):
        tmp = out / ".model.hkl.tmp"
        shutil.copyfile(src, tmp)
        tmp.replace(out / "model.hkl")
    else:
        raw = problem.raw
        big = float(np.max(np.abs(np.concatenate([raw.values, raw.sigmas]))))
        f = min(1.0, 99999.0 / big) if big > 0 else 1.0  # F8.2 fields: scale down (SHELXL refines the scale)
        write_text_atomic(out / "model.hkl", format_hklf4(raw.hkl, raw.values * f, raw.sigmas * f))
    return {"model": str(out / "model.res"), "hkl": str(out / "model.hkl")}


def _is_shelx_hkl(path: Path) -> bool:
    from ..io.reflections import _sniff

    try:
        return _sniff(path) == "hklf"
    except OSError:
        return False
