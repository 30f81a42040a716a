"""Pieces of the run loop: torchrun (DistributedDataParallel) set-up, optimisers, learning-rate schedules
with manual drops, per-step seeds."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist


@dataclass
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    initialised_here: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup_distributed(device_kind: str) -> DistInfo:
    """Initialise torch.distributed when launched by torchrun (WORLD_SIZE > 1): gloo on CPU, nccl on CUDA."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    here = False
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_kind == "cuda" else "gloo")
        here = True
    return DistInfo(rank, world, local, here)


def teardown_distributed(info: DistInfo) -> None:
    if info.initialised_here and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def all_reduce_mean(x: float, info: DistInfo, device) -> float:
    if info.world <= 1:
        return float(x)
    t = torch.tensor([float(x)], device=device, dtype=torch.float64)
    dist.all_reduce(t)
    return float(t.item()) / info.world


def step_seed(seed: int, step: int, shard: int, stream: int = 0) -> int:
    """Independent seed for (run seed, step, data shard): resumes and rank counts reproduce the data."""
    return int(np.random.SeedSequence([int(seed), int(step), int(shard), int(stream)]).generate_state(1, np.uint64)[0] >> 1)


def make_optimizer(name: str, params, lr: float, weight_decay: float, betas=(0.9, 0.999)):
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, betas=tuple(betas))
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, betas=tuple(betas))
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer '{name}'")


class LearningRate:
    """lr(step) = base · schedule(step) · Π(manual drops). Drops are part of the checkpointed state."""

    def __init__(self, base: float, schedule: str, steps: int, warmup: int, step_every: int):
        self.base, self.schedule, self.steps, self.warmup, self.step_every = base, schedule, steps, warmup, step_every
        self.drop = 1.0

    def __call__(self, step: int) -> float:
        f = 1.0
        if self.warmup and step < self.warmup:
            f = (step + 1) / self.warmup
        elif self.schedule == "cosine":
            t = (step - self.warmup) / max(1, self.steps - self.warmup)
            f = 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))
            f = max(f, 0.02)
        elif self.schedule == "step":
            f = 0.5 ** (step // max(1, self.step_every))
        return self.base * f * self.drop

    def apply(self, optimizer, step: int) -> float:
        lr = self(step)
        for g in optimizer.param_groups:
            g["lr"] = lr
        return lr
