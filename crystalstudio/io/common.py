"""Shared helpers for readers and writers: safe text reading and atomic writes."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator, Union

from ..errors import InputFileError

PathLike = Union[str, os.PathLike]


def _umask_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask

MAX_TEXT_BYTES = 2 * 1024**3  # text inputs above 2 GiB are refused: no crystallographic text file is that big


def check_readable(path: PathLike, max_bytes: int = MAX_TEXT_BYTES) -> Path:
    p = Path(path)
    if not p.exists():
        raise InputFileError(p, "file does not exist")
    if p.is_dir():
        raise InputFileError(p, "is a folder, not a file")
    size = p.stat().st_size
    if size == 0:
        raise InputFileError(p, "file is empty")
    if size > max_bytes:
        raise InputFileError(p, f"file is {size / 1024**3:.1f} GiB, more than the {max_bytes / 1024**3:.1f} GiB "
                                "accepted for this format")
    return p


def read_text(path: PathLike, max_bytes: int = MAX_TEXT_BYTES) -> str:
    """The file's text (UTF-8, Latin-1 fallback); binary or empty files raise :class:`InputFileError`."""
    p = check_readable(path, max_bytes)
    data = p.read_bytes()
    head = data[:65536]
    if b"\x00" in head:
        raise InputFileError(p, "looks like a binary file (NUL bytes), expected text")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
        printable = sum(ch.isprintable() or ch in "\r\n\t" for ch in text[:65536])
        if printable < 0.95 * min(len(text), 65536):
            raise InputFileError(p, "looks like a binary file, expected text") from None
    if not text.strip():
        raise InputFileError(p, "file contains only white space")
    return text


@contextlib.contextmanager
def atomic_output(path: PathLike, mode: str = "w") -> Iterator:
    """Open a temporary file beside `path`; on success it replaces `path` atomically (rename)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _umask_mode())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_path(path: PathLike, suffix: str = "") -> Iterator[str]:
    """A temporary path beside `path` for libraries that write by file name; renamed onto `path` on success."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix or target.suffix, dir=target.parent)
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, _umask_mode())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_text_atomic(path: PathLike, text: str) -> None:
    with atomic_output(path, "w") as f:
        f.write(text)
