"""Render-ready geometry for the views, computed off the GUI thread (no Qt here).

A panel's worker builds a :class:`SceneData` next to the science result, so that the GUI thread only
uploads arrays: the P1 expansion of the model, Cartesian atom positions (Å), bond segments, and the
density isosurface mesh at a level in σ. Contour lines of a 2D slab come from contourpy (C++).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Optional

import numpy as np

from ...crystal.elements import covalent_radius
from ...crystal.maps import DensityMap
from ...crystal.structure import Structure

# vispy's marching cubes shifts int8 offsets in a way numpy reports as a scalar overflow; the result is right
warnings.filterwarnings("ignore", message="overflow encountered in scalar", category=RuntimeWarning,
                        module="vispy.geometry.isosurface")

_P1_CACHE: list[tuple[Structure, Structure]] = []


def p1_of(structure: Structure) -> Structure:
    """The structure's P1 expansion, remembered for the last few structure objects shown (by identity)."""
    for s, p1 in _P1_CACHE:
        if s is structure:
            return p1
    p1 = structure.expand_to_p1()
    _P1_CACHE.insert(0, (structure, p1))
    del _P1_CACHE[4:]
    return p1


def bond_segments(xyz: np.ndarray, elements: list[str], factor: float = 1.15) -> np.ndarray:
    """Segment end points (2m, 3) Å between atoms closer than factor·(R_i + R_j) (covalent radii)."""
    if len(xyz) < 2:
        return np.zeros((0, 3))
    r = np.array([covalent_radius(e) for e in elements])
    d = np.linalg.norm(xyz[:, None] - xyz[None], axis=-1)
    i, j = np.nonzero(np.triu((d < factor * (r[:, None] + r[None])) & (d > 0.4), 1))
    return np.stack([xyz[i], xyz[j]], axis=1).reshape(-1, 3)


def isosurface_mesh(dmap: DensityMap, sigma: float) -> Optional[tuple[np.ndarray, np.ndarray]]:
    """(vertices (n, 3) Å Cartesian, faces (m, 3)) of ρ = mean + sigma·σ over the whole cell, or None.

    The map is padded periodically by one layer so that the surface closes at the cell faces.
    """
    from vispy.geometry.isosurface import isosurface

    v = dmap.values
    level = float(v.mean() + sigma * v.std())
    if not v.max() > level:
        return None
    padded = np.pad(np.asarray(v, dtype=np.float32), ((0, 1), (0, 1), (0, 1)), mode="wrap")
    verts, faces = isosurface(padded, level)
    if len(faces) == 0:
        return None
    n = np.array(v.shape, dtype=np.float64)
    A = dmap.cell.orthogonalization
    return (verts / n) @ A.T, np.asarray(faces, dtype=np.uint32)


@dataclass
class SceneData:
    """What the 3D view draws: positions in Å (Cartesian), element symbols, bonds, isosurface."""

    structure: Optional[Structure]
    xyz: np.ndarray
    elements: list[str]
    bonds: np.ndarray
    iso: Optional[tuple[np.ndarray, np.ndarray]]
    iso_sigma: Optional[float]


def build_scene(structure: Optional[Structure], dmap: Optional[DensityMap] = None,
                iso_sigma: Optional[float] = 2.0) -> SceneData:
    """Geometry for :class:`Structure3DView`; iso_sigma None leaves the isosurface out."""
    if structure is not None and structure.n_sites:
        p1 = p1_of(structure)
        xyz = (np.array([s.xyz for s in p1.sites]) % 1.0) @ structure.cell.orthogonalization.T
        els = [s.element for s in p1.sites]
    else:
        xyz, els = np.zeros((0, 3)), []
    iso = isosurface_mesh(dmap, iso_sigma) if (dmap is not None and iso_sigma is not None) else None
    return SceneData(structure, xyz, els, bond_segments(xyz, els), iso, iso_sigma)


def contour_lines(z: np.ndarray, levels, periodic: bool = True) -> np.ndarray:
    """Contour lines of z (ni, nj) at the given levels as one (n, 2) array in grid-index units, lines
    separated by NaN rows (for a single curve item drawn with connect="finite").

    Grid point (i, j) is at (i, j); with periodic=True the grid is wrapped by one row and column so
    that lines run to the cell edge at (ni, nj).
    """
    import contourpy

    if periodic:
        z = np.pad(z, ((0, 1), (0, 1)), mode="wrap")
    ni, nj = z.shape
    gen = contourpy.contour_generator(np.arange(ni, dtype=float), np.arange(nj, dtype=float),
                                      np.ascontiguousarray(z.T, dtype=np.float64),
                                      line_type=contourpy.LineType.ChunkCombinedNan)
    parts = []
    for level in levels:
        for chunk in gen.lines(float(level))[0]:
            if chunk is not None and len(chunk):
                parts.append(chunk)
                parts.append(np.full((1, 2), np.nan))
    return np.concatenate(parts) if parts else np.zeros((0, 2))
