"""Element frequency tables on disk (CSV 'symbol,weight', '#' comments): read with errors naming the file and
the line, written atomically."""

from __future__ import annotations

from ..crystal.generator.elements_table import ElementTable
from .common import read_text, write_text_atomic


def read_element_table(path) -> ElementTable:
    return ElementTable.from_csv_text(read_text(path), path)


def write_element_table(path, table: ElementTable, comment: str = "") -> None:
    write_text_atomic(path, table.to_csv_text(comment))
