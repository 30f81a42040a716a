"""PhAI training throughput against the on-the-fly generator, measured in the same run.

Three figures:
  generation   one pool (65,536 structures on CUDA, 1,024 on CPU): placement + structure factors +
               augmentation, structures/s;
  consumption  optimiser steps of the small and the published network on batches already made, structures/s,
               and generation/consumption (≥ 1: the generator could keep up on its own);
  training     a real run of the trainer (resources/configs/phai_small_gpu.json, pools made ahead in a
               background thread on a side CUDA stream): the fraction of step time spent waiting for data
               after the first pool (the goal: 0, training never waits) and the structures/s it trained.

    python bench/bench_training.py [--device cuda] [--batch 64] [--train-steps 1500]
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import header  # noqa: E402

from crystalstudio.phasing.phai_grid import PhAIGrid, origin_invariant_loss  # noqa: E402
from crystalstudio.phasing.phai_model import PhAI, PhAIConfig  # noqa: E402
from crystalstudio.training.config import TrainConfig  # noqa: E402
from crystalstudio.training.phai_trainer import PhAIData, PhAITrainer  # noqa: E402
from crystalstudio.training.runlog import read_metrics  # noqa: E402

CONFIG = Path(__file__).resolve().parents[1] / "resources" / "configs" / "phai_small_gpu.json"


def sync(dev):
    if dev == "cuda":
        torch.cuda.synchronize()


def consumption(args, grid, b, gen_rate):
    hkl = torch.as_tensor(grid.hkl, device=args.device)
    for name, mc in (("small", PhAIConfig.small()), ("published", PhAIConfig.published())):
        model = PhAI(mc).to(args.device)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        b = b.to(args.device)
        a = grid.to_grid(b.amplitudes)
        use_amp = args.device == "cuda"
        steps = 20 if args.device == "cuda" else 2
        for it in range(steps + 1):
            if it == 1:
                sync(args.device)
                t0 = time.perf_counter()
            with torch.autocast("cuda", enabled=use_amp):
                logits = model(a, grid.to_grid(torch.zeros_like(b.amplitudes)))
            loss = origin_invariant_loss(logits.float(), b.phases, torch.ones(grid.n, device=args.device), hkl)
            opt.zero_grad()
            loss.backward()
            opt.step()
        sync(args.device)
        rate = steps * args.batch / (time.perf_counter() - t0)
        print(f"{name:9s} model, batch {args.batch}: {rate:8.0f} structures/s consumed (one cycle per step); "
              f"generation/consumption = {gen_rate / rate:.2f}")


def training_run(args):
    cfg = json.loads(CONFIG.read_text())
    with tempfile.TemporaryDirectory() as run_dir:
        cfg.update(run_dir=run_dir, steps=args.train_steps, batch_size=args.batch, val_every=0, checkpoint_every=0,
                   device=args.device, val_size=64, weight_structures=256)
        if args.device != "cuda":
            cfg.update(pool_size=256, amp=False)  # CPU: pools made in place (pool_ahead is for CUDA)
        t0 = time.perf_counter()
        PhAITrainer(TrainConfig.from_dict(cfg), resume=False).run()
        wall = time.perf_counter() - t0
        rows = [r for r in read_metrics(run_dir) if r["kind"] == "train"]
    per_pool = cfg["pool_size"] // args.batch
    later = rows[per_pool:]  # after the first pool (made in place while the GPU had nothing else to do)
    if not later:
        print(f"training run: {len(rows)} steps do not finish the first pool of {cfg['pool_size']}; use more steps")
        return
    wait = np.array([r["generation_s"] for r in later])
    step = np.array([r["step_s"] for r in later])
    print(f"training run ({cfg['pool_size']} structures per pool, pools made "
          f"{'ahead' if args.device == 'cuda' else 'in place'}, batch {args.batch}, "
          f"{len(rows)} steps in {wall:.1f} s): after the first pool, waiting for data {wait.sum():.2f} s of "
          f"{step.sum():.2f} s = {wait.sum() / max(step.sum(), 1e-9):.3f} of step time (largest wait "
          f"{1e3 * wait.max():.1f} ms); trained {len(later) * args.batch / max(step.sum(), 1e-9):.0f} structures/s")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--train-steps", type=int, default=0, help="also run the trainer this many steps (0: no)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    header("PhAI training throughput vs on-the-fly generation")
    grid = PhAIGrid(10)
    pool = 65536 if args.device == "cuda" else 1024
    cfg = TrainConfig.from_dict(dict(kind="phai", batch_size=args.batch, data_shards=1, pool_size=pool))
    data = PhAIData(cfg, grid, device=args.device if args.device == "cuda" else None)
    data.shard(0, args.batch)  # warm-up
    sync(args.device)
    t0 = time.perf_counter()
    b = data.global_batch(0, 0, 1)  # the first pool made here
    sync(args.device)
    gen_rate = pool / (time.perf_counter() - t0)
    data.close()
    print(f"generation + structure factors + augmentation (one pool of {pool}): {gen_rate:.0f} structures/s")
    consumption(args, grid, b, gen_rate)
    if args.train_steps:
        training_run(args)


if __name__ == "__main__":
    main()
