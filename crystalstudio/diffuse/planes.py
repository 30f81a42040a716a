"""Reciprocal planes on isotropic Cartesian Q grids, and the DSFU-Net pre-processing.

Q = 2π(h a* + k b* + l c*) in Å⁻¹ (2π included). A plane "n fixed on axis f" (hk n, h n l, n k l)
is drawn in its own Cartesian frame: e1 along the first in-plane reciprocal axis, e2 perpendicular
to it in the plane, e3 the plane normal. Pixel (i, j) of an N×N grid over [−Qmax, Qmax]² sits at
x = −Qmax + 2Qmax·j/(N−1) (columns), y = −Qmax + 2Qmax·i/(N−1) (rows), measured from the foot of the
perpendicular from the origin onto the plane.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
from scipy import ndimage

from ..crystal.cell import UnitCell
from ..errors import InvalidInputError

PLANE_NAMES = {2: "hk{n}", 1: "h{n}l", 0: "{n}kl"}


def parse_plane(text: str) -> tuple[int, int]:
    """'hk1' → (axis 2, n 1); 'h0l' → (1, 0); '-1kl' → (0, -1)."""
    t = text.strip().lower().replace(" ", "")
    import re

    m = re.fullmatch(r"hk(-?\d+)", t)
    if m:
        return 2, int(m.group(1))
    m = re.fullmatch(r"h(-?\d+)l", t)
    if m:
        return 1, int(m.group(1))
    m = re.fullmatch(r"(-?\d+)kl", t)
    if m:
        return 0, int(m.group(1))
    raise InvalidInputError(f"plane '{text}' is not of the form hkn, hnl or nkl (e.g. hk1, h0l, 2kl)")


@dataclass
class PlaneGeometry:
    """Geometry of the plane with index n on `axis` of a cell: maps Cartesian (x, y) ↔ fractional indices."""

    cell: UnitCell
    axis: int
    n: float

    def __post_init__(self):
        B = 2 * np.pi * self.cell.reciprocal_matrix  # columns 2π a*, 2π b*, 2π c* (Å⁻¹)
        self.inplane = [i for i in range(3) if i != self.axis]
        u, v = B[:, self.inplane[0]], B[:, self.inplane[1]]
        e1 = u / np.linalg.norm(u)
        e3 = np.cross(u, v)
        e3 /= np.linalg.norm(e3)
        e2 = np.cross(e3, e1)
        self.frame = np.stack([e1, e2, e3])  # rows
        self.B = B
        w = B[:, self.axis] * self.n
        self.offset = self.frame @ w  # (3,) in-plane part (x, y) and height along e3
        self.M = np.array([[e1 @ u, e1 @ v], [e2 @ u, e2 @ v]])  # (x, y) = M (i1, i2) + offset[:2]
        self.Minv = np.linalg.inv(self.M)

    @property
    def q_normal(self) -> float:
        """Distance of the plane from the origin (Å⁻¹)."""
        return float(self.offset[2])

    def indices(self, x, y) -> tuple[np.ndarray, np.ndarray]:
        """Fractional in-plane indices (e.g. h, k for hk n) at Cartesian (x, y)."""
        xy = np.stack([np.asarray(x) - self.offset[0], np.asarray(y) - self.offset[1]], axis=-1)
        ij = xy @ self.Minv.T
        return ij[..., 0], ij[..., 1]

    def hkl(self, x, y) -> np.ndarray:
        i1, i2 = self.indices(x, y)
        out = np.zeros(np.shape(i1) + (3,))
        out[..., self.inplane[0]], out[..., self.inplane[1]] = i1, i2
        out[..., self.axis] = self.n
        return out

    def q_vectors(self, x, y) -> np.ndarray:
        """Full 3D Q (Å⁻¹, lab = the cell's Cartesian frame) at pixel positions."""
        x, y = np.asarray(x), np.asarray(y)
        return (x[..., None] * self.frame[0] + y[..., None] * self.frame[1] + self.offset[2] * self.frame[2])

    def label(self) -> str:
        n = int(self.n) if float(self.n).is_integer() else self.n
        return PLANE_NAMES[self.axis].format(n=n)


def q_grid(q_max: float, size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) of every pixel (size, size); rows are y."""
    t = np.linspace(-q_max, q_max, size)
    return np.meshgrid(t, t, indexing="xy")


@dataclass
class ResampledPlane:
    intensity: np.ndarray  # (N, N), NaN where unmeasured / outside the volume
    geometry: PlaneGeometry
    q_max: float
    label: str

    @property
    def mask(self) -> np.ndarray:
        """True where measured."""
        return np.isfinite(self.intensity)

    def hkl_at(self, i: int, j: int) -> np.ndarray:
        x, y = q_grid(self.q_max, self.intensity.shape[0])
        return self.geometry.hkl(x[i, j], y[i, j])


def resample_plane(section: np.ndarray, lower: np.ndarray, step: np.ndarray, geometry: PlaneGeometry,
                   q_max: float, size: int = 256) -> ResampledPlane:
    """Bilinear resampling of a volume section (indices along the two in-plane axes) onto the Q grid.

    A pixel is NaN when any of its four neighbours is unmeasured or it lies outside the volume.
    """
    x, y = q_grid(q_max, size)
    i1, i2 = geometry.indices(x, y)
    a, b = geometry.inplane
    p = (i1 - lower[a]) / step[a]
    q = (i2 - lower[b]) / step[b]
    measured = np.isfinite(section)
    filled = np.where(measured, section, 0.0)
    val = ndimage.map_coordinates(filled, [p, q], order=1, mode="constant", cval=0.0)
    # any unmeasured neighbour (or outside) → NaN: interpolate the mask and require all weight on measured
    wt = ndimage.map_coordinates(measured.astype(np.float64), [p, q], order=1, mode="constant", cval=0.0)
    inside = (p >= 0) & (q >= 0) & (p <= section.shape[0] - 1) & (q <= section.shape[1] - 1)
    out = np.where(inside & (wt > 1 - 1e-6), val, np.nan)
    return ResampledPlane(out, geometry, q_max, geometry.label())


def section_at(volume, axis: int, value: float) -> np.ndarray:
    """Section at exactly `value` along `axis`: the grid layer, or linear interpolation between the two
    layers around it (NaN where either is unmeasured)."""
    t = (value - volume.lower_limits[axis]) / volume.step_sizes[axis]
    i0 = int(np.floor(t + 1e-9))
    w = t - i0
    if w < 1e-6:
        return volume.read_slab(axis, volume.index_of(axis, value))
    if not (0 <= i0 and i0 + 1 < volume.shape[axis]):
        volume.index_of(axis, value)  # raises the out-of-range error
    return (1 - w) * volume.read_slab(axis, i0) + w * volume.read_slab(axis, i0 + 1)


def plane_from_volume(volume, plane: str, q_max: float = 7.0, size: int = 256) -> ResampledPlane:
    """Cut plane 'hk1' (etc.) from a :class:`~crystalstudio.io.meerkat.MeerkatVolume` and resample it."""
    axis, n = parse_plane(plane)
    section = section_at(volume, axis, float(n))
    geo = PlaneGeometry(volume.cell, axis, float(n))
    lower = volume.lower_limits
    step = volume.step_sizes
    return resample_plane(section, lower, step, geo, q_max, size)


def symmetry_average(img: np.ndarray, ops: str = "friedel") -> np.ndarray:
    """Average an image with its symmetry mates on the square grid (NaN-aware): 'friedel' (I(−q) = I(q)),
    'mm' (mirrors x and y), '4mm' (square), or 'none'."""
    stack = [img]
    if ops in ("friedel", "mm", "4mm"):
        stack.append(img[::-1, ::-1])
    if ops in ("mm", "4mm"):
        stack += [img[::-1, :], img[:, ::-1]]
    if ops == "4mm":
        t = img.T
        stack += [t, t[::-1, ::-1], t[::-1, :], t[:, ::-1]]
    s = np.stack(stack)
    with np.errstate(invalid="ignore"):
        return np.nanmean(s, axis=0) if np.isfinite(s).any() else img


def punch_and_fill(img: np.ndarray, geometry: PlaneGeometry, q_max: float, radius: float = 0.12,
                   fill_sigma: float = 2.0) -> np.ndarray:
    """Remove Bragg positions (integer in-plane indices, on integer planes) within `radius` (index units)
    and fill the holes by normalised convolution of the surroundings."""
    size = img.shape[0]
    x, y = q_grid(q_max, size)
    i1, i2 = geometry.indices(x, y)
    if not float(geometry.n).is_integer():
        return img.copy()
    near = (np.abs(i1 - np.rint(i1)) < radius) & (np.abs(i2 - np.rint(i2)) < radius)
    good = np.isfinite(img) & ~near
    vals = np.where(good, img, 0.0)
    num = ndimage.gaussian_filter(vals, fill_sigma)
    den = ndimage.gaussian_filter(good.astype(float), fill_sigma)
    filled = np.where(near & np.isfinite(img), num / np.maximum(den, 1e-9), img)
    return filled


def preprocess(img: np.ndarray) -> np.ndarray:
    """The DSFU-Net input encoding: NaN → 0, negatives → 0, I/Imax, y = 2√(I/Imax) − 1, masks → −1."""
    mask = ~np.isfinite(img)
    I = np.where(mask, 0.0, np.maximum(img, 0.0))
    m = I.max()
    y = 2.0 * np.sqrt(I / m) - 1.0 if m > 0 else np.full_like(I, -1.0)
    y[mask] = -1.0
    return y.astype(np.float32)


def postprocess(y: np.ndarray) -> np.ndarray:
    """Network output in [−1, 1] → relative intensity ((y + 1)/2)²."""
    return ((np.clip(y, -1, 1) + 1.0) / 2.0) ** 2
