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
) -> torch.Tensor:
    """Complex structure factors (B, M).

    hkl: (M, 3) shared or (B, M, 3) per structure, integers.
    cells: (B, 6) Å/deg. xyz: (B, N, 3) fractional. types: (B, N) indices into `coefficients` (T, 9).
    occupancy: (B, N) crystallographic occupancies (0 for padding). u_iso: (B, N) Å².
    u_aniso: optional (B, N, 6) CIF Uij; where given it replaces u_iso.
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
    R, t, real, cen = _op_tensors(space_group, device, dtype)
    cdtype = torch.complex64 if dtype == torch.float32 else torch.complex128

    out = torch.zeros((B, M), dtype=cdtype, device=device)
    per_struct = max(1, N * M * max(1, len(coef)))
    chunk = max(1, min(B, max_elements // per_struct))
    Gs = reciprocal_metric_tensors(cells)
    n_star = torch.sqrt(torch.diagonal(Gs, dim1=-2, dim2=-1))  # (B, 3) a*, b*, c*
    for b0 in range(0, B, chunk):
        sl = slice(b0, min(B, b0 + chunk))
        h = hkl if shared else hkl[sl]
        hb = h.unsqueeze(0).expand(sl.stop - sl.start, M, 3) if shared else h
        stol2 = 0.25 * torch.einsum("bmi,bij,bmj->bm", hb, Gs[sl], hb)  # (b, M)
        # form factors per type then gathered per atom: (b, N, M)
        ff = torch.einsum("tk,bmtk->bmt", coef[:, :4], torch.exp(-coef[None, None, :, 4:8] * stol2[..., None, None]))
        ff = ff + coef[:, 8]
        idx = types[sl].unsqueeze(1).expand(-1, M, -1)  # (b, M, N)
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
