"""Diffuse scattering: plane extraction + resampling from a 501³ Yell 1.0 volume (synthetic file of that
size), factorisation of one 256×256 plane with the published-size DSFU-Net generators, and simulation
throughput (planes/s) against the training consumption of a small model, all in the same run.

    python bench/bench_diffuse.py [--device cuda] [--volume /tmp/bench_501.h5]
"""

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import header  # noqa: E402

from crystalstudio.crystal.cell import UnitCell  # noqa: E402
from crystalstudio.diffuse.dsfu_net import DSFUDiscriminator, DSFUGenerator, factorise  # noqa: E402
from crystalstudio.diffuse.planes import plane_from_volume, preprocess  # noqa: E402
from crystalstudio.diffuse.simulation import DiffuseSettings, DiffuseSimulator  # noqa: E402
from crystalstudio.io.meerkat import read_meerkat, write_yell10  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--volume", default="/tmp/crystalstudio_bench_501.h5")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    header("diffuse: plane extraction, factorisation, simulation")
    if not os.path.exists(args.volume):
        n = 501
        rng = np.random.default_rng(0)
        data = rng.random((n, n, n), dtype=np.float32)
        data[rng.random((n, n, n)) < 0.3] = np.nan
        write_yell10(args.volume, data, [-10, -10, -10], [0.04, 0.04, 0.04], UnitCell(7.1, 7.1, 9.0, 90, 90, 90),
                     chunks=(1, n, n))
        del data
    vol = read_meerkat(args.volume)
    t0 = time.perf_counter()
    plane = plane_from_volume(vol, "hk1", q_max=7.0)
    t_plane = time.perf_counter() - t0
    x = torch.as_tensor(preprocess(plane.intensity))[None, None].to(args.device)
    gf, gs = DSFUGenerator().to(args.device).eval(), DSFUGenerator().to(args.device).eval()
    factorise(gf, gs, x)  # warm-up
    if args.device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(5):
        factorise(gf, gs, x)
    if args.device == "cuda":
        torch.cuda.synchronize()
    t_fac = (time.perf_counter() - t0) / 5
    goal = 0.010 if args.device == "cuda" else 0.5
    print(f"plane hk1 from {vol.shape} volume + resampling to 256²: {t_plane:.3f} s")
    print(f"factorisation (two 29.2 M-parameter generators, one plane) on {args.device}: {1e3 * t_fac:.1f} ms; "
          f"with the plane {1e3 * (t_fac + t_plane):.1f} ms; goal {1e3 * goal:.0f} ms (factorisation) -> "
          f"{goal / t_fac:.2f}x the goal's speed")
    sim = DiffuseSimulator(DiffuseSettings(), device=args.device if args.device == "cuda" else None)
    sim.batch(2, 0)
    t0 = time.perf_counter()
    sim.batch(16, 1)
    rate = 16 / (time.perf_counter() - t0)
    # training consumption of the small (width 16) GANs: one step = 2 G + 2 D forward/backward on a batch
    g1, g2 = DSFUGenerator(16).to(args.device), DSFUGenerator(16).to(args.device)
    d1, d2 = DSFUDiscriminator(16).to(args.device), DSFUDiscriminator(16).to(args.device)
    xb = torch.rand(16, 1, 256, 256, device=args.device) * 2 - 1
    opt = torch.optim.Adam(list(g1.parameters()) + list(g2.parameters()) + list(d1.parameters()) + list(d2.parameters()))
    for it in range(3):
        if it == 1:
            if args.device == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
        a, b = g1(xb), g2(xb)
        loss = (a - xb).abs().mean() + (b - xb).abs().mean() + d1(a, xb).mean() + d2(b, xb).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    if args.device == "cuda":
        torch.cuda.synchronize()
    consume = 16 * 2 / (time.perf_counter() - t0)
    print(f"simulation: {rate:.1f} planes/s; small-GAN training consumes {consume:.1f} planes/s on {args.device} "
          f"-> simulation/consumption = {rate / consume:.2f}")


if __name__ == "__main__":
    main()
