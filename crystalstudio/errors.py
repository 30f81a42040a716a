"""The project's own exception types.

Every error that reaches a user names what went wrong in the field's words; file errors also
name the file and, where there is one, the line.
"""

from __future__ import annotations

import os


class CrystalStudioError(Exception):
    """Base class of every error CrystalStudio raises on purpose."""


class InputFileError(CrystalStudioError):
    """A file could not be read: names the file, the line (1-based, when known) and the problem."""

    def __init__(self, path: str | os.PathLike | None, message: str, line: int | None = None):
        self.path = os.fspath(path) if path is not None else None
        self.line = line
        self.problem = message
        where = self.path or "<input>"
        if line is not None:
            where = f"{where}, line {line}"
        super().__init__(f"{where}: {message}")


class ModelFileError(InputFileError):
    """A network weight/checkpoint file is unreadable, unsafe or does not fit the architecture."""


class InvalidInputError(CrystalStudioError):
    """Parameters or data that are readable but unusable (wrong cell, unsupported space group...)."""


class Cancelled(CrystalStudioError):
    """A long computation was cancelled through its cancel flag."""


def torch_load_error(path, exc: BaseException) -> ModelFileError:
    """The reason `torch.load(path, weights_only=True)` failed, in words: a file that is neither a zip-archive
    nor a legacy pickle checkpoint (torch says only "KeyError: 101"), a truncated archive, or refused content."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError:
        head = b""
    if not head:
        return ModelFileError(path, "file is empty (expected PyTorch weights)")
    if not head.startswith(b"PK") and not head.startswith(b"\x80"):
        return ModelFileError(path, "not a PyTorch weights file (neither a zip archive nor a pickle)")
    msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if "central directory" in msg or "zip archive" in msg:
        return ModelFileError(path, "the PyTorch archive is damaged or truncated (an interrupted download or copy?)")
    return ModelFileError(path, f"not a loadable weights-only PyTorch file ({msg[:200]})")
