"""Structure factors of 1,000 generated P2₁/c structures (cells 4–10 Å, d_min 1.0 Å): our batched torch
kernels against gemmi's per-structure StructureFactorCalculatorX in the same run.

    python bench/bench_structure_factors.py [--n 1000] [--threads 1] [--device cuda]
"""

import argparse
import sys
from pathlib import Path

import gemmi
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import header, timed  # noqa: E402

from crystalstudio.crystal.generator import GeneratorSettings, generate_batch  # noqa: E402
from crystalstudio.crystal.reflections import index_sphere_half_grid, unique_reflections  # noqa: E402
from crystalstudio.crystal.structure_factors import structure_factors_batched  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    header("structure factors: CrystalStudio batched vs gemmi per structure")
    batch = generate_batch(args.n, GeneratorSettings(), seed=1)
    structs = [batch.structure(i) for i in range(args.n)]
    lists = [unique_reflections(s.cell, s.space_group, 1.0) for s in structs]
    n_refl = sum(len(x) for x in lists)
    print(f"{args.n} structures, {batch.n_atoms.mean():.1f} atoms/ASU, {n_refl} unique reflections to 1 Å in all")

    n_gemmi = min(args.n, 200)  # gemmi's rate from a subset (it is linear in the number of structures)
    sub_structs, sub_lists = structs[:n_gemmi], lists[:n_gemmi]

    def run_gemmi_sub():
        out = []
        for s, hkl in zip(sub_structs, sub_lists):
            ss = s.to_gemmi()
            calc = gemmi.StructureFactorCalculatorX(ss.cell)
            out.append(np.array([calc.calculate_sf_from_small_structure(ss, [int(h), int(k), int(l)]) for h, k, l in hkl]))
        return out

    t_gemmi, ref = timed(run_gemmi_sub, 1)
    per_gemmi = t_gemmi / n_gemmi

    # ours: per-structure unique lists padded to one (B, M, 3) array, sorted by volume so that
    # neighbouring structures share an index box
    order = np.argsort(batch.volumes)
    lists = [lists[i] for i in order]
    structs = [structs[i] for i in order]
    batch_cells = batch.cells[order]
    M = max(len(x) for x in lists)
    hkl_pad = np.zeros((args.n, M, 3), dtype=np.int64)
    for i, x in enumerate(lists):
        hkl_pad[i, : len(x)] = x
    placed, site_order = batch.placed[order], batch.site_order[order]
    front = np.argsort(~placed, axis=1, kind="stable")
    N = int(placed.sum(1).max())
    xyz = np.take_along_axis(batch.xyz[order], front[..., None], 1)[:, :N]
    el = np.take_along_axis(batch.element[order], front, 1)[:, :N]
    occ = np.where(np.take_along_axis(placed, front, 1), 1.0 / np.take_along_axis(site_order, front, 1), 0)[:, :N]
    uiso = np.take_along_axis(batch.u_iso[order], front, 1)[:, :N]
    coef = batch.scattering_table().coefficients

    def run_ours():
        return structure_factors_batched(hkl_pad, batch_cells, xyz, el, occ, uiso, batch.space_group, coef,
                                         device=args.device, dtype=torch.float32)

    t_ours, F = timed(run_ours, 2)
    F = F.cpu().numpy()
    pos = {id(s): i for i, s in enumerate(structs)}
    err = max(np.max(np.abs(F[pos[id(s)], : len(r)] - r)) / np.max(np.abs(r)) for s, r in zip(sub_structs, ref))
    per_ours = t_ours / args.n
    print(f"gemmi (Python loop over reflections, {n_gemmi} structures): {1e3 * per_gemmi:8.3f} ms/structure")
    print(f"ours (unique lists, {args.device}):                          {1e3 * per_ours:8.3f} ms/structure  "
          f"ratio {per_gemmi / per_ours:6.1f}x   max rel. difference {err:.1e}")

    # the PhAI grid (1205 reflections, same for every structure): separable kernel
    grid = index_sphere_half_grid(10)
    t_sep, Fg = timed(lambda: batch.structure_factors(grid, d_min=1.0, device=args.device), 2)
    sub = [batch.structure(i) for i in range(n_gemmi)]

    def gemmi_grid():
        out = []
        for s in sub:
            ss = s.to_gemmi()
            calc = gemmi.StructureFactorCalculatorX(ss.cell)
            out.append([calc.calculate_sf_from_small_structure(ss, [int(h), int(k), int(l)]) for h, k, l in grid])
        return np.array(out)

    t_gg, G = timed(gemmi_grid, 1)
    inside = np.array([s.cell.d_spacing(grid) >= 1.0 for s in sub])
    errg = np.max(np.abs(Fg.cpu().numpy()[:n_gemmi] - np.where(inside, G, 0))) / np.max(np.abs(G))
    print(f"gemmi on the PhAI grid ({n_gemmi} structures):                {1e3 * t_gg / n_gemmi:8.3f} ms/structure")
    print(f"ours, separable kernel on the PhAI grid ({args.device}):         {1e3 * t_sep / args.n:8.3f} ms/structure  "
          f"ratio {(t_gg / n_gemmi) / (t_sep / args.n):6.1f}x   max rel. difference {errg:.1e}")


if __name__ == "__main__":
    main()
