"""Training run configurations: one settings class per network (crystalstudio.params), shared by the JSON
files in resources/configs, the Training panel and `crystalstudio train`.

`TrainConfig` holds what the run loop honours for every network (steps, optimiser, schedule,
validation, checkpoints, device …); `PhAITrainConfig` and `DSFUTrainConfig` add their own fields and
defaults. `TrainConfig.load(path)` / `TrainConfig.from_dict(d)` pick the class by `kind`. A field of
one network in the other's configuration is refused with a reason, as are fields the loop cannot honour.
"""

from __future__ import annotations

from typing import Literal, Optional

from ..crystal.generator.settings import GeneratorSettings
from ..errors import InputFileError
from ..params import Device, FloatRange, Params, ParamsError, WithDefaults, param, rule, section

PHAI_GENERATOR_DEFAULTS = {"space_group": "P 1 21/c 1", "cell": {"a_min": 4.0, "a_max": 10.0},
                           "content": {"mode": "uniform", "u_iso": [0.005, 0.06], "max_atoms_asu": 100}}
"""The published PhAI training distribution: P2₁/c, edges 4–10 Å, ≤ 100 atoms in the ASU, Uiso 0.005–0.06 Å²."""

# fields of older configurations that no version honoured: refused with the reason
UNSUPPORTED = {
    "tensorboard": "TensorBoard logging is not built in; follow metrics.jsonl (Training panel: Attach to run…)",
    "shards_dir": "mixing structures from shards on disk is not supported; training generates its data on the fly",
    "shards_fraction": "mixing structures from shards on disk is not supported; training generates its data on the fly",
}


class TrainConfig(Params):
    """What the run loop does for every network. `TrainConfig.load`/`from_dict` return the subclass named
    by `kind` ('phai' when absent)."""

    kind: str = param("phai", gui=False, help="network: phai or dsfu")
    run_dir: str = param("runs/phai", label="Run directory",
                         help="config.json, metrics.jsonl, checkpoints, sample.npz and control.json go here")
    batch_size: int = param(64, ge=1, label="Batch", help="global batch: structures (PhAI) or planes (DSFU-Net) "
                                                          "per step, all processes together")
    steps: int = param(2000, ge=1, label="Steps", help="optimiser steps of the whole run (a resumed run continues)")
    optimizer: Literal["adamw", "adam", "rmsprop"] = param("adamw", label="Optimiser",
                                                         help="adamw, adam, or rmsprop (published PhAI)")
    lr: float = param(5e-4, gt=0, le=1, label="Learning rate", help="base learning rate")
    weight_decay: float = param(1e-6, ge=0, le=1, label="Weight decay",
                                help="decoupled (adamw) or L2 (adam, rmsprop) weight decay")
    betas: FloatRange(ge=0, lt=1, ordered=False) = param((0.9, 0.999), label="Adam betas",
                                                        help="Adam/AdamW moment decay rates (β1, β2)")
    schedule: Literal["constant", "cosine", "step"] = param("cosine", label="LR schedule",
                                                          help="after warm-up: constant, cosine decay to 2 %, or "
                                                               "×0.5 every 'step every' steps")
    warmup_steps: int = param(50, ge=0, label="Warm-up steps", help="linear learning-rate warm-up")
    step_every: int = param(1000, ge=1, label="Step every", help="schedule 'step': halve the rate every this many steps")
    grad_clip: float = param(1.0, ge=0, label="Gradient clip", help="clip the gradient norm of each network (0: off)")
    amp: bool = param(True, label="Mixed precision", help="float16 autocast with gradient scaling on CUDA "
                                                          "(on the CPU the run stays float32 and says so)")
    data_shards: int = param(4, ge=1, label="Data shards",
                             help="the global batch is made of this many independently seeded shards (a multiple "
                                  "of the number of processes; the data do not depend on it)")
    val_size: int = param(256, ge=1, label="Validation size", help="fixed validation set (structures or planes)")
    val_every: int = param(100, ge=0, label="Validate every", help="steps between validations (0: never)")
    val_seed: int = param(987654321, ge=0, label="Validation seed", help="seed of the fixed validation set")
    checkpoint_every: int = param(200, ge=0, label="Checkpoint every",
                                  help="steps between checkpoints (0: only at the end, on stop and on interrupt)")
    early_stop_patience: int = param(0, ge=0, label="Early-stop patience",
                                     help="stop after this many validations without improvement (0: off)")
    time_limit_s: float = param(0.0, unit="s", ge=0, label="Time limit",
                                help="stop with a checkpoint after this wall time (0: none)")
    seed: int = param(0, ge=0, label="Seed", help="run seed: data and initial weights")
    device: Device = param("auto", label="Device", help="auto (the GPU when there is one), cpu, cuda or cuda:N")
    num_threads: int = param(0, ge=0, label="CPU threads", help="torch CPU threads (0: torch's default)")

    @rule
    def _shards(self):
        if self.batch_size % self.data_shards:
            raise ValueError(f"batch_size ({self.batch_size}) must be a multiple of data_shards ({self.data_shards})")
        if self.optimizer == "rmsprop" and "betas" in self.model_fields_set:
            raise ValueError("betas: RMSprop has no betas (they apply to adam and adamw)")

    @classmethod
    def _concrete(cls, data: dict, source=None) -> type["TrainConfig"]:
        kinds = {"phai": PhAITrainConfig, "dsfu": DSFUTrainConfig}
        kind = data.get("kind", "phai")
        if kind not in kinds:
            raise _err(source, f"kind: must be one of 'phai', 'dsfu' (got {kind!r})")
        target = kinds[kind]
        if cls is not TrainConfig and cls is not target:
            raise _err(source, f"kind: this is a {kind} configuration, not {cls.__name__}")
        for key in data:
            if key in UNSUPPORTED:
                raise _err(source, f"{key}: not supported — {UNSUPPORTED[key]}")
            other = next((k for k, c in kinds.items() if c is not target and key in c.model_fields
                          and key not in target.model_fields), None)
            if other is not None:
                raise _err(source, f"{key}: a {other} setting; this configuration trains {kind}")
        return target

    def to_dict(self, complete: bool = True) -> dict:
        """As Params.to_dict; a non-PhAI configuration always names its kind (a saved default DSFU-Net
        configuration would otherwise load as PhAI)."""
        d = super().to_dict(complete)
        if self.kind != "phai" and "kind" not in d:
            d = {"kind": self.kind, **d}
        return d

    def summary(self) -> str:
        return f"{self.kind} in {self.run_dir}: {self.steps} steps, batch {self.batch_size}, {self.optimizer} lr {self.lr:g}"


def _err(source, message: str):
    return InputFileError(source, message) if source is not None else ParamsError(message)


class PhAIModelSettings(Params):
    preset: Literal["small", "published"] = param("small", label="PhAI size",
                                                  help="small (1.3 M parameters, CPU) or the published 42.4 M "
                                                       "configuration (GPU)")
    max_index: Optional[int] = param(None, ge=1, le=30, gui=False, help="grid half width m (preset: 10)")
    filters: Optional[int] = param(None, ge=1, gui=False, help="convolution filters (preset)")
    kernel_size: Optional[int] = param(None, ge=1, gui=False, help="convolution kernel (preset: 3)")
    cnn_depth: Optional[int] = param(None, ge=0, gui=False, help="residual convolution blocks (preset)")
    dim: Optional[int] = param(None, ge=1, gui=False, help="token width (preset)")
    dim_exp: Optional[int] = param(None, ge=1, gui=False, help="channel-mixing expansion (preset)")
    dim_token_exp: Optional[int] = param(None, ge=1, gui=False, help="token-mixing expansion (preset)")
    mlp_depth: Optional[int] = param(None, ge=0, gui=False, help="mixer layer pairs (preset)")
    reflections: Optional[int] = param(None, ge=1, gui=False, help="output reflections (preset: 1205)")

    def network(self):
        """The PhAIConfig: the preset with the sizes given here."""
        from ..phasing.phai_model import PhAIConfig

        base = PhAIConfig.small() if self.preset == "small" else PhAIConfig.published()
        sizes = {k: v for k, v in self.model_dump().items() if k != "preset" and v is not None}
        return PhAIConfig.from_dict({**base.to_dict(), **sizes}) if sizes else base


class PhAITrainConfig(TrainConfig):
    """PhAI trained on structures generated on the fly (published recipe: rmsprop, constant lr, batch 212)."""

    kind: Literal["phai"] = param("phai", gui=False, help="network: phai")
    model: PhAIModelSettings = section(PhAIModelSettings, "PhAI network")
    generator: WithDefaults(GeneratorSettings, PHAI_GENERATOR_DEFAULTS) = section(
        GeneratorSettings, "Generated training structures", defaults=PHAI_GENERATOR_DEFAULTS,
        help="the structures PhAI learns from (defaults: the published P2₁/c distribution)")
    cycles_max: int = param(3, ge=1, le=20, label="Recycling cycles",
                            help="recycling cycles drawn 1…n per batch; earlier cycles without gradients")
    d_min_range: FloatRange(ge=0, le=10) = param((0.0, 2.0), unit="Å", label="Resolution cut-off range",
                                                 help="cut-off drawn per structure in this range (0: none)")
    drop_max: float = param(0.15, ge=0, lt=1, label="Max dropped fraction",
                            help="up to this fraction of reflections dropped at random per structure")
    pool_size: int = param(0, ge=0, label="Pool size",
                           help="> 0: generate structures in pools of this size, used in order; on a GPU the next "
                                "pool is made in the background while this one is used (65536 keeps an H200 busy)")
    weight_structures: int = param(512, ge=1, label="Loss-weight structures",
                                   help="generated structures whose mean |F| per reflection weights the loss "
                                        "(fixed for the run)")
    real_validation: list[str] = param(default_factory=list, gui=False,
                                       help="structure files (P2₁/c family) validated on as well")


class DSFUModelSettings(Params):
    width: int = param(16, ge=4, le=64, label="DSFU width",
                       help="channel width of generators and discriminators (64 = published, 29.2 M parameters)")


def _redefault(name: str, default):
    """The base class's field `name` (help, unit, bounds) with another default."""
    f = TrainConfig.model_fields[name]
    extra = f.json_schema_extra if isinstance(f.json_schema_extra, dict) else {}
    bounds = {k: getattr(m, k) for m in f.metadata for k in ("ge", "gt", "le", "lt") if hasattr(m, k)}
    return param(default, help=f.description or "", unit=extra.get("unit"), label=extra.get("label"), **bounds)


class DSFUTrainConfig(TrainConfig):
    """The two DSFU-Net GANs trained on planes simulated on the fly (published recipe: Adam 2e-4,
    betas (0.5, 0.999), no clipping, constant rate)."""

    kind: Literal["dsfu"] = param("dsfu", gui=False, help="network: dsfu")
    run_dir: str = _redefault("run_dir", "runs/dsfu")
    optimizer: Literal["adamw", "adam", "rmsprop"] = _redefault("optimizer", "adam")
    lr: float = _redefault("lr", 2e-4)
    weight_decay: float = _redefault("weight_decay", 0.0)
    betas: FloatRange(ge=0, lt=1, ordered=False) = _redefault("betas", (0.5, 0.999))
    schedule: Literal["constant", "cosine", "step"] = _redefault("schedule", "constant")
    warmup_steps: int = _redefault("warmup_steps", 0)
    grad_clip: float = _redefault("grad_clip", 0.0)
    batch_size: int = _redefault("batch_size", 16)
    data_shards: int = _redefault("data_shards", 2)
    val_size: int = _redefault("val_size", 16)
    model: DSFUModelSettings = section(DSFUModelSettings, "DSFU-Net")
    diffuse: dict = param(default_factory=dict, gui=False,
                          help="DSFU-Net simulation settings (crystalstudio.diffuse.simulation.DiffuseSettings)")

    @rule
    def _diffuse(self):
        from .dsfu_trainer import diffuse_settings

        diffuse_settings(self)  # unknown keys named
