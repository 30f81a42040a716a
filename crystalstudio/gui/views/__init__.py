"""Reusable views: density slab/projection, reciprocal plane, 3D structure, plots, parameter forms."""
