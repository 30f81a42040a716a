"""Render-ready geometry of a structure and its map (numpy; no Qt, no graphics library).

A panel's worker builds a :class:`SceneData` next to the science result, so that the GUI thread only
uploads arrays: the P1 expansion of the model, Cartesian atom positions (Å), bond segments, and the
density isosurface mesh at a level in σ. Contour lines of a 2D slab come from contourpy (C++).
Nothing here is cached between calls (the P1 expansion takes milliseconds), so any thread may call it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from .elements import covalent_radius
from .maps import DensityMap
from .structure import Structure


def bond_segments(xyz: np.ndarray, elements: list[str], factor: float = 1.15) -> np.ndarray:
    """Segment end points (2m, 3) Å between atoms closer than factor·(R_i + R_j) (covalent radii)."""
    if len(xyz) < 2:
        return np.zeros((0, 3))
    r = np.array([covalent_radius(e) for e in elements])
    d = np.linalg.norm(xyz[:, None] - xyz[None], axis=-1)
    i, j = np.nonzero(np.triu((d < factor * (r[:, None] + r[None])) & (d > 0.4), 1))
    return np.stack([xyz[i], xyz[j]], axis=1).reshape(-1, 3)


# the six tetrahedra of a unit cube (corner k at offset ((k >> 0) & 1, (k >> 1) & 1, (k >> 2) & 1)),
# all sharing the main diagonal 0–7, so that neighbouring cubes split their common faces alike
_CUBE_TETS = np.array([[0, 1, 3, 7], [0, 3, 2, 7], [0, 2, 6, 7], [0, 6, 4, 7], [0, 4, 5, 7], [0, 5, 1, 7]])
_CORNERS = np.array([[(k >> 0) & 1, (k >> 1) & 1, (k >> 2) & 1] for k in range(8)])
_TET_EDGES = np.array([[0, 1], [0, 2], [0, 3], [1, 2], [1, 3], [2, 3]])


def _tet_case_table():
    """For each of the 16 inside/outside patterns of a tetrahedron: up to two triangles as triples of its
    six edges (−1: none). One vertex apart from three gives one triangle, two against two a quad."""
    table = -np.ones((16, 2, 3), dtype=np.int64)
    edge_of = {tuple(sorted(e)): i for i, e in enumerate(_TET_EDGES.tolist())}
    for case in range(16):
        inside = [v for v in range(4) if case >> v & 1]
        outside = [v for v in range(4) if not case >> v & 1]
        if len(inside) in (1, 3):
            lone, others = (inside[0], outside) if len(inside) == 1 else (outside[0], inside)
            table[case, 0] = [edge_of[tuple(sorted((lone, o)))] for o in others]
        elif len(inside) == 2:
            (a, b), (c, d) = inside, outside
            e_ac, e_ad, e_bd, e_bc = (edge_of[tuple(sorted(p))] for p in ((a, c), (a, d), (b, d), (b, c)))
            table[case, 0] = [e_ac, e_ad, e_bd]
            table[case, 1] = [e_ac, e_bd, e_bc]
    return table


_TET_CASES = _tet_case_table()


def isosurface_triangles(values: np.ndarray, level: float, periodic: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(vertices (n, 3) in grid-index units, faces (m, 3)) of the surface values = level, by marching
    tetrahedra; vertices on the same grid edge are shared. With `periodic` the grid wraps, so the surface
    closes at the cell faces (index n along an axis is index 0 again). Faces are wound with their normal
    pointing from higher to lower values (outwards around a density peak)."""
    v = np.asarray(values, dtype=np.float64)
    if periodic:
        v = np.pad(v, ((0, 1), (0, 1), (0, 1)), mode="wrap")
    nx, ny, nz = v.shape
    above = v > level
    flat_above = above.ravel()
    # cubes that straddle the level
    cube_any = np.zeros((nx - 1, ny - 1, nz - 1), dtype=bool)
    cube_all = np.ones_like(cube_any)
    for dx, dy, dz in _CORNERS:
        a = above[dx : nx - 1 + dx, dy : ny - 1 + dy, dz : nz - 1 + dz]
        cube_any |= a
        cube_all &= a
    origin = np.argwhere(cube_any & ~cube_all)
    if len(origin) == 0:
        return np.zeros((0, 3)), np.zeros((0, 3), dtype=np.uint32)
    strides = np.array([ny * nz, nz, 1])
    corner_ids = (origin[:, None, :] + _CORNERS[None]) @ strides  # (c, 8) linear grid indices
    tets = corner_ids[:, _CUBE_TETS].reshape(-1, 4)  # (c·6, 4)
    case = (flat_above[tets] * (1 << np.arange(4))).sum(axis=1)
    tris = _TET_CASES[case]  # (t, 2, 3) edge numbers, −1 for none
    keep = tris[:, :, 0] >= 0
    t_idx, slot = np.nonzero(keep)
    tri_edges = tris[t_idx, slot]  # (m, 3) local edge numbers
    ends = tets[t_idx[:, None, None], _TET_EDGES[tri_edges]]  # (m, 3, 2) grid indices of each edge's ends
    lo, hi = np.minimum(ends[..., 0], ends[..., 1]), np.maximum(ends[..., 0], ends[..., 1])
    key = lo.astype(np.int64) * v.size + hi
    uniq, inverse = np.unique(key.ravel(), return_inverse=True)
    a_id, b_id = uniq // v.size, uniq % v.size
    fa, fb = v.ravel()[a_id], v.ravel()[b_id]
    t = np.clip((level - fa) / np.where(fb != fa, fb - fa, 1.0), 0.0, 1.0)
    pa = np.stack(np.unravel_index(a_id, v.shape), axis=1).astype(np.float64)
    pb = np.stack(np.unravel_index(b_id, v.shape), axis=1).astype(np.float64)
    verts = pa + t[:, None] * (pb - pa)
    faces = inverse.reshape(-1, 3)
    # orientation: the normal points away from the tetrahedron's corners above the level
    p = verts[faces]
    normal = np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0])
    tet_pts = np.stack(np.unravel_index(tets[t_idx], v.shape), axis=-1).astype(np.float64)  # (m, 4, 3)
    inside = flat_above[tets[t_idx]]
    inner = (tet_pts * inside[..., None]).sum(1) / np.maximum(inside.sum(1, keepdims=True), 1)
    flip = np.einsum("ij,ij->i", normal, p.mean(axis=1) - inner) < 0
    faces[flip] = faces[flip][:, ::-1]
    area_ok = np.linalg.norm(normal, axis=1) > 1e-12  # drop faces collapsed onto a grid point
    return verts, faces[area_ok].astype(np.uint32)


def isosurface_mesh(dmap: DensityMap, sigma: float) -> Optional[tuple[np.ndarray, np.ndarray]]:
    """(vertices (n, 3) Å Cartesian, faces (m, 3)) of ρ = mean + sigma·σ over the whole cell, or None."""
    v = dmap.values
    level = float(v.mean() + sigma * v.std())
    if not v.max() > level:
        return None
    verts, faces = isosurface_triangles(v, level, periodic=True)
    if len(faces) == 0:
        return None
    n = np.array(v.shape, dtype=np.float64)
    return (verts / n) @ dmap.cell.orthogonalization.T, faces


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
    """Geometry for the 3D structure view; iso_sigma None leaves the isosurface out."""
    if structure is not None and structure.n_sites:
        p1 = structure.expand_to_p1()
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
