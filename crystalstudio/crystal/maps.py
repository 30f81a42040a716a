"""Electron-density maps by FFT, slabs, projections and peak search.

ρ(x) = (1/V) Σ_h F(h) exp(−2πi h·x) over the full sphere (P1 expansion with Friedel mates), in e/Å³
when F is on the absolute scale. Grids index fractional coordinates: value[i, j, k] is ρ at
(i/n1, j/n2, k/n3).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
from scipy import ndimage

from ..errors import InvalidInputError
from .cell import UnitCell
from .symmetry import SpaceGroup

_FFT_PRIMES = (2, 3, 5)


def _good_fft_size(n: int, factor: int = 1) -> int:
    n = max(int(n), 1)
    while True:
        if n % factor == 0:
            m = n
            for p in _FFT_PRIMES:
                while m % p == 0:
                    m //= p
            if m == 1:
                return n
        n += 1


def grid_size(cell: UnitCell, d_min: float, sampling: float = 3.0, space_group: Optional[SpaceGroup] = None,
              min_hkl: Optional[np.ndarray] = None) -> tuple[int, int, int]:
    """Grid with spacing ≤ d_min/sampling along each axis (≥ `sampling` points per d_min), FFT-friendly
    (factors 2, 3, 5), divisible as the space group's translations need, and larger than 2·|h|max."""
    factors = [1, 1, 1]
    if space_group is not None:
        factors = list(space_group.gemmi_ops.find_grid_factors())
    out = []
    for i, length in enumerate(cell.parameters[:3]):
        n = int(np.ceil(sampling * length / d_min))
        if min_hkl is not None:
            n = max(n, 2 * int(min_hkl[i]) + 1)
        out.append(_good_fft_size(n, int(factors[i])))
    return tuple(out)


@dataclass
class DensityMap:
    values: np.ndarray  # (n1, n2, n3) float
    cell: UnitCell
    space_group: SpaceGroup

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.values.shape

    @property
    def sigma(self) -> float:
        return float(np.std(self.values))

    @property
    def mean(self) -> float:
        return float(np.mean(self.values))

    def in_sigma(self) -> np.ndarray:
        s = self.sigma
        return (self.values - self.mean) / (s if s > 0 else 1.0)

    def slab(self, axis: int, start: float, thickness: float) -> np.ndarray:
        """Mean of ρ over layers from `start` to `start + thickness` (fractional) along `axis` (0=a, 1=b, 2=c).

        Returns the 2D array over the two other axes, in increasing axis order.
        """
        n = self.values.shape[axis]
        i0 = int(np.floor(start * n))
        count = max(1, int(round(thickness * n)))
        idx = (np.arange(i0, i0 + count)) % n
        return np.take(self.values, idx, axis=axis).mean(axis=axis)

    def projection(self, axis: int) -> np.ndarray:
        return self.values.mean(axis=axis)

    def value_at(self, frac) -> np.ndarray:
        """Trilinear interpolation at fractional positions (…, 3), periodic."""
        f = np.asarray(frac, dtype=np.float64)
        coords = (f % 1.0) * np.array(self.values.shape)
        flat = coords.reshape(-1, 3).T
        v = ndimage.map_coordinates(self.values, flat, order=1, mode="grid-wrap")
        return v.reshape(f.shape[:-1])


def density_map(cell: UnitCell, space_group: SpaceGroup, hkl, F, *, d_min: Optional[float] = None,
                grid: Optional[tuple[int, int, int]] = None, sampling: float = 3.0, f000: float = 0.0) -> DensityMap:
    """Map from structure factors F (complex, one per unique reflection) expanded by symmetry."""
    hkl = np.asarray(hkl, dtype=np.int64).reshape(-1, 3)
    F = np.asarray(F, dtype=np.complex128).reshape(-1)
    if len(hkl) != len(F):
        raise InvalidInputError("hkl and F differ in length")
    hp1, Fp1, _ = space_group.expand_to_p1(hkl, F)
    hmax = np.abs(hp1).max(axis=0) if len(hp1) else np.zeros(3, dtype=int)
    if grid is None:
        if d_min is None:
            d_min = float(np.min(cell.d_spacing(hkl))) if len(hkl) else 1.0
        grid = grid_size(cell, d_min, sampling, space_group, hmax)
    grid = tuple(int(g) for g in grid)
    if np.any(2 * hmax >= np.array(grid)):
        raise InvalidInputError(f"grid {grid} too coarse for |h|max {tuple(hmax)}")
    X = np.zeros(grid, dtype=np.complex128)
    idx = tuple((hp1 % np.array(grid)).T)
    X[idx] = Fp1
    X[0, 0, 0] = f000
    rho = np.fft.fftn(X).real / cell.volume
    return DensityMap(rho, cell, space_group)


def structure_factors_from_map(dmap: DensityMap, hkl) -> np.ndarray:
    """F(h) = V/N Σ ρ exp(2πi h·x) sampled from a map (inverse of :func:`density_map`)."""
    G = np.fft.ifftn(dmap.values) * dmap.cell.volume
    hkl = np.asarray(hkl, dtype=np.int64)
    return G[tuple((hkl % np.array(dmap.shape)).T)]


@dataclass
class Peaks:
    xyz: np.ndarray  # (P, 3) fractional
    height: np.ndarray  # (P,) map value
    height_sigma: np.ndarray  # (P,) in σ of the map

    def __len__(self) -> int:
        return len(self.height)


def find_peaks(dmap: DensityMap, max_peaks: int = 100, min_distance: float = 0.7,
               threshold_sigma: float = 1.0, unique: bool = True) -> Peaks:
    """Local maxima of ρ above `threshold_sigma`, refined by a parabola per axis, highest first.

    With unique=True, peaks that are symmetry images (within `min_distance` Å) of a higher peak are
    dropped; peaks closer than `min_distance` to a higher one are dropped too.
    """
    rho = dmap.values
    z = dmap.in_sigma()
    local = ndimage.maximum_filter(rho, size=3, mode="wrap") == rho
    cand = np.argwhere(local & (z > threshold_sigma))
    if len(cand) == 0:
        return Peaks(np.zeros((0, 3)), np.zeros(0), np.zeros(0))
    shape = np.array(rho.shape)
    h0 = rho[tuple(cand.T)]
    order = np.argsort(-h0)
    cand = cand[order][: max(50 * max_peaks, 1000)]
    offsets = np.zeros((len(cand), 3))
    for ax in range(3):
        e = np.zeros(3, dtype=int)
        e[ax] = 1
        vm = rho[tuple(((cand - e) % shape).T)]
        v0 = rho[tuple(cand.T)]
        vp = rho[tuple(((cand + e) % shape).T)]
        den = vm - 2 * v0 + vp
        offsets[:, ax] = np.where(den < 0, 0.5 * (vm - vp) / np.where(den < 0, den, -1), 0.0)
    xyz = ((cand + np.clip(offsets, -0.5, 0.5)) / shape) % 1.0
    heights = dmap.value_at(xyz)
    heights = np.maximum(heights, rho[tuple(cand.T)])
    order = np.argsort(-heights)
    xyz, heights = xyz[order], heights[order]
    A = dmap.cell.orthogonalization
    kept: list[np.ndarray] = []
    kept_h: list[float] = []
    images_of_kept = np.zeros((0, 3))
    sg = dmap.space_group
    for x, h in zip(xyz, heights):
        if len(images_of_kept):
            d = images_of_kept - x
            d -= np.rint(d)
            if np.min(np.linalg.norm(d @ A.T, axis=1)) < min_distance:
                continue
        kept.append(x)
        kept_h.append(h)
        imgs = sg.apply(x) % 1.0 if unique else x[None]
        images_of_kept = np.concatenate([images_of_kept, imgs])
        if len(kept) >= max_peaks:
            break
    kh = np.array(kept_h)
    return Peaks(np.array(kept).reshape(-1, 3), kh, (kh - dmap.mean) / max(dmap.sigma, 1e-300))


def plane_basis(cell: UnitCell, axis: int) -> np.ndarray:
    """2×2 matrix mapping fractional in-plane coordinates (u, v) of the slab normal to `axis` onto
    Cartesian Å in that plane (first axis along the first in-plane cell vector)."""
    A = cell.orthogonalization
    axes = [i for i in range(3) if i != axis]
    u, v = A[:, axes[0]], A[:, axes[1]]
    normal = np.cross(u, v)
    normal /= np.linalg.norm(normal)
    e1 = u / np.linalg.norm(u)
    e2 = np.cross(normal, e1)
    return np.array([[u @ e1, v @ e1], [u @ e2, v @ e2]])


@dataclass
class CalculatedData:
    """A structure with its calculated reflections (unique set) and map."""

    structure: "object"
    hkl: np.ndarray
    F: np.ndarray
    dmap: DensityMap
    d_min: float


def calculated_data(structure, d_min: float = 0.8, sampling: float = 3.0, cancel=None) -> CalculatedData:
    """Structure factors of a structure's unique reflections to d_min (Å) and the map from them."""
    from ..jobs import check_cancel
    from .reflections import unique_reflections
    from .structure_factors import structure_factors

    hkl = unique_reflections(structure.cell, structure.space_group, d_min)
    check_cancel(cancel)
    F = structure_factors(structure, hkl)
    check_cancel(cancel)
    dmap = density_map(structure.cell, structure.space_group, hkl, F, d_min=d_min, sampling=sampling)
    return CalculatedData(structure, hkl, F, dmap, d_min)
