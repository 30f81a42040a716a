"""Artificial crystal structures for training phase networks (generation paper, Acta Cryst. A 2025).

The settings import without torch (command-line parsers and forms need only them); the generator itself
(`generate_batch`, `StructureBatch`) is imported on first use."""

from .elements_table import ElementTable
from .settings import CellSettings, ContentSettings, GeneratorSettings, MoleculeSettings

__all__ = ["StructureBatch", "generate_batch", "ElementTable", "CellSettings", "ContentSettings",
           "GeneratorSettings", "MoleculeSettings"]


def __getattr__(name):
    if name in ("StructureBatch", "generate_batch"):
        from . import batch

        return getattr(batch, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
