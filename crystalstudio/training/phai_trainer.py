"""Training PhAI on structures generated on the fly (headless, in a GUI worker, or under torchrun).

Every step's global batch is made of `data_shards` shards, each generated from its own seed
(run seed, step, shard); rank r of W processes builds shards r·S/W … so the data — and with
GroupNorm-only networks the gradients — are those of a single process with the same global batch.
Resuming restores model, optimiser, learning-rate drops and step, and regenerates identical data.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from ..crystal.generator import GeneratorSettings, generate_batch
from ..errors import InvalidInputError, ModelFileError
from ..jobs import report
from ..phasing.phai_grid import (PhAIGrid, average_weights, origin_invariant_loss, phase_metrics,
                                 scale_amplitudes)
from ..phasing.phai_model import PhAI, PhAIConfig, count_parameters, decode_phases
from .common import (LearningRate, all_reduce_mean, make_optimizer, memory_mb, select_device, setup_distributed,
                     step_seed, teardown_distributed)
from .config import TrainConfig
from .runlog import MetricsLog, RunControl, load_checkpoint, save_checkpoint


def model_config(cfg: TrainConfig) -> PhAIConfig:
    m = dict(cfg.model)
    preset = m.pop("preset", "small")
    base = PhAIConfig.small() if preset == "small" else PhAIConfig.published()
    if m:
        base = PhAIConfig.from_dict({**base.to_dict(), **m})
    return base


@dataclass
class PhAIBatch:
    amplitudes: torch.Tensor  # (B, R) scaled
    phases: torch.Tensor  # (B, R) degrees (true, 0 beyond the cut-off and for dropped reflections)
    present: torch.Tensor  # (B, R) float: 1 where the reflection is used

    def to(self, device):
        return PhAIBatch(self.amplitudes.to(device), self.phases.to(device), self.present.to(device))


class PhAIData:
    """Generated structures → PhAI tensors, with the published augmentations (resolution cut, drops)."""

    def __init__(self, cfg: TrainConfig, grid: PhAIGrid, device=None):
        self.cfg = cfg
        self.grid = grid
        self.settings = GeneratorSettings.from_dict(cfg.generator)
        self.device = device
        self.hkl = grid.hkl

    def _generate(self, seed: int, n: int):
        """(cells, complex F on the list) of n structures."""
        chunk = 8192 if (self.device is not None and torch.device(self.device).type == "cuda") else 512
        batch = generate_batch(n, self.settings, seed, device=self.device, chunk=chunk)
        F = batch.structure_factors(self.hkl, device=self.device, chunk=2048 if chunk > 512 else 64)
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

    def _pool(self, k: int):
        if getattr(self, "_pool_k", None) != k:
            self._pool_data = self._generate(step_seed(self.cfg.seed, k, 0, stream=7), self.cfg.pool_size)
            self._pool_k = k
        return self._pool_data

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
        return PhAIBatch(amp.cpu(), ph.cpu(), (present * (amp > 0)).cpu())


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


class PhAITrainer:
    """One training run. `progress(fraction, message)`, `cancel`, `control` (RunControl) and
    `on_record(dict)` connect it to a GUI; it writes the run directory in any case (rank 0)."""

    def __init__(self, cfg: TrainConfig, *, resume: bool = True, progress: Optional[Callable] = None, cancel=None,
                 control: Optional[RunControl] = None, on_record: Optional[Callable] = None,
                 prefetch: Optional[int] = None):
        self.cfg = cfg
        self.prefetch = prefetch  # batches made ahead in a thread (training/prefetch.py); None: 1 on CUDA, 0 on CPU
        self._prefetcher = None
        self.resume = resume
        self.progress, self.cancel = progress, cancel
        self.control = control or RunControl(cfg.run_dir)
        self.on_record = on_record
        self.run_dir = Path(cfg.run_dir)

    # ------------------------------------------------------------------ helpers
    def _record(self, rec: dict) -> None:
        if self.dist.is_main:
            self.log.write(rec)
            if self.on_record is not None:
                self.on_record(rec)

    def _state(self, step: int) -> dict:
        model = self.model.module if hasattr(self.model, "module") else self.model
        return {"kind": "phai", "model": model.state_dict(), "optimizer": self.opt.state_dict(), "step": step,
                "lr_drop": self.lr.drop, "config": self.cfg.to_dict(), "model_config": self.mcfg.to_dict(),
                "best": self.best, "bad_validations": self.bad}

    def checkpoint(self, step: int, name: str = "checkpoint_last.pt") -> None:
        if self.dist.is_main:
            save_checkpoint(self.run_dir / name, self._state(step))

    # ------------------------------------------------------------------ validation
    @torch.no_grad()
    def validate(self, step: int) -> dict:
        model = self.model.module if hasattr(self.model, "module") else self.model
        model.eval()
        out = {"step": step, "kind": "validation"}
        sets = [("val", self.val)] + ([("real", self.real)] if self.real is not None else [])
        hkl = torch.as_tensor(self.grid.hkl, device=self.device)
        absent = torch.as_tensor(self.grid.absent, device=self.device)
        for name, data in sets:
            accs, errs, rs, rrand = [], [], [], []
            for i in range(0, len(data.amplitudes), 64):
                a = data.amplitudes[i : i + 64].to(self.device)
                t = data.phases[i : i + 64].to(self.device)
                ph = torch.zeros_like(a)
                for _ in range(self.cfg.cycles_max):
                    ph = decode_phases(model(self.grid.to_grid(a), self.grid.to_grid(ph)))
                mask = (~absent).float()[None] * (a > 0)
                acc, err, r = phase_metrics(ph, t, a, hkl, mask)
                g = torch.Generator(device=a.device).manual_seed(i)
                rnd = torch.where(torch.rand(a.shape, generator=g, device=a.device) < 0.5, 0.0, -180.0)
                _, _, r0 = phase_metrics(rnd, t, a, hkl, mask)
                accs.append(acc), errs.append(err), rs.append(r), rrand.append(r0)
            acc, err, r, r0 = (torch.cat(x) for x in (accs, errs, rs, rrand))
            out.update({f"{name}_accuracy": float(acc.mean()), f"{name}_phase_error": float(err.mean()),
                        f"{name}_map_r": float(r.mean()), f"{name}_solved": float((r >= 0.8).float().mean()),
                        f"{name}_random_map_r": float(r0.mean())})
            if name == "val":
                self._sample = (data.amplitudes[0].numpy(), data.phases[0].numpy(), ph[0].cpu().numpy())
        model.train()
        return out

    def _write_sample(self, step) -> None:
        if not self.dist.is_main or getattr(self, "_sample", None) is None:
            return
        from ..io.common import atomic_path

        a, t, p = self._sample
        with atomic_path(self.run_dir / "sample.npz", ".npz") as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, amplitudes=a, true_phases=t, predicted_phases=p, hkl=self.grid.hkl, step=step)

    # ------------------------------------------------------------------ run
    def run(self) -> dict:
        cfg = self.cfg
        if cfg.num_threads:
            torch.set_num_threads(cfg.num_threads)
        self.dist = setup_distributed("cuda" if (cfg.device != "cpu" and torch.cuda.is_available()) else "cpu")
        try:
            return self._run()
        finally:
            if self._prefetcher is not None:
                self._prefetcher.close()
            teardown_distributed(self.dist)

    def _run(self) -> dict:
        cfg = self.cfg
        self.device = select_device(cfg.device, self.dist)
        self.mcfg = model_config(cfg)
        self.grid = PhAIGrid(self.mcfg.max_index)
        torch.manual_seed(cfg.seed)
        model = PhAI(self.mcfg).to(self.device)
        self.opt = make_optimizer(cfg.optimizer, model.parameters(), cfg.lr, cfg.weight_decay, cfg.betas)
        self.lr = LearningRate(cfg.lr, cfg.schedule, cfg.steps, cfg.warmup_steps, cfg.step_every)
        self.best, self.bad = -1.0, 0
        self.log = MetricsLog(self.run_dir, enabled=self.dist.is_main)
        start = 0
        ck = self.run_dir / "checkpoint_last.pt"
        if self.resume and ck.exists():
            st = load_checkpoint(ck)
            if st.get("kind") != "phai" or st.get("model_config") != self.mcfg.to_dict():
                raise ModelFileError(ck, f"checkpoint architecture {st.get('model_config')} differs from the "
                                         f"configuration {self.mcfg.to_dict()}; use another run directory")
            model.load_state_dict(st["model"], strict=True)
            self.opt.load_state_dict(st["optimizer"])
            start = int(st["step"])
            self.lr.drop = float(st.get("lr_drop", 1.0))
            self.best, self.bad = float(st.get("best", -1.0)), int(st.get("bad_validations", 0))
            if self.dist.is_main:
                self.log.truncate_after(start)
        elif self.dist.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            cfg.save(self.run_dir / "config.json")
            if self.log.path.exists():
                self.log.path.unlink()
        if self.dist.world > 1:
            from torch.nn.parallel import DistributedDataParallel

            self.model = DistributedDataParallel(model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        else:
            self.model = model
        data = PhAIData(cfg, self.grid, device=self.device if self.device.type == "cuda" else None)
        # fixed validation set and loss weights (mean |F| per reflection, 0 on absences)
        vb = data.shard(cfg.val_seed, cfg.val_size, augment=True)
        self.val = vb
        self.real = real_validation_set(list(cfg.real_validation), self.grid)
        weights = average_weights(data.shard(cfg.val_seed + 1, 512, augment=False).amplitudes, self.grid.absent).to(self.device)
        hkl = torch.as_tensor(self.grid.hkl, device=self.device)
        use_amp = cfg.amp and self.device.type == "cuda"
        scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
        if self.dist.is_main:
            self._record({"step": start, "kind": "start", "parameters": count_parameters(model), "device": str(self.device),
                          "world": self.dist.world, "model": self.mcfg.to_dict(), "time": time.time()})
        t_last, n_last = time.perf_counter(), 0
        t_begin = t_last
        stop = False
        result = {}
        step = start
        ahead = self.prefetch if self.prefetch is not None else int(self.device.type == "cuda")
        if ahead:
            from .prefetch import Prefetcher

            self._prefetcher = Prefetcher(lambda k: data.global_batch(k, self.dist.rank, self.dist.world), start,
                                          cfg.steps, ahead)
        for step in range(start, cfg.steps):
            stop_req, drops = self.control.poll(self.cancel)
            if cfg.time_limit_s and time.perf_counter() - t_begin > cfg.time_limit_s:
                self._record({"step": step, "kind": "event", "event": "time limit reached"})
                stop_req = True
            if stop_req:
                stop = True
                break
            for f in drops:
                self.lr.drop *= f
                self._record({"step": step, "kind": "event", "event": f"learning rate ×{f:g}"})
            lr = self.lr.apply(self.opt, step)
            tg = time.perf_counter()
            batch = (self._prefetcher.get(step) if self._prefetcher is not None
                     else data.global_batch(step, self.dist.rank, self.dist.world)).to(self.device)
            t_gen = time.perf_counter() - tg  # with prefetching: the time the step waited for its data
            rng = np.random.default_rng(step_seed(cfg.seed, step, 0, stream=1))
            cycles = int(rng.integers(1, cfg.cycles_max + 1))
            a_grid = self.grid.to_grid(batch.amplitudes)
            ph = torch.zeros_like(batch.amplitudes)
            if cycles > 1:
                with torch.no_grad():
                    for _ in range(cycles - 1):
                        with torch.autocast("cuda", enabled=use_amp):
                            ph = decode_phases(self.model(a_grid, self.grid.to_grid(ph)))
            with torch.autocast("cuda", enabled=use_amp):
                logits = self.model(a_grid, self.grid.to_grid(ph))
            loss = origin_invariant_loss(logits, batch.phases, weights[None] * batch.present, hkl)
            self.opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if cfg.grad_clip:
                scaler.unscale_(self.opt)
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
            scaler.step(self.opt)
            scaler.update()
            n_last += cfg.batch_size
            loss_v = all_reduce_mean(loss.item(), self.dist, self.device)
            now = time.perf_counter()
            rec = {"step": step + 1, "kind": "train", "loss": loss_v, "lr": lr, "cycles": cycles,
                   "structures_per_s": n_last / max(now - t_last, 1e-9), "generation_s": t_gen}
            mem = memory_mb(self.device)
            if mem is not None:
                rec["gpu_memory_mb"] = mem
            t_last, n_last = now, 0
            self._record(rec)
            report(self.progress, (step + 1) / cfg.steps, f"step {step + 1}/{cfg.steps} loss {loss_v:.4f}")
            if cfg.val_every and (step + 1) % cfg.val_every == 0:
                v = self.validate(step + 1)
                self._record(v)
                self._write_sample(step + 1)
                result = v
                if v["val_map_r"] > self.best + 1e-4:
                    self.best, self.bad = v["val_map_r"], 0
                    self.checkpoint(step + 1, "checkpoint_best.pt")
                else:
                    self.bad += 1
                if cfg.early_stop_patience and self.bad >= cfg.early_stop_patience:
                    self._record({"step": step + 1, "kind": "event", "event": "early stop"})
                    step += 1
                    stop = True
                    break
            if cfg.checkpoint_every and (step + 1) % cfg.checkpoint_every == 0:
                self.checkpoint(step + 1)
        else:
            step = cfg.steps
        self.checkpoint(step)
        self._record({"step": step, "kind": "end", "stopped": stop, "time": time.time()})
        return {"step": step, "stopped": stop, **result}


def train(cfg: TrainConfig, **kw) -> dict:
    if cfg.kind == "phai":
        return PhAITrainer(cfg, **kw).run()
    from .dsfu_trainer import DSFUTrainer

    return DSFUTrainer(cfg, **kw).run()
