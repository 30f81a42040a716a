"""Training the two DSFU-Net GANs (form factor, short-range order) on planes simulated on the fly.

Losses (seed paper 2): LSGAN (MSE on PatchGAN outputs) + 100·L1 for each generator, plus a joint step
SmoothL1 between (G_FF + 2)(G_SRO + 2) − 2 and the same product of the targets; Adam 2e-4, betas
(0.5, 0.999). Same run-directory machinery as the PhAI trainer (metrics log, atomic checkpoints,
exact resume, control file, torchrun). Generators are also written as plain state dicts in the
published layout (generator_ff.pt, generator_sro.pt), ready for `crystalstudio factorise`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F

from ..diffuse.dsfu_net import DSFUDiscriminator, DSFUGenerator, count_parameters
from ..diffuse.simulation import DiffuseSettings, DiffuseSimulator
from ..errors import InvalidInputError, ModelFileError
from ..jobs import report
from .common import (LearningRate, all_reduce_mean, memory_mb, select_device, setup_distributed, step_seed,
                     teardown_distributed)
from .config import TrainConfig
from .runlog import MetricsLog, RunControl, load_checkpoint, save_checkpoint


def diffuse_settings(cfg: TrainConfig) -> DiffuseSettings:
    d = dict(cfg.diffuse)
    s = DiffuseSettings()
    for k, v in d.items():
        if not hasattr(s, k):
            raise InvalidInputError(f"unknown diffuse setting '{k}'")
        setattr(s, k, tuple(v) if isinstance(getattr(s, k), tuple) and isinstance(v, list) else v)
    return s


class DSFUTrainer:
    def __init__(self, cfg: TrainConfig, *, resume: bool = True, progress: Optional[Callable] = None, cancel=None,
                 control: Optional[RunControl] = None, on_record: Optional[Callable] = None):
        self.cfg, self.resume = cfg, resume
        self.progress, self.cancel = progress, cancel
        self.control = control or RunControl(cfg.run_dir)
        self.on_record = on_record
        self.run_dir = Path(cfg.run_dir)

    def _record(self, rec):
        if self.dist.is_main:
            self.log.write(rec)
            if self.on_record is not None:
                self.on_record(rec)

    def _nets(self):
        unwrap = lambda m: m.module if hasattr(m, "module") else m
        return {k: unwrap(v) for k, v in self.nets.items()}

    def checkpoint(self, step: int, name: str = "checkpoint_last.pt") -> None:
        if not self.dist.is_main:
            return
        nets = self._nets()
        state = {"kind": "dsfu", "model": {k: v.state_dict() for k, v in nets.items()},
                 "optimizer_g": self.opt_g.state_dict(), "optimizer_d": self.opt_d.state_dict(), "step": step,
                 "lr_drop": self.lr.drop, "config": self.cfg.to_dict(), "width": self.width, "best": self.best}
        save_checkpoint(self.run_dir / name, state)
        save_checkpoint(self.run_dir / "generator_ff.pt", nets["g_ff"].state_dict())
        save_checkpoint(self.run_dir / "generator_sro.pt", nets["g_sro"].state_dict())

    @torch.no_grad()
    def validate(self, step: int) -> dict:
        nets = self._nets()
        for n in nets.values():
            n.eval()
        x, tf, ts = (self.val[k].to(self.device) for k in ("input", "ff", "sro"))
        pf, ps = nets["g_ff"](x), nets["g_sro"](x)
        g = torch.Generator(device="cpu").manual_seed(0)
        noise = (torch.rand(tf.shape, generator=g) * 2 - 1).to(self.device)
        rec = {"step": step, "kind": "validation",
               "val_mse_ff": float(F.mse_loss(pf, tf)), "val_mse_sro": float(F.mse_loss(ps, ts)),
               "noise_mse_ff": float(F.mse_loss(noise, tf)), "noise_mse_sro": float(F.mse_loss(noise, ts)),
               "mean_mse_ff": float(F.mse_loss(tf.mean().expand_as(tf), tf)),
               "mean_mse_sro": float(F.mse_loss(ts.mean().expand_as(ts), ts))}
        self._sample = (x[0, 0].cpu().numpy(), tf[0, 0].cpu().numpy(), pf[0, 0].cpu().numpy(), ts[0, 0].cpu().numpy(),
                        ps[0, 0].cpu().numpy())
        for n in nets.values():
            n.train()
        return rec

    def _write_sample(self, step):
        if not self.dist.is_main or getattr(self, "_sample", None) is None:
            return
        from ..io.common import atomic_path

        x, tf, pf, ts, ps = self._sample
        with atomic_path(self.run_dir / "sample.npz", ".npz") as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, input=x, ff_true=tf, ff_pred=pf, sro_true=ts, sro_pred=ps, step=step)

    def run(self) -> dict:
        cfg = self.cfg
        if cfg.num_threads:
            torch.set_num_threads(cfg.num_threads)
        self.dist = setup_distributed("cuda" if (cfg.device != "cpu" and torch.cuda.is_available()) else "cpu")
        try:
            return self._run()
        finally:
            teardown_distributed(self.dist)

    def _run(self) -> dict:
        cfg = self.cfg
        self.device = select_device(cfg.device, self.dist)
        self.width = int(cfg.model.get("width", 16))
        torch.manual_seed(cfg.seed)
        nets = {"g_ff": DSFUGenerator(self.width), "g_sro": DSFUGenerator(self.width),
                "d_ff": DSFUDiscriminator(self.width), "d_sro": DSFUDiscriminator(self.width)}
        for n in nets.values():
            for m in n.modules():
                if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
                    torch.nn.init.normal_(m.weight, 0.0, 0.02)
            n.to(self.device)
        gparams = list(nets["g_ff"].parameters()) + list(nets["g_sro"].parameters())
        dparams = list(nets["d_ff"].parameters()) + list(nets["d_sro"].parameters())
        betas = tuple(cfg.betas) if tuple(cfg.betas) != (0.9, 0.999) else (0.5, 0.999)
        self.opt_g = torch.optim.Adam(gparams, lr=cfg.lr, betas=betas)
        self.opt_d = torch.optim.Adam(dparams, lr=cfg.lr, betas=betas)
        self.lr = LearningRate(cfg.lr, cfg.schedule, cfg.steps, cfg.warmup_steps, cfg.step_every)
        self.best = float("inf")
        self.log = MetricsLog(self.run_dir, enabled=self.dist.is_main)
        start = 0
        ck = self.run_dir / "checkpoint_last.pt"
        if self.resume and ck.exists():
            st = load_checkpoint(ck)
            if st.get("kind") != "dsfu" or int(st.get("width", -1)) != self.width:
                raise ModelFileError(ck, f"checkpoint holds a {st.get('kind')} model of width {st.get('width')}, "
                                         f"the configuration asks for DSFU-Net width {self.width}")
            for k, n in nets.items():
                n.load_state_dict(st["model"][k], strict=True)
            self.opt_g.load_state_dict(st["optimizer_g"])
            self.opt_d.load_state_dict(st["optimizer_d"])
            start, self.lr.drop, self.best = int(st["step"]), float(st.get("lr_drop", 1.0)), float(st.get("best", 1e9))
            if self.dist.is_main:
                self.log.truncate_after(start)
        elif self.dist.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            cfg.save(self.run_dir / "config.json")
            if self.log.path.exists():
                self.log.path.unlink()
        if self.dist.world > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            nets = {k: DDP(v, device_ids=ids) for k, v in nets.items()}
        self.nets = nets
        sim = DiffuseSimulator(diffuse_settings(cfg), device=self.device if self.device.type == "cuda" else None)
        self.val = sim.batch(cfg.val_size, cfg.val_seed)
        S = cfg.data_shards
        if S % self.dist.world or cfg.batch_size % S:
            raise InvalidInputError("batch_size must be a multiple of data_shards, and data_shards of the process count")
        per = cfg.batch_size // S
        if self.dist.is_main:
            self._record({"step": start, "kind": "start", "parameters": count_parameters(nets["g_ff"]) * 2,
                          "device": str(self.device), "world": self.dist.world, "width": self.width, "time": time.time()})
        t_last = time.perf_counter()
        stop, result, step = False, {}, start
        t_begin = time.perf_counter()
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
            lr = self.lr.apply(self.opt_g, step)
            self.lr.apply(self.opt_d, step)
            tg = time.perf_counter()
            parts = [sim.batch(per, step_seed(cfg.seed, step, s)) for s in range(self.dist.rank * S // self.dist.world,
                                                                                 (self.dist.rank + 1) * S // self.dist.world)]
            b = {k: torch.cat([p[k] for p in parts]).to(self.device) for k in ("input", "ff", "sro")}
            t_gen = time.perf_counter() - tg
            x, tf, ts = b["input"], b["ff"], b["sro"]
            pf, ps = nets["g_ff"](x), nets["g_sro"](x)
            # generators: LSGAN + 100·L1 each, plus the joint product term
            ones = torch.ones_like(nets["d_ff"](pf, x))
            g_adv = F.mse_loss(nets["d_ff"](pf, x), ones) + F.mse_loss(nets["d_sro"](ps, x), ones)
            l1 = F.l1_loss(pf, tf) + F.l1_loss(ps, ts)
            joint = F.smooth_l1_loss((pf + 2) * (ps + 2) - 2, (tf + 2) * (ts + 2) - 2)
            g_loss = g_adv + 100.0 * l1 + joint
            self.opt_g.zero_grad(set_to_none=True)
            g_loss.backward()
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(gparams, cfg.grad_clip * 10)
            self.opt_g.step()
            # discriminators
            d_loss = 0.0
            for key, fake, real in (("d_ff", pf, tf), ("d_sro", ps, ts)):
                dr = nets[key](real, x)
                dfk = nets[key](fake.detach(), x)
                d_loss = d_loss + 0.5 * (F.mse_loss(dr, torch.ones_like(dr)) + F.mse_loss(dfk, torch.zeros_like(dfk)))
            self.opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            self.opt_d.step()
            now = time.perf_counter()
            rec = {"step": step + 1, "kind": "train", "loss": all_reduce_mean(g_loss.item(), self.dist, self.device),
                   "l1": all_reduce_mean(l1.item(), self.dist, self.device), "joint": joint.item(),
                   "d_loss": d_loss.item(), "lr": lr, "planes_per_s": cfg.batch_size / max(now - t_last, 1e-9),
                   "generation_s": t_gen}
            mem = memory_mb(self.device)
            if mem is not None:
                rec["gpu_memory_mb"] = mem
            t_last = now
            self._record(rec)
            report(self.progress, (step + 1) / cfg.steps, f"step {step + 1}/{cfg.steps} L1 {rec['l1']:.4f}")
            if cfg.val_every and (step + 1) % cfg.val_every == 0:
                v = self.validate(step + 1)
                self._record(v)
                self._write_sample(step + 1)
                result = v
                score = v["val_mse_ff"] + v["val_mse_sro"]
                if score < self.best:
                    self.best = score
                    self.checkpoint(step + 1, "checkpoint_best.pt")
            if cfg.checkpoint_every and (step + 1) % cfg.checkpoint_every == 0:
                self.checkpoint(step + 1)
        else:
            step = cfg.steps
        self.checkpoint(step)
        self._record({"step": step, "kind": "end", "stopped": stop, "time": time.time()})
        return {"step": step, "stopped": stop, **result}
