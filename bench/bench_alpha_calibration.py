"""Calibration of Warren–Cowley ratio uncertainties, and the value of the networks, on simulated alloy planes
with known α that no network was trained on (crystalstudio.diffuse.alloys: single atoms, 3D Gaussian-field
orderings and clusterings, Poisson counts, missing data, Bragg peaks on a quarter of the planes).

Every plane goes through the product pipeline (Bragg search and punching, the shipped networks with N dropout
passes, both α methods). Planes with even index calibrate the σ constants of each method; the odd ones are held
out and report coverage (truth within 1σ and 2σ), mean |error| and the fraction within 0.03. Also reported:
α from the networks' I_SRO against α from the raw plane divided by a smooth radial form-factor estimate (the
"value of the networks"), and the same on a check set of molecular planes (simulation.py, swap-MC α, with
molecule and α pools the training never drew).

    python bench/bench_alpha_calibration.py [--planes 240] [--passes 8] [--write] [--from bench/results/x.npz]

--write stores the constants in resources/models/dsfu_alpha_calibration.json. Run with one thread; the machine
is shared, so the wall time printed is indicative only.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import header  # noqa: E402

from crystalstudio.diffuse.alloys import AlloySettings, AlloySimulator, true_ratios  # noqa: E402
from crystalstudio.diffuse.calibration import (calibration_path, coverage, fit_calibration,  # noqa: E402
                                               save_calibrations)
from crystalstudio.diffuse.factorise import (FactoriseSettings, factorise_plane, load_models,  # noqa: E402
                                             prepare_plane)
from crystalstudio.diffuse.planes import ResampledPlane  # noqa: E402
from crystalstudio.errors import InvalidInputError  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("plane", "network")


def run_set(planes_iter, n, gf, gs, hashes, settings, label):
    rows = []  # one per ratio: plane index, method values
    info = []
    t0 = time.perf_counter()
    for i in range(n):
        sim = planes_iter(i)
        plane = ResampledPlane(sim.measured, sim.geometry, sim.q_max, sim.geometry.label())
        plane = prepare_plane(plane, settings)
        truth = true_ratios(sim.alphas, sim.geometry, settings.max_index, settings.symmetry)
        try:
            res = factorise_plane(plane, gf, gs, settings, model_hashes=hashes, calibrations={})
        except InvalidInputError as exc:
            print(f"  {label} {i}: refused ({exc})", flush=True)
            info.append({**sim.info, "refused": str(exc)})
            continue
        bragg = plane.bragg.count if plane.bragg is not None else 0
        info.append({**sim.info, "bragg_found": bragg, "measured": plane.n_measured})
        for j, v in enumerate(res.wc_plane.vectors if res.wc_plane else res.wc_network.vectors):
            r = {"plane": i, "shell": abs(v[0]) + abs(v[1]), "truth": truth[v], "order": sim.info.get("order", "?")}
            for m, wc in (("plane", res.wc_plane), ("network", res.wc_network)):
                if wc is None:
                    r[f"{m}_alpha"] = r[f"{m}_sfit"] = r[f"{m}_spass"] = np.nan
                    continue
                r[f"{m}_alpha"] = wc.alpha[j]
                r[f"{m}_sfit"] = wc.sigma_fit[j]
                r[f"{m}_spass"] = wc.sigma_passes[j] if wc.sigma_passes is not None else 0.0
            rows.append(r)
        if i % 10 == 0 or i == n - 1:
            done = [r for r in rows if r["plane"] == i]
            ep = max(abs(r["plane_alpha"] - r["truth"]) for r in done) if done else np.nan
            en = max(abs(r["network_alpha"] - r["truth"]) for r in done) if done else np.nan
            print(f"  {label} {i + 1}/{n}  {time.perf_counter() - t0:6.0f} s  {sim.info.get('order', '')} "
                  f"{sim.info.get('lattice', '')} {sim.info.get('plane', '')}  max |err| plane {ep:.3f} "
                  f"network {en:.3f}  Bragg found {bragg}", flush=True)
    return rows, info


def table(rows):
    cols = {k: np.array([r[k] for r in rows]) for k in rows[0]}
    return cols


def stats(err, sig=None):
    err = err[np.isfinite(err)] if sig is None else err
    out = {"values": int(len(err)), "mean_abs_error": float(np.mean(np.abs(err))),
           "median_abs_error": float(np.median(np.abs(err))), "p95_abs_error": float(np.percentile(np.abs(err), 95)),
           "max_abs_error": float(np.max(np.abs(err))), "within_0.03": float(np.mean(np.abs(err) <= 0.03))}
    if sig is not None:
        out["coverage_1sigma"], out["coverage_2sigma"] = coverage(err, sig)
    return out


def fmt(s):
    txt = (f"mean |err| {s['mean_abs_error']:.4f}  median {s['median_abs_error']:.4f}  95% {s['p95_abs_error']:.4f}  "
           f"max {s['max_abs_error']:.3f}  ≤0.03: {100 * s['within_0.03']:5.1f} %")
    if "coverage_1sigma" in s:
        txt += f"  within 1σ {100 * s['coverage_1sigma']:5.1f} %  2σ {100 * s['coverage_2sigma']:5.1f} %"
    return txt


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--planes", type=int, default=240)
    ap.add_argument("--molecular", type=int, default=40, help="molecular check planes (0: none)")
    ap.add_argument("--passes", type=int, default=FactoriseSettings().passes)
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--write", action="store_true", help="write resources/models/dsfu_alpha_calibration.json")
    ap.add_argument("--save", default=str(ROOT / "bench" / "results" / "alpha_calibration_rows.json"))
    ap.add_argument("--load", help="skip the simulation: refit from a saved rows file")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    header("α calibration on simulated alloy planes (networks never trained on them)")
    settings = FactoriseSettings(passes=args.passes)
    t0 = time.perf_counter()
    if args.load:
        saved = json.loads(Path(args.load).read_text())
    else:
        gf, gs, hashes = load_models()
        sim = AlloySimulator(AlloySettings(p_bragg=0.25))
        alloys = lambda i: sim.sample(np.random.default_rng([args.seed, i]))  # noqa: E731
        rows, info = run_set(alloys, args.planes, gf, gs, hashes, settings, "alloy")
        mrows, minfo = [], []
        if args.molecular:
            from crystalstudio.diffuse.simulation import DiffuseSettings, DiffuseSimulator

            msim = DiffuseSimulator(DiffuseSettings(pool=12, pool_seed=987_654, lattices=("mc",), p_real_mask=0.0))

            def molecular(i):
                rng = np.random.default_rng([args.seed + 1, i])
                p = msim.sample(rng)
                peak = float(np.nanmax(p.measured))
                counts = float(np.exp(rng.uniform(np.log(300), np.log(30000))))
                noisy = rng.poisson(np.nan_to_num(p.measured) * counts / peak) * peak / counts
                p.measured = np.where(np.isfinite(p.measured), noisy, np.nan)
                p.info["order"] = "molecular-mc"
                return p

            mrows, minfo = run_set(molecular, args.molecular, gf, gs, hashes, settings, "molecular")
        saved = {"rows": rows, "info": info, "mrows": mrows, "minfo": minfo, "hashes": hashes, "passes": args.passes,
                 "seed": args.seed, "seconds": time.perf_counter() - t0}
        if args.save:
            Path(args.save).parent.mkdir(parents=True, exist_ok=True)
            Path(args.save).write_text(json.dumps(saved, default=float))
    rows, info = saved["rows"], saved["info"]
    c = table(rows)
    calib = (c["plane"] % 2) == 0
    held = ~calib
    n_planes = len({r["plane"] for r in rows})
    print(f"\n{n_planes} alloy planes ({sum(1 for x in info if 'refused' in x)} refused), {len(rows)} ratios "
          f"(|u|, |v| ≤ {settings.max_index}); {saved['passes']} passes; "
          f"wall {saved.get('seconds', 0):.0f} s on a shared 2-core machine")
    cals = {}
    summary = {}
    for m in METHODS:
        a, t, sf, sp = c[f"{m}_alpha"], c["truth"], c[f"{m}_sfit"], c[f"{m}_spass"]
        ok = np.isfinite(a)
        cal = fit_calibration(m, a[calib & ok], t[calib & ok], sf[calib & ok], sp[calib & ok] if m == "network" else None)
        cal.planes = int(len(set(c["plane"][calib & ok])))
        e_held = (a - t)[held & ok]
        sig_held = cal.sigma(a[held & ok], sf[held & ok], sp[held & ok] if m == "network" else None)
        s_held = stats(e_held, sig_held)
        s_raw = stats(e_held, np.sqrt(sf[held & ok] ** 2 + (sp[held & ok] if m == "network" else 0) ** 2))
        s_held["planes"] = int(len(set(c["plane"][held & ok])))
        cal.held_out = {k: s_held[k] for k in ("coverage_1sigma", "coverage_2sigma", "mean_abs_error", "values",
                                               "planes", "within_0.03", "max_abs_error")}
        if m == "network":
            cal.models = saved["hashes"]
        cal.description = ("measured plane / radial I_FF (no networks)" if m == "plane" else
                           "the networks' I_SRO (shipped small models)")
        cals[m] = cal
        summary[m] = s_held
        print(f"\n[{m}] {cal.description}")
        print(f"  constants: k_fit {cal.k_fit:g}  k_passes {cal.k_passes:g}  σ_model {cal.sigma_model:g}  "
              f"r_model {cal.r_model:g}  (from {cal.planes} calibration planes)")
        print(f"  held out, calibrated σ : {fmt(s_held)}")
        print(f"  held out, σ before     : {fmt(s_raw)}  (least squares{' ⊕ pass spread' if m == 'network' else ''})")
        for shell in (1, 2):
            sel = held & ok & (c["shell"] == shell)
            print(f"  shell |u|+|v| = {shell}     : {fmt(stats((a - t)[sel], cal.sigma(a[sel], sf[sel], sp[sel] if m == 'network' else None)))}")
        for order in sorted(set(c["order"])):
            sel = held & ok & (c["order"] == order)
            if sel.any():
                print(f"  {order:22s}: {fmt(stats((a - t)[sel], cal.sigma(a[sel], sf[sel], sp[sel] if m == 'network' else None)))}")
    ratio = summary["network"]["mean_abs_error"] / summary["plane"]["mean_abs_error"]
    print(f"\nvalue of the networks: mean |error| networks' I_SRO {summary['network']['mean_abs_error']:.4f} vs raw plane "
          f"/ radial I_FF {summary['plane']['mean_abs_error']:.4f} (ratio {ratio:.1f}; the baseline is the raw-plane fit)")
    bragg_planes = [x for x in info if x.get("bragg") and "refused" not in x]
    clean = [x for x in info if not x.get("bragg") and "refused" not in x]
    if bragg_planes:
        print(f"Bragg search: found peaks on {sum(x['bragg_found'] > 0 for x in bragg_planes)} of {len(bragg_planes)} "
              f"planes with Bragg peaks, on {sum(x['bragg_found'] > 0 for x in clean)} of {len(clean)} without")
    if saved.get("mrows"):
        mc = table(saved["mrows"])
        print(f"\nmolecular check set ({len(set(mc['plane']))} planes of simulation.py with unseen pools, swap-MC α; "
              "σ with the alloy calibration):")
        for m in METHODS:
            a, t, sf, sp = mc[f"{m}_alpha"], mc["truth"], mc[f"{m}_sfit"], mc[f"{m}_spass"]
            ok = np.isfinite(a)
            sig = cals[m].sigma(a[ok], sf[ok], sp[ok] if m == "network" else None)
            print(f"  [{m:7s}] {fmt(stats((a - t)[ok], sig))}")
    if args.write:
        save_calibrations(cals, calibration_path(), {"planes": n_planes, "passes": saved["passes"], "seed": saved["seed"],
                                                     "max_index": settings.max_index})
        print(f"\nwritten: {calibration_path()}")


if __name__ == "__main__":
    main()
