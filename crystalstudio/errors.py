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
