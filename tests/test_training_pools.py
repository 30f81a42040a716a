"""PhAI training pools made ahead in a background thread: the same structures as pools made in place, across
pool boundaries; closing stops a pool in the making; a GPU run without pools is warned about."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch

from crystalstudio.errors import Cancelled
from crystalstudio.phasing.phai_grid import PhAIGrid
from crystalstudio.training.config import TrainConfig
from crystalstudio.training.phai_trainer import PhAIData, PhAIHooks

TINY = {"preset": "small", "max_index": 4, "filters": 4, "dim": 16, "dim_exp": 16, "dim_token_exp": 8}


def _cfg(**kw):
    d = dict(kind="phai", run_dir="unused", model=TINY, batch_size=12, steps=10, data_shards=1, pool_size=20,
             seed=3, device="cpu", generator={"content": {"max_atoms_asu": 12}})
    d.update(kw)
    return TrainConfig.from_dict(d)


def test_pools_made_ahead_are_the_pools_made_in_place():
    grid = PhAIGrid(4)
    ahead, inplace = PhAIData(_cfg(), grid, pool_ahead=True), PhAIData(_cfg(), grid, pool_ahead=False)
    try:
        for step in range(6):  # 72 structures: four pools of 20, batches straddling their boundaries
            a, b = ahead.global_batch(step, 0, 1), inplace.global_batch(step, 0, 1)
            for f in ("amplitudes", "phases", "present"):
                assert torch.equal(getattr(a, f), getattr(b, f)), (step, f)
            if step == 1:  # pool 1 is in use; pool 2 is being made (or made) in the background
                assert ahead._next_pool is not None and ahead._next_pool[0] == 2
        assert inplace._next_pool is None and inplace._executor is None
        assert float(a.amplitudes.abs().sum()) > 0  # real structures, not empty pools
    finally:
        ahead.close()
        inplace.close()


def test_close_stops_a_pool_in_the_making():
    data = PhAIData(_cfg(pool_size=4000), PhAIGrid(4), pool_ahead=True)
    data.global_batch(0, 0, 1)  # pool 0 made here (4000 structures, ~1 s), pool 1 started behind
    behind = data._next_pool[1]
    t0 = time.perf_counter()
    data.close()
    assert time.perf_counter() - t0 < 0.5  # stopped at its next atom slot, not finished
    assert behind.cancelled() or isinstance(behind.exception(), Cancelled)
    assert data._executor is None and not any(t.name.startswith("crystalstudio-pool") for t in threading.enumerate())
    b = data.global_batch(4000 // 12 + 1, 0, 1)  # usable again after close: pool 1 made in place
    assert np.isfinite(b.amplitudes.numpy()).all()
    data.close()


def test_gpu_run_without_pools_is_warned_about():
    hooks = PhAIHooks(_cfg(pool_size=0))
    hooks.device = torch.device("cuda")
    assert any("pool_size" in e for e in hooks.start_events())
    hooks.cfg = _cfg(pool_size=65536)
    assert hooks.start_events() == []
    hooks.device = torch.device("cpu")
    hooks.cfg = _cfg(pool_size=0)
    assert hooks.start_events() == []


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (the side stream)")
def test_pools_made_on_a_side_cuda_stream_are_the_pools_made_in_place():
    grid = PhAIGrid(4)
    ahead = PhAIData(_cfg(device="cuda"), grid, device="cuda", pool_ahead=True)
    inplace = PhAIData(_cfg(device="cuda"), grid, device="cuda", pool_ahead=False)
    try:
        for step in range(6):
            a, b = ahead.global_batch(step, 0, 1), inplace.global_batch(step, 0, 1)
            for f in ("amplitudes", "phases", "present"):
                assert torch.equal(getattr(a, f), getattr(b, f)), (step, f)
    finally:
        ahead.close()
        inplace.close()
