"""The one training run loop, shared by PhAI and DSFU-Net through a small set of hooks.

The loop owns what every run needs: threads, torchrun/DDP set-up, the device, the learning-rate
schedule with manual drops, the control file (pause/stop/drop from anyone), the time limit, the
metrics log, validation with the best checkpoint and early stopping, periodic checkpoints, a
checkpoint whenever the run stops (end, stop request, time limit, early stop, Ctrl-C) and exact resume.

A network plugs in with a :class:`TrainingHooks` object:
  build(loop)            networks, optimisers (``loop.optimizer(params)``), data, fixed validation set
  train_step(step)       one optimiser step on the global batch of `step`; returns the record (loss …)
  validate(step)         metrics on the fixed validation set (plain floats)
  score(metrics)         the number to maximise (best checkpoint, early stopping)
  state() / load_state() what a checkpoint holds besides step, learning-rate drops and bookkeeping
  write_outputs(loop)    files beside the checkpoint (validation sample, generator weights)

The summary the loop returns names the step it reached (`step`), whether and why it stopped
(`stopped`, `reason`), where it started (`start_step`, `resumed`) and the last validation (`val_…`,
`validated_at`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Optional

import torch

from ..errors import ModelFileError
from ..jobs import report
from .common import (LearningRate, all_reduce_mean, make_optimizer, setup_distributed, teardown_distributed)
from .config import TrainConfig
from .runlog import MetricsLog, RunControl, load_checkpoint, save_checkpoint


class TrainingHooks:
    """What a network adds to the run loop (subclass it; `build` first calls this one)."""

    kind = ""  # checkpoints of another kind are refused
    min_improvement = 0.0  # of score() for a better validation (best checkpoint, early stopping)

    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg
        self._sample = None  # the latest validation sample, written by write_outputs

    def build(self, loop: "RunLoop") -> None:
        self.loop, self.device = loop, loop.device

    def distribute(self, loop: "RunLoop") -> None:
        raise NotImplementedError

    def train_step(self, step: int) -> dict:
        raise NotImplementedError

    def validate(self, step: int) -> dict:
        raise NotImplementedError

    def score(self, metrics: dict) -> float:
        raise NotImplementedError

    def state(self) -> dict:
        raise NotImplementedError

    def load_state(self, state: dict, path: Path) -> None:
        raise NotImplementedError

    def write_outputs(self, loop: "RunLoop", step: int) -> None:
        raise NotImplementedError

    def parameter_count(self) -> int:
        raise NotImplementedError

    def start_info(self) -> dict:
        return {}

    def start_events(self) -> list[str]:
        """Warnings written to the metrics log when the run starts (e.g. a setting that will slow it)."""
        return []


class RunLoop:
    """One run of `hooks` under `cfg`. `progress(fraction, message)`, `cancel` (is_set()), `control`
    (RunControl) and `on_record(dict)` connect it to a GUI or a terminal; rank 0 writes the run directory."""

    def __init__(self, cfg: TrainConfig, hooks: TrainingHooks, *, resume: bool = True,
                 progress: Optional[Callable] = None, cancel=None, control: Optional[RunControl] = None,
                 on_record: Optional[Callable] = None):
        cfg.check()
        self.cfg, self.hooks, self.resume = cfg, hooks, resume
        self.progress, self.cancel = progress, cancel
        self.control = control or RunControl(cfg.run_dir)
        self.on_record = on_record
        self.run_dir = Path(cfg.run_dir)
        self.optimizers: list[torch.optim.Optimizer] = []
        self.scaler = None

    # ------------------------------------------------------------------ for the hooks
    def optimizer(self, params) -> torch.optim.Optimizer:
        """The configured optimiser (name, lr, weight decay, betas) over `params`, scheduled by the loop."""
        cfg = self.cfg
        opt = make_optimizer(cfg.optimizer, params, cfg.lr, cfg.weight_decay, cfg.betas)
        self.optimizers.append(opt)
        return opt

    @property
    def use_amp(self) -> bool:
        return bool(self.cfg.amp and self.device.type == "cuda")

    def autocast(self):
        return torch.autocast("cuda", enabled=self.use_amp)

    def backward_step(self, loss, optimizer, params) -> None:
        """Scaled backward pass, gradient clipping (grad_clip, on the unscaled gradients) and the step."""
        optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.cfg.grad_clip:
            self.scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(params, self.cfg.grad_clip)
        self.scaler.step(optimizer)

    def mean(self, x: float) -> float:
        """`x` averaged over the processes of a torchrun job."""
        return all_reduce_mean(x, self.dist, self.device)

    def record(self, rec: dict) -> None:
        if self.dist.is_main:
            self.log.write(rec)
            if self.on_record is not None:
                self.on_record(rec)

    # ------------------------------------------------------------------ checkpoints
    def checkpoint(self, step: int, name: str = "checkpoint_last.pt") -> None:
        if not self.dist.is_main:
            return
        state = {"kind": self.hooks.kind, "step": step, "lr_drop": self.lr.drop, "config": self.cfg.to_dict(),
                 "best_score": self.best, "bad_validations": self.bad,
                 "scaler": self.scaler.state_dict() if self.use_amp else None, **self.hooks.state()}
        save_checkpoint(self.run_dir / name, state)
        if name == "checkpoint_last.pt":
            self.hooks.write_outputs(self, step)
            self.last_checkpoint = step

    def _restore(self) -> int:
        ck = self.run_dir / "checkpoint_last.pt"
        if not (self.resume and ck.exists()):
            return 0
        st = load_checkpoint(ck)
        if st.get("kind") != self.hooks.kind:
            raise ModelFileError(ck, f"holds a {st.get('kind')} run, the configuration trains {self.hooks.kind}; "
                                     "use another run directory")
        self.hooks.load_state(st, ck)
        self.lr.drop = float(st.get("lr_drop", 1.0))
        self.best, self.bad = float(st.get("best_score", float("-inf"))), int(st.get("bad_validations", 0))
        self.last_checkpoint = int(st["step"])
        if st.get("scaler") and self.use_amp:
            self.scaler.load_state_dict(st["scaler"])
        return int(st["step"])

    def _start_log(self, start: int) -> Optional[str]:
        """Resume: keep the log up to `start`. Fresh start: an older log is kept beside, never overwritten."""
        if not self.dist.is_main:
            return None
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if start:
            self.log.truncate_after(start)
            return None
        self.cfg.save(self.run_dir / "config.json", complete=True)
        if self.log.path.exists() and self.log.path.stat().st_size:
            i = 1
            while (self.run_dir / f"metrics.{i}.jsonl").exists():
                i += 1
            kept = self.run_dir / f"metrics.{i}.jsonl"
            self.log.path.rename(kept)
            return kept.name
        return None

    # ------------------------------------------------------------------ control
    def _control(self, step: int, t_begin: float) -> tuple[Optional[str], list[float]]:
        """(reason to stop or None, learning-rate drops); rank 0 decides, every rank follows."""
        stop, drops = self.control.poll(self.cancel) if self.dist.is_main else (False, [])
        reason = "stop requested" if stop else None
        if self.cfg.time_limit_s and time.perf_counter() - t_begin > self.cfg.time_limit_s:
            reason = "time limit reached"
        if self.dist.world > 1:
            import torch.distributed as dist

            t = torch.zeros(3, dtype=torch.float64, device=self.device)
            if self.dist.is_main:
                t[0] = 1.0 if stop else 0.0
                t[1] = 1.0 if reason == "time limit reached" else 0.0
                prod = 1.0
                for f in drops:
                    prod *= f
                t[2] = prod
            dist.broadcast(t, 0)
            reason = "stop requested" if t[0] else ("time limit reached" if t[1] else None)
            drops = [float(t[2])] if float(t[2]) != 1.0 else []
        return reason, drops

    # ------------------------------------------------------------------ run
    def run(self) -> dict:
        cfg = self.cfg
        if cfg.num_threads:
            torch.set_num_threads(cfg.num_threads)
        from ..devices import resolve_device

        want = resolve_device(cfg.device)  # an unusable device is refused before anything is written
        self.dist = setup_distributed(want.type)
        try:
            return self._run()
        finally:
            teardown_distributed(self.dist)

    def _run(self) -> dict:
        from ..devices import resolve_device

        cfg = self.cfg
        self.device = resolve_device(cfg.device, self.dist.local_rank)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        self.log = MetricsLog(self.run_dir, enabled=self.dist.is_main)
        self.lr = LearningRate(cfg.lr, cfg.schedule, cfg.steps, cfg.warmup_steps, cfg.step_every)
        self.best, self.bad, self.last_checkpoint = float("-inf"), 0, None
        torch.manual_seed(cfg.seed)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        self.hooks.build(self)
        start = self._restore()
        kept = self._start_log(start)
        if self.dist.world > 1:
            self.hooks.distribute(self)
        self.record({"step": start, "kind": "start", "parameters": self.hooks.parameter_count(),
                     "device": str(self.device), "world": self.dist.world, "resumed": bool(start),
                     "time": time.time(), **self.hooks.start_info()})
        if kept:
            self.record({"step": start, "kind": "event", "event": f"an older metrics log was kept as {kept}"})
        if cfg.amp and not self.use_amp:
            self.record({"step": start, "kind": "event", "event": f"mixed precision applies on CUDA only; "
                                                                  f"float32 on {self.device.type}"})
        for event in self.hooks.start_events():
            self.record({"step": start, "kind": "event", "event": event})
        t_begin = t_last = time.perf_counter()
        reason, result, step = None, {}, start
        if start >= cfg.steps:
            reason = "already complete"
        try:
            while step < cfg.steps and reason is None:
                reason, drops = self._control(step, t_begin)
                if reason is not None:
                    break
                for f in drops:
                    self.lr.drop *= f
                    self.record({"step": step, "kind": "event", "event": f"learning rate ×{f:g}"})
                lr = self.lr(step)
                for opt in self.optimizers:
                    self.lr.apply(opt, step)
                rec = self.hooks.train_step(step)
                self.scaler.update()
                step += 1
                now = time.perf_counter()
                rec = {"step": step, "kind": "train", **rec, "lr": lr, "step_s": now - t_last}
                t_last = now
                if self.device.type == "cuda":
                    rec["gpu_memory_mb"] = torch.cuda.max_memory_allocated(self.device) / 2**20
                self.record(rec)
                report(self.progress, step / cfg.steps, f"step {step}/{cfg.steps} loss {rec.get('loss', float('nan')):.4f}")
                if cfg.val_every and step % cfg.val_every == 0:
                    result = self._validate(step)
                    if cfg.early_stop_patience and self.bad >= cfg.early_stop_patience:
                        self.record({"step": step, "kind": "event", "event": "early stop"})
                        reason = "early stop"
                if cfg.checkpoint_every and step % cfg.checkpoint_every == 0:
                    self.checkpoint(step)
        except KeyboardInterrupt:
            # a hard interrupt may land inside an optimiser step: no checkpoint of half-updated weights;
            # the last one written (`last_checkpoint`) resumes the run. (A stop request ends cleanly above.)
            self.record({"step": step, "kind": "end", "stopped": True, "reason": "interrupted",
                         "checkpoint_step": self.last_checkpoint, "time": time.time()})
            raise
        self._finish(step, reason)
        return {**result, "validated_at": result.get("step"), "step": step, "start_step": start,
                "resumed": bool(start), "stopped": reason is not None and reason != "already complete",
                "reason": reason or "completed", "checkpoint": str(self.run_dir / "checkpoint_last.pt")}

    def _validate(self, step: int) -> dict:
        v = {"step": step, "kind": "validation", **self.hooks.validate(step)}
        self.record(v)
        score = self.hooks.score(v)
        if score > self.best + getattr(self.hooks, "min_improvement", 0.0):
            self.best, self.bad = score, 0
            self.checkpoint(step, "checkpoint_best.pt")
        else:
            self.bad += 1
        return v

    def _finish(self, step: int, reason: Optional[str]) -> None:
        if self.last_checkpoint != step:
            self.checkpoint(step)
        self.record({"step": step, "kind": "end", "stopped": reason not in (None, "already complete"),
                     "reason": reason or "completed", "time": time.time()})
