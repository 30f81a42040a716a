"""Artificial-structure generation per structure (4–10 Å P2₁/c cells, structure factors on the PhAI grid
to 1 Å included) against the generation paper's published 6 ms (uniform) and 12 ms (molecules).

    python bench/bench_generator.py [--n 4000] [--threads 1] [--device cuda]
"""

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import header, timed  # noqa: E402

from crystalstudio.crystal.generator import GeneratorSettings, generate_batch  # noqa: E402
from crystalstudio.crystal.reflections import index_sphere_half_grid  # noqa: E402

PAPER_MS = {"uniform": 6.0, "molecules": 12.0}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=4000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    header("generator: structures + PhAI-grid structure factors to 1 Å")
    hkl = index_sphere_half_grid(10)
    for mode in ("uniform", "molecules"):
        s = GeneratorSettings()
        s.content.mode = mode
        generate_batch(64, s, seed=0, device=args.device)  # warm-up (tables, special points)
        big = args.device.startswith("cuda")
        t_gen, batch = timed(lambda: generate_batch(args.n, s, seed=1, chunk=8192 if big else 512, device=args.device), 1)
        t_sf, _ = timed(lambda: batch.structure_factors(hkl, d_min=1.0, device=args.device, chunk=2048 if big else 64), 2)
        per = (t_gen + t_sf) / args.n * 1e3
        vol = batch.volumes.mean()
        print(f"{mode:9s}: {1e3 * t_gen / args.n:6.3f} ms placement + {1e3 * t_sf / args.n:6.3f} ms structure factors "
              f"= {per:6.3f} ms/structure ({per / vol:.5f} ms/Å³, {args.n / (t_gen + t_sf):8.0f} structures/s, "
              f"{batch.n_atoms.mean():.1f} atoms); paper {PAPER_MS[mode]:.0f} ms -> {PAPER_MS[mode] / per:5.1f}x faster")


if __name__ == "__main__":
    main()
