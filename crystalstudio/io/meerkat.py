"""Meerkat / Yell reciprocal-space reconstructions (HDF5), read lazily.

Layouts:
- Yell 1.0 (current): `data` [Nh, Nk, Nl] (NaN = unmeasured), `format`, `is_direct`, `lower_limits`,
  `step_sizes`, `unit_cell`, optional `metric_tensor`, `space_group_nr`.
- Yell 0.9: `rebinned_data` / `number_of_pixels_rebinned` (intensity = ratio), `lower_limits`, `step_sizes`.
- Pre-2017: `data` or `rebinned_data` with `number_of_pixels(_rebinned)`, `maxind`, `step_size`
  (lower limit −maxind).
Grid: hkl = lower_limits + index·step_sizes (reciprocal lattice units), axes [h, k, l]. Only the requested
planes are read (h5py hyperslabs), so 501³ volumes never load whole.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import logging

import h5py
import numpy as np

from ..crystal.cell import UnitCell
from ..errors import InputFileError
from .common import PathLike, check_readable

log = logging.getLogger("crystalstudio")


@dataclass
class MeerkatVolume:
    path: str
    layout: str  # 'Yell 1.0', 'Yell 0.9', 'pre-2017'
    shape: tuple[int, int, int]
    lower_limits: np.ndarray  # (3,) r.l.u.
    step_sizes: np.ndarray  # (3,) r.l.u.
    cell: UnitCell
    space_group_number: Optional[int] = None
    is_direct: bool = False
    warnings: list = field(default_factory=list)  # what the reader found odd, in words

    def _open(self):
        return h5py.File(self.path, "r")

    def hkl_of_index(self, idx) -> np.ndarray:
        return self.lower_limits + np.asarray(idx, dtype=np.float64) * self.step_sizes

    def index_of(self, axis: int, value: float) -> int:
        i = int(round((value - self.lower_limits[axis]) / self.step_sizes[axis]))
        if not 0 <= i < self.shape[axis]:
            lo = self.lower_limits[axis]
            hi = lo + (self.shape[axis] - 1) * self.step_sizes[axis]
            raise InputFileError(self.path, f"{'hkl'[axis]} = {value:g} lies outside the volume ({lo:g} … {hi:g})")
        return i

    def axis_values(self, axis: int) -> np.ndarray:
        return self.lower_limits[axis] + np.arange(self.shape[axis]) * self.step_sizes[axis]

    def read_slab(self, axis: int, index: int) -> np.ndarray:
        """One 2D section normal to `axis` (0 = h, 1 = k, 2 = l), float64, NaN where unmeasured; axes in
        increasing order of the two remaining indices."""
        sl = [slice(None)] * 3
        sl[axis] = index
        sl = tuple(sl)
        with self._open() as f:
            if self.layout == "Yell 1.0" or ("data" in f and "number_of_pixels" not in f and
                                             "number_of_pixels_rebinned" not in f):
                return np.asarray(f["data"][sl], dtype=np.float64)
            num_key = "data" if "data" in f else "rebinned_data"
            den_key = "number_of_pixels_rebinned" if "number_of_pixels_rebinned" in f else "number_of_pixels"
            num = np.asarray(f[num_key][sl], dtype=np.float64)
            den = f[den_key]
            if den.ndim == 3:
                d = np.asarray(den[sl], dtype=np.float64)
                with np.errstate(invalid="ignore", divide="ignore"):
                    return np.where(d > 0, num / d, np.nan)
            return num

    def plane(self, axis: int, value: float) -> np.ndarray:
        """Section at h, k or l = `value` (nearest grid layer)."""
        return self.read_slab(axis, self.index_of(axis, value))

    def read_all(self) -> np.ndarray:
        """The whole volume (only for small volumes; planes are read lazily otherwise)."""
        return np.stack([self.read_slab(0, i) for i in range(self.shape[0])])


def read_meerkat(path: PathLike) -> MeerkatVolume:
    p = check_readable(path, max_bytes=1 << 50)
    try:
        f = h5py.File(p, "r")
    except OSError as exc:
        raise InputFileError(p, f"not an HDF5 file: {exc}") from None
    with f:
        keys = set(f.keys())
        fmt = f["format"][()] if "format" in f else None
        if isinstance(fmt, bytes):
            fmt = fmt.decode(errors="replace")
        if "lower_limits" in f and "step_sizes" in f:
            lower = np.asarray(f["lower_limits"][()], dtype=np.float64).reshape(3)
            step = np.asarray(f["step_sizes"][()], dtype=np.float64).reshape(3)
            layout = "Yell 1.0" if ("data" in f and "rebinned_data" not in f) else "Yell 0.9"
        elif "maxind" in f and "step_size" in f:
            maxind = np.asarray(f["maxind"][()], dtype=np.float64).reshape(3)
            step = np.asarray(f["step_size"][()], dtype=np.float64).reshape(-1)
            step = np.broadcast_to(step, (3,)).astype(np.float64)
            lower = -maxind
            layout = "pre-2017"
        else:
            raise InputFileError(p, "not a Meerkat/Yell reconstruction: no lower_limits/step_sizes or maxind/step_size "
                                    f"(datasets: {', '.join(sorted(keys)) or 'none'})")
        dkey = "data" if "data" in f else ("rebinned_data" if "rebinned_data" in f else None)
        if dkey is None:
            raise InputFileError(p, "no 'data' or 'rebinned_data' dataset")
        ds = f[dkey]
        if ds.ndim != 3:
            raise InputFileError(p, f"'{dkey}' has shape {ds.shape}; a reconstruction is a 3D volume")
        if "unit_cell" not in f:
            raise InputFileError(p, "no unit_cell dataset")
        uc = np.asarray(f["unit_cell"][()], dtype=np.float64).reshape(-1)
        if len(uc) != 6:
            raise InputFileError(p, f"unit_cell has {len(uc)} values, expected 6")
        try:
            cell = UnitCell(*uc)
        except Exception as exc:  # noqa: BLE001
            raise InputFileError(p, f"unit_cell: {exc}") from None
        sgn = None
        if "space_group_nr" in f:
            sgn = int(np.asarray(f["space_group_nr"][()]).reshape(-1)[0])
        warn = []
        direct = False
        if "is_direct" in f:
            raw = np.asarray(f["is_direct"][()]).reshape(-1)
            val = raw[0].item() if raw.size else None
            val = val.decode(errors="replace") if isinstance(val, bytes) else val
            try:
                num = float(val)
            except (TypeError, ValueError):
                num = None
            if num == 1:
                direct = True
                warn.append(f"{p.name}: is_direct = 1: the volume holds direct space (e.g. a 3D-ΔPDF), not diffuse "
                            "intensities; factorising it is meaningless")
            elif num != 0:
                warn.append(f"{p.name}: is_direct = {val!r} is neither 0 (reciprocal space) nor 1 (direct space); "
                            "read as reciprocal space")
        if fmt and layout == "Yell 1.0" and "1.0" not in str(fmt):
            layout = str(fmt)
        for w in warn:
            log.warning("%s", w)
        return MeerkatVolume(str(p), layout, tuple(int(x) for x in ds.shape), lower, step, cell, sgn, direct, warn)


def write_yell10(path, data: np.ndarray, lower_limits, step_sizes, cell: UnitCell, chunks=True) -> None:
    """A Yell 1.0 file (for tests and benchmarks)."""
    from .common import atomic_path

    with atomic_path(path, ".h5") as tmp:
        with h5py.File(tmp, "w") as f:
            f.create_dataset("data", data=np.asarray(data, dtype=np.float32), chunks=chunks or None)
            f["format"] = "Yell 1.0"
            f["is_direct"] = 0
            f["lower_limits"] = np.asarray(lower_limits, dtype=np.float64)
            f["step_sizes"] = np.asarray(step_sizes, dtype=np.float64)
            f["unit_cell"] = np.asarray(cell.parameters, dtype=np.float64)
