"""HDF5 shards of generated structures and their reflections.

Layout of one shard (all arrays share the first axis, one row per structure):
  /structures/cells (B, 6) f8 · xyz (B, S, 3) f4 · element (B, S) i2 (index into attribute `symbols`)
              placed, special (B, S) bool · site_order (B, S) i1 · u_iso (B, S) f4 (Å²)
  /reflections/hkl (M, 3) i2 · amplitude (B, M) f4 · phase (B, M) f4 (radians; 0 beyond d_min)
Attributes: format 'crystalstudio-shard 1', space_group, symbols, settings (JSON), seed, shard,
d_min, complete=True (set last). A shard is written to a temporary file and renamed, so an
interrupted run leaves only complete shards.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import h5py
import numpy as np

from ..errors import InputFileError
from .common import atomic_path, check_readable

FORMAT = "crystalstudio-shard 1"


def write_shard(path, batch, hkl: np.ndarray, F: Optional[np.ndarray], *, shard: int, d_min: Optional[float],
                extra: Optional[dict] = None) -> None:
    with atomic_path(path, ".h5") as tmp:
        with h5py.File(tmp, "w") as f:
            g = f.create_group("structures")
            g.create_dataset("cells", data=batch.cells)
            g.create_dataset("xyz", data=batch.xyz.astype(np.float32), compression="lzf")
            g.create_dataset("element", data=batch.element.astype(np.int16), compression="lzf")
            g.create_dataset("placed", data=batch.placed, compression="lzf")
            g.create_dataset("special", data=batch.special, compression="lzf")
            g.create_dataset("site_order", data=batch.site_order.astype(np.int8), compression="lzf")
            g.create_dataset("u_iso", data=batch.u_iso.astype(np.float32), compression="lzf")
            r = f.create_group("reflections")
            r.create_dataset("hkl", data=np.asarray(hkl, dtype=np.int16))
            if F is not None:
                r.create_dataset("amplitude", data=np.abs(F).astype(np.float32), compression="lzf")
                r.create_dataset("phase", data=np.angle(F).astype(np.float32), compression="lzf")
            f.attrs["format"] = FORMAT
            f.attrs["space_group"] = batch.space_group.name
            f.attrs["symbols"] = json.dumps(batch.symbols)
            f.attrs["settings"] = json.dumps(batch.settings.to_dict())
            f.attrs["seed"] = int(batch.seed)
            f.attrs["shard"] = int(shard)
            f.attrs["d_min"] = float(d_min) if d_min else 0.0
            for k, v in (extra or {}).items():
                f.attrs[k] = v
            f.attrs["complete"] = True


@dataclass
class Shard:
    path: str
    attrs: dict
    cells: np.ndarray
    xyz: np.ndarray
    element: np.ndarray
    placed: np.ndarray
    special: np.ndarray
    site_order: np.ndarray
    u_iso: np.ndarray
    hkl: np.ndarray
    amplitude: Optional[np.ndarray]
    phase: Optional[np.ndarray]

    def __len__(self) -> int:
        return len(self.cells)

    def batch(self):
        """The shard as a StructureBatch (for views and recomputation)."""
        from ..crystal.generator.batch import StructureBatch
        from ..crystal.generator.settings import GeneratorSettings
        from ..crystal.symmetry import SpaceGroup

        return StructureBatch(SpaceGroup.from_name(self.attrs["space_group"]), json.loads(self.attrs["symbols"]),
                              self.cells, self.xyz.astype(np.float64), self.element.astype(np.int64), self.placed,
                              self.special, self.site_order.astype(np.int64), self.u_iso.astype(np.float64),
                              self.placed.sum(axis=1), int(self.attrs["seed"]),
                              GeneratorSettings.from_dict(json.loads(self.attrs["settings"])))


def is_complete_shard(path) -> bool:
    try:
        with h5py.File(path, "r") as f:
            return f.attrs.get("format") == FORMAT and bool(f.attrs.get("complete", False))
    except (OSError, KeyError):
        return False


def read_shard(path) -> Shard:
    p = check_readable(path, max_bytes=64 * 1024**3)
    try:
        with h5py.File(p, "r") as f:
            if f.attrs.get("format") != FORMAT:
                raise InputFileError(p, f"not a CrystalStudio shard (format {f.attrs.get('format')!r})")
            if not f.attrs.get("complete", False):
                raise InputFileError(p, "shard is incomplete (interrupted write)")
            g, r = f["structures"], f["reflections"]
            return Shard(str(p), dict(f.attrs), g["cells"][()], g["xyz"][()], g["element"][()], g["placed"][()],
                         g["special"][()], g["site_order"][()], g["u_iso"][()], r["hkl"][()],
                         r["amplitude"][()] if "amplitude" in r else None, r["phase"][()] if "phase" in r else None)
    except OSError as exc:
        raise InputFileError(p, f"not a readable HDF5 file: {exc}") from None
    except KeyError as exc:
        raise InputFileError(p, f"shard lacks dataset {exc}") from None


def shard_paths(folder) -> list[Path]:
    return sorted(Path(folder).glob("shard_*.h5"))
