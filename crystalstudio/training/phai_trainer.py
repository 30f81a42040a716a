"""Training PhAI on structures generated on the fly (headless, in a GUI worker, or under torchrun).

Every step's global batch is made of `data_shards` shards, each generated from its own seed
(run seed, step, shard); rank r of W processes builds shards r·S/W … so the data — and with
GroupNorm-only networks the gradients — are those of a single process with the same global batch.
Resuming restores model, optimiser, learning-rate drops and step, and regenerates identical data.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from ..crystal.generator import generate_batch
from ..errors import InvalidInputError, ModelFileError
from ..phasing.phai_grid import (PhAIGrid, average_weights, origin_invariant_loss, phase_metrics,
                                 scale_amplitudes)
from ..phasing.phai_model import PhAI, PhAIConfig, count_parameters, decode_phases
from .common import step_seed
from .config import PhAITrainConfig, TrainConfig
from .loop import RunLoop, TrainingHooks


GPU_CHUNK = 65536  # structures generated at once on a GPU (see PhAIData._generate)


def model_config(cfg: PhAITrainConfig) -> PhAIConfig:
    return cfg.model.network()


@dataclass
class PhAIBatch:
    amplitudes: torch.Tensor  # (B, R) scaled
    phases: torch.Tensor  # (B, R) degrees (true, 0 beyond the cut-off and for dropped reflections)
    present: torch.Tensor  # (B, R) float: 1 where the reflection is used

    def to(self, device):
        return PhAIBatch(self.amplitudes.to(device), self.phases.to(device), self.present.to(device))


class PhAIData:
    """Generated structures → PhAI tensors, with the published augmentations (resolution cut, drops)."""

    def __init__(self, cfg: TrainConfig, grid: PhAIGrid, device=None, pool_ahead: Optional[bool] = None):
        self.cfg = cfg
        self.grid = grid
        self.settings = cfg.generator
        self.device = device
        self.hkl = grid.hkl
        self.cuda = device is not None and torch.device(device).type == "cuda"
        # pools made ahead in a background thread (on a side CUDA stream): default on CUDA
        self.pool_ahead = self.cuda if pool_ahead is None else bool(pool_ahead)
        self._next_pool = None  # (k, Future) of the pool being made in the background
        self._executor = None
        self._halt = threading.Event()
        self._side_stream = None

    def _generate(self, seed: int, n: int, cancel=None):
        """(cells, complex F on the list) of n structures.

        On CUDA the work goes in chunks of up to GPU_CHUNK structures: the placement runs one slot at a time
        for the whole chunk, so larger chunks mean fewer, fuller kernels (measured on an H200, molecules:
        7,061/s at 8,192, 26,659/s at 65,536; ≈ 5 GiB of GPU memory at 65,536).
        """
        chunk, sf_chunk = (GPU_CHUNK, GPU_CHUNK // 4) if self.cuda else (512, 64)
        batch = generate_batch(n, self.settings, seed, device=self.device, chunk=chunk, cancel=cancel)
        F = batch.structure_factors(self.hkl, device=self.device, chunk=sf_chunk)
        return batch.cells, F

    def _augment(self, cells, F, rng, augment: bool) -> PhAIBatch:
        n = len(cells)
        present = torch.ones((n, len(self.hkl)), device=F.device)
        if augment:
            lo, hi = self.cfg.d_min_range
            d_min = rng.uniform(lo, hi, n)
            from ..crystal.generator.batch import _inv_d2

            inv_d2 = _inv_d2(cells, self.hkl)
            cut = np.where(d_min[:, None] > 0, inv_d2 > 1.0 / np.maximum(d_min[:, None], 1e-6) ** 2, False)
            frac = rng.uniform(0, self.cfg.drop_max, n)
            drop = rng.random((n, len(self.hkl))) < frac[:, None]
            present = torch.as_tensor(~(cut | drop), dtype=torch.float32, device=F.device)
        amp = scale_amplitudes(F.abs().float() * present)
        ph = torch.rad2deg(torch.angle(F)).float() * (amp > 0)
        return PhAIBatch(amp.cpu(), ph.cpu(), (present * (amp > 0)).cpu())

    def shard(self, seed: int, n: int, augment: bool = True) -> PhAIBatch:
        cells, F = self._generate(seed, n)
        return self._augment(cells, F, np.random.default_rng(seed ^ 0x5DEECE66D), augment)

    def _make_pool(self, k: int, cancel=None):
        return self._generate(step_seed(self.cfg.seed, k, 0, stream=7), self.cfg.pool_size, cancel=cancel)

    def _make_pool_behind(self, k: int):
        """Pool k made in the background thread; on CUDA on a side stream, finished before it is handed over."""
        if not self.cuda:
            return self._make_pool(k, cancel=self._halt)
        if self._side_stream is None:
            self._side_stream = torch.cuda.Stream(device=self.device)
        with torch.cuda.stream(self._side_stream):
            cells, F = self._make_pool(k, cancel=self._halt)
        self._side_stream.synchronize()
        return cells, F

    def _pool(self, k: int):
        """Pool k of the stream of pooled structures; with pool_ahead, pool k + 1 is then made in the
        background while pool k is used (the same structures as made in place: each pool is a function of
        its seed only)."""
        if getattr(self, "_pool_k", None) != k:
            ahead = self._next_pool
            self._next_pool = None
            if ahead is not None and ahead[0] == k:
                cells, F = ahead[1].result()
                if self.cuda:  # made on the side stream, used on this thread's stream from now on
                    F.record_stream(torch.cuda.current_stream(F.device))
            else:
                if ahead is not None:
                    ahead[1].cancel()
                cells, F = self._make_pool(k)
            self._pool_data, self._pool_k = (cells, F), k
            if self.pool_ahead:
                if self._executor is None:
                    self._executor = ThreadPoolExecutor(1, thread_name_prefix="crystalstudio-pool")
                self._next_pool = (k + 1, self._executor.submit(self._make_pool_behind, k + 1))
        return self._pool_data

    def close(self) -> None:
        """Stop the background pool (a pool in the making stops at its next atom slot)."""
        self._halt.set()
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None
        self._next_pool = None
        self._halt = threading.Event()

    def global_batch(self, step: int, rank: int, world: int) -> PhAIBatch:
        S = self.cfg.data_shards
        if S % world:
            raise InvalidInputError(f"data_shards {S} must be a multiple of the number of processes {world}")
        per = self.cfg.batch_size // S
        if self.cfg.pool_size:
            # the stream of pooled structures, sliced by step and rank; augmentation drawn for the global batch
            P, B = self.cfg.pool_size, self.cfg.batch_size
            lo, hi = step * B + rank * B // world, step * B + (rank + 1) * B // world
            cells, Fs = [], []
            i = lo
            while i < hi:
                k, j = divmod(i, P)
                take = min(hi - i, P - j)
                pc, pF = self._pool(k)
                cells.append(pc[j : j + take])
                Fs.append(pF[j : j + take])
                i += take
            rng = np.random.default_rng(step_seed(self.cfg.seed, step, 0, stream=3))
            full = self._augment_params(rng, B)
            return self._augment_slice(np.concatenate(cells), torch.cat(Fs), full, rank * B // world, (rank + 1) * B // world)
        parts = [self.shard(step_seed(self.cfg.seed, step, s), per) for s in range(rank * S // world, (rank + 1) * S // world)]
        return PhAIBatch(*(torch.cat([getattr(p, f) for p in parts]) for f in ("amplitudes", "phases", "present")))

    def _augment_params(self, rng, B):
        lo, hi = self.cfg.d_min_range
        return rng.uniform(lo, hi, B), rng.uniform(0, self.cfg.drop_max, B), rng.random((B, len(self.hkl)))

    def _augment_slice(self, cells, F, params, a, b) -> PhAIBatch:
        d_min, frac, u = (p[a:b] for p in params)
        from ..crystal.generator.batch import _inv_d2

        inv_d2 = _inv_d2(cells, self.hkl)
        cut = np.where(d_min[:, None] > 0, inv_d2 > 1.0 / np.maximum(d_min[:, None], 1e-6) ** 2, False)
        present = torch.as_tensor(~(cut | (u < frac[:, None])), dtype=torch.float32, device=F.device)
        amp = scale_amplitudes(F.abs().float() * present)
        ph = torch.rad2deg(torch.angle(F)).float() * (amp > 0)
        # batches stay where their pool is (on a GPU: no round trip through host memory each step)
        return PhAIBatch(amp, ph, present * (amp > 0))


def real_validation_set(paths: list[str], grid: PhAIGrid) -> Optional[PhAIBatch]:
    """|F| and phases of real P2₁/c-family structures on the PhAI list (settings changed to P2₁/c)."""
    if not paths:
        return None
    from ..crystal.structure_factors import structure_factors
    from ..io.structures import read_structure
    from ..phasing.settings import to_p21c

    amps, phs = [], []
    for p in paths:
        st = to_p21c(read_structure(p))
        F = torch.as_tensor(structure_factors(st, grid.hkl))
        amps.append(F.abs().float())
        phs.append(torch.rad2deg(torch.angle(F)).float())
    A = scale_amplitudes(torch.stack(amps))
    P = torch.stack(phs) * (A > 0)
    return PhAIBatch(A, P, (A > 0).float())


class PhAIHooks(TrainingHooks):
    """PhAI in the run loop: origin-invariant cross-entropy on the last of 1…cycles_max recycling cycles
    (earlier cycles without gradients), validation by map correlation against random phases."""

    kind = "phai"
    min_improvement = 1e-4  # of the mean validation map r
    prefetch = None  # batches made ahead in a thread (training/prefetch.py); None: 1 on CUDA, 0 on CPU
    _prefetcher = None

    def build(self, loop: RunLoop) -> None:
        super().build(loop)
        cfg = self.cfg
        self.mcfg = model_config(cfg)
        self.grid = PhAIGrid(self.mcfg.max_index)
        self.net = PhAI(self.mcfg).to(self.device)
        self.model = self.net
        self.opt = loop.optimizer(self.net.parameters())
        self.data = PhAIData(cfg, self.grid, device=self.device if self.device.type == "cuda" else None)
        # fixed validation set and loss weights (mean |F| per reflection, 0 on absences)
        self.val = self.data.shard(cfg.val_seed, cfg.val_size, augment=True)
        self.real = real_validation_set(list(cfg.real_validation), self.grid)
        self.weights = average_weights(self.data.shard(cfg.val_seed + 1, cfg.weight_structures, augment=False).amplitudes,
                                       self.grid.absent).to(self.device)
        self.hkl = torch.as_tensor(self.grid.hkl, device=self.device)

    def distribute(self, loop: RunLoop) -> None:
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" else None
        self.model = DistributedDataParallel(self.net, device_ids=ids)

    def parameter_count(self) -> int:
        return count_parameters(self.net)

    def start_info(self) -> dict:
        return {"model": self.mcfg.to_dict()}

    def start_events(self) -> list[str]:
        if self.device.type == "cuda" and not self.cfg.pool_size:
            return ["pool_size 0 on a GPU: structures are generated per step in small batches and the GPU waits "
                    "for them; set pool_size to 65536 (as resources/configs/phai_small_gpu.json does)"]
        return []

    def state(self) -> dict:
        g = self.cfg.generator  # the training domain, read by load_phai (PhAI warns outside it)
        return {"model": self.net.state_dict(), "optimizer": self.opt.state_dict(), "model_config": self.mcfg.to_dict(),
                "domain": {"space_group": g.space_group, "a_min": g.cell.a_min, "a_max": g.cell.a_max}}

    def load_state(self, st: dict, path) -> None:
        if st.get("model_config") != self.mcfg.to_dict():
            raise ModelFileError(path, f"checkpoint architecture {st.get('model_config')} differs from the "
                                       f"configuration {self.mcfg.to_dict()}; use another run directory")
        self.net.load_state_dict(st["model"], strict=True)
        self.opt.load_state_dict(st["optimizer"])

    def _batch(self, step: int):
        loop = self.loop
        ahead = self.prefetch if self.prefetch is not None else int(self.device.type == "cuda")
        if not ahead:
            return self.data.global_batch(step, loop.dist.rank, loop.dist.world)
        if self._prefetcher is None:
            from .prefetch import Prefetcher

            self._prefetcher = Prefetcher(lambda k: self.data.global_batch(k, loop.dist.rank, loop.dist.world), step,
                                          self.cfg.steps, ahead)
        return self._prefetcher.get(step)

    def close(self) -> None:
        if self._prefetcher is not None:
            self._prefetcher.close()
            self._prefetcher = None
        data = getattr(self, "data", None)
        if data is not None:
            data.close()

    def train_step(self, step: int) -> dict:
        cfg, loop = self.cfg, self.loop
        tg = time.perf_counter()
        batch = self._batch(step).to(self.device)
        t_gen = time.perf_counter() - tg  # with prefetching: the time the step waited for its data
        rng = np.random.default_rng(step_seed(cfg.seed, step, 0, stream=1))
        cycles = int(rng.integers(1, cfg.cycles_max + 1))
        a_grid = self.grid.to_grid(batch.amplitudes)
        ph = torch.zeros_like(batch.amplitudes)
        if cycles > 1:
            with torch.no_grad():
                for _ in range(cycles - 1):
                    with loop.autocast():
                        ph = decode_phases(self.model(a_grid, self.grid.to_grid(ph)))
        with loop.autocast():
            logits = self.model(a_grid, self.grid.to_grid(ph))
        loss = origin_invariant_loss(logits.float(), batch.phases, self.weights[None] * batch.present, self.hkl)
        loop.backward_step(loss, self.opt, self.net.parameters())
        return {"loss": loop.mean(loss.item()), "cycles": cycles, "generation_s": t_gen,
                "structures_per_s": cfg.batch_size / max(time.perf_counter() - tg, 1e-9)}

    @torch.no_grad()
    def validate(self, step: int) -> dict:
        net = self.net
        net.eval()
        out = {}
        sets = [("val", self.val)] + ([("real", self.real)] if self.real is not None else [])
        absent = torch.as_tensor(self.grid.absent, device=self.device)
        for name, data in sets:
            accs, errs, rs, rrand = [], [], [], []
            for i in range(0, len(data.amplitudes), 64):
                a = data.amplitudes[i : i + 64].to(self.device)
                t = data.phases[i : i + 64].to(self.device)
                ph = torch.zeros_like(a)
                for _ in range(self.cfg.cycles_max):
                    ph = decode_phases(net(self.grid.to_grid(a), self.grid.to_grid(ph)))
                mask = (~absent).float()[None] * (a > 0)
                acc, err, r = phase_metrics(ph, t, a, self.hkl, mask)
                g = torch.Generator(device=a.device).manual_seed(i)
                rnd = torch.where(torch.rand(a.shape, generator=g, device=a.device) < 0.5, 0.0, -180.0)
                _, _, r0 = phase_metrics(rnd, t, a, self.hkl, mask)
                accs.append(acc), errs.append(err), rs.append(r), rrand.append(r0)
            acc, err, r, r0 = (torch.cat(x) for x in (accs, errs, rs, rrand))
            out.update({f"{name}_accuracy": float(acc.mean()), f"{name}_phase_error": float(err.mean()),
                        f"{name}_map_r": float(r.mean()), f"{name}_solved": float((r >= 0.8).float().mean()),
                        f"{name}_random_map_r": float(r0.mean())})
            if name == "val":
                self._sample = (data.amplitudes[0].numpy(), data.phases[0].numpy(), ph[0].cpu().numpy(), step)
        net.train()
        return out

    def score(self, metrics: dict) -> float:
        return metrics["val_map_r"]

    def write_outputs(self, loop: RunLoop, step: int) -> None:
        if self._sample is None:
            return
        from ..io.common import atomic_path

        a, t, p, at = self._sample
        with atomic_path(loop.run_dir / "sample.npz", ".npz") as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, amplitudes=a, true_phases=t, predicted_phases=p, hkl=self.grid.hkl, step=at)


class PhAITrainer(RunLoop):
    """One PhAI training run (see RunLoop for progress, cancel, control and on_record)."""

    def __init__(self, cfg: PhAITrainConfig, prefetch: Optional[int] = None, **kw):
        super().__init__(cfg, PhAIHooks(cfg), **kw)
        self.hooks.prefetch = prefetch

    def run(self) -> dict:
        try:
            return super().run()
        finally:
            self.hooks.close()


def train(cfg: TrainConfig, **kw) -> dict:
    """Run the training `cfg` describes (PhAI or DSFU-Net) and return the loop's summary."""
    if cfg.kind == "phai":
        return PhAITrainer(cfg, **kw).run()
    from .dsfu_trainer import DSFUTrainer

    return DSFUTrainer(cfg, **kw).run()
