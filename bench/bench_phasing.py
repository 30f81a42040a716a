"""From a reflection file to a verdict, on every real structure/data pair in ../shared/data: the table of
issue 11 and the time against the charge-flipping-only pipeline measured in the same run.

For each pair the data are solved without the published model (cell, symmetry and cell content from the
companion file or the reflection CIF; `--formula` where the folder has none): R1 of our model after the
isotropic cycles ("R1 iso") and as reported ("R1", no H; marked "a" where U_ij were refined — at ≥ 10
reflections per parameter), the published model's own R1 recomputed by our code (its atoms as published with
Ueq, one scale, Fo > 4σ) and by gemmi with its anisotropic U ("aniso"),
atoms found (published non-H atoms within 0.5 Å of a model atom after origin/hand alignment; in brackets
those with occupancy ≥ 0.5), elements right among the found, the verdict, and the times:

  baseline  read + merge + charge flipping (3 starts, map, peaks) — what `phase` did before model building
  new       read + merge + charge flipping start by start + model building + refinement + verdict
            (stops when a start gives a settled model)

    python bench/bench_phasing.py [--only NAME …] [--repeat 1]

Timings on the shared 2-core machine are noisy: compare the ratio, measured in the same run.
"""

import argparse
import sys
from dataclasses import replace
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import header  # noqa: E402

from crystalstudio.errors import CrystalStudioError  # noqa: E402
from crystalstudio.io.structures import read_structure  # noqa: E402
from crystalstudio.phasing.model_comparison import match_models  # noqa: E402
from crystalstudio.phasing.refinement import agreement, calculated_f  # noqa: E402
from crystalstudio.phasing.solve import prepare_problem, solve_charge_flipping  # noqa: E402
from tests.realdata import DATA, EMBEDDED, PAIRS  # noqa: E402

# folders where no companion file gives the cell content: what a user would type
FORMULA = {"ylid_P212121_formats/target.hkl": dict(formula="C11H10O2S", z=4, space_group="P212121")}


def gemmi_r1(st, obs) -> float:
    """R1 (Fo > 4σ, one least-squares scale) of the published model with its anisotropic U, by gemmi: what the
    isotropic figure (our code, Ueq) leaves out."""
    import gemmi

    ss = st.to_gemmi()
    calc = gemmi.StructureFactorCalculatorX(ss.cell)
    fc = np.array([abs(calc.calculate_sf_from_small_structure(ss, [int(x) for x in h])) for h in obs.hkl])
    strong = obs.fo2 > 2 * obs.sigma
    k = np.sum(obs.fo[strong] * fc[strong]) / np.sum(fc[strong] ** 2)
    return float(np.sum(np.abs(obs.fo[strong] - k * fc[strong])) / np.sum(obs.fo[strong]))


def run_pair(model_path, refl_path, extra):
    kw = dict(extra)
    st = read_structure(model_path)
    if "space_group" in kw:  # the folder holds two models: the user types cell and group
        kw["space_group"] = st.space_group
        kw["cell"] = st.cell
    t0 = time.perf_counter()
    base = prepare_problem(refl_path, **kw)
    solve_charge_flipping(base, build=False, stop_when_solved=False)
    t_base = time.perf_counter() - t0
    t0 = time.perf_counter()
    p = prepare_problem(refl_path, **kw)
    sols = solve_charge_flipping(p)
    t_new = time.perf_counter() - t0
    best = sols[0]
    iso = replace(st, sites=[replace(s, u_iso=s.u_equivalent(st.cell), u_aniso=None) for s in st.sites])
    pub = agreement(p.observed, calculated_f(iso, p.observed.hkl))
    m = best.model
    r1_iso = m.isotropic_statistics.r1 if m is not None and m.isotropic_statistics is not None else best.r1
    row = dict(verdict=best.verdict, r1=best.r1, r1_iso=r1_iso, aniso=bool(m is not None and m.anisotropic),
               pub=pub.r1, pub_aniso=gemmi_r1(st, p.observed), t_new=t_new, t_base=t_base, starts=len(sols))
    if best.model is not None and best.model.n_atoms:
        m = match_models(best.model.structure, st, p.hkl, p.amplitudes)
        major = match_models(best.model.structure, st, p.hkl, p.amplitudes, min_occupancy=0.5)
        row.update(match=m, major=major)
    return row


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", nargs="*", help="substrings of the pair names to run")
    args = ap.parse_args()
    header("phase: file → verdict on the real pairs, against charge flipping alone (same run)")
    if DATA is None:
        print("../shared/data is absent: nothing to run")
        return
    rows = []
    print(f"{'pair':42s} {'verdict':11s} {'R1 iso':>6s} {'R1':>6s} {'pub R1':>6s} {'aniso':>6s} {'atoms found':>13s} {'elements':>9s} "
          f"{'new s':>6s} {'CF s':>6s} {'ratio':>6s}")
    for model, refl in PAIRS + [(e, e) for e in EMBEDDED]:
        if args.only and not any(o in model for o in args.only):
            continue
        try:
            r = run_pair(DATA / "pairs" / model, DATA / "pairs" / refl, FORMULA.get(refl, {}))
        except CrystalStudioError as exc:
            print(f"{model:42s} not usable: {exc}")
            continue
        r["name"] = model
        rows.append(r)
        m, mj = r.get("match"), r.get("major")
        found = f"{m.n_found}/{m.n_reference} ({mj.n_found}/{mj.n_reference})" if m else "—"
        el = f"{m.n_element_right}/{m.n_found}" if m else "—"
        r1 = f"{r['r1']:.3f}{'a' if r['aniso'] else ' '}" if r["r1"] is not None else "—"
        r1i = f"{r['r1_iso']:.3f}" if r["r1_iso"] is not None else "—"
        print(f"{model:42s} {r['verdict'].status:11s} {r1i:>6s} {r1:>6s} {r['pub']:6.3f} {r['pub_aniso']:6.3f} {found:>13s} {el:>9s} "
              f"{r['t_new']:6.1f} {r['t_base']:6.1f} {r['t_new'] / r['t_base']:6.2f}", flush=True)
        print(f"{'':42s} {r['verdict'].line()}")
    if rows:
        r1s = [r["r1"] for r in rows if r["r1"] is not None]
        ratio = np.array([r["t_new"] / r["t_base"] for r in rows])
        tot_new, tot_base = sum(r["t_new"] for r in rows), sum(r["t_base"] for r in rows)
        r1i = [r["r1_iso"] for r in rows if r["r1_iso"] is not None]
        print(f"median R1 {np.median(r1s):.3f} (isotropic {np.median(r1i):.3f}) over {len(r1s)} pairs; "
              f"anisotropic {sum(r['aniso'] for r in rows)}; solved {sum(r['verdict'].solved for r in rows)}"
              f"/{len(rows)}; time new/CF: median {np.median(ratio):.2f}, max {ratio.max():.2f}, "
              f"total {tot_new:.1f} s / {tot_base:.1f} s = {tot_new / tot_base:.2f}")
        for key, what in (("match", "all published non-H sites"), ("major", "sites with occupancy ≥ 0.5")):
            ms = [r[key] for r in rows if r.get(key)]
            found, ref = sum(m.n_found for m in ms), sum(m.n_reference for m in ms)
            right = sum(m.n_element_right for m in ms)
            fp = [r for r in rows if r["verdict"].solved and not (r.get(key) and r[key].right)]
            print(f"{what}: {found}/{ref} found ({100 * found / max(ref, 1):.1f} %), elements right "
                  f"{right}/{found} ({100 * right / max(found, 1):.1f} %); 'solved' but not right (≥ 90 % found "
                  f"within 0.5 Å, ≥ 90 % of them the right element): {len(fp)}"
                  + "".join(f"\n  {fpr['name']}" for fpr in fp))


if __name__ == "__main__":
    main()
