"""Open any supported structure file: CIF (first block with atoms) or SHELX .res/.ins."""

from __future__ import annotations

from pathlib import Path

from ..crystal.structure import Structure
from ..errors import InputFileError
from .common import PathLike, check_readable

STRUCTURE_SUFFIXES = (".cif", ".res", ".ins")


def read_structure(path: PathLike, block: str | None = None) -> Structure:
    p = check_readable(path)
    suffix = p.suffix.lower()
    if suffix in (".res", ".ins"):
        from .shelx import read_res

        return read_res(p)
    if suffix in (".cif", ".mmcif", ".fcf") or suffix == "":
        from .cif import read_cif_structure

        return read_cif_structure(p, block)
    raise InputFileError(p, f"unknown structure format '{suffix}' (expected .cif, .res or .ins)")
