"""MTZ and XDS_ASCII reflection files through gemmi."""

from __future__ import annotations

import gemmi
import numpy as np

from ..crystal.cell import UnitCell
from ..crystal.reflections import ReflectionData
from ..crystal.symmetry import SpaceGroup
from ..errors import InputFileError
from .common import PathLike, check_readable

# column pairs tried in order: (value, sigma, kind)
_MTZ_PAIRS = [("IMEAN", "SIGIMEAN", "I"), ("I", "SIGI", "I"), ("FP", "SIGFP", "F"), ("F", "SIGF", "F"),
              ("FOBS", "SIGFOBS", "F"), ("F-obs", "SIGF-obs", "F")]


def read_mtz(path: PathLike, value_label: str | None = None, sigma_label: str | None = None) -> ReflectionData:
    """Merged data from an MTZ: intensities (IMEAN/I) preferred, else amplitudes; phases when a 'P'
    column (PHWT, PHIC, PHIB…) is present."""
    p = check_readable(path)
    try:
        mtz = gemmi.read_mtz_file(str(p))
    except (RuntimeError, ValueError, OSError) as exc:
        raise InputFileError(p, f"not a readable MTZ file: {exc}") from None
    labels = [c.label for c in mtz.columns]
    types = {c.label: c.type for c in mtz.columns}
    pair = None
    if value_label:
        if value_label not in labels:
            raise InputFileError(p, f"no column '{value_label}' (columns: {', '.join(labels)})")
        kind = "I" if types[value_label] in "JK" else "F"
        pair = (value_label, sigma_label, kind)
    else:
        for v, s, kind in _MTZ_PAIRS:
            if v in labels:
                pair = (v, s if s in labels else None, kind)
                break
        if pair is None:
            for c in mtz.columns:
                if c.type in ("J", "F"):
                    sig = next((d.label for d in mtz.columns if d.type == "Q" and d.label.endswith(c.label)), None)
                    pair = (c.label, sig, "I" if c.type == "J" else "F")
                    break
    if pair is None:
        raise InputFileError(p, f"no intensity (J) or amplitude (F) column (columns: {', '.join(labels)})")
    data = np.array(mtz, copy=False)
    hkl = data[:, :3].astype(np.int64)
    vals = data[:, labels.index(pair[0])].astype(np.float64)
    sig = data[:, labels.index(pair[1])].astype(np.float64) if pair[1] else np.full(len(vals), np.nan)
    phase = None
    phase_label = next((c.label for c in mtz.columns if c.type == "P"), None)
    if phase_label:
        phase = np.radians(data[:, labels.index(phase_label)].astype(np.float64))
    ok = np.isfinite(vals)
    cell = UnitCell(*mtz.cell.parameters)
    sg = SpaceGroup(mtz.spacegroup) if mtz.spacegroup else None
    notes = [f"columns {pair[0]}/{pair[1]}" + (f", phases {phase_label}" if phase_label else "")]
    if not np.all(ok):
        notes.append(f"{np.count_nonzero(~ok)} missing values skipped")
    return ReflectionData(hkl[ok], vals[ok], np.nan_to_num(sig[ok], nan=0.0), pair[2], cell, sg,
                          phases=None if phase is None else phase[ok], source=str(p),
                          wavelength=float(mtz.dataset(0).wavelength) if mtz.datasets else None, notes=notes)


def read_xds_ascii(path: PathLike) -> ReflectionData:
    """Unmerged intensities from XDS_ASCII.HKL (or XSCALE output)."""
    p = check_readable(path)
    try:
        xds = gemmi.read_xds_ascii(str(p))
    except (RuntimeError, ValueError, OSError) as exc:
        raise InputFileError(p, f"not a readable XDS_ASCII file: {exc}") from None
    hkl = np.array(xds.miller_array, dtype=np.int64).reshape(-1, 3)
    if len(hkl) == 0:
        raise InputFileError(p, "no reflections")
    I = np.array(xds.iobs_array, dtype=np.float64)
    s = np.array(xds.sigma_array, dtype=np.float64)
    keep = s >= 0  # XDS marks misfits with negative sigma
    cell = UnitCell(*xds.cell_constants)
    sg = SpaceGroup.from_name(str(xds.spacegroup_number)) if xds.spacegroup_number else None
    return ReflectionData(hkl[keep], I[keep], s[keep], "I", cell, sg, source=str(p),
                          wavelength=xds.wavelength or None,
                          notes=[f"{np.count_nonzero(~keep)} misfits (σ < 0) dropped"] if np.any(~keep) else [])
