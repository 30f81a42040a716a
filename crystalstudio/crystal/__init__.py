"""Crystallographic core: cells, symmetry, elements, structures, structure factors, maps (no Qt)."""
