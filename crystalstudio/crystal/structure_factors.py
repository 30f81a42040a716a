"""Structure factors, batched over structures and reflections in torch (CPU or CUDA).

F(h) = Σⱼ occⱼ fⱼ(s) T_j(h) Σ_ops exp(2πi h·(R xⱼ + t)), with s = sinθ/λ = 1/(2d),
isotropic T = exp(−8π² U s²) = exp(−2π² U/d²) and anisotropic T = exp(−2π² h'ᵀ N U N h') for the
rotated index h' = Rᵀh (CIF Uij, N = diag(a*, b*, c*)). Occupancies passed to the batched kernel are
crystallographic (divided by the site-symmetry order), so special positions are not double counted.
Phases follow exp(+2πi h·x) (the SHELX/gemmi sign).
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch

from .elements import form_factor_coefficients, normalize_symbol
from .symmetry import SpaceGroup

TWO_PI = 2.0 * np.pi


class ScatteringTable:
    """Element symbols ↔ type indices and their IT92 coefficients (T, 9)."""

    def __init__(self, symbols: Sequence[str]):
        seen: dict[str, int] = {}
        for s in symbols:
            seen.setdefault(normalize_symbol(s), len(seen))
        self.symbols = list(seen)
        self.index = seen
        self.coefficients = np.array([form_factor_coefficients(s) for s in self.symbols]).reshape(-1, 9)

    def indices(self, elements: Sequence[str]) -> np.ndarray:
        return np.array([self.index[normalize_symbol(e)] for e in elements], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.symbols)


def reciprocal_metric_tensors(cells: torch.Tensor) -> torch.Tensor:
    """G* (B, 3, 3) in Å⁻² from cell parameters (B, 6) (Å, degrees)."""
    a, b, c = cells[:, 0], cells[:, 1], cells[:, 2]
    al, be, ga = (torch.deg2rad(cells[:, i]) for i in (3, 4, 5))
    ca, cb, cg = torch.cos(al), torch.cos(be), torch.cos(ga)
    G = torch.stack(
        [
            torch.stack([a * a, a * b * cg, a * c * cb], -1),
            torch.stack([a * b * cg, b * b, b * c * ca], -1),
            torch.stack([a * c * cb, b * c * ca, c * c], -1),
        ],
        -2,
    )
    return torch.linalg.inv(G)


def _op_tensors(sg: SpaceGroup, device, dtype):
    """Operations to sum explicitly, whether the sum is real (2·Σcos), and centring vectors."""
    R, t = sg.sym_rotations, sg.sym_translations
    real = sg.inversion_at_origin
    if real:
        keep = np.linalg.det(R) > 0
        R, t = R[keep], t[keep]
    return (
        torch.as_tensor(R, dtype=dtype, device=device),
        torch.as_tensor(t, dtype=dtype, device=device),
        real,
        torch.as_tensor(sg.centring_vectors, dtype=dtype, device=device),
    )


def structure_factors_batched(
    hkl,
    cells,
    xyz,
    types,
    occupancy,
    u_iso,
    space_group: SpaceGroup,
    coefficients,
    u_aniso=None,
    *,
    device=None,
    dtype=torch.float32,
    max_elements: int = 1 << 24,
    form_factor_grid: Optional[int] = None,
) -> torch.Tensor:
    """Complex structure factors (B, M).

    hkl: (M, 3) shared or (B, M, 3) per structure, integers.
    cells: (B, 6) Å/deg. xyz: (B, N, 3) fractional. types: (B, N) indices into `coefficients` (T, 9).
    occupancy: (B, N) crystallographic occupancies (0 for padding). u_iso: (B, N) Å².
    u_aniso: optional (B, N, 6) CIF Uij; where given it replaces u_iso.
    form_factor_grid: if given, f(s) is interpolated linearly from that many samples in (sinθ/λ)²
    (error ~1e-4 electrons with 4096 samples; for training data), else evaluated exactly.
    """
    device = torch.device(device) if device is not None else torch.device("cpu")
    as_t = lambda x, dt=dtype: torch.as_tensor(np.asarray(x) if not torch.is_tensor(x) else x, device=device).to(dt)
    cells = as_t(cells)
    xyz = as_t(xyz)
    B, N = xyz.shape[:2]
    hkl = as_t(hkl)
    shared = hkl.dim() == 2
    M = hkl.shape[-2]
    types = as_t(types, torch.long)
    occ = as_t(occupancy)
    uiso = as_t(u_iso)
    coef = as_t(coefficients)
    uan = as_t(u_aniso) if u_aniso is not None else None
    if uan is None and separable_allowed(space_group, cells):
        if shared:
            box = _box_plan(hkl)
            if box is not None:
                return _structure_factors_separable(hkl, box, cells, xyz, types, occ, uiso, space_group, coef,
                                                    dtype, max_elements)
        else:  # per-structure lists: one box per group of structures, then pick each list from it
            return _separable_per_structure(hkl, cells, xyz, types, occ, uiso, space_group, coef, dtype, max_elements)
    R, t, real, cen = _op_tensors(space_group, device, dtype)
    cdtype = torch.complex64 if dtype == torch.float32 else torch.complex128

    out = torch.zeros((B, M), dtype=cdtype, device=device)
    per_struct = max(1, N * M * 4)
    chunk = max(1, min(B, max_elements // per_struct))
    Gs = reciprocal_metric_tensors(cells)
    n_star = torch.sqrt(torch.diagonal(Gs, dim1=-2, dim2=-1))  # (B, 3) a*, b*, c*
    for b0 in range(0, B, chunk):
        sl = slice(b0, min(B, b0 + chunk))
        h = hkl if shared else hkl[sl]
        hb = h.unsqueeze(0).expand(sl.stop - sl.start, M, 3) if shared else h
        stol2 = 0.25 * torch.einsum("bmi,bij,bmj->bm", hb, Gs[sl], hb)  # (b, M)
        # form factors only for the element types present in this chunk: (b, M, T') gathered per atom
        tt = types[sl]
        present, local = torch.unique(tt, return_inverse=True)
        cf = coef[present]
        if form_factor_grid:
            top = float(stol2.max()) * 1.0001 + 1e-6
            grid = torch.linspace(0.0, top, form_factor_grid, device=device, dtype=dtype)
            table = (cf[:, None, :4] * torch.exp(-cf[:, None, 4:8] * grid[None, :, None])).sum(-1) + cf[:, 8:9]
            pos = stol2 * ((form_factor_grid - 1) / top)  # (b, M)
            i0 = pos.floor().long().clamp(max=form_factor_grid - 2)
            frac = (pos - i0)[:, None, :]
            flat = local[:, :, None] * form_factor_grid + i0[:, None, :]  # (b, N, M)
            tab = table.reshape(-1)
            fatom = tab[flat] * (1 - frac) + tab[flat + 1] * frac
        else:
            ff = (cf[:, :4] * torch.exp(-cf[None, None, :, 4:8] * stol2[..., None, None])).sum(-1) + cf[:, 8]
            idx = local.unsqueeze(1).expand(-1, M, -1)  # (b, M, N)
            fatom = torch.gather(ff, 2, idx).transpose(1, 2)  # (b, N, M)
        w = occ[sl, :, None] * fatom
        x = torch.remainder(xyz[sl], 1.0)
        if uan is None:
            w = w * torch.exp(-8.0 * np.pi**2 * uiso[sl, :, None] * stol2[:, None, :])
        else:
            beta = 2.0 * np.pi**2 * _u6_to_matrix(uan[sl]) * (n_star[sl, None, :, None] * n_star[sl, None, None, :])
        acc_r = torch.zeros_like(w)
        acc_i = None if real else torch.zeros_like(w)
        for k in range(len(R)):
            hr = hb @ R[k]  # rows: (Rᵀh)ᵀ = hᵀR
            arg = TWO_PI * (torch.einsum("bnj,bmj->bnm", x, hr) + (hb @ t[k])[:, None, :])
            if uan is None:
                acc_r += torch.cos(arg)
                if acc_i is not None:
                    acc_i += torch.sin(arg)
            else:
                dw = torch.exp(-torch.einsum("bmi,bnij,bmj->bnm", hr, beta, hr))
                acc_r += dw * torch.cos(arg)
                if acc_i is not None:
                    acc_i += dw * torch.sin(arg)
        if real:
            F = torch.complex(2.0 * torch.sum(w * acc_r, dim=1), torch.zeros((sl.stop - sl.start, M), dtype=dtype, device=device))
        else:
            F = torch.complex(torch.sum(w * acc_r, dim=1), torch.sum(w * acc_i, dim=1))
        if len(cen) > 1:
            ph = TWO_PI * (hb @ cen.T)  # (b, M, C)
            F = F * torch.complex(torch.cos(ph).sum(-1), torch.sin(ph).sum(-1))
        out[sl] = F
    return out


def separable_allowed(space_group: SpaceGroup, cells: torch.Tensor) -> bool:
    """Diagonal rotation parts (b-unique monoclinic, orthorhombic settings) and α = γ = 90°."""
    R = space_group.sym_rotations
    diag = np.all(R == np.einsum("nii->ni", R)[:, :, None] * np.eye(3, dtype=R.dtype), axis=(1, 2))
    if not np.all(diag):
        return False
    ang = cells[:, 3:].detach().cpu().numpy()
    return bool(np.all(np.abs(ang[:, [0, 2]] - 90.0) < 1e-9))


def _separable_per_structure(hkl, cells, xyz, types, occ, uiso, sg, coef, dtype, max_elements, group: int = 32):
    """Per-structure lists (B, M, 3): structures with similar atom counts and index boxes are grouped, each
    group is computed on the box around its lists with its atoms moved to the front (empty slots, occupancy 0,
    left out), and every list is picked from its group's box."""
    B, M = hkl.shape[:2]
    cdtype = torch.complex64 if dtype == torch.float32 else torch.complex128
    out = torch.empty((B, M), dtype=cdtype, device=hkl.device)
    h_all = hkl.long()
    ext = torch.cat([h_all.min(dim=1).values, h_all.max(dim=1).values], dim=1).cpu().numpy()  # (B, 6)
    size = ext[:, 3:] - ext[:, :3] + 1
    filled = occ != 0
    n_atoms = filled.sum(dim=1).cpu().numpy()
    order = np.lexsort((size[:, 0], size[:, 2], size[:, 1], n_atoms))  # atom count, then k, l, h extent
    order = torch.as_tensor(order, device=hkl.device)
    for b0 in range(0, B, group):
        ix = order[b0 : b0 + group]
        h = h_all[ix]
        lo = h.reshape(-1, 3).min(dim=0).values
        nh, nk, nl = (h.reshape(-1, 3).max(dim=0).values - lo + 1).tolist()
        r = [torch.arange(n, device=hkl.device) for n in (nh, nk, nl)]
        box_hkl = torch.stack(torch.meshgrid(r[0] + lo[0], r[1] + lo[1], r[2] + lo[2], indexing="ij"), -1).reshape(-1, 3)
        front = torch.argsort((~filled[ix]).to(torch.int8), dim=1, stable=True)[:, : max(1, int(n_atoms[ix.cpu()].max()))]
        take = lambda a: torch.gather(a[ix], 1, front)
        x = torch.gather(xyz[ix], 1, front[..., None].expand(-1, -1, 3))
        Fb = _structure_factors_separable(box_hkl.to(dtype), (lo, (nh, nk, nl)), cells[ix], x, take(types), take(occ),
                                          take(uiso), sg, coef, dtype, max_elements)
        rel = h - lo
        idx = (rel[..., 0] * nk + rel[..., 1]) * nl + rel[..., 2]
        out[ix] = torch.gather(Fb, 1, idx)
    return out


def _box_plan(hkl: torch.Tensor):
    """Index ranges of the box around a shared reflection list, if the box is not much larger."""
    h = hkl.long()
    lo, hi = h.min(dim=0).values, h.max(dim=0).values
    size = (hi - lo + 1).tolist()
    if size[0] * size[1] * size[2] > 4 * len(h) + 64:
        return None
    return lo, size


def _structure_factors_separable(hkl, box, cells, xyz, types, occ, uiso, sg: SpaceGroup, coef, dtype, max_elements):
    """Exact F on a box of indices for groups with diagonal rotations and b ⊥ (a, c).

    Each atom's f(s)·exp(−8π²U s²) is a sum of five Gaussians in s², and with b ⊥ a, c every
    Gaussian factorises into an (h, l) part and a k part. For a diagonal R, exp(2πi h·(Rx + t)) =
    exp(2πi h·t)·X^{r1}[h] Y^{r2}[k] Z^{r3}[l] with X[h] = exp(2πi h x) and X^{−1} = conj X, so
    the phase of t leaves the atom sum and every operation reuses four real matrix products
    (h, l) × k over atoms × Gaussians instead of a transcendental per atom and reflection.
    """
    device = cells.device
    lo, (nh, nk, nl) = box
    B, N = xyz.shape[:2]
    hr = torch.arange(nh, device=device, dtype=dtype) + lo[0]
    kr = torch.arange(nk, device=device, dtype=dtype) + lo[1]
    lr = torch.arange(nl, device=device, dtype=dtype) + lo[2]
    Gs = reciprocal_metric_tensors(cells)
    Rm, tm = sg.sym_rotations, sg.sym_translations
    real = sg.inversion_at_origin
    if real:
        keep = np.linalg.det(Rm) > 0
        Rm, tm = Rm[keep], tm[keep]
    rdiag = np.einsum("nii->ni", Rm)
    cdtype = torch.complex64 if dtype == torch.float32 else torch.complex128
    # per-operation phase exp(2πi h·t) on the box, laid out (n, nk, nh·nl): k outer, (h, l) inner
    # only the (h, l) pairs some listed reflection uses (a sphere's list uses about π/4 of its box's pairs)
    hk = hkl.long() - lo
    keep, inv = torch.unique(hk[:, 0] * nl + hk[:, 2], sorted=True, return_inverse=True)
    HL = len(keep)
    tt = torch.as_tensor(tm, dtype=dtype, device=device)
    op_phase = TWO_PI * (tt[:, 1, None, None] * kr[None, :, None]
                         + (tt[:, 0, None, None] * hr[None, :, None] + tt[:, 2, None, None] * lr[None, None, :])
                         .reshape(len(tm), 1, nh * nl)[:, :, keep])  # (n, nk, HL)
    op_phase = torch.polar(torch.ones_like(op_phase), op_phase)
    amp = torch.cat([coef[:, :4], coef[:, 8:9]], dim=1)
    expo = torch.cat([coef[:, 4:8], torch.zeros_like(coef[:, :1])], dim=1)
    out = torch.empty((B, len(hkl)), dtype=cdtype, device=device)
    flat_index = hk[:, 1] * HL + inv  # position in (k, used (h, l) pair) order
    families = sorted({int(r[0] == r[2]) for r in rdiag})  # 1: X·Z, 0: X·conj(Z)
    # centrosymmetric with translations in halves: every exp(2πi h·t) is ±1 and F is real
    real_phases = real and bool(np.all(np.abs(2 * tm - np.round(2 * tm)) < 1e-9))
    chunk = max(1, min(B, max_elements // max(1, N * 5 * nh * nl * 4)))
    for b0 in range(0, B, chunk):
        sl = slice(b0, min(B, b0 + chunk))
        b = sl.stop - sl.start
        G = Gs[sl]
        p_hl = 0.25 * (G[:, 0, 0, None, None] * hr[:, None] ** 2 + 2 * G[:, 0, 2, None, None] * hr[:, None] * lr[None, :]
                       + G[:, 2, 2, None, None] * lr[None, :] ** 2).reshape(b, nh * nl)[:, keep]  # (b, HL): stol²
        p_k = 0.25 * G[:, 1, 1, None] * kr[None, :] ** 2  # (b, nk)
        beta = expo[types[sl]] + 8.0 * np.pi**2 * uiso[sl, :, None]  # (b, N, 5)
        weight = amp[types[sl]] * occ[sl, :, None]
        x = torch.remainder(xyz[sl], 1.0)
        ah, ak, al = TWO_PI * x[..., 0, None] * hr, TWO_PI * x[..., 1, None] * kr, TWO_PI * x[..., 2, None] * lr
        # every array below keeps the long (h, l) axis innermost, so the broadcasts run as long vector loops
        Xc, Xs = torch.cos(ah)[..., None], torch.sin(ah)[..., None]  # (b, N, nh, 1)
        Zc, Zs = torch.cos(al)[:, :, None, :], torch.sin(al)[:, :, None, :]  # (b, N, 1, nl)
        w_hl = torch.exp(-beta[..., None] * p_hl[:, None, None, :])  # (b, N, 5, HL): the (h, l) Gaussians
        e_k = torch.exp(-beta[..., None] * p_k[:, None, None, :]) * weight[..., None]  # (b, N, 5, nk)
        ck_r = (e_k * torch.cos(ak)[:, :, None]).reshape(b, N * 5, nk).transpose(1, 2)  # (b, nk, N·5)
        ck_i = (e_k * torch.sin(ak)[:, :, None]).reshape(b, N * 5, nk).transpose(1, 2)
        parts = {}
        for fam in families:
            sgn = 1.0 if fam else -1.0  # X·Z or X·conj(Z)
            re = (Xc * Zc - sgn * (Xs * Zs)).reshape(b, N, nh * nl)[:, :, keep].reshape(b, N, 1, HL)
            im = (sgn * (Xc * Zs) + Xs * Zc).reshape(b, N, nh * nl)[:, :, keep].reshape(b, N, 1, HL)
            a_r, a_i = (re * w_hl).reshape(b, N * 5, HL), (im * w_hl).reshape(b, N * 5, HL)
            if real_phases:  # only Re(A·C) = ar·cr − ai·ci is needed: half the products
                parts[fam] = (torch.bmm(ck_r, a_r), torch.bmm(ck_i, a_i))  # (b, nk, HL) each
            else:
                ck = torch.cat([ck_r, ck_i], dim=1)  # [cr; ci] × [ar, ai] in one product
                M = torch.bmm(ck, torch.cat([a_r, a_i], dim=2))  # (b, 2nk, 2HL)
                parts[fam] = (M[:, :nk, :HL], M[:, nk:, :HL], M[:, :nk, HL:], M[:, nk:, HL:])
        # per operation: X^{±1}·Y^{±1} of the (h, l) and k factors; a negative r1 conjugates the (h, l) part,
        # a negative r2 the k part, so Re = RR ∓ II and Im = ±RI ± IR
        F = torch.zeros((b, nk, HL), dtype=dtype if real_phases else cdtype, device=device)
        for k, r in enumerate(rdiag):
            conj_hl, conj_k = bool(r[0] < 0), bool(r[1] < 0)
            P = parts[int(r[0] == r[2])]  # (RR, II) or (RR, RI, IR, II)
            re = P[0] + P[-1] if conj_hl != conj_k else P[0] - P[-1]
            if real_phases:
                F += op_phase[k].real * re
            else:
                RI, IR = P[1], P[2]
                im = (-RI if conj_k else RI) + (-IR if conj_hl else IR)
                F += op_phase[k] * torch.complex(re, im)
        if real:
            F = torch.complex(2.0 * (F if real_phases else F.real), torch.zeros((b, nk, HL), dtype=dtype, device=device))
        F = F.reshape(b, -1)[:, flat_index]
        cen = sg.centring_vectors
        if len(cen) > 1:
            ph = TWO_PI * (hkl.to(dtype) @ torch.as_tensor(cen, dtype=dtype, device=device).T)
            F = F * torch.complex(torch.cos(ph).sum(-1), torch.sin(ph).sum(-1))
        out[sl] = F
    return out


def _u6_to_matrix(u6: torch.Tensor) -> torch.Tensor:
    u11, u22, u33, u12, u13, u23 = u6.unbind(-1)
    return torch.stack(
        [torch.stack([u11, u12, u13], -1), torch.stack([u12, u22, u23], -1), torch.stack([u13, u23, u33], -1)], -2
    )


def structure_factors(structure, hkl, *, dtype=torch.float64, device=None) -> np.ndarray:
    """Complex F (M,) of one :class:`~crystalstudio.crystal.structure.Structure` at Miller indices (M, 3)."""
    table = ScatteringTable(structure.elements)
    hkl = np.asarray(hkl, dtype=np.int64).reshape(-1, 3)
    if structure.n_sites == 0 or len(hkl) == 0:
        return np.zeros(len(hkl), dtype=np.complex128)
    u6 = structure.u_aniso
    F = structure_factors_batched(
        hkl,
        structure.cell.parameters[None],
        structure.xyz[None],
        table.indices(structure.elements)[None],
        structure.crystallographic_occupancies()[None],
        structure.u_iso[None],
        structure.space_group,
        table.coefficients,
        u_aniso=None if u6 is None else u6[None],
        device=device,
        dtype=dtype,
    )
    return F[0].cpu().numpy()


def scale_factor(f_obs, f_calc) -> float:
    """Least-squares k minimising Σ (Fo − k|Fc|)²."""
    fc = np.abs(np.asarray(f_calc))
    return float(np.sum(np.asarray(f_obs) * fc) / max(np.sum(fc * fc), 1e-300))


def r1_factor(f_obs, f_calc, scale: Optional[float] = None) -> float:
    """R1 = Σ|Fo − k|Fc|| / Σ Fo with the least-squares scale k unless given."""
    fo = np.asarray(f_obs, dtype=np.float64)
    fc = np.abs(np.asarray(f_calc))
    k = scale_factor(fo, fc) if scale is None else scale
    return float(np.sum(np.abs(fo - k * fc)) / np.sum(fo))
