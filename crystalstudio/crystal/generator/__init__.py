"""Artificial crystal structures for training phase networks (generation paper, Acta Cryst. A 2025)."""

from .batch import StructureBatch, generate_batch
from .elements_table import ElementTable
from .settings import CellSettings, ContentSettings, GeneratorSettings, MoleculeSettings

__all__ = ["StructureBatch", "generate_batch", "ElementTable", "CellSettings", "ContentSettings",
           "GeneratorSettings", "MoleculeSettings"]
