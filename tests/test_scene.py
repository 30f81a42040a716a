"""Render-ready geometry (crystalstudio.crystal.scene): the isosurface against an analytic sphere, bonds,
and a scene built from a real structure and its map — all without Qt or a graphics library."""

from __future__ import annotations

import numpy as np
import pytest

from crystalstudio.crystal.scene import bond_segments, build_scene, isosurface_triangles


def test_isosurface_of_a_sphere():
    n, radius = 40, 12.3
    g = np.indices((n, n, n)).astype(float)
    centre = (n - 1) / 2
    r = np.sqrt(((g - centre) ** 2).sum(0))
    verts, faces = isosurface_triangles(-r, -radius, periodic=False)  # inside the sphere is "above"
    dist = np.linalg.norm(verts - centre, axis=1)
    assert np.all(np.abs(dist - radius) < 0.05)  # vertices on the sphere (linear interpolation of r)
    p = verts[faces]
    normal = np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0])
    assert 0.5 * np.linalg.norm(normal, axis=1).sum() == pytest.approx(4 * np.pi * radius**2, rel=0.01)
    assert np.all(np.einsum("ij,ij->i", normal, p.mean(1) - centre) > 0)  # wound outwards (from high to low)
    edges = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
    _, count = np.unique(edges, axis=0, return_counts=True)
    assert np.all(count == 2)  # closed: every edge shared by exactly two triangles


def test_periodic_isosurface_runs_to_the_cell_faces():
    n = 24
    g = np.indices((n, n, n)).astype(float)
    blob = np.exp(-(g**2).sum(0) / 10.0)  # a peak at the origin, cut by every cell face
    verts, faces = isosurface_triangles(blob, 0.5, periodic=True)
    assert len(faces) and verts.min() == 0.0 and verts.max() == float(n)  # grid point n is point 0 again
    assert isosurface_triangles(np.zeros((4, 4, 4)), 0.5)[1].shape == (0, 3)


def test_bonds_and_scene_of_a_real_structure(data_dir):
    from crystalstudio.crystal.maps import calculated_data
    from crystalstudio.io.structures import read_structure

    st = read_structure(data_dir / "pairs" / "sucrose_P21" / "sucrose.res")
    data = calculated_data(st, d_min=1.0)
    scene = build_scene(st, data.dmap, 2.0)
    p1 = st.expand_to_p1()
    assert len(scene.xyz) == p1.n_sites and scene.iso is not None
    lengths = np.linalg.norm(scene.bonds[0::2] - scene.bonds[1::2], axis=1)
    assert len(lengths) > p1.n_sites / 2 and 0.7 < lengths.min() and lengths.max() < 1.9  # C–C, C–O, C–H, O–H
    verts = scene.iso[0]
    frac = verts @ np.linalg.inv(st.cell.orthogonalization).T
    assert frac.min() > -1e-9 and frac.max() < 1 + 1e-9  # Å Cartesian within the cell
    assert bond_segments(np.zeros((1, 3)), ["C"]).shape == (0, 3)
