"""Isotropic least-squares refinement against F² (SHELXL-like), derivatives by torch autograd.

Minimises Σ w (Fo² − k|Fc|²)² over the overall scale k, the free coordinates of every atom and its Uiso,
with SHELXL weights w = 1/[σ²(Fo²) + (aP)² + bP], P = (max(Fo², 0) + 2k|Fc|²)/3, by Levenberg–Marquardt
(Gauss–Newton steps damped by λ·diag). |Fc| comes from the project's structure-factor kernel
(:func:`~crystalstudio.crystal.structure_factors.structure_factors_batched`): every atom is its own
"structure" of the batch, so one Jacobian-vector product with tangents on x, y, z and Uiso gives each atom's
∂F/∂p for all reflections (the Jacobian) without hand-written derivatives.

Atoms on special positions are constrained by their site symmetry: the position is symmetrised onto the
special position and only the directions that leave it invariant (null space of R − I over the site
group) are refined; the crystallographic occupancy is 1/|site group|.

Reported as SHELXL does: R1 = Σ||Fo| − |Fc|| / Σ|Fo| for Fo > 4σ(Fo) (and for all data),
wR2 = [Σ w (Fo² − Fc²)² / Σ w Fo⁴]^½, GooF = [Σ w (Fo² − Fc²)² / (Nref − Npar)]^½, with Fc on the scale
of Fo (Fc² ← k|Fc|²). The SHELXL overall scale (FVAR) is osf = √k. Fractional coordinates, U in Å².
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field, replace
from typing import Optional

import numpy as np
import torch

from ..crystal.cell import UnitCell
from ..crystal.reflections import ReflectionData
from ..crystal.structure import Site, Structure
from ..crystal.structure_factors import ScatteringTable, structure_factors_batched
from ..crystal.symmetry import SpaceGroup
from ..errors import InvalidInputError
from ..jobs import check_cancel

U_MIN, U_MAX = 0.0005, 0.5  # Å²: bounds kept during refinement (an atom at a bound is flagged by the callers)
MAX_XYZ_SHIFT = 0.35  # Å per cycle


# ------------------------------------------------------------------------------------------ data
@dataclass
class ObservedData:
    """Merged unique reflections for refinement: Fo² and σ(Fo²) (amplitude data are squared, σ(F²) = 2Fσ(F))."""

    hkl: np.ndarray
    fo2: np.ndarray
    sigma: np.ndarray
    cell: UnitCell
    space_group: SpaceGroup

    @classmethod
    def from_reflections(cls, data: ReflectionData) -> "ObservedData":
        cell, sg = data.require_symmetry()
        if data.kind == "F":
            fo2, sig = data.values**2, 2.0 * np.abs(data.values) * data.sigmas
        else:
            fo2, sig = data.values.copy(), data.sigmas.copy()
        good = np.isfinite(fo2) & np.isfinite(sig) & (sig > 0)
        if not np.any(good):
            raise InvalidInputError(f"{data.source or 'reflections'}: no reflection has a positive σ")
        return cls(data.hkl[good], fo2[good], sig[good], cell, sg)

    def __len__(self) -> int:
        return len(self.hkl)

    @property
    def fo(self) -> np.ndarray:
        return np.sqrt(np.maximum(self.fo2, 0.0))

    @property
    def observed(self) -> np.ndarray:
        """Fo > 4σ(Fo) with σ(Fo) = σ(Fo²)/(2Fo), i.e. Fo² > 2σ(Fo²) (SHELXL's R1 threshold)."""
        return self.fo2 > 2.0 * self.sigma

    @property
    def d_min(self) -> float:
        return float(np.min(self.cell.d_spacing(self.hkl)))


# ------------------------------------------------------------------------------------------ site symmetry
@dataclass
class SiteSymmetry:
    order: int  # number of operations that map the site onto itself
    basis: np.ndarray  # (3, k) free directions (fractional), k = 0…3


def site_symmetry(xyz, space_group: SpaceGroup, cell: UnitCell, tolerance: float = 0.7) -> tuple[np.ndarray, SiteSymmetry]:
    """The position moved onto the nearest special position (if an image lies within `tolerance` Å) and
    its site symmetry. The moved position is the mean of the close images, so it is invariant under them."""
    x0 = np.asarray(xyz, dtype=np.float64)
    offset = np.floor(x0)  # the lattice translation the caller placed the atom in is kept
    x = x0 - offset
    A = cell.orthogonalization
    rot, tr = space_group.rotations, space_group.translations
    for tol in (tolerance, 0.6 * tolerance, 0.2 * tolerance, 0.02):
        img = np.einsum("nij,j->ni", rot, x) + tr
        lat = np.rint(img - x)
        d = img - lat - x
        close = np.linalg.norm(d @ A.T, axis=1) < tol
        xs = x + d[close].mean(axis=0)
        img2 = np.einsum("nij,j->ni", rot[close], xs) + tr[close] - lat[close]
        if np.all(np.linalg.norm((img2 - xs) @ A.T, axis=1) < 1e-4):
            M = np.concatenate([r - np.eye(3) for r in rot[close]]) if close.sum() > 1 else np.zeros((3, 3))
            _, sv, vt = np.linalg.svd(M)
            rank = int(np.sum(sv > 1e-8))
            return xs + offset, SiteSymmetry(int(close.sum()), vt[rank:].T.copy())
    return x + offset, SiteSymmetry(1, np.eye(3))


# ------------------------------------------------------------------------------------------ kernel calls
def atom_structure_factors(hkl, cell: UnitCell, space_group: SpaceGroup, elements, xyz, u_iso, occupancy,
                           derivatives: bool = False, dtype=torch.float32):
    """Each atom's contribution F_j(h) (N, M) complex, and with `derivatives` ∂F_j/∂(x, y, z) (N, M, 3)
    and ∂F_j/∂Uiso (N, M), from the project's kernel with torch autograd (one atom per batch
    entry, one call per element so that the form factors are evaluated once per element)."""
    table = ScatteringTable(list(elements))
    types = table.indices(list(elements))
    N, M = len(types), len(hkl)
    xyz = np.asarray(xyz, dtype=np.float64).reshape(N, 3)
    u_iso = np.asarray(u_iso, dtype=np.float64).reshape(N)
    occ = np.asarray(occupancy, dtype=np.float64).reshape(N)
    cdt = torch.complex64 if dtype == torch.float32 else torch.complex128
    F = torch.zeros((N, M), dtype=cdt)
    dX = torch.zeros((N, M, 3), dtype=cdt) if derivatives else None
    dU = torch.zeros((N, M), dtype=cdt) if derivatives else None
    hkl_t = torch.as_tensor(np.asarray(hkl, dtype=np.float64), dtype=dtype)
    for t in np.unique(types):
        sel = np.where(types == t)[0]
        n = len(sel)
        coef = table.coefficients[t : t + 1]
        copies = 4 if derivatives else 1
        x = torch.as_tensor(np.tile(xyz[sel][:, None, :], (copies, 1, 1)), dtype=dtype)
        u = torch.as_tensor(np.tile(u_iso[sel][:, None], (copies, 1)), dtype=dtype)
        o = torch.as_tensor(np.tile(occ[sel][:, None], (copies, 1)), dtype=dtype)
        ty = torch.zeros((copies * n, 1), dtype=torch.long)
        cells = torch.as_tensor(np.repeat(cell.parameters[None], copies * n, 0), dtype=dtype)
        if not derivatives:
            F[sel] = structure_factors_batched(hkl_t, cells, x, ty, o, u, space_group, coef, dtype=dtype)
            continue
        tx, tu = torch.zeros_like(x), torch.zeros_like(u)
        for c in range(3):
            tx[c * n : (c + 1) * n, :, c] = 1.0
        tu[3 * n :] = 1.0
        primal, tangent = _jvp(lambda xx, uu: structure_factors_batched(hkl_t, cells, xx, ty, o, uu, space_group, coef,
                                                                         dtype=dtype), (x, u), (tx, tu))
        F[sel] = primal[:n]
        for c in range(3):
            dX[sel, :, c] = tangent[c * n : (c + 1) * n]
        dU[sel] = tangent[3 * n :]
    return F, dX, dU


def _jvp(fn, inputs, tangents):
    """(fn(inputs), J·tangents) for a complex-valued fn by reverse-over-reverse autograd: with g(v) = Jᵀv
    (a graph in v), J·t = ∂(g(v)·t)/∂v. (Forward-mode AD would do the same, but through this kernel it
    imports torch._dynamo, seconds of start-up for a command-line run.)"""
    leaves = [t.detach().clone().requires_grad_(True) for t in inputs]
    out = fn(*leaves)
    parts = torch.stack([out.real, out.imag])
    v = torch.zeros_like(parts, requires_grad=True)
    # scalar outputs throughout: explicit grad_outputs make torch import sympy (a second of start-up)
    grads = torch.autograd.grad((parts * v).sum(), leaves, create_graph=True)
    jv = torch.autograd.grad(sum((g * t).sum() for g, t in zip(grads, tangents)), v)[0]
    return out.detach(), torch.complex(jv[0], jv[1])


def calculated_f(structure: Structure, hkl, occupancy=None) -> np.ndarray:
    """F_calc (M,) complex128 of a structure (crystallographic occupancies as given, else from the site symmetry;
    U_ij where a site has them, else Uiso)."""
    occ = structure.crystallographic_occupancies() if occupancy is None else occupancy
    table = ScatteringTable(structure.elements)
    hkl = np.asarray(hkl, dtype=np.int64)
    if structure.n_sites == 0:
        return np.zeros(len(hkl), dtype=np.complex128)
    u6 = structure.u_aniso  # anisotropic sites as refined, isotropic ones as their spherical tensor
    F = structure_factors_batched(hkl, structure.cell.parameters[None], structure.xyz[None],
                                  table.indices(structure.elements)[None], np.asarray(occ)[None],
                                  structure.u_iso[None], structure.space_group, table.coefficients,
                                  u_aniso=None if u6 is None else u6[None], dtype=torch.float64)
    return F[0].numpy()


# ------------------------------------------------------------------------------------------ statistics
@dataclass
class RefinementStatistics:
    r1: float  # Fo > 4σ(Fo)
    r1_all: float
    wr2: float
    goof: float
    n_ref: int
    n_obs: int  # reflections with Fo > 4σ(Fo)
    n_par: int
    scale: float  # k: Fo² ≈ k|Fc|²
    weight_a: float
    weight_b: float

    @property
    def osf(self) -> float:
        """SHELXL overall scale factor (first FVAR): Fo ≈ osf·|Fc|."""
        return float(np.sqrt(self.scale))

    def line(self) -> str:
        return (f"R1 {self.r1:.4f} ({self.n_obs} Fo > 4σ), {self.r1_all:.4f} all; wR2 {self.wr2:.4f}; GooF {self.goof:.3f}; "
                f"{self.n_ref} reflections, {self.n_par} parameters")


def start_scale(data: ObservedData, fc) -> float:
    """k (Fo² ≈ k|Fc|²) from the observed amplitudes: (ΣFo|Fc| / Σ|Fc|²)² over Fo > 4σ(Fo). Robust where a
    σ-weighted fit on F² is not (one weak reflection with a tiny σ can pull that to k ≈ 0)."""
    a = np.abs(np.asarray(fc))
    obs = data.observed if np.any(data.observed) else np.ones(len(a), dtype=bool)
    return float((np.sum(data.fo[obs] * a[obs]) / max(np.sum(a[obs] ** 2), 1e-300)) ** 2)


def shelx_weights(fo2, sigma, fc2, a: float, b: float = 0.0) -> np.ndarray:
    P = (np.maximum(fo2, 0.0) + 2.0 * fc2) / 3.0
    return 1.0 / (sigma**2 + (a * P) ** 2 + b * P)


def agreement(data: ObservedData, fc, scale: Optional[float] = None, n_par: int = 1, a: float = 0.1,
              b: float = 0.0) -> RefinementStatistics:
    """R1, wR2 and GooF of calculated structure factors against the data (scale fitted on F² unless given)."""
    ic = np.abs(np.asarray(fc)) ** 2
    if scale is None:
        scale = start_scale(data, fc)
    fc2 = scale * ic
    w = shelx_weights(data.fo2, data.sigma, fc2, a, b)
    chi = np.sum(w * (data.fo2 - fc2) ** 2)
    fo, fcs = data.fo, np.sqrt(fc2)
    obs = data.observed
    r1 = float(np.sum(np.abs(fo[obs] - fcs[obs])) / max(np.sum(fo[obs]), 1e-300)) if np.any(obs) else float("nan")
    r1_all = float(np.sum(np.abs(fo - fcs)) / max(np.sum(fo), 1e-300))
    wr2 = float(np.sqrt(chi / max(np.sum(w * data.fo2**2), 1e-300)))
    goof = float(np.sqrt(chi / max(len(fo) - n_par, 1)))
    return RefinementStatistics(r1, r1_all, wr2, goof, len(fo), int(obs.sum()), n_par, float(scale), a, b)


# ------------------------------------------------------------------------------------------ refinement
@dataclass
class RefinementResult:
    structure: Structure  # refined (isotropic) atoms, chemical occupancies
    statistics: RefinementStatistics
    fc: np.ndarray  # unscaled F_calc of the unique data (complex)
    occupancy: np.ndarray  # crystallographic occupancies used (1/site order)
    site_orders: np.ndarray
    cycles: int
    converged: bool
    at_u_bound: np.ndarray  # (N,) bool: Uiso ended at U_MIN or U_MAX
    seconds: float
    history: list = field(default_factory=list)  # wR2 per cycle
    occupancy_esd: Optional[np.ndarray] = None  # (N,) standard uncertainty of the refined (crystallographic) occupancy
    non_positive_definite: list = field(default_factory=list)  # labels made isotropic by refine_anisotropic

    @property
    def scaled_fc(self) -> np.ndarray:
        return np.sqrt(self.statistics.scale) * self.fc


def _prepare_sites(structure: Structure):
    sg, cell = structure.space_group, structure.cell
    xs, syms = [], []
    for s in structure.sites:
        x, sym = site_symmetry(s.xyz, sg, cell)
        xs.append(x)
        syms.append(sym)
    return np.array(xs).reshape(-1, 3), syms


@contextlib.contextmanager
def torch_threads(n: int = 1):
    """Run torch with `n` intra-op threads (the refinement's many small kernels spend more time waking and
    spinning threads than computing; on a busy 2-core machine 2 threads took 5–10× the CPU time of 1)."""
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def refine(structure: Structure, data: ObservedData, *, cycles: int = 8, weight_a: float = 0.1, weight_b: float = 0.0,
           refine_xyz: bool = True, refine_u: bool = True, refine_occupancy: bool = False, refine_scale: bool = True,
           scale: Optional[float] = None, tolerance: float = 1e-4,
           cancel=None) -> RefinementResult:
    """Levenberg–Marquardt refinement of scale, free xyz and Uiso against Fo² (see the module docstring).

    `scale` starts (or with refine_scale=False fixes) k. With `refine_occupancy`, every atom also gets a scattering-power factor (its occupancy; SHELXL's sof):
    occupancy × Z estimates the electrons at the site, which is how elements are told apart.
    Stops after `cycles` cycles, when a cycle lowers Σw(Fo² − Fc²)² by less than `tolerance` (relative),
    or when no damped step lowers it. Weights: SHELXL's WGHT a b (default 0.1 0, SHELXL's own start).
    """
    with torch_threads(1):
        return _refine(structure, data, cycles, weight_a, weight_b, refine_xyz, refine_u, refine_occupancy,
                       refine_scale, scale, tolerance, cancel)


def _refine(structure, data, cycles, weight_a, weight_b, refine_xyz, refine_u, refine_occupancy, refine_scale, scale,
            tolerance, cancel) -> RefinementResult:
    t0 = time.perf_counter()
    if structure.n_sites == 0:
        raise InvalidInputError("nothing to refine: the model has no atoms")
    sg, cell = structure.space_group, structure.cell
    elements = structure.elements
    xyz, syms = _prepare_sites(structure)
    u = np.clip(structure.u_iso.copy(), U_MIN, U_MAX)
    order = np.array([s.order for s in syms])
    occ = np.array([s.occupancy for s in structure.sites]) / order
    N = len(elements)
    A = cell.orthogonalization
    n_free = [s.basis.shape[1] if refine_xyz else 0 for s in syms]
    n_par = int(refine_scale) + sum(n_free) + (N if refine_u else 0) + (N if refine_occupancy else 0)  # k, per atom xyz U occ
    hkl = data.hkl

    def total_f(x, uu, oo):
        st = Structure(cell, sg, [Site(f"A{i}", e, xx, 1.0, ui) for i, (e, xx, ui) in enumerate(zip(elements, x, uu))])
        return calculated_f(st, hkl, oo)

    fc = total_f(xyz, u, occ)
    ic = np.abs(fc) ** 2
    k = start_scale(data, fc) if scale is None else float(scale)
    lam = 1e-3
    history = []
    converged = False
    done = 0
    while done < cycles:
        check_cancel(cancel)
        w = shelx_weights(data.fo2, data.sigma, k * ic, weight_a, weight_b)
        r = data.fo2 - k * ic
        chi0 = float(np.sum(w * r * r))
        J = _jacobian(hkl, cell, sg, elements, xyz, u, occ, fc, ic, k, syms, n_free, refine_u, refine_occupancy)
        if not refine_scale:
            J = np.concatenate([np.zeros((len(hkl), 1)), J[:, 1:]], axis=1)
        Jt = torch.as_tensor(J)
        Jw = Jt * torch.as_tensor(w)[:, None]
        H = (Jt.T @ Jw).numpy()
        grad = (Jw.T @ torch.as_tensor(r)).numpy()
        if not refine_scale:
            H[0, 0] = 1.0  # k held: its (zero) column gets a unit diagonal, so its step is 0

        def trial(step):
            k1, x1, u1, o1 = _apply_step(step, k, xyz, u, occ, syms, n_free, refine_u, refine_occupancy, A)
            fc1 = total_f(x1, u1, o1)
            ic1 = np.abs(fc1) ** 2
            return float(np.sum(w * (data.fo2 - k1 * ic1) ** 2)), (k1, x1, u1, o1, fc1, ic1)

        state, lam, rel = damped_step(H, grad, lam, chi0, trial)
        accepted = state is not None
        if accepted:
            k, xyz, u, occ, fc, ic = state
        done += 1
        history.append(agreement(data, fc, k, n_par, weight_a, weight_b).wr2)
        if not accepted or rel < tolerance:
            converged = True
            break
    stats = agreement(data, fc, k, n_par, weight_a, weight_b)
    occ_esd = None
    if refine_occupancy and done:
        # standard uncertainties from the last normal matrix: diag((JᵀWJ)⁻¹)^½ · GooF
        try:
            cov = np.linalg.inv(H)
        except np.linalg.LinAlgError:
            cov = np.linalg.pinv(H)
        esd = np.sqrt(np.maximum(np.diag(cov), 0.0)) * stats.goof
        per_atom = [n_free[j] + int(refine_u) + 1 for j in range(N)]
        ends = 1 + np.cumsum(per_atom)
        occ_esd = esd[ends - 1]
    sites = [replace(s, xyz=x, u_iso=float(uu), u_aniso=None, occupancy=float(o * n))
             for s, x, uu, o, n in zip(structure.sites, xyz, u, occ, order)]
    out = Structure(cell, sg, sites, structure.title, structure.wavelength, structure.source)
    at_bound = (u <= U_MIN * 1.0001) | (u >= U_MAX * 0.9999)
    return RefinementResult(out, stats, fc, occ, order, done, converged, at_bound, time.perf_counter() - t0, history,
                            occ_esd)


def _jacobian(hkl, cell, sg, elements, xyz, u, occ, fc, ic, k, syms, n_free, refine_u, refine_occ) -> np.ndarray:
    """∂(k|Fc|²)/∂(k, free xyz, U, occupancy) (M, Npar): ∂|Fc|²/∂p = 2 Re(conj(Fc)·∂F_j/∂p)."""
    need = any(n_free)
    Fj, dX, dU = atom_structure_factors(hkl, cell, sg, elements, xyz, u, occ, derivatives=need)
    if refine_u and not need:
        # F_j carries its Uiso only in the factor exp(−8π² U s²): ∂F_j/∂U = −8π² s² F_j (s = sinθ/λ = 1/2d),
        # the same number autograd returns, from the primal alone (positions held: no Jacobian-vector products)
        s2 = torch.as_tensor(0.25 * cell.inv_d2(hkl), dtype=Fj.real.dtype)
        dU = -8.0 * np.pi**2 * s2[None, :] * Fj
    fcc = torch.conj(torch.as_tensor(fc).to(Fj.dtype))
    cols = [np.asarray(ic)[:, None]]
    gx = (2 * k) * (fcc[None, :, None] * dX).real.double().numpy() if need else None  # (N, M, 3)
    gu = (2 * k) * (fcc[None, :] * dU).real.double().numpy() if refine_u else None  # (N, M)
    go = (2 * k) * (fcc[None, :] * Fj).real.double().numpy() / np.asarray(occ)[:, None] if refine_occ else None
    for j, sym in enumerate(syms):
        if n_free[j]:
            cols.append(gx[j] @ sym.basis)
        if refine_u:
            cols.append(gu[j][:, None])
        if refine_occ:
            cols.append(go[j][:, None])  # F_j is linear in its occupancy
    return np.concatenate(cols, axis=1)


def damped_step(H: np.ndarray, grad: np.ndarray, lam: float, chi0: float, trial):
    """One Levenberg–Marquardt step search on the normal equations (H + λ·diag H) δ = grad.

    `trial(δ)` returns (χ² after the step, the new state). Up to 8 tries: a step that does not lower χ² raises λ
    ×4 (×10 when the damped matrix is not positive definite); an accepted one lowers it ÷3 (≥ 1e-7).
    Returns (state or None when no step was accepted, λ for the next cycle, relative χ² decrease).
    """
    diag = np.maximum(np.diag(H), 1e-30)
    for _ in range(8):
        step = _solve(H + lam * np.diag(diag), grad)
        if step is None:
            lam *= 10
            continue
        chi1, state = trial(step)
        if chi1 <= chi0:
            return state, max(lam / 3, 1e-7), (chi0 - chi1) / max(chi0, 1e-300)
        lam *= 4
    return None, lam, 0.0


def _solve(M: np.ndarray, b: np.ndarray) -> Optional[np.ndarray]:
    """M x = b by Cholesky in torch (one thread: numpy's LAPACK spun threads for 169×169 systems), None if
    M is not positive definite."""
    L, info = torch.linalg.cholesky_ex(torch.as_tensor(M))
    if int(info) != 0:
        return None
    return torch.cholesky_solve(torch.as_tensor(b)[:, None], L)[:, 0].numpy()


def _apply_step(step, k, xyz, u, occ, syms, n_free, refine_u, refine_occ, A):
    k1 = max(k + step[0], 1e-12 * k)
    x1, u1, o1 = xyz.copy(), u.copy(), occ.copy()
    i = 1
    for j, sym in enumerate(syms):
        if n_free[j]:
            dx = sym.basis @ step[i : i + n_free[j]]
            length = np.linalg.norm(A @ dx)
            if length > MAX_XYZ_SHIFT:
                dx *= MAX_XYZ_SHIFT / length
            x1[j] = xyz[j] + dx
            i += n_free[j]
        if refine_u:
            u1[j] = np.clip(u[j] + np.clip(step[i], -0.05, 0.05), U_MIN, U_MAX)
            i += 1
        if refine_occ:
            o1[j] = np.clip(occ[j] + np.clip(step[i], -0.5 * occ[j], 0.5 * occ[j]), 0.02 * occ[j], 20.0 * occ[j])
            i += 1
    return k1, x1, u1, o1
