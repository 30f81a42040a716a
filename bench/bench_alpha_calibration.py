"""Calibration of Warren–Cowley ratio uncertainties, and the value of the networks, on simulated alloy planes
with known α that no network was trained on (crystalstudio.diffuse.alloys: single atoms, 3D Gaussian-field
orderings and clusterings, Poisson counts, missing data, Bragg peaks on a quarter of the planes).

Every plane goes through the product pipeline (Bragg search and punching, the shipped networks with N dropout
passes, both α methods). Planes with even index calibrate the σ constants of each method; the odd ones are held
out and report coverage (truth within 1σ and 2σ), mean |error| and the fraction within 0.03. Also reported:
α from the networks' I_SRO against α from the raw plane divided by a smooth radial form-factor estimate (the
"value of the networks"), and the same on a check set of molecular planes (simulation.py, swap-MC α, with
molecule and α pools the training never drew).

    python bench/bench_alpha_calibration.py [--planes 240] [--passes 8] [--write]
    python bench/bench_alpha_calibration.py --load bench/results/alpha_calibration_rows.json.gz [--write]

--write stores the constants in resources/models/dsfu_alpha_calibration.json. Run with one thread; the machine
is shared, so the wall time printed is indicative only.
"""

import argparse
import gzip
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import header  # noqa: E402

from crystalstudio.diffuse.alloys import AlloySettings, AlloySimulator, true_ratios  # noqa: E402
from crystalstudio.diffuse.calibration import (calibration_key, calibration_path, coverage,  # noqa: E402
                                               fit_calibration, save_calibrations)
from crystalstudio.diffuse.factorise import (FactoriseSettings, factorise_plane, load_models,  # noqa: E402
                                             prepare_plane)
from crystalstudio.diffuse.planes import ResampledPlane  # noqa: E402
from crystalstudio.errors import InvalidInputError  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("plane", "network")
MOLECULAR = 100_000  # plane-number offset of the molecular check planes


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
        info.append({**sim.info, "bragg_found": bragg, "measured": plane.n_measured,
                     "bragg_punched": bool(plane.bragg is not None and plane.bragg.every_node and plane.bragg.pixels.any())})
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
    ap.add_argument("--molecular", type=int, default=80, help="molecular planes (0: none)")
    ap.add_argument("--passes", type=int, default=FactoriseSettings().passes)
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--write", action="store_true", help="write resources/models/dsfu_alpha_calibration.json")
    ap.add_argument("--save", default=str(ROOT / "bench" / "results" / "alpha_calibration_rows.json.gz"),
                    help="where the per-ratio results go (.json or .json.gz)")
    ap.add_argument("--load", help="skip the simulation: refit from a saved rows file (.json or .json.gz)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    header("α calibration on simulated alloy planes (networks never trained on them)")
    settings = FactoriseSettings(passes=args.passes)
    t0 = time.perf_counter()
    if args.load:
        raw = Path(args.load).read_bytes()
        saved = json.loads(gzip.decompress(raw) if args.load.endswith(".gz") else raw)
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
            data = json.dumps(saved, default=float).encode()
            Path(args.save).write_bytes(gzip.compress(data) if args.save.endswith(".gz") else data)
    info = {i: x for i, x in enumerate(saved["info"])}
    info.update({MOLECULAR + i: {**x, "source": "molecular"} for i, x in enumerate(saved.get("minfo", []))})
    rows = saved["rows"] + [{**r, "plane": MOLECULAR + r["plane"]} for r in saved.get("mrows", [])]
    c = table(rows)
    calib = (c["plane"] % 2) == 0
    held = ~calib
    mol = c["plane"] >= MOLECULAR
    n_alloy = len({r["plane"] for r in saved["rows"]})
    n_mol = len({r["plane"] for r in saved.get("mrows", [])})
    print(f"\n{n_alloy} alloy planes ({sum(1 for x in saved['info'] if 'refused' in x)} refused) and {n_mol} molecular "
          f"planes; {len(rows)} ratios (|u|, |v| ≤ {settings.max_index}); {saved['passes']} passes; even planes "
          f"calibrate, odd ones are held out; wall {saved.get('seconds', 0):.0f} s on a shared 2-core machine")
    punched = np.array([bool(info[i].get("bragg_punched", info[i].get("bragg"))) for i in c["plane"]])
    cals, summary = {}, {}
    for m in METHODS:
        a, t, sf, sp = c[f"{m}_alpha"], c["truth"], c[f"{m}_sfit"], c[f"{m}_spass"]
        ok = np.isfinite(a)
        spm = (lambda sel: sp[sel]) if m == "network" else (lambda sel: None)  # noqa: E731
        sig_all = np.full(len(a), np.nan)
        for cls, sel_cls in ((False, ~punched), (True, punched)):
            key = calibration_key(m, cls)
            cs, hs = calib & ok & sel_cls, held & ok & sel_cls
            cal = fit_calibration(m, a[cs], t[cs], sf[cs], spm(cs), groups=[~mol[cs], mol[cs]])
            cal.bragg = cls
            cal.planes = int(len(set(c["plane"][cs])))
            sig_all[hs] = cal.sigma(a[hs], sf[hs], spm(hs))
            s_cls = stats((a - t)[hs & ~mol], sig_all[hs & ~mol])
            s_cls["planes"] = int(len(set(c["plane"][hs & ~mol])))
            cal.held_out = {k: s_cls[k] for k in ("coverage_1sigma", "coverage_2sigma", "mean_abs_error", "values",
                                                  "planes", "within_0.03", "max_abs_error")}
            if (hs & mol).any():
                sm_ = stats((a - t)[hs & mol], sig_all[hs & mol])
                cal.held_out["molecular"] = {k: sm_[k] for k in ("coverage_1sigma", "coverage_2sigma", "mean_abs_error",
                                                                 "values", "within_0.03")}
            if m == "network":
                cal.models = saved["hashes"]
            cal.description = ("measured plane / radial I_FF (no networks)" if m == "plane" else
                               "the networks' I_SRO (shipped small models)")
            cal.description += (", planes with Bragg peaks punched" if cls else ", planes without punched Bragg peaks")
            cals[key] = cal
        print(f"\n[{m}] {'measured plane / radial I_FF (no networks)' if m == 'plane' else 'the networks I_SRO'}")
        for cls in (False, True):
            cal = cals[calibration_key(m, cls)]
            print(f"  constants {'(Bragg peaks punched)' if cls else '(no Bragg punching)  '}: k_fit {cal.k_fit:g}  "
                  f"k_passes {cal.k_passes:g}  σ_model {cal.sigma_model:g}  r_model {cal.r_model:g}  "
                  f"(from {cal.planes} calibration planes)")
        hsel = held & ok & ~mol
        s_held = stats((a - t)[hsel], sig_all[hsel])
        s_held["planes"] = int(len(set(c["plane"][hsel])))
        s_raw = stats((a - t)[hsel], np.sqrt(sf[hsel] ** 2 + (sp[hsel] if m == "network" else 0) ** 2))
        summary[m] = s_held
        print(f"  held-out alloys, calibrated σ : {fmt(s_held)}  ({s_held['planes']} planes)")
        print(f"  held-out alloys, σ before     : {fmt(s_raw)}  (least squares{' ⊕ pass spread' if m == 'network' else ''})")
        for lab, sel0 in (("  no Bragg punched", ~punched), ("  Bragg punched", punched)):
            sel = hsel & sel0
            print(f"  {lab:28s}: {fmt(stats((a - t)[sel], sig_all[sel]))}  ({len(set(c['plane'][sel]))} planes)")
        for shell in (1, 2):
            sel = hsel & (c["shell"] == shell)
            print(f"    shell |u|+|v| = {shell}           : {fmt(stats((a - t)[sel], sig_all[sel]))}")
        for order in sorted(set(c["order"][~mol])):
            sel = hsel & (c["order"] == order)
            if sel.any():
                print(f"    {order:26s}: {fmt(stats((a - t)[sel], sig_all[sel]))}")
        msel = held & ok & mol
        if msel.any():
            print(f"  held-out molecular planes     : {fmt(stats((a - t)[msel], sig_all[msel]))}  "
                  f"({len(set(c['plane'][msel]))} planes)")
    ratio = summary["network"]["mean_abs_error"] / summary["plane"]["mean_abs_error"]
    print(f"\nvalue of the networks (held-out alloys): mean |error| networks' I_SRO "
          f"{summary['network']['mean_abs_error']:.4f} vs raw plane / radial I_FF {summary['plane']['mean_abs_error']:.4f} "
          f"(ratio {ratio:.1f}; the baseline is the raw-plane fit)")
    alloy_info = [x for x in saved["info"] if "refused" not in x]
    bragg_planes = [x for x in alloy_info if x.get("bragg")]
    clean = [x for x in alloy_info if not x.get("bragg")]
    if bragg_planes:
        print(f"Bragg search: peaks found on {sum(x['bragg_found'] > 0 for x in bragg_planes)} of {len(bragg_planes)} "
              f"planes with Bragg peaks, outliers on {sum(x['bragg_found'] > 0 for x in clean)} of {len(clean)} "
              f"without; every node punched on {sum(bool(x.get('bragg_punched')) for x in bragg_planes)} and "
              f"{sum(bool(x.get('bragg_punched')) for x in clean)} of them")
    if args.write:
        save_calibrations(cals, calibration_path(), {"alloy_planes": n_alloy, "molecular_planes": n_mol,
                                                     "passes": saved["passes"], "seed": saved["seed"],
                                                     "max_index": settings.max_index,
                                                     "held_out_alloys": {m: {k: summary[m][k] for k in (
                                                         "mean_abs_error", "within_0.03", "coverage_1sigma",
                                                         "coverage_2sigma", "values", "planes")} for m in METHODS}})
        print(f"\nwritten: {calibration_path()}")


if __name__ == "__main__":
    main()
