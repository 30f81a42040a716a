"""CCP4/MRC maps through gemmi (written atomically)."""

from __future__ import annotations

import gemmi
import numpy as np

from ..crystal.cell import UnitCell
from ..crystal.maps import DensityMap
from ..crystal.symmetry import SpaceGroup
from ..errors import InputFileError
from .common import PathLike, atomic_path, check_readable


def write_ccp4_map(path: PathLike, dmap: DensityMap) -> None:
    """Full-cell map, axes X=a, Y=b, Z=c, with the space group in the header."""
    grid = gemmi.FloatGrid(np.ascontiguousarray(dmap.values, dtype=np.float32),
                           gemmi.UnitCell(*dmap.cell.parameters), dmap.space_group.gemmi)
    ccp4 = gemmi.Ccp4Map()
    ccp4.grid = grid
    ccp4.update_ccp4_header(2, True)
    with atomic_path(path, ".ccp4") as tmp:
        ccp4.write_ccp4_map(tmp)


def read_ccp4_map(path: PathLike) -> DensityMap:
    p = check_readable(path, max_bytes=8 * 1024**3)
    try:
        m = gemmi.read_ccp4_map(str(p), setup=True)
    except (RuntimeError, ValueError, OSError) as exc:
        raise InputFileError(p, f"not a readable CCP4/MRC map: {exc}") from None
    g = m.grid
    sg = SpaceGroup(g.spacegroup) if g.spacegroup is not None else SpaceGroup.from_name("P 1")
    return DensityMap(np.array(g, copy=True).astype(np.float64), UnitCell(*g.unit_cell.parameters), sg)
