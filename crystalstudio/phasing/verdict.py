"""The verdict on a solution: solved, partial or not solved, with R1 and the reason.

"solved" must mean right (≥ 90 % of the atoms within 0.5 Å of the true ones, ≥ 90 % of them with the right
element); the rule below was calibrated on the real structure/data pairs in ../shared/data and on generated
structures (bench/calibrate_verdict.py; its measured false-positive rate is in bench/results):

- not solved: a blocking data check (resolution worse than 1.2 Å, completeness < 50 %, fewer than 5
  reflections per expected atom), no model, R1 > R1_PARTIAL, or a median Uiso above U_JUNK (smeared noise);
- solved: a cell content (without one the elements are guesses), R1 ≤ R1_SOLVED, at least FOUND_SOLVED of
  the expected atoms in the model, at least BONDED_SOLVED of the atoms at bonding distance from another,
  ≥ PARAMETER_RATIO reflections per parameter, plausible Uiso, no loose atom (Uiso > U_LOOSE_RATIO × the
  median: disorder, where the formula's counts no longer tell which site holds which element), electron
  counts that separate neighbouring elements (estimated element errors ≤ ELEMENT_ERRORS_MAX, see
  :func:`element_error_estimate`; class means at least half their Z difference apart, see
  :func:`unseparated_elements`), and no data warning;
- partial: everything in between, with what stands in the way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from .data_checks import DataCheck
from .model_building import StructureModel, bonded, distance_matrix

R1_SOLVED = 0.15
R1_PARTIAL = 0.30
FOUND_SOLVED = 0.85  # atoms in the model / expected atoms
BONDED_SOLVED = 0.80  # atoms with a neighbour within r_i + r_j + 0.45 Å
PARAMETER_RATIO = 8.0  # unique reflections per refined parameter (10 was tried: it demoted 6 right generated
#                        models at 8.1–9.9 and caught no wrong one, bench/calibrate_verdict.py seed 0)
U_MEDIAN_MAX = 0.10  # Å²: a larger median Uiso means peaks in noise, not atoms (at best partial)
U_JUNK = 0.15  # Å²: a median Uiso above this is no structure at all (not solved)
U_BOUND_FRACTION = 0.15  # more atoms than this at the Uiso bounds: the model fights the data
U_LOOSE_RATIO = 2.5  # an atom with Uiso above this × the median (and above U_LOOSE_MIN) is loose: disorder
U_LOOSE_MIN = 0.06  # Å²
ELEMENT_ERRORS_MAX = 0.14  # estimated fraction of atoms with a neighbouring element above which elements are unsure
#                            (a lower limit catches no more wrong models than it costs right ones: calibrate_verdict
#                            --from-facts bench/results/verdict_calibration_cases_seed*.jsonl.gz)


@dataclass
class Verdict:
    status: str  # 'solved', 'partial' or 'not solved'
    r1: Optional[float]
    reasons: list[str] = field(default_factory=list)

    @property
    def solved(self) -> bool:
        return self.status == "solved"

    @property
    def settled(self) -> bool:
        """Solved, or a model that explains the data (R1 ≤ R1_SOLVED) held back only by what another start
        would reproduce (disorder, data warnings): no point in trying further starts."""
        return self.status == "solved" or (self.r1 is not None and np.isfinite(self.r1) and self.r1 <= R1_SOLVED)

    def line(self) -> str:
        r = f", R1 {self.r1:.3f}" if self.r1 is not None and np.isfinite(self.r1) else ""
        return f"verdict: {self.status}{r} — {'; '.join(self.reasons)}"


def model_facts(model: StructureModel) -> dict:
    """The numbers the rule looks at (also shown in the candidate table)."""
    st = model.structure
    stats = model.statistics
    facts = {"r1": stats.r1, "n_atoms": st.n_sites, "n_par": stats.n_par, "n_ref": stats.n_ref,
             "ratio": stats.n_ref / max(stats.n_par, 1), "found": model.found_fraction()}
    if st.n_sites:
        dist = distance_matrix(st)
        b = bonded(dist, st.elements)
        facts["bonded"] = float(np.mean(b.any(axis=1)))
        u = st.u_iso
        facts["u_median"] = float(np.median(u))
        facts["u_max_ratio"] = float(np.max(u) / max(np.median(u), 1e-6))
        facts["n_loose"] = int(np.sum((u > U_LOOSE_RATIO * np.median(u)) & (u > U_LOOSE_MIN)))
        facts["u_bound"] = float(np.mean(model.refinement.at_u_bound))
    facts["element_errors"], facts["overlapping"] = element_error_estimate(model)
    facts["unseparated"] = unseparated_elements(model)
    return facts


def unseparated_elements(model: StructureModel, max_dz: int = 3) -> list[str]:
    """Neighbouring elements (Z within `max_dz`) with one atom each — the case the class-scatter estimate of
    :func:`element_error_estimate` cannot judge — whose electron counts differ by less than half their atomic
    numbers do, e.g. 'P/S (15.5 vs 15.6 e)': the data do not say which site holds which."""
    from ..crystal.elements import atomic_number

    if model.composition is None or not model.atoms:
        return []
    el = np.array([a.element for a in model.atoms])
    e = np.array([a.electrons for a in model.atoms], dtype=float)
    present = sorted(set(el), key=atomic_number)
    out = []
    for A, B in zip(present[:-1], present[1:]):
        dz = atomic_number(B) - atomic_number(A)
        if dz > max_dz:
            continue
        if np.sum(el == A) + np.sum(el == B) >= 3:
            continue  # judged by element_error_estimate
        ea, eb = float(np.mean(e[el == A])), float(np.mean(e[el == B]))
        if eb - ea < 0.5 * dz:
            out.append(f"{A}/{B} ({ea:.1f} vs {eb:.1f} e)")
    return out


def element_error_estimate(model: StructureModel, max_dz: int = 3) -> tuple[Optional[float], list[str]]:
    """Expected fraction of atoms carrying a neighbouring element, from how well the electron counts of the
    assigned classes separate: for each pair of elements present whose Z differ by ≤ `max_dz` (C/N, N/O,
    S/Cl …), d′ = (ln Z_B − ln Z_A)/s with s the pooled scatter of ln(electrons) within the two classes, and
    each atom of the pair is mistaken with probability Φ(−d′/2) (two Gaussian classes split at the middle).
    Returns (fraction, the pairs that overlap); (None, []) without a cell content."""
    from scipy.stats import norm

    from ..crystal.elements import atomic_number

    if model.composition is None or not model.atoms:
        return None, []
    el = np.array([a.element for a in model.atoms])
    lne = np.log(np.maximum([a.electrons for a in model.atoms], 1e-6))
    present = sorted(set(el), key=atomic_number)
    errors, pairs = 0.0, []
    for A, B in zip(present[:-1], present[1:]):
        if atomic_number(B) - atomic_number(A) > max_dz:
            continue
        a, b = lne[el == A], lne[el == B]
        if len(a) + len(b) < 3:
            continue
        s = np.sqrt((np.sum((a - a.mean()) ** 2) + np.sum((b - b.mean()) ** 2)) / max(len(a) + len(b) - 2, 1))
        d_prime = (np.log(atomic_number(B)) - np.log(atomic_number(A))) / max(s, 0.02)
        e = (len(a) + len(b)) * norm.cdf(-d_prime / 2)
        errors += e
        if e >= 0.5:
            pairs.append(f"{A}/{B}")
    return errors / len(model.atoms), pairs


def _atoms_text(model: StructureModel) -> str:
    """'16 atoms for 15.5 expected' (asymmetric unit), or per cell where atoms sit on special positions."""
    orders = model.refinement.site_orders
    if np.all(orders == 1):
        return f"{model.n_atoms} atoms for {model.expected_atoms:.1f} expected"
    n_ops = model.structure.space_group.n_operations
    return (f"{model.n_atoms} sites, {np.sum(n_ops / orders):g} atoms per cell for "
            f"{model.expected_atoms * n_ops:g} expected")


def judge(checks: list[DataCheck], model: Optional[StructureModel]) -> Verdict:
    blocking = [c.message for c in checks if c.blocking]
    warnings = [c.message for c in checks if not c.ok and not c.blocking]
    if model is None or model.structure.n_sites == 0:
        return Verdict("not solved", None, blocking + ["no atoms could be placed"])
    f = model_facts(model)
    r1 = f["r1"]
    if blocking:
        return Verdict("not solved", r1, blocking)
    if not np.isfinite(r1) or r1 > R1_PARTIAL:
        return Verdict("not solved", r1, [f"R1 {r1:.2f}: the model does not explain the data"] + warnings)
    if f["u_median"] > U_JUNK:
        return Verdict("not solved", r1, [f"median Uiso {f['u_median']:.2f} Å²: the 'atoms' are smeared peaks in "
                                          "noise, not a structure"] + warnings)
    problems = []
    if r1 > R1_SOLVED:
        problems.append(f"R1 {r1:.3f} > {R1_SOLVED:.2f}")
    if f["found"] is not None and f["found"] < FOUND_SOLVED:
        problems.append(f"{_atoms_text(model)}: atoms are missing")
    if f["bonded"] < BONDED_SOLVED:
        problems.append(f"only {100 * f['bonded']:.0f} % of the atoms are at bonding distance from another")
    if f["ratio"] < PARAMETER_RATIO:
        problems.append(f"{f['ratio']:.1f} reflections per parameter (< {PARAMETER_RATIO:.0f})")
    if f["u_median"] > U_MEDIAN_MAX:
        problems.append(f"median Uiso {f['u_median']:.3f} Å² (peaks in noise?)")
    if f["u_bound"] > U_BOUND_FRACTION:
        problems.append(f"{100 * f['u_bound']:.0f} % of the atoms at a Uiso bound")
    if f["n_loose"]:
        problems.append(f"{f['n_loose']} atom{'s' if f['n_loose'] > 1 else ''} with Uiso > {U_LOOSE_RATIO:g}× the median "
                        "(disorder or partly occupied sites: the formula's counts cannot be trusted to place elements)")
    if model.composition is None:
        problems.append("no cell content given: the elements are guesses from electron counts (give a formula)")
    elif f["unseparated"]:
        problems.append(f"elements unsure: {', '.join(f['unseparated'])} — the electron counts do not tell these "
                        "neighbouring elements apart (check them by their bonds)")
    elif f["element_errors"] is not None and f["element_errors"] > ELEMENT_ERRORS_MAX:
        problems.append(f"elements uncertain: the electron counts of {', '.join(f['overlapping']) or 'neighbouring elements'} "
                        f"overlap (about {100 * f['element_errors']:.0f} % of the atoms may carry a neighbouring element)")
    if not problems and not warnings:
        return Verdict("solved", r1, [f"{_atoms_text(model)}, {f['ratio']:.0f} reflections per parameter; "
                                      f"elements from {model.composition.source}"])
    return Verdict("partial", r1, problems + warnings)
