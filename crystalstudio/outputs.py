"""Output folders checked before a job starts, and removed again when the job fails before writing.

    with output_folder(args.out) as out:      # InvalidInputError now if it cannot be created or written
        ...                                   # a failure here removes the folders this call created, if empty
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from .errors import InvalidInputError


def _check_writable(folder: Path, what: str, target: Path) -> None:
    try:
        fd, probe = tempfile.mkstemp(prefix=".crystalstudio-probe-", dir=folder)
    except OSError as exc:
        where = "" if folder == target else f" in {folder}"
        raise InvalidInputError(f"{what} {target}: cannot write{where} ({exc.strerror or exc})") from None
    os.close(fd)
    os.unlink(probe)


def _has_files(folder: Path) -> bool:
    return any(p.is_file() or p.is_symlink() for p in folder.rglob("*"))


def prepare_output_folder(path, what: str = "output folder") -> tuple[Path, Path | None]:
    """Create `path` (and missing parents) after checking that it can be written; returns (path, the
    topmost folder created here or None)."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise InvalidInputError(f"{what} {p}: exists and is not a folder")
    if p.is_dir():
        _check_writable(p, what, p)
        return p, None
    top, anc = p, p.parent
    while not anc.exists() and anc != anc.parent:
        top, anc = anc, anc.parent
    if not anc.is_dir():
        raise InvalidInputError(f"{what} {p}: {anc} is not a folder")
    _check_writable(anc, what, p)
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InvalidInputError(f"{what} {p}: cannot be created ({exc.strerror or exc})") from None
    return p, top


@contextlib.contextmanager
def output_folder(path, what: str = "output folder") -> Iterator[Path]:
    """The checked folder; when the body raises and nothing was written into the folders made here,
    they are removed again (a failed run leaves no empty folder behind)."""
    p, created = prepare_output_folder(path, what)
    try:
        yield p
    except BaseException:
        if created is not None and created.is_dir() and not _has_files(created):
            shutil.rmtree(created, ignore_errors=True)
        raise
