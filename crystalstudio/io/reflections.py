"""Open any supported reflection file: SHELX .hkl (HKLF 4/3), hkl-CIF/.fcf/.cif (also embedded
_shelx_hkl_file), MTZ and XDS_ASCII; cell and symmetry from the file or a companion .ins/.res/.cif."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from ..crystal.cell import UnitCell
from ..crystal.reflections import ReflectionData
from ..crystal.symmetry import SpaceGroup
from ..errors import InputFileError
from .common import PathLike, check_readable

REFLECTION_SUFFIXES = (".hkl", ".fcf", ".cif", ".mtz", ".hkl.cif", ".xds", ".HKL")


def _sniff(path: Path) -> str:
    if path.name.lower().endswith(".mtz.gz"):
        return "mtz"
    head = path.open("rb").read(4096)
    if head[:4] == b"MTZ ":
        return "mtz"
    if b"\x00" in head:
        return "binary"
    text = head.decode("latin-1")
    if text.lstrip().startswith("!FORMAT=XDS_ASCII") or "!FORMAT=XDS_ASCII" in text[:200]:
        return "xds"
    stripped = [ln for ln in text.splitlines() if ln.strip()]
    if any(ln.lstrip().lower().startswith(("data_", "loop_", "_refln", "_cell")) for ln in stripped[:200]) \
            or (stripped and stripped[0].lstrip().startswith("#")):
        return "cif"
    return "hklf"


def read_reflections(path: PathLike, *, cell: Optional[UnitCell] = None, space_group: Optional[SpaceGroup] = None,
                     hklf_code: int = 4, companion: bool = True) -> ReflectionData:
    """Read reflections; `cell`/`space_group` override what the file says. For SHELX .hkl, the
    companion .ins/.res (then .cif) of the same name supplies cell and symmetry when present."""
    p = check_readable(path)
    kind = _sniff(p)
    if kind == "mtz":
        from .mtz_xds import read_mtz

        data = read_mtz(p)
    elif kind == "xds":
        from .mtz_xds import read_xds_ascii

        data = read_xds_ascii(p)
    elif kind == "cif":
        from .cif import read_cif_reflections

        data = read_cif_reflections(p)
    elif kind == "hklf":
        from .hkl import read_hklf

        data = read_hklf(p, hklf_code)
    else:
        raise InputFileError(p, "binary file of unknown type (expected .hkl, .fcf, .cif, .mtz or XDS_ASCII)")
    if (data.cell is None or data.space_group is None) and companion and cell is None:
        comp = find_companion(p)
        if comp is not None:
            from ..errors import CrystalStudioError
            from .structures import read_structure

            try:  # a bad companion is a note, not the end of a run that may get the cell elsewhere
                st = read_structure(comp)
            except CrystalStudioError as exc:
                data.notes.append(f"companion {comp.name} ignored: {exc}")
            else:
                data.notes.append(f"cell and symmetry from {comp.name}")
                data = data.with_symmetry(data.cell or st.cell, data.space_group or st.space_group)
                data.wavelength = data.wavelength or st.wavelength
    return data.with_symmetry(cell, space_group)


def find_companion(path: Path) -> Optional[Path]:
    """The .ins/.res/.cif beside a reflection file with the same stem (any case: P21c.hkl + p21c.res), else
    the folder's only one. .ins is preferred over .res over .cif."""
    path = Path(path)
    rank = (".ins", ".res", ".cif")
    try:
        others = [q for q in path.parent.iterdir()
                  if q.suffix.lower() in rank and q.resolve() != path.resolve() and q.is_file()]
    except OSError:
        return None
    same = [q for q in others if q.stem.lower() == path.stem.lower()]
    if same:
        return sorted(same, key=lambda q: (rank.index(q.suffix.lower()), q.name))[0]
    # otherwise the only structure file in the folder, if there is exactly one
    stems = {q.stem.lower() for q in others}
    if len(stems) == 1:
        return sorted(others, key=lambda q: rank.index(q.suffix.lower()))[0]
    return None
