"""Training run configuration (JSON files, the Training panel and `crystalstudio train` share it)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from ..errors import InputFileError


def phai_generator_defaults() -> dict:
    """The published PhAI training distribution: P2₁/c, edges < 10 Å, ≤ 100 atoms in the ASU,
    Uiso 0.005–0.06 Å²."""
    return {"space_group": "P 1 21/c 1", "cell": {"a_min": 4.0, "a_max": 10.0},
            "content": {"mode": "uniform", "u_iso": [0.005, 0.06], "max_atoms_asu": 100}}


@dataclass
class TrainConfig:
    kind: str = "phai"  # 'phai' or 'dsfu'
    run_dir: str = "runs/phai"
    model: dict = field(default_factory=lambda: {"preset": "small"})  # preset small|published, or sizes
    generator: dict = field(default_factory=phai_generator_defaults)
    diffuse: dict = field(default_factory=dict)  # DSFU-Net simulation settings
    batch_size: int = 64  # global batch (all ranks together)
    steps: int = 2000
    optimizer: str = "adamw"  # 'adamw' or 'rmsprop' (published PhAI) or 'adam' (DSFU-Net)
    lr: float = 5e-4
    weight_decay: float = 1e-6
    betas: tuple = (0.9, 0.999)
    schedule: str = "cosine"  # 'constant', 'cosine', 'step'
    warmup_steps: int = 50
    step_every: int = 1000  # for schedule='step': ×0.5 every this many steps
    grad_clip: float = 1.0
    amp: bool = True  # mixed precision where CUDA is used
    cycles_max: int = 3  # PhAI: recycling cycles drawn 1…cycles_max per batch
    d_min_range: tuple = (0.0, 2.0)  # PhAI: resolution cut-off drawn in this range (Å; 0 = none)
    drop_max: float = 0.15  # PhAI: up to this fraction of reflections dropped at random
    data_shards: int = 4  # the global batch is made of this many independently seeded shards
    pool_size: int = 0  # >0: generate structures in pools of this size (much faster on a GPU), used in order
    val_size: int = 256
    val_every: int = 100
    val_seed: int = 987654321
    real_validation: list = field(default_factory=list)  # structure files (P2₁/c family) for validation
    checkpoint_every: int = 200
    early_stop_patience: int = 0  # validations without improvement of the main metric (0: off)
    time_limit_s: float = 0.0  # stop (with a checkpoint) after this wall time (0: none)
    seed: int = 0
    device: str = "auto"
    num_threads: int = 0  # CPU threads (0: torch default)
    shards_dir: Optional[str] = None  # mix in structures from shards on disk
    shards_fraction: float = 0.0
    tensorboard: bool = False

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict, path=None) -> "TrainConfig":
        names = {f.name: f for f in dataclasses.fields(cls)}
        unknown = set(d) - set(names)
        if unknown:
            raise InputFileError(path, f"unknown training setting(s): {', '.join(sorted(unknown))}")
        kw = {}
        for k, v in d.items():
            default = getattr(cls(), k)
            if isinstance(default, tuple) and isinstance(v, list):
                v = tuple(v)
            kw[k] = v
        cfg = cls(**kw)
        if cfg.kind not in ("phai", "dsfu"):
            raise InputFileError(path, f"kind must be 'phai' or 'dsfu', not {cfg.kind!r}")
        if cfg.batch_size % cfg.data_shards:
            raise InputFileError(path, f"batch_size {cfg.batch_size} is not a multiple of data_shards {cfg.data_shards}")
        return cfg

    @classmethod
    def load(cls, path) -> "TrainConfig":
        p = Path(path)
        try:
            d = json.loads(p.read_text())
        except FileNotFoundError:
            raise InputFileError(p, "configuration file does not exist") from None
        except json.JSONDecodeError as exc:
            raise InputFileError(p, f"not valid JSON: {exc.msg}", exc.lineno) from None
        if not isinstance(d, dict):
            raise InputFileError(p, "the configuration must be a JSON object")
        return cls.from_dict(d, p)

    def save(self, path) -> None:
        from ..io.common import write_text_atomic

        write_text_atomic(path, json.dumps(self.to_dict(), indent=2))
