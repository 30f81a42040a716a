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


def write_one_shard(path, size: int, settings: GeneratorSettings, seed: int, shard: int, run_seed: int,
                    max_index: int, d_min: Optional[float], device=None, progress=None, cancel=None) -> str:
    """Generate one shard (structures + structure factors on the max_index list) and write it atomically."""
    import torch

    from ..crystal.generator.batch import generate_batch
    from ..crystal.reflections import index_sphere_half_grid
    from .shards import write_shard

    hkl = index_sphere_half_grid(max_index)
    batch = generate_batch(size, settings, seed, device=device, progress=progress, cancel=cancel)
    check_cancel(cancel)
    F = np.empty((size, len(hkl)), dtype=np.complex64)
    for a in range(0, size, 256):  # in row blocks, so that Cancel is answered within a fraction of a second
        check_cancel(cancel)
        rows = np.arange(a, min(a + 256, size))
        F[rows] = batch.structure_factors(hkl, d_min=d_min, device=device, dtype=torch.float32, rows=rows).cpu().numpy()
    check_cancel(cancel)
    write_shard(path, batch, hkl, F, shard=shard, d_min=d_min, extra={"run_seed": int(run_seed), "max_index": max_index})
    return str(path)


def _shard_in_worker(threads: int, path, size, settings_dict, seed, shard, run_seed, max_index, d_min) -> str:
    import torch

    torch.set_num_threads(threads)
    return write_one_shard(path, size, GeneratorSettings.from_dict(settings_dict), seed, shard, run_seed, max_index,
                           d_min)


def export_shards(out_dir, n: int, settings: Optional[GeneratorSettings] = None, seed: int = 0, *,
                  shard_size: int = 10000, max_index: int = 10, d_min: Optional[float] = 1.0, device=None,
                  workers: int = 1, progress=None, cancel=None) -> ExportResult:
    """Write ⌈n / shard_size⌉ shards `shard_00000.h5`… into `out_dir`.

    Each shard has its own seed derived from (seed, shard index), so a resumed run reproduces the
    same structures; complete shards with the same parameters are kept, others are regenerated.
    Reflections: the index-sphere half grid of `max_index` (PhAI order), zero beyond `d_min` Å.
    `workers` > 1 (CPU only) generates that many shards at once in separate processes, each with its share of
    the CPU threads; the shards are the same as with one worker (the seeds are per shard).
    """
    import torch

    from ..crystal.reflections import index_sphere_half_grid
    from .shards import is_complete_shard, read_shard

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
    todo = []
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
        todo.append((i, size, path))
    on_cuda = device is not None and torch.device(device).type == "cuda"
    workers = max(1, min(int(workers), len(todo))) if not on_cuda else 1
    if workers == 1:
        for i, size, path in todo:
            check_cancel(cancel)
            base = i / n_shards

            def sub(frac, msg, base=base, i=i):
                report(progress, base + 0.8 * frac / n_shards, f"shard {i + 1}/{n_shards}: {msg}")

            paths.append(write_one_shard(path, size, s, shard_seed(seed, i), i, seed, max_index, d_min, device, sub,
                                         cancel))
            written += size
            report(progress, (i + 1) / n_shards, f"shard {i + 1}/{n_shards} written")
    else:
        written += _export_parallel(todo, workers, s, seed, n_shards, max_index, d_min, paths, progress, cancel)
    return ExportResult(written + resumed, written, resumed, time.perf_counter() - t0, sorted(paths))


def _export_parallel(todo, workers, s, seed, n_shards, max_index, d_min, paths, progress, cancel) -> int:
    """Shards in `workers` spawned processes; returns the structures written. Cancel stops handing out shards
    and waits for the running ones (each is written atomically, so nothing half-written is left)."""
    import concurrent.futures as cf
    import multiprocessing as mp
    import os

    threads = max(1, (os.cpu_count() or 1) // workers)
    written = 0
    with cf.ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
        pending = {pool.submit(_shard_in_worker, threads, path, size, s.to_dict(), shard_seed(seed, i), i, seed,
                               max_index, d_min): size for i, size, path in todo}
        done_count = n_shards - len(todo)
        try:
            while pending:
                if cancel is not None and cancel.is_set():
                    for fut in pending:
                        fut.cancel()
                    check_cancel(cancel)
                done, _ = cf.wait(pending, timeout=0.2, return_when=cf.FIRST_COMPLETED)
                for fut in done:
                    size = pending.pop(fut)
                    paths.append(fut.result())
                    written += size
                    done_count += 1
                    report(progress, done_count / n_shards, f"{done_count}/{n_shards} shards written")
        except BaseException:
            for fut in pending:
                fut.cancel()
            raise
    return written
