"""Charge flipping (Oszlányi & Sütő, Acta Cryst. A60, 134, 2004; A61, 147, 2005), the classical baseline.

The structure is solved in P1 on a full-cell grid: flip the sign of every density value below δ,
Fourier transform, impose the observed moduli (unobserved reflections and F000 float free), repeat.
δ is a multiple of the map's σ, tuned per start when a start does not converge. Weak observed
reflections get the π/2 phase shift of the 2005 paper. Convergence shows as a sudden drop of the
R factor between |F_obs| and |G| followed by a plateau. The P1 solution is then moved to the
space-group origin (the shift that maximises the agreement of symmetry-related structure factors)
and averaged over symmetry equivalents. Phases in radians.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import scipy.fft as sfft

from ..crystal.cell import UnitCell
from ..crystal.maps import DensityMap, grid_size
from ..crystal.symmetry import SpaceGroup, encode_hkl
from ..errors import InvalidInputError
from ..jobs import check_cancel, report


@dataclass
class ChargeFlippingSettings:
    max_iterations: int = 1500
    random_starts: int = 3  # the one default of the phase command and the Phasing panel (PhasingParameters)
    delta_factors: tuple = (1.1, 1.3, 0.9)  # δ = factor·σ(ρ); starts cycle through these
    weak_fraction: float = 0.2  # weakest observed reflections get a π/2 phase shift (0: off)
    normalise: bool = True  # work with quasi-normalised |E| (sharper maps)
    sampling: float = 3.0  # grid points per d_min
    window: int = 40  # iterations over which convergence is judged
    polish: int = 200  # iterations run after convergence is detected
    seed: int = 0
    stop_at_first: bool = False  # stop after the first converged start


@dataclass
class ChargeFlippingResult:
    hkl: np.ndarray  # unique reflections (input order)
    phases: np.ndarray  # radians, at the space-group origin, symmetry averaged
    r_factor: float  # final R(|F_obs|, |G|) in P1
    symmetry_agreement: float  # 0..1: how well the P1 solution obeys the space-group symmetry
    converged: bool
    iterations: int
    start: int
    delta_factor: float
    shift: np.ndarray  # origin shift applied (fractional)
    seconds: float
    history: list = field(default_factory=list)

    @property
    def fom(self) -> float:
        """Ranking: symmetry agreement, penalised by the R factor."""
        return self.symmetry_agreement * (1.0 - self.r_factor)


def quasi_normalised(hkl, F, cell: UnitCell, sg: SpaceGroup, n_bins: int = 12) -> np.ndarray:
    """|E| = |F| / √(ε ⟨|F|²/ε⟩_shell), with shells in (sinθ/λ)²."""
    s2 = cell.inv_d2(hkl)
    eps = sg.epsilon(hkl).astype(float)
    nb = int(max(1, min(n_bins, len(F) // 30)))
    edges = np.quantile(s2, np.linspace(0, 1, nb + 1))
    b = np.clip(np.searchsorted(edges, s2, side="right") - 1, 0, nb - 1)
    mean = np.array([np.mean(F[b == i] ** 2 / eps[b == i]) if np.any(b == i) else 1.0 for i in range(nb)])
    return F / np.sqrt(np.maximum(eps * mean[b], 1e-12))


def _p1_arrays(hkl, F, sg: SpaceGroup, grid):
    """Full-sphere P1 indices of the unique set and grid positions; index of source reflection."""
    hp, _, src = sg.expand_to_p1(hkl, None, friedel=True)
    idx = tuple((hp % np.array(grid)).T)
    return hp, src, idx


def p1_grid(hkl, values, cell: UnitCell, sg: SpaceGroup, d_min: float, sampling: float):
    """The unique set expanded to P1 (with Friedel mates) on an FFT grid of ≥ `sampling` points per d_min.

    Returns (grid, P1 indices hp, source reflection of each, grid positions idx, moduli on the full grid,
    observed mask with F000 unobserved).
    """
    hp, _, _ = _p1_arrays(hkl, values, sg, (1, 1, 1))
    grid = grid_size(cell, d_min, sampling, None, np.abs(hp).max(axis=0))
    hp, src, idx = _p1_arrays(hkl, values, sg, grid)
    moduli = np.zeros(grid)
    moduli[idx] = values[src]
    observed = np.zeros(grid, dtype=bool)
    observed[idx] = True
    observed[0, 0, 0] = False
    return grid, hp, src, idx, moduli, observed


def _upper_half(grid) -> np.ndarray:
    """True for one of each Friedel pair h, −h (lexicographically positive h) on the FFT grid."""
    H = np.stack(np.meshgrid(*[sfft.fftfreq(k, 1 / k).astype(int) for k in grid], indexing="ij"), -1)
    h, k, l = H[..., 0], H[..., 1], H[..., 2]
    return (h > 0) | ((h == 0) & (k > 0)) | ((h == 0) & (k == 0) & (l > 0))


def symmetry_origin(X: np.ndarray, sg: SpaceGroup, grid) -> tuple[np.ndarray, float]:
    """Origin shift s that makes a P1 solution (Fourier coefficients on the grid) obey the group best.

    For every operation (R, t) the agreement Σ_h |F_h F_{Rᵀh}| cos(φ(Rᵀh) − φ(h) + 2π h·t − 2π h·(R − I)s)
    is a Fourier sum in u = (R − I)s, evaluated on the whole grid by one FFT; the shift maximises the sum
    over operations. Returns (s, agreement normalised to [−1, 1]).
    """
    n = np.array(grid)
    ops = [(r, t) for r, t in zip(sg.rotations, sg.translations) if not (np.array_equal(r, np.eye(3)) and np.allclose(t % 1, 0))]
    if not ops:
        return np.zeros(3), 1.0
    H = np.stack(np.meshgrid(*[sfft.fftfreq(k, 1 / k).astype(int) for k in grid], indexing="ij"), -1).reshape(-1, 3)
    Xf = X.reshape(-1)
    amp = np.abs(Xf)
    keep = amp > 1e-9 * amp.max()
    H, Xk = H[keep], Xf[keep]
    total = np.zeros(grid)
    norm = 0.0
    g = np.stack(np.meshgrid(*[np.arange(k) for k in grid], indexing="ij"), -1).reshape(-1, 3)
    for r, t in ops:
        HR = H @ r  # (Rᵀh)ᵀ = hᵀ R
        pos = tuple((HR % n).T)
        Y = X[pos]
        c = Y * np.conj(Xk) * np.exp(2j * np.pi * (H @ t))  # |F F'| e^{i(φ(Rᵀh) − φ(h) + 2π h·t)}
        C = np.zeros(grid, dtype=np.complex128)
        np.add.at(C, tuple((H % n).T), c)
        Cu = sfft.fftn(C).real  # Σ c e^{−2πi h·u}: value at u = j/n
        norm += np.sum(np.abs(c))
        u = (g @ (r - np.eye(3, dtype=int)).T) % n  # (R − I)s on the grid of s
        total += Cu[tuple(u.T)].reshape(grid)
    j = np.unravel_index(np.argmax(total), grid)
    return np.array(j) / n, float(total[j] / max(norm, 1e-300))


def charge_flipping(hkl, F_obs, cell: UnitCell, space_group: SpaceGroup, settings: Optional[ChargeFlippingSettings] = None,
                    progress=None, cancel=None, on_result=None) -> list[ChargeFlippingResult]:
    """Solve from unique reflections (hkl, |F_obs|); returns one result per start, best first.

    `on_result(result)` is called after each start; when it returns True no further start runs.
    """
    s = settings or ChargeFlippingSettings()
    hkl = np.asarray(hkl, dtype=np.int64)
    F = np.asarray(F_obs, dtype=np.float64)
    if len(hkl) < 20:
        raise InvalidInputError(f"only {len(hkl)} reflections: too few to solve a structure")
    if np.any(space_group.is_absent(hkl)):
        keep = ~space_group.is_absent(hkl)
        hkl, F = hkl[keep], F[keep]
    d_min = float(np.min(cell.d_spacing(hkl)))
    work = quasi_normalised(hkl, F, cell, space_group) if s.normalise else F / F.max()
    grid, hp, src, idx, A_full, obs_full = p1_grid(hkl, work, cell, space_group, d_min, s.sampling)
    # half-space arrays for real FFTs (l ≥ 0 stored; the rest follows from Friedel's law)
    nl = grid[2] // 2 + 1
    A, obs = A_full[..., :nl], obs_full[..., :nl]
    # unobserved reflections inside the data sphere and F000 float free; beyond it they stay 0
    H = np.stack(np.meshgrid(*[sfft.fftfreq(k, 1 / k) for k in grid], indexing="ij"), -1)[..., :nl, :]
    inside = np.einsum("...i,ij,...j->...", H, cell.reciprocal_metric_tensor, H) <= 1.0 / d_min**2 * (1 + 1e-9)
    free = inside & ~obs
    weak_cut = np.quantile(work, s.weak_fraction) if s.weak_fraction > 0 else -1.0
    weak = obs & (A <= weak_cut)
    upper = _upper_half(grid)[..., :nl]
    # both members of a Friedel pair are stored in the planes l = 0 (and l = n/2): shift them oppositely
    shift_factor = np.where(upper | ((H[..., 2] != 0) & (np.abs(H[..., 2]) != grid[2] / 2)), 1j, -1j)
    rng = np.random.default_rng(s.seed)
    results = []
    n_starts = max(1, s.random_starts)
    total_iter = n_starts * s.max_iterations
    done_iter = 0
    workers = 2
    for start in range(n_starts):
        t0 = time.perf_counter()
        factor = s.delta_factors[start % len(s.delta_factors)]
        X = sfft.rfftn(rng.standard_normal(grid), workers=workers)
        X = np.where(obs, A * np.exp(1j * np.angle(X)), 0)
        hist = []
        converged = False
        stop_at = s.max_iterations
        it = 0
        sumA = A_full[obs_full].sum()
        w = s.window
        # weights counting each stored coefficient as many times as it appears in the full sphere
        mult = np.where((H[..., 2] == 0) | (np.abs(H[..., 2]) == grid[2] / 2), 1.0, 2.0)[obs]
        Aobs = A[obs]
        for it in range(1, s.max_iterations + 1):
            rho = sfft.irfftn(X, s=grid, workers=workers)
            delta = factor * rho.std()
            g = np.where(rho > delta, rho, -rho)
            G = sfft.rfftn(g, workers=workers)
            aG = np.abs(G)
            Go = aG[obs]
            k = np.sum(mult * Aobs * Go) / max(np.sum(mult * Go * Go), 1e-300)
            R = float(np.sum(mult * np.abs(Aobs - k * Go)) / max(np.sum(mult * Aobs), 1e-300))
            hist.append(R)
            ph = G / np.maximum(aG, 1e-300)
            X = np.where(obs, A * ph, np.where(free, G, 0))
            if s.weak_fraction > 0:  # φ → φ + π/2 for weak h (and − π/2 for −h, keeping ρ real)
                X = np.where(weak, X * shift_factor, X)
            if it % 10 == 0:
                check_cancel(cancel)
                report(progress, (done_iter + it) / total_iter, f"start {start + 1}/{n_starts}, iteration {it}, R {R:.3f}")
            if not converged and it >= 3 * w and it % 10 == 0:
                recent, before = np.mean(hist[-w:]), np.mean(hist[-2 * w : -w])
                if recent < 0.92 * max(hist[3 : w + 3]) and abs(recent - before) < 0.001:
                    converged = True  # a drop from the random-start level, then a plateau: polish, then stop
                    stop_at = it + s.polish
            if converged and it >= stop_at:
                break
        G_full = sfft.fftn(sfft.irfftn(G, s=grid, workers=workers), workers=workers)
        # final map from observed moduli and converged phases (no weak-reflection shift), to the group origin
        Xf = np.where(obs_full, A_full * np.exp(1j * np.angle(G_full)), 0)
        done_iter += s.max_iterations
        shift, agree = symmetry_origin(Xf, space_group, grid)
        Fh = Xf[idx] * np.exp(-2j * np.pi * (hp @ shift))  # phases at the new origin
        # average over the symmetry mates that map onto each unique reflection
        mates, shifts = space_group.equivalents(hkl)
        acc = np.zeros(len(hkl), dtype=np.complex128)
        key_to_pos = {k: i for i, k in enumerate(encode_hkl(hp))}
        for m, sh in zip(mates, shifts):
            for sign in (1, -1):
                kk = encode_hkl(sign * m)
                pos = np.array([key_to_pos.get(x, -1) for x in kk])
                ok = pos >= 0
                val = np.zeros(len(hkl), dtype=np.complex128)
                v = Fh[pos[ok]]
                # F(Rᵀh) = F(h)e^{−2πi h·t} → F(h) = F(Rᵀh)e^{+2πi h·t}; Friedel: conj
                v = np.conj(v) if sign < 0 else v
                val[ok] = v * np.exp(-1j * sh[ok])
                acc += val
        phases = np.angle(acc)
        results.append(ChargeFlippingResult(hkl, phases, hist[-1], agree, converged, it, start, factor, shift,
                                            time.perf_counter() - t0, hist[::5]))
        if s.stop_at_first and converged:
            break
        if on_result is not None and on_result(results[-1]):
            break
    report(progress, 1.0, "charge flipping done")
    results.sort(key=lambda r: -r.fom)
    return results
