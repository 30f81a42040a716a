"""PhAI training throughput (structures/s) of the default and small models against the on-the-fly generator's
throughput measured in the same run (the generator must not be the bottleneck).

    python bench/bench_training.py [--device cuda] [--batch 64]
"""

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import header  # noqa: E402

from crystalstudio.phasing.phai_grid import PhAIGrid, origin_invariant_loss  # noqa: E402
from crystalstudio.phasing.phai_model import PhAI, PhAIConfig  # noqa: E402
from crystalstudio.training.config import TrainConfig  # noqa: E402
from crystalstudio.training.phai_trainer import PhAIData  # noqa: E402


def sync(dev):
    if dev == "cuda":
        torch.cuda.synchronize()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    header("PhAI training throughput vs on-the-fly generation")
    grid = PhAIGrid(10)
    cfg = TrainConfig(batch_size=args.batch, data_shards=1)
    data = PhAIData(cfg, grid, device=args.device if args.device == "cuda" else None)
    data.shard(0, args.batch)
    pool = 16384 if args.device == "cuda" else 1024  # training with pool_size generates in large batches
    sync(args.device)
    t0 = time.perf_counter()
    data.shard(1, pool)
    sync(args.device)
    gen_rate = pool / (time.perf_counter() - t0)
    b = data.shard(2, args.batch)
    print(f"generator + structure factors + augmentation (pools of {pool}): {gen_rate:.0f} structures/s")
    hkl = torch.as_tensor(grid.hkl, device=args.device)
    for name, mc in (("small", PhAIConfig.small()), ("published", PhAIConfig.published())):
        model = PhAI(mc).to(args.device)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        b = b.to(args.device)
        a = grid.to_grid(b.amplitudes)
        use_amp = args.device == "cuda"
        steps = 6 if args.device == "cuda" else 2
        for it in range(steps + 1):
            if it == 1:
                sync(args.device)
                t0 = time.perf_counter()
            with torch.autocast("cuda", enabled=use_amp):
                logits = model(a, grid.to_grid(torch.zeros_like(b.amplitudes)))
            loss = origin_invariant_loss(logits, b.phases, torch.ones(grid.n, device=args.device), hkl)
            opt.zero_grad()
            loss.backward()
            opt.step()
        sync(args.device)
        rate = steps * args.batch / (time.perf_counter() - t0)
        print(f"{name:9s} model: {rate:8.0f} structures/s (one cycle per step); generator/consumption = {gen_rate / rate:.2f}")


if __name__ == "__main__":
    main()
