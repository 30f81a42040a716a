"""Full PhAI inference scan (published-size model: 10 cycles × {zero + 4 random starts}) per structure, on the
CPU and on a GPU when present, against the issue's goals (≤ 15 s on the 2-core CPU, ≤ 0.5 s on a GPU).
Also charge flipping per structure (a real 10 Å P2₁/c-family data set) with the default settings against
a single-start run as the reference time.

    python bench/bench_phai.py [--device cuda] [--threads 2] [--autocast]
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import header  # noqa: E402

from crystalstudio.phasing.phai_inference import phai_scan  # noqa: E402
from crystalstudio.phasing.phai_model import PhAI, PhAIConfig  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--autocast", action="store_true", help="bf16 (CPU) / fp16 (CUDA) autocast")
    ap.add_argument("--cf", action="store_true", help="also time charge flipping (needs ../shared/data)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    header("PhAI scan, published configuration (42.4 M parameters)")
    model = PhAI(PhAIConfig.published()).eval().to(args.device)
    amp = np.random.default_rng(0).random(1205).astype(np.float32)
    phai_scan(model, amp, max_cycles=1, random_starts=0, autocast=args.autocast)  # warm-up
    if args.device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    cands = phai_scan(model, amp, max_cycles=10, random_starts=4, autocast=args.autocast)
    if args.device == "cuda":
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    goal = 0.5 if args.device == "cuda" else 15.0
    print(f"scan: {len(cands)} candidates (50 forward passes in 10 batched cycles) in {dt:.2f} s on {args.device}; "
          f"goal {goal} s -> {goal / dt:.2f}x the goal's speed")
    if args.cf:
        from crystalstudio.io.structures import read_structure
        from crystalstudio.phasing.charge_flipping import ChargeFlippingSettings
        from crystalstudio.phasing.solve import prepare_problem, solve_charge_flipping

        data = Path(__file__).resolve().parents[2] / "shared" / "data" / "pairs" / "water_Mn_P21c"
        st = read_structure(data / "water.ins")
        problem = prepare_problem(data / "water.hkl", structure=st)
        for starts in (1, 3):
            t0 = time.perf_counter()
            sols = solve_charge_flipping(problem, ChargeFlippingSettings(random_starts=starts))
            print(f"charge flipping, {starts} start(s), cell {st.cell.parameters[:3].round(2).tolist()}: "
                  f"{time.perf_counter() - t0:.2f} s, map r {sols[0].map_r:.3f}")


if __name__ == "__main__":
    main()
