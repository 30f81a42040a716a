"""Batched export of generated structures and their reflections to HDF5 shards (resumable).

Lives in io (it writes files); the generation itself is crystal.generator's."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from ..crystal.generator.settings import GeneratorSettings
from ..errors import InvalidInputError
from ..jobs import check_cancel, report
from ..params import Device, Params, param


class ShardExportSettings(Params):
    """The `generate` job besides the generator settings: how many structures, in which files."""

    n: int = param(..., ge=1, label="Structures", help="number of structures")
    seed: int = param(0, ge=0, label="Seed", help="run seed: the same seed and settings give the same structures")
    shard_size: int = param(10000, ge=1, label="Shard size", help="structures per HDF5 shard file")
    max_index: int = param(10, ge=1, le=60, label="Max index m",
                           help="reflections of the half grid with h²+k²+l² ≤ m² (PhAI order for m = 10)")
    d_min: float = param(1.0, unit="Å", ge=0, label="d min", help="resolution limit of the amplitudes (0: none)")
    device: Device = param("cpu", label="Device", help="where structures and structure factors are computed")


@dataclass
class ExportResult:
    n_structures: int  # in all complete shards of this run (written now or found)
    n_written: int  # generated in this call
    n_resumed: int  # taken from complete shards already on disk
    seconds: float
    paths: list[str] = field(default_factory=list)


def shard_seed(seed: int, shard: int) -> int:
    """Independent, reproducible seed of one shard."""
    return int(np.random.SeedSequence([int(seed), int(shard)]).generate_state(1, dtype=np.uint64)[0] >> 1)


def export_shards(out_dir, n: int, settings: Optional[GeneratorSettings] = None, seed: int = 0, *,
                  shard_size: int = 10000, max_index: int = 10, d_min: Optional[float] = 1.0, device=None,
                  progress=None, cancel=None) -> ExportResult:
    """Write ⌈n / shard_size⌉ shards `shard_00000.h5`… into `out_dir`.

    Each shard has its own seed derived from (seed, shard index), so a resumed run reproduces the
    same structures; complete shards with the same parameters are kept, others are regenerated.
    Reflections: the index-sphere half grid of `max_index` (PhAI order), zero beyond `d_min` Å.
    """
    import torch

    from ..crystal.generator.batch import generate_batch
    from ..crystal.reflections import index_sphere_half_grid
    from .shards import is_complete_shard, read_shard, write_shard

    if n <= 0:
        raise InvalidInputError("number of structures must be positive")
    if shard_size <= 0:
        raise InvalidInputError("shard size must be positive")
    s = settings or GeneratorSettings()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    hkl = index_sphere_half_grid(max_index)
    t0 = time.perf_counter()
    n_shards = (n + shard_size - 1) // shard_size
    written = resumed = 0
    paths = []
    settings_json = json.dumps(s.to_dict(), sort_keys=True)
    for i in range(n_shards):
        check_cancel(cancel)
        size = min(shard_size, n - i * shard_size)
        path = out / f"shard_{i:05d}.h5"
        if path.exists() and is_complete_shard(path):
            sh = read_shard(path)
            same = (len(sh) == size and int(sh.attrs["seed"]) == shard_seed(seed, i)
                    and json.dumps(json.loads(sh.attrs["settings"]), sort_keys=True) == settings_json
                    and np.array_equal(sh.hkl, hkl))
            if same:
                resumed += size
                paths.append(str(path))
                report(progress, (i + 1) / n_shards, f"shard {i + 1}/{n_shards} already complete")
                continue
        base = i / n_shards

        def sub(frac, msg, base=base):
            report(progress, base + 0.8 * frac / n_shards, f"shard {i + 1}/{n_shards}: {msg}")

        batch = generate_batch(size, s, shard_seed(seed, i), device=device, progress=sub, cancel=cancel)
        check_cancel(cancel)
        F = np.empty((size, len(hkl)), dtype=np.complex64)
        for a in range(0, size, 256):  # in row blocks, so that Cancel is answered within a fraction of a second
            check_cancel(cancel)
            rows = np.arange(a, min(a + 256, size))
            F[rows] = batch.structure_factors(hkl, d_min=d_min, device=device, dtype=torch.float32,
                                              rows=rows).cpu().numpy()
        check_cancel(cancel)
        write_shard(path, batch, hkl, F, shard=i, d_min=d_min, extra={"run_seed": int(seed), "max_index": max_index})
        written += size
        paths.append(str(path))
        report(progress, (i + 1) / n_shards, f"shard {i + 1}/{n_shards} written")
    return ExportResult(written + resumed, written, resumed, time.perf_counter() - t0, paths)
