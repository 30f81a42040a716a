"""Diffuse scattering of binary substitutional alloys with known short-range order: a test and calibration set
made independently of the DSFU-Net training data (simulation.py draws molecules, swap-MC towards three
nearest-neighbour targets, or damped oscillators; here: single atoms, 3D Gaussian-field configurations,
other masks, counting noise and Bragg peaks).

Model: one site per primitive cell; occupation σ_r ∈ {0, 1} (1 = A) on an L³ periodic lattice, drawn by
thresholding a Gaussian random field at the quantile that gives mA. The field's spectrum S(q) = 1/(κ + V(q) −
min V) peaks where the order wants it: at Γ (clustering, anisotropic), at (½ ½ ½), (½ 0 0), (½ ½ 0) (ordering),
at (⅓ ⅓ ·) on hexagonal nets, or on an incommensurate shell; second-neighbour terms couple the three axes.
The Warren–Cowley α_uvw = cov(σ_r, σ_r+v)/(mA mB) are measured on the realised configuration, so they are exact
for it, three-dimensional and of no parametric form any fit assumes.

Intensity on a plane hk n (Q in Å⁻¹, 2π included; s = |Q|/4π = sinθ/λ):
  I_D(Q) = mA mB |f_A(s) − f_B(s)|² exp(−2 B s²) · Σ_{|u|,|v|,|w| ≤ R} α_uvw cos(Q·r_uvw)
The ratios a plane can give are β_uv/β_00 with β_uv = Σ_w α_uvw cos 2π n w (w cannot be separated on an
integer plane). A measurement adds Poisson counts over a subtracted flat background, missing data (resolution
limit, beamstop, curved detector-gap traces, dead patches) and, optionally, Bragg peaks at integer h k.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from ..crystal.cell import UnitCell
from ..crystal.elements import form_factor
from .planes import PlaneGeometry, q_grid
from .simulation import alphas_from_configuration, sro_plane
from .warren_cowley import vector_classes

ORDERS = ("cluster", "order_half_half_half", "order_half_0_0", "order_half_half_0", "hexagonal_order",
          "incommensurate")
LATTICES = ("cubic", "tetragonal", "orthorhombic", "hexagonal", "monoclinic")
PAIRS = (("Cu", "Au"), ("Fe", "Al"), ("Ni", "Pt"), ("Cu", "Pd"), ("Ni", "Al"), ("Mg", "Cd"), ("Ag", "Au"),
         ("Cu", "Zn"), ("Fe", "V"), ("Ti", "Zr"))


@dataclass
class AlloySettings:
    size: int = 256  # pixels per side of the Q grid
    q_max: tuple = (6.0, 8.0)  # Å⁻¹
    lattice_sites: int = 24  # L (configuration L³, periodic)
    vector_range: int = 6  # R of the intensity sum
    kappa: tuple = (0.08, 1.2)  # spectrum width (smaller: longer-ranged order)
    concentration: tuple = (0.2, 0.8)  # mA
    cell_length: tuple = (2.8, 6.0)  # Å
    b_factor: tuple = (0.3, 1.5)  # Å²
    counts: tuple = (300.0, 30000.0)  # counts in the strongest diffuse pixel (log-uniform)
    background: tuple = (0.0, 0.05)  # flat background (fraction of the strongest pixel), subtracted after counting
    planes: tuple = (0, 1)  # n of hk n
    p_beamstop: float = 0.7
    p_resolution_limit: float = 0.7
    gap_traces: tuple = (0, 4)
    dead_patches: tuple = (0, 2)
    p_bragg: float = 0.0  # probability of Bragg peaks at integer h k (integer planes)
    bragg_height: tuple = (20.0, 2000.0)  # peak height relative to the strongest diffuse pixel


@dataclass
class AlloyPlane:
    measured: np.ndarray  # I_D with counting noise, NaN where unmeasured (Bragg peaks included when drawn)
    ff: np.ndarray  # noiseless I_FF
    sro: np.ndarray  # noiseless I_SRO
    alphas: np.ndarray  # α_uvw, u, v, w ∈ −R…R
    geometry: PlaneGeometry
    q_max: float
    info: dict = field(default_factory=dict)

    def true_ratios(self, max_index: int = 3, symmetry: str = "none") -> dict:
        """β_uv/β_00 for the representative vector of each class (the class mean when symmetry ties vectors)."""
        return true_ratios(self.alphas, self.geometry, max_index, symmetry)


def true_ratios(alphas: np.ndarray, geometry: PlaneGeometry, max_index: int = 3, symmetry: str = "none") -> dict:
    R = (alphas.shape[0] - 1) // 2
    ax, (a1, a2) = geometry.axis, geometry.inplane
    al = np.moveaxis(alphas, [a1, a2, ax], [0, 1, 2])
    beta = np.einsum("uvw,w->uv", al, np.cos(2 * np.pi * geometry.n * np.arange(-R, R + 1)))
    out = {}
    for cl in vector_classes(max_index, symmetry):
        out[cl[0]] = float(np.mean([beta[u + R, v + R] for u, v in cl]) / beta[R, R])
    return out


# ------------------------------------------------------------------------------------------ configurations
def _spectrum(order: str, L: int, kappa: float, rng: np.random.Generator) -> np.ndarray:
    q = 2 * np.pi * np.fft.fftfreq(L)
    q1, q2, q3 = np.meshgrid(q, q, q, indexing="ij")
    c1, c2, c3 = np.cos(q1), np.cos(q2), np.cos(q3)
    j = rng.uniform(0.3, 1.0, 3)
    if order == "cluster":
        V = -(j[0] * c1 + j[1] * c2 + j[2] * c3)
    elif order == "order_half_half_half":
        V = j[0] * c1 + j[1] * c2 + j[2] * c3
    elif order == "order_half_0_0":
        V = j[0] * c1 - j[1] * c2 - j[2] * c3
    elif order == "order_half_half_0":
        V = j[0] * c1 + j[1] * c2 - j[2] * c3
    elif order == "hexagonal_order":  # triangular nets (γ = 120°): neighbours ±a, ±b, ±(a + b)
        V = j[0] * (c1 + c2 + np.cos(q1 + q2)) + rng.choice([-1, 1]) * j[2] * c3
    elif order == "incommensurate":
        q0 = rng.uniform(0.8, 1.8)
        V = 0.25 * (2 * (3 - c1 - c2 - c3) - q0**2) ** 2
    else:
        raise ValueError(f"unknown order '{order}'")
    # second neighbours couple the axes (3D correlations beyond the axial ones)
    j2 = rng.uniform(-0.25, 0.25, 3)
    V = V + j2[0] * np.cos(q1 + q3) + j2[1] * np.cos(q2 + q3) + j2[2] * np.cos(q1 - q2 + q3)
    return 1.0 / (kappa + V - V.min())


def random_configuration(order: str, L: int, mA: float, kappa: float, rng: np.random.Generator) -> np.ndarray:
    """σ (L, L, L) ∈ {0, 1}: a Gaussian field with spectrum S(q) thresholded so that a fraction mA is A."""
    S = _spectrum(order, L, kappa, rng)
    noise = np.fft.fftn(rng.standard_normal((L, L, L)))
    field_ = np.fft.ifftn(noise * np.sqrt(S)).real
    thr = np.quantile(field_, 1 - mA)
    return (field_ > thr).astype(np.float64)


# ------------------------------------------------------------------------------------------ measurement
def missing_data_mask(rng: np.random.Generator, size: int, q_max: float, s: AlloySettings) -> np.ndarray:
    """True where the simulated measurement has no data."""
    x, y = q_grid(q_max, size)
    r = np.hypot(x, y)
    mask = np.zeros((size, size), dtype=bool)
    if rng.random() < s.p_resolution_limit:
        mask |= r > rng.uniform(0.8, 1.35) * q_max
    if rng.random() < s.p_beamstop:
        mask |= r < rng.uniform(0.2, 0.7)
    for _ in range(int(rng.integers(s.gap_traces[0], s.gap_traces[1] + 1))):
        # a detector gap swept through reciprocal space: a circular trace of width 0.03–0.12 Å⁻¹
        th = rng.uniform(0, 2 * np.pi)
        d = rng.uniform(1.0, 3.0) * q_max
        cx, cy = d * np.cos(th), d * np.sin(th)
        rad = d + rng.uniform(-0.8, 0.8) * q_max
        mask |= np.abs(np.hypot(x - cx, y - cy) - rad) < rng.uniform(0.03, 0.12)
    for _ in range(int(rng.integers(s.dead_patches[0], s.dead_patches[1] + 1))):
        w, h = rng.uniform(0.05, 0.2, 2) * size
        i0, j0 = rng.uniform(0, size - h), rng.uniform(0, size - w)
        mask[int(i0):int(i0 + h), int(j0):int(j0 + w)] = True
    return mask


def bragg_image(geometry: PlaneGeometry, q_max: float, size: int, height: float, rng) -> np.ndarray:
    """Gaussian Bragg peaks (σ ≈ 0.6 pixel) at integer in-plane indices of an integer plane, with a slow falloff."""
    x, y = q_grid(q_max, size)
    h, k = geometry.indices(x, y)
    px = 2 * q_max / (size - 1)
    dq = geometry.M @ np.stack([h - np.rint(h), k - np.rint(k)]).reshape(2, -1)  # Å⁻¹ from the nearest node
    d2 = (dq**2).sum(0).reshape(h.shape)
    width = rng.uniform(0.5, 0.9) * px
    q2 = x**2 + y**2 + geometry.q_normal**2
    return height * np.exp(-d2 / (2 * width**2)) * np.exp(-0.01 * q2)


def alloy_form_factor(pair, q_abs: np.ndarray, b_factor: float) -> np.ndarray:
    s2 = (q_abs / (4 * np.pi)) ** 2
    df = form_factor(pair[0], s2) - form_factor(pair[1], s2)
    return df**2 * np.exp(-2 * b_factor * s2)


class AlloySimulator:
    """Draws random alloys and measures one plane of each."""

    def __init__(self, settings: Optional[AlloySettings] = None):
        self.s = settings or AlloySettings()

    def cell(self, lattice: str, rng) -> UnitCell:
        lo, hi = self.s.cell_length
        a, b, c = rng.uniform(lo, hi, 3)
        if lattice == "cubic":
            return UnitCell(a, a, a, 90, 90, 90)
        if lattice == "tetragonal":
            return UnitCell(a, a, c, 90, 90, 90)
        if lattice == "orthorhombic":
            return UnitCell(a, b, c, 90, 90, 90)
        if lattice == "hexagonal":
            return UnitCell(a, a, c, 90, 90, 120)
        return UnitCell(a, b, c, 90, 90, rng.uniform(95, 115))  # monoclinic, c unique: oblique hk planes

    def sample(self, rng: np.random.Generator, order: Optional[str] = None, lattice: Optional[str] = None,
               bragg: Optional[bool] = None) -> AlloyPlane:
        s = self.s
        order = order or str(rng.choice(ORDERS))
        if lattice is None:
            lattice = "hexagonal" if order == "hexagonal_order" else str(rng.choice(LATTICES[:3] + LATTICES[4:]))
        mA = float(rng.uniform(*s.concentration))
        kappa = float(np.exp(rng.uniform(*np.log(s.kappa))))
        sigma = random_configuration(order, s.lattice_sites, mA, kappa, rng)
        mA = float(sigma.mean())
        alphas = alphas_from_configuration(sigma, s.vector_range)
        cell = self.cell(lattice, rng)
        n = int(rng.choice(list(s.planes)))
        geo = PlaneGeometry(cell, 2, float(n))
        q_max = float(rng.uniform(*s.q_max))
        pair = PAIRS[int(rng.integers(len(PAIRS)))]
        if rng.random() < 0.5:
            pair = pair[::-1]
        B = float(rng.uniform(*s.b_factor))
        x, y = q_grid(q_max, s.size)
        q_abs = np.sqrt(x**2 + y**2 + geo.q_normal**2)
        ff = mA * (1 - mA) * alloy_form_factor(pair, q_abs, B)
        sro = sro_plane(alphas, geo, q_max, s.size).numpy()
        I = ff * sro
        peak = float(I.max())
        counts = float(np.exp(rng.uniform(*np.log(s.counts))))
        bg = float(rng.uniform(*s.background)) * peak
        total = I + bg
        want_bragg = (rng.random() < s.p_bragg) if bragg is None else bragg
        if want_bragg:
            total = total + bragg_image(geo, q_max, s.size, float(rng.uniform(*s.bragg_height)) * peak, rng)
        scale = counts / peak
        measured = rng.poisson(np.maximum(total, 0) * scale) / scale - bg
        mask = missing_data_mask(rng, s.size, q_max, s)
        measured[mask] = np.nan
        info = {"order": order, "lattice": lattice, "kappa": kappa, "mA": mA, "pair": "".join(pair), "B": B,
                "cell": cell.parameters.round(4).tolist(), "plane": geo.label(), "q_max": q_max, "counts": counts,
                "background": bg / peak, "bragg": bool(want_bragg), "measured_fraction": float(1 - mask.mean())}
        return AlloyPlane(measured, ff, sro, alphas, geo, q_max, info)
