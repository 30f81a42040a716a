"""Training the two DSFU-Net GANs (form factor, short-range order) on planes simulated on the fly.

Losses (seed paper 2): LSGAN (MSE on PatchGAN outputs) + 100·L1 for each generator, plus a joint step
SmoothL1 between (G_FF + 2)(G_SRO + 2) − 2 and the same product of the targets; Adam 2e-4, betas
(0.5, 0.999) — the DSFUTrainConfig defaults; every optimiser field of the configuration is honoured
(both the generators' and the discriminators' optimisers are built from it, gradients clipped at
grad_clip, mixed precision on CUDA). Same run loop as PhAI (metrics log, atomic checkpoints, exact
resume, control file, torchrun). Generators are also written as plain state dicts in the published
layout (generator_ff.pt, generator_sro.pt), ready for `crystalstudio factorise`.
"""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F

from ..diffuse.dsfu_net import DSFUDiscriminator, DSFUGenerator, count_parameters
from ..diffuse.simulation import DiffuseSettings, DiffuseSimulator
from ..errors import InvalidInputError, ModelFileError
from .common import step_seed
from .loop import RunLoop, TrainingHooks


def diffuse_settings(cfg) -> DiffuseSettings:
    d = dict(cfg.diffuse)
    s = DiffuseSettings()
    for k, v in d.items():
        if not hasattr(s, k):
            raise InvalidInputError(f"unknown diffuse setting '{k}'")
        setattr(s, k, tuple(v) if isinstance(getattr(s, k), tuple) and isinstance(v, list) else v)
    return s


class DSFUHooks(TrainingHooks):
    """DSFU-Net in the run loop: two generators (I_FF, I_SRO) and two PatchGAN discriminators."""

    kind = "dsfu"
    min_improvement = 0.0  # of −(validation MSE of I_FF + I_SRO)

    def build(self, loop: RunLoop) -> None:
        super().build(loop)
        cfg = self.cfg
        self.width = cfg.model.width
        nets = {"g_ff": DSFUGenerator(self.width), "g_sro": DSFUGenerator(self.width),
                "d_ff": DSFUDiscriminator(self.width), "d_sro": DSFUDiscriminator(self.width)}
        for n in nets.values():
            for m in n.modules():
                if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
                    torch.nn.init.normal_(m.weight, 0.0, 0.02)
            n.to(self.device)
        self.plain = nets
        self.nets = dict(nets)
        self.gparams = list(nets["g_ff"].parameters()) + list(nets["g_sro"].parameters())
        self.dparams = list(nets["d_ff"].parameters()) + list(nets["d_sro"].parameters())
        self.opt_g = loop.optimizer(self.gparams)
        self.opt_d = loop.optimizer(self.dparams)
        self.sim = DiffuseSimulator(diffuse_settings(cfg), device=self.device if self.device.type == "cuda" else None)
        self.val = self.sim.batch(cfg.val_size, cfg.val_seed)

    def distribute(self, loop: RunLoop) -> None:
        from torch.nn.parallel import DistributedDataParallel as DDP

        if self.cfg.data_shards % loop.dist.world:
            raise InvalidInputError(f"data_shards {self.cfg.data_shards} must be a multiple of the number of "
                                    f"processes {loop.dist.world}")
        ids = [self.device.index] if self.device.type == "cuda" else None
        self.nets = {k: DDP(v, device_ids=ids) for k, v in self.plain.items()}

    def parameter_count(self) -> int:
        return 2 * count_parameters(self.plain["g_ff"])

    def start_info(self) -> dict:
        return {"width": self.width}

    def state(self) -> dict:
        return {"model": {k: v.state_dict() for k, v in self.plain.items()}, "optimizer_g": self.opt_g.state_dict(),
                "optimizer_d": self.opt_d.state_dict(), "width": self.width}

    def load_state(self, st: dict, path) -> None:
        if int(st.get("width", -1)) != self.width:
            raise ModelFileError(path, f"checkpoint holds DSFU-Net width {st.get('width')}, the configuration asks "
                                       f"for width {self.width}; use another run directory")
        for k, n in self.plain.items():
            n.load_state_dict(st["model"][k], strict=True)
        self.opt_g.load_state_dict(st["optimizer_g"])
        self.opt_d.load_state_dict(st["optimizer_d"])

    def train_step(self, step: int) -> dict:
        cfg, loop, nets = self.cfg, self.loop, self.nets
        S, W, r = cfg.data_shards, loop.dist.world, loop.dist.rank
        per = cfg.batch_size // S
        tg = time.perf_counter()
        parts = [self.sim.batch(per, step_seed(cfg.seed, step, s)) for s in range(r * S // W, (r + 1) * S // W)]
        b = {k: torch.cat([p[k] for p in parts]).to(self.device) for k in ("input", "ff", "sro")}
        t_gen = time.perf_counter() - tg
        x, tf, ts = b["input"], b["ff"], b["sro"]
        with loop.autocast():
            pf, ps = nets["g_ff"](x), nets["g_sro"](x)
            # generators: LSGAN + 100·L1 each, plus the joint product term
            out_ff, out_sro = nets["d_ff"](pf, x), nets["d_sro"](ps, x)
        pf, ps, out_ff, out_sro = pf.float(), ps.float(), out_ff.float(), out_sro.float()
        g_adv = F.mse_loss(out_ff, torch.ones_like(out_ff)) + F.mse_loss(out_sro, torch.ones_like(out_sro))
        l1 = F.l1_loss(pf, tf) + F.l1_loss(ps, ts)
        joint = F.smooth_l1_loss((pf + 2) * (ps + 2) - 2, (tf + 2) * (ts + 2) - 2)
        g_loss = g_adv + 100.0 * l1 + joint
        loop.backward_step(g_loss, self.opt_g, self.gparams)
        # discriminators
        d_loss = 0.0
        for key, fake, real in (("d_ff", pf, tf), ("d_sro", ps, ts)):
            with loop.autocast():
                dr, dfk = nets[key](real, x).float(), nets[key](fake.detach(), x).float()
            d_loss = d_loss + 0.5 * (F.mse_loss(dr, torch.ones_like(dr)) + F.mse_loss(dfk, torch.zeros_like(dfk)))
        loop.backward_step(d_loss, self.opt_d, self.dparams)
        return {"loss": loop.mean(g_loss.item()), "l1": loop.mean(l1.item()), "joint": loop.mean(joint.item()),
                "d_loss": loop.mean(d_loss.item()), "generation_s": t_gen,
                "planes_per_s": cfg.batch_size / max(time.perf_counter() - tg, 1e-9)}

    @torch.no_grad()
    def validate(self, step: int) -> dict:
        nets = self.plain
        for n in nets.values():
            n.eval()
        x, tf, ts = (self.val[k].to(self.device) for k in ("input", "ff", "sro"))
        pf, ps = nets["g_ff"](x), nets["g_sro"](x)
        g = torch.Generator(device="cpu").manual_seed(0)
        noise = (torch.rand(tf.shape, generator=g) * 2 - 1).to(self.device)
        rec = {"val_mse_ff": float(F.mse_loss(pf, tf)), "val_mse_sro": float(F.mse_loss(ps, ts)),
               "noise_mse_ff": float(F.mse_loss(noise, tf)), "noise_mse_sro": float(F.mse_loss(noise, ts)),
               "mean_mse_ff": float(F.mse_loss(tf.mean().expand_as(tf), tf)),
               "mean_mse_sro": float(F.mse_loss(ts.mean().expand_as(ts), ts))}
        self._sample = (x[0, 0].cpu().numpy(), tf[0, 0].cpu().numpy(), pf[0, 0].cpu().numpy(), ts[0, 0].cpu().numpy(),
                        ps[0, 0].cpu().numpy(), step)
        for n in nets.values():
            n.train()
        return rec

    def score(self, metrics: dict) -> float:
        return -(metrics["val_mse_ff"] + metrics["val_mse_sro"])

    def write_outputs(self, loop: RunLoop, step: int) -> None:
        from ..io.common import atomic_path
        from .runlog import save_checkpoint

        save_checkpoint(loop.run_dir / "generator_ff.pt", self.plain["g_ff"].state_dict())
        save_checkpoint(loop.run_dir / "generator_sro.pt", self.plain["g_sro"].state_dict())
        if self._sample is None:
            return
        x, tf, pf, ts, ps, at = self._sample
        with atomic_path(loop.run_dir / "sample.npz", ".npz") as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, input=x, ff_true=tf, ff_pred=pf, sro_true=ts, sro_pred=ps, step=at)


class DSFUTrainer(RunLoop):
    """One DSFU-Net training run (see RunLoop for progress, cancel, control and on_record)."""

    def __init__(self, cfg, **kw):
        super().__init__(cfg, DSFUHooks(cfg), **kw)
