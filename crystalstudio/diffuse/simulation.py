"""Simulated diffuse scattering of binary substitutional disorder (training data for DSFU-Net).

I_D = I_FF · I_SRO on a plane (see planes.py for the Q-grid convention; Q includes 2π):
  I_FF(Q)  = N mA mB |F_A(Q) − F_B(Q)|²,  F_X(Q) = Σ_j f_j(|Q|/4π) exp(iQ·r_j)  (molecules A and B, Å)
  I_SRO(Q) = Σ_v α_v cos(Q·v),  v = u a + v b + w c,  u, v, w ∈ −R…R,  α_0 = 1,  α_−v = α_v
  α_v = 1 − P_v^AB/(mA mB)
α sets come from swap Monte Carlo on a periodic lattice towards target nearest-neighbour α along a, b, c,
or from the damped oscillator α(x) = A·exp(−d·x)·cos(ω·x) (x = |v|/a) for tetragonal and hexagonal
lattices. Cells follow Vegard's law, a = mA·a_A + mB·a_B. Both cosine sums are separable in the grid's
x and y, so each plane costs two small matrix products instead of a transcendental per pixel and vector.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import torch

from ..crystal.cell import UnitCell
from ..crystal.elements import form_factor_coefficients
from .planes import PlaneGeometry, preprocess, q_grid


@dataclass
class DiffuseSettings:
    size: int = 256  # pixels per side
    q_max: tuple = (6.0, 8.0)  # Å⁻¹ (2π included)
    planes: tuple = (0, 1)  # index n of the simulated hk n plane
    lattices: tuple = ("mc", "tetragonal", "hexagonal")  # α model: MC (oblique/monoclinic cells) or oscillator
    concentration: tuple = (0.2, 0.8)  # mA
    cell_length: tuple = (5.0, 12.0)  # Å
    vegard_spread: float = 0.05  # |a_A/a_B − 1| up to this
    mc_size: int = 12  # MC lattice edge (sites)
    mc_swaps: int = 4000
    alpha_target: tuple = (-0.25, 0.35)  # nearest-neighbour α targets
    vector_range: int = 5  # u, v, w ∈ −R…R
    oscillator_A: tuple = (0.6, 1.5)
    oscillator_d: tuple = (0.1, 1.2)
    oscillator_w: tuple = (0.0, 1.0)
    molecule_atoms: tuple = (3, 10)
    substitutions: tuple = (1, 3)
    b_factor: float = 2.0  # Å², overall Debye–Waller damping of I_FF
    p_gaps: float = 0.5
    p_beamstop: float = 0.5
    p_real_mask: float = 0.3
    real_mask_file: Optional[str] = None  # a Meerkat volume whose NaN regions serve as masks
    pool: int = 48  # molecules and MC α sets are drawn from pools of this size (0: new ones every plane)
    pool_seed: int = 20240101


@dataclass
class Molecule:
    elements: list
    xyz: np.ndarray  # Cartesian Å, centred


def random_molecule(rng: np.random.Generator, n_range=(3, 10)) -> Molecule:
    """A connected artificial molecule from the project's molecule generator (P1, isolated)."""
    from ..crystal.generator import GeneratorSettings, generate_batch

    n = int(rng.integers(n_range[0], n_range[1] + 1))
    s = GeneratorSettings(space_group="P 1")
    s.content.mode = "molecules"
    s.content.include_hydrogen = False
    s.content.special_probability = 0.0
    s.cell.a_min, s.cell.a_max, s.cell.shear = 14.0, 14.0, "none"
    s.cell.volume_min = s.cell.volume_max = None
    s.cell.sampling = "naive"
    v = 14.0**3 / n
    s.content.volume_per_atom = (v * 0.999, v)
    s.content.max_atoms_asu = n
    b = generate_batch(1, s, int(rng.integers(0, 2**31)))
    st = b.structure(0)
    xyz = st.cell.orthogonalize(st.xyz)
    # unwrap across the periodic box: keep atoms near the first one (molecule is connected)
    d = st.xyz - st.xyz[0]
    d -= np.rint(d)
    xyz = st.cell.orthogonalize(d)
    return Molecule(st.elements, xyz - xyz.mean(axis=0))


def substituted(mol: Molecule, rng: np.random.Generator, k_range=(1, 3)) -> Molecule:
    """Molecule B: A with 1–3 atoms changed among C, N, O, S, Cl."""
    els = list(mol.elements)
    k = int(rng.integers(k_range[0], min(k_range[1], len(els)) + 1))
    for i in rng.choice(len(els), size=k, replace=False):
        choices = [e for e in ("C", "N", "O", "S", "Cl") if e != els[i]]
        els[i] = str(rng.choice(choices))
    return Molecule(els, mol.xyz.copy())


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    q = rng.standard_normal(4)
    q /= np.linalg.norm(q)
    a, b, c, d = q
    return np.array([[a * a + b * b - c * c - d * d, 2 * (b * c - a * d), 2 * (b * d + a * c)],
                     [2 * (b * c + a * d), a * a - b * b + c * c - d * d, 2 * (c * d - a * b)],
                     [2 * (b * d - a * c), 2 * (c * d + a * b), a * a - b * b - c * c + d * d]])


# ------------------------------------------------------------------------------------------ α sets
def alphas_from_configuration(sigma: np.ndarray, R: int) -> np.ndarray:
    """α_uvw for u, v, w ∈ −R…R of a periodic binary configuration σ ∈ {0, 1} (1 = A)."""
    mA = sigma.mean()
    mB = 1 - mA
    F = np.fft.fftn(sigma - mA)
    cov = np.fft.ifftn(np.abs(F) ** 2).real / sigma.size  # ⟨δσ(x) δσ(x+v)⟩
    idx = np.arange(-R, R + 1) % np.array(sigma.shape)[:, None]
    c = cov[np.ix_(idx[0], idx[1], idx[2])]
    # P_AB(v) = mA mB − cov(v)  →  α = 1 − P_AB/(mA mB) = cov/(mA mB)
    return c / (mA * mB)


def monte_carlo_alphas(target, mA: float, L: int, swaps: int, rng: np.random.Generator, R: int):
    """Swap Monte Carlo on an L³ periodic lattice towards target α[100], α[010], α[001] (reverse MC:
    a swap of an A and a B site is kept when it brings the three nearest-neighbour α closer to the
    targets). Returns (α (2R+1)³, achieved nearest-neighbour α)."""
    n_sites = L**3
    nA = int(round(mA * n_sites))
    sigma = np.zeros(n_sites, dtype=np.int8)
    sigma[rng.choice(n_sites, nA, replace=False)] = 1
    sigma = sigma.reshape(L, L, L)
    m = nA / n_sites
    norm = m * (1 - m) * n_sites

    def nn_alpha(s):
        d = s - m
        return np.array([np.sum(d * np.roll(d, -1, axis=ax)) for ax in range(3)]) / norm

    target = np.asarray(target, dtype=np.float64)
    cur = nn_alpha(sigma)
    err = float(np.sum((cur - target) ** 2))
    idx = np.arange(n_sites).reshape(L, L, L)
    plus = [np.roll(idx, -1, axis=ax).reshape(-1) for ax in range(3)]  # neighbour +e_ax of each site
    minus = [np.roll(idx, 1, axis=ax).reshape(-1) for ax in range(3)]
    d = (sigma.reshape(-1) - m).astype(np.float64)
    for _ in range(swaps):
        a, b = int(rng.integers(n_sites)), int(rng.integers(n_sites))
        if d[a] == d[b]:
            continue
        bonds = [{(int(minus[ax][x]), x) for x in (a, b)} | {(x, int(plus[ax][x])) for x in (a, b)} for ax in range(3)]
        before = [sum(d[i] * d[j] for i, j in bs) for bs in bonds]
        d[a], d[b] = d[b], d[a]
        after = [sum(d[i] * d[j] for i, j in bs) for bs in bonds]
        new = cur + (np.array(after) - np.array(before)) / norm
        new_err = float(np.sum((new - target) ** 2))
        if new_err <= err:
            cur, err = new, new_err
        else:
            d[a], d[b] = d[b], d[a]
    sigma = (d + m > 0.5).reshape(L, L, L)
    return alphas_from_configuration(sigma.astype(np.float64), R), cur


def oscillator_alphas(cell: UnitCell, A: float, d: float, w: float, R: int) -> np.ndarray:
    """α(x) = A exp(−d x) cos(ω x) with x = |v|/a (v in Å), α_0 = 1."""
    r = np.arange(-R, R + 1)
    U, V, W = np.meshgrid(r, r, r, indexing="ij")
    vec = np.stack([U, V, W], -1) @ cell.orthogonalization.T
    x = np.linalg.norm(vec, axis=-1) / cell.a
    al = A * np.exp(-d * x) * np.cos(w * x)
    al[R, R, R] = 1.0
    return al


# ------------------------------------------------------------------------------------------ planes
def sro_plane(alphas: np.ndarray, geometry: PlaneGeometry, q_max: float, size: int, device=None) -> torch.Tensor:
    """I_SRO on the grid from α_uvw ((2R+1)³, indices −R…R): Σ_w folds into β_uv = Σ_w α_uvw e^{2πi n w},
    then I = Re Σ_uv β_uv e^{2πi(h u + k v)} with (h, k) affine in (x, y) — one matrix product."""
    R = (alphas.shape[0] - 1) // 2
    r = np.arange(-R, R + 1)
    ax, (a1, a2) = geometry.axis, geometry.inplane
    al = np.moveaxis(alphas, [a1, a2, ax], [0, 1, 2])
    beta = np.einsum("uvw,w->uv", al.astype(np.complex128), np.exp(2j * np.pi * geometry.n * r))
    t = np.linspace(-q_max, q_max, size)
    Mi = geometry.Minv  # (i1, i2) = Mi (x − ox, y − oy)
    o = geometry.offset[:2]
    U, V = np.meshgrid(r, r, indexing="ij")
    cu = (Mi[0, 0] * U + Mi[1, 0] * V).reshape(-1)  # coefficient of x in h u + k v
    cv = (Mi[0, 1] * U + Mi[1, 1] * V).reshape(-1)  # of y
    c0 = -(cu * o[0] + cv * o[1])
    coef = beta.reshape(-1) * np.exp(2j * np.pi * c0)
    dev = device or "cpu"
    T = torch.as_tensor(t, device=dev, dtype=torch.float64)
    X = torch.exp(2j * np.pi * T[:, None] * torch.as_tensor(cu, device=dev))  # (N, T)
    Y = torch.exp(2j * np.pi * T[:, None] * torch.as_tensor(cv, device=dev))
    I = (Y * torch.as_tensor(coef, device=dev)) @ X.T  # rows y, columns x
    return I.real.clamp_min(0.0)


def form_factor_plane(mol_a: Molecule, mol_b: Molecule, geometry: PlaneGeometry, q_max: float, size: int,
                      b_factor: float = 0.0, device=None) -> torch.Tensor:
    """|F_A − F_B|² on the grid (molecules in the cell's Cartesian frame)."""
    dev = device or "cpu"
    t = torch.as_tensor(np.linspace(-q_max, q_max, size), device=dev, dtype=torch.float64)
    qn = geometry.offset[2]
    Qabs = torch.sqrt(t[None, :] ** 2 + t[:, None] ** 2 + qn**2)  # rows y, columns x
    s2 = (Qabs / (4 * np.pi)) ** 2
    dF = torch.zeros((size, size), dtype=torch.complex128, device=dev)
    for mol, sign in ((mol_a, 1.0), (mol_b, -1.0)):
        P = mol.xyz @ geometry.frame.T  # (J, 3): components along e1, e2, e3
        for el in sorted(set(mol.elements)):
            sel = np.array([e == el for e in mol.elements])
            p = torch.as_tensor(P[sel], device=dev)
            X = torch.exp(1j * t[:, None] * p[None, :, 0])  # (N, J)
            Y = torch.exp(1j * t[:, None] * p[None, :, 1]) * torch.exp(1j * qn * p[None, :, 2])
            c = torch.as_tensor(form_factor_coefficients(el), device=dev)
            f = (c[:4] * torch.exp(-c[4:8] * s2[..., None])).sum(-1) + c[8]
            dF += sign * f * (Y @ X.T)
    return (dF.abs() ** 2) * torch.exp(-b_factor * Qabs**2 / (8 * np.pi**2))


def artefact_mask(rng: np.random.Generator, size: int, s: DiffuseSettings, real_masks=None) -> np.ndarray:
    """True where a simulated measurement would have no data: detector gaps, beamstop, real NaN regions."""
    mask = np.zeros((size, size), dtype=bool)
    yy, xx = np.mgrid[0:size, 0:size] - (size - 1) / 2
    if rng.random() < s.p_gaps:
        for _ in range(int(rng.integers(1, 4))):
            th = rng.uniform(0, np.pi)
            off = rng.uniform(-0.45, 0.45) * size
            width = rng.uniform(1.5, 5)
            mask |= np.abs(xx * np.cos(th) + yy * np.sin(th) - off) < width
    if rng.random() < s.p_beamstop:
        r = rng.uniform(0.02, 0.08) * size
        mask |= xx**2 + yy**2 < r**2
        th = rng.uniform(0, 2 * np.pi)
        along = xx * np.cos(th) + yy * np.sin(th)
        across = -xx * np.sin(th) + yy * np.cos(th)
        mask |= (along > 0) & (np.abs(across) < rng.uniform(1, 4))
    if real_masks and rng.random() < s.p_real_mask:
        m = real_masks[int(rng.integers(len(real_masks)))]
        k = int(rng.integers(4))
        mask |= np.rot90(m, k)
    return mask


def load_real_masks(path: Optional[str], size: int, q_max: float = 7.0) -> list[np.ndarray]:
    """NaN regions of every hk n plane of a real reconstruction, resampled to the grid."""
    if not path:
        return []
    from ..io.meerkat import read_meerkat
    from .planes import resample_plane

    vol = read_meerkat(path)
    out = []
    for n in vol.axis_values(2)[:: max(1, vol.shape[2] // 8)]:
        geo = PlaneGeometry(vol.cell, 2, float(n))
        sec = vol.plane(2, float(n))
        p = resample_plane(sec, vol.lower_limits, vol.step_sizes, geo, q_max, size)
        m = ~np.isfinite(p.intensity)
        if 0.02 < m.mean() < 0.6:
            out.append(m)
    return out


@dataclass
class SimulatedPlane:
    measured: np.ndarray  # I_D with NaN where masked
    ff: np.ndarray  # I_FF
    sro: np.ndarray  # I_SRO
    alphas: np.ndarray
    geometry: PlaneGeometry
    q_max: float
    info: dict = field(default_factory=dict)


class DiffuseSimulator:
    """Draws random disorder models and renders their planes; `batch` gives network tensors."""

    def __init__(self, settings: Optional[DiffuseSettings] = None, device=None):
        self.s = settings or DiffuseSettings()
        self.device = device
        self.real_masks = load_real_masks(self.s.real_mask_file, self.s.size) if self.s.real_mask_file else []
        self._molecules: list[Molecule] = []
        self._mc: list[tuple] = []

    def _molecule(self, rng) -> Molecule:
        s = self.s
        if not s.pool:
            return random_molecule(rng, s.molecule_atoms)
        if not self._molecules:
            prng = np.random.default_rng(s.pool_seed)
            self._molecules = [random_molecule(prng, s.molecule_atoms) for _ in range(s.pool)]
        return self._molecules[int(rng.integers(len(self._molecules)))]

    def _mc_alphas(self, rng):
        """(α, mA, target, achieved) for a swap-MC model, from the pool when pooling."""
        s = self.s
        R = s.vector_range

        def make(r):
            mA = float(r.uniform(*s.concentration))
            target = r.uniform(*s.alpha_target, 3)
            al, ach = monte_carlo_alphas(target, mA, s.mc_size, s.mc_swaps, r, R)
            return al, mA, target, ach

        if not s.pool:
            return make(rng)
        if not self._mc:
            prng = np.random.default_rng(s.pool_seed + 1)
            self._mc = [make(prng) for _ in range(s.pool)]
        al, mA, target, ach = self._mc[int(rng.integers(len(self._mc)))]
        perm = rng.permutation(3)  # a random relabelling of the axes adds variety
        return np.transpose(al, perm), mA, target[perm], ach[perm]

    def sample(self, rng: np.random.Generator) -> SimulatedPlane:
        s = self.s
        lattice = str(rng.choice(list(s.lattices)))
        mA = float(rng.uniform(*s.concentration))
        if lattice == "mc":
            alphas, mA, target, achieved = self._mc_alphas(rng)
        base = rng.uniform(*s.cell_length, 3)
        if lattice == "mc":
            angles = np.array([90.0, rng.uniform(90, 115), 90.0])
        elif lattice == "tetragonal":
            base[1] = base[0]
            angles = np.array([90.0, 90.0, 90.0])
        else:  # hexagonal
            base[1] = base[0]
            angles = np.array([90.0, 90.0, 120.0])
        ratio = 1 + rng.uniform(-s.vegard_spread, s.vegard_spread)
        a_A, a_B = base * ratio, base / ratio
        cell = UnitCell(*(mA * a_A + (1 - mA) * a_B), *angles)  # Vegard's law
        R = s.vector_range
        if lattice == "mc":
            info = {"target_nn_alpha": target.tolist(), "nn_alpha": achieved.tolist()}
        else:
            A, d, w = rng.uniform(*s.oscillator_A), rng.uniform(*s.oscillator_d), rng.uniform(*s.oscillator_w)
            alphas = oscillator_alphas(cell, A, d, w, R)
            info = {"oscillator": [A, d, w]}
        n = int(rng.choice(list(s.planes)))
        geo = PlaneGeometry(cell, 2, float(n))
        q_max = float(rng.uniform(*s.q_max))
        mol_a = self._molecule(rng)
        mol_a = Molecule(mol_a.elements, mol_a.xyz @ random_rotation(rng).T)
        mol_b = substituted(mol_a, rng, s.substitutions)
        sro = sro_plane(alphas, geo, q_max, s.size, self.device).cpu().numpy()
        ff = (mA * (1 - mA) * form_factor_plane(mol_a, mol_b, geo, q_max, s.size, s.b_factor, self.device)).cpu().numpy()
        I = ff * sro
        mask = artefact_mask(rng, s.size, s, self.real_masks)
        measured = np.where(mask, np.nan, I)
        info.update({"lattice": lattice, "mA": mA, "cell": cell.parameters.tolist(), "plane": geo.label(),
                     "q_max": q_max, "molecule": "".join(mol_a.elements)})
        return SimulatedPlane(measured, ff, sro, alphas, geo, q_max, info)

    def batch(self, n: int, seed: int) -> dict[str, torch.Tensor]:
        """Preprocessed (B, 1, N, N) float tensors: input (masked I_D), ff and sro targets."""
        rng = np.random.default_rng(seed)
        planes = [self.sample(rng) for _ in range(n)]
        stack = lambda xs: torch.as_tensor(np.stack(xs)[:, None])
        return {"input": stack([preprocess(p.measured) for p in planes]),
                "ff": stack([preprocess(p.ff) for p in planes]),
                "sro": stack([preprocess(p.sro) for p in planes])}
