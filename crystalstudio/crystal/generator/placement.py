"""Atom placement for many structures at once (torch, CPU or CUDA).

Every distance test includes all symmetry mates and periodic images of the atoms already placed.
Tries are drawn in rounds and the first acceptable one is kept, which has the same distribution
as trying them one after another.

Distances: a fractional difference is wrapped into [−½, ½); an image at lattice offset n then lies
at least (|nᵢ| − ½)·wᵢ away along the normal of face i (wᵢ = cell width). So when the largest
threshold t is below wᵢ/2 the wrapped image is the only one that can matter along i. Otherwise, while
t < wᵢ, only the neighbour on the far side, offset −sign(dᵢ) at ≥ (1 − |dᵢ|)·wᵢ, can come closer (the one
on the near side lies ≥ (1 + |dᵢ|)·wᵢ > t away), so two images per thin direction are tested; for
t ≥ wᵢ offsets −m … m with (m + ½)·wᵢ > t are tested. Every image closer than its threshold is tested,
not only the nearest. The neighbour list of a bonding anchor is built the same way with the anchor's
reach (bond + non-bonded cap) as the threshold, so it holds the translate nearest to any candidate.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ...errors import InvalidInputError
from ..cell import orthogonalization_matrix


@dataclass
class PlacementState:
    """Atoms of B structures in slots (B, S): fractional xyz, element index, radius, placed flag."""

    A: torch.Tensor  # (B, 3, 3) fractional → Cartesian
    A_inv: torch.Tensor
    R: torch.Tensor  # (n, 3, 3) all operations
    t: torch.Tensor  # (n, 3)
    G: torch.Tensor  # (B, 3, 3) metric tensor AᵀA (Å²)
    oblique: tuple  # oblique[i][j]: some structure has a nonzero G_ij (i ≠ j)
    widths: tuple  # (3,) smallest cell width (Å) along each face normal over the structures
    max_threshold: float  # Å: the largest distance threshold of the placement rules
    xyz: torch.Tensor  # (B, S, 3)
    element: torch.Tensor  # (B, S) long
    radius: torch.Tensor  # (B, S)
    placed: torch.Tensor  # (B, S) bool
    images: torch.Tensor  # (B, S·n, 3) fractional, wrapped to [0, 1)
    self_ops: torch.Tensor  # operations whose images of a candidate can lie within max_threshold (see below)
    plans: dict = field(default_factory=dict)  # threshold → per-direction offset tensors (image_fractions)

    @property
    def n_ops(self) -> int:
        return self.R.shape[0]

    def image_valid(self, rows, K) -> torch.Tensor:
        return self.placed[rows, : K // self.n_ops].repeat_interleave(self.n_ops, dim=1)

    def image_radius(self, rows, K) -> torch.Tensor:
        return self.radius[rows, : K // self.n_ops].repeat_interleave(self.n_ops, dim=1)

    def place(self, rows: torch.Tensor, slot: int, xyz: torch.Tensor) -> None:
        """Put atoms at `xyz` (len(rows), 3) into `slot` of structures `rows`."""
        if rows.numel() == 0:
            return
        x = torch.remainder(xyz, 1.0)
        self.xyz[rows, slot] = x
        self.placed[rows, slot] = True
        n = self.n_ops
        self.images[rows, slot * n : (slot + 1) * n] = torch.remainder(torch.einsum("nij,bj->bni", self.R, x) + self.t, 1.0)


def make_state(cells: np.ndarray, space_group, n_slots: int, max_threshold: float, device, dtype) -> PlacementState:
    B = len(cells)
    A = torch.as_tensor(orthogonalization_matrix(cells), dtype=dtype, device=device)
    R = torch.as_tensor(space_group.rotations, dtype=dtype, device=device)
    t = torch.as_tensor(space_group.translations, dtype=dtype, device=device)
    V = torch.abs(torch.linalg.det(A))
    G = A.transpose(1, 2) @ A
    widths = torch.stack([V / torch.linalg.norm(torch.cross(A[:, :, j], A[:, :, k], dim=-1), dim=-1)
                          for j, k in ((1, 2), (2, 0), (0, 1))], dim=1)
    if bool((1.5 * widths <= max_threshold).any()):
        raise InvalidInputError(f"cells thinner than {max_threshold / 1.5:.2f} Å cannot hold the distance "
                                f"threshold {max_threshold:.2f} Å; raise a_min")
    n = R.shape[0]
    # a candidate's image under the identity is itself, and its lattice translates lie ≥ the smallest width
    # away: the identity is tested only when some width is within the largest threshold
    identity = (R == torch.eye(3, dtype=dtype, device=device)).flatten(1).all(1) & (t == 0).all(1)
    thin = bool((widths <= max_threshold).any())
    self_ops = torch.arange(n, device=device) if thin else torch.nonzero(~identity).flatten()
    return PlacementState(
        A=A, A_inv=torch.linalg.inv(A), R=R, t=t, G=G,
        oblique=tuple(tuple(bool((G[:, i, j].abs() > 1e-12).any()) for j in range(3)) for i in range(3)),
        widths=tuple(float(w) for w in widths.min(dim=0).values),
        max_threshold=float(max_threshold),
        xyz=torch.zeros((B, n_slots, 3), dtype=dtype, device=device),
        element=torch.zeros((B, n_slots), dtype=torch.long, device=device),
        radius=torch.zeros((B, n_slots), dtype=dtype, device=device),
        placed=torch.zeros((B, n_slots), dtype=torch.bool, device=device),
        images=torch.zeros((B, n_slots * n, 3), dtype=dtype, device=device),
        self_ops=self_ops,
    )


def _to_cartesian(A: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """A·d for upper-triangular A (b, 3, 3) and fractional d (b, …, 3), elementwise (faster than bmm)."""
    shape = (A.shape[0],) + (1,) * (d.dim() - 2)
    a = lambda i, j: A[:, i, j].reshape(shape)
    d0, d1, d2 = d.unbind(-1)
    return torch.stack([a(0, 0) * d0 + a(0, 1) * d1 + a(0, 2) * d2, a(1, 1) * d1 + a(1, 2) * d2, a(2, 2) * d2], -1)


def _offset_plan(widths, t: float):
    """Lattice offsets to test for threshold t (Å) given the smallest widths along the face normals, per
    direction i: fixed integer offsets Fᵢ (Cᵢ,) and far-side flags Gᵢ (Cᵢ,); image component
    dᵢ + Fᵢ + Gᵢ·(−sign dᵢ). The images are all combinations (c0, c1, c2), the first without offset."""
    plan = []
    for w in widths:
        if t < 0.5 * w:
            opts = [(0, 0)]
        elif t < w:  # only the far-side neighbour −sign(dᵢ) can come closer than t
            opts = [(0, 0), (0, 1)]
        else:  # offsets −m … m with (m + ½)·w > t
            m = int(np.floor(t / w + 0.5))
            opts = [(0, 0)] + [(j, 0) for j in range(-m, m + 1) if j != 0]
        plan.append((np.array([o[0] for o in opts], dtype=np.float64), np.array([o[1] for o in opts], dtype=np.float64)))
    return plan


def image_fractions(state: PlacementState, d: torch.Tensor, threshold: float | None = None):
    """Fractional components of every lattice image of wrapped fractional differences d (b, …, K, 3) in
    [−½, ½) that can lie within `threshold` Å (default: the state's largest threshold), one direction at a
    time: fᵢ has shape (b, …, Cᵢ, K). The images are all combinations (c0, c1, c2) — C = C0·C1·C2 of them,
    c = (c0·C1 + c1)·C2 + c2, image c = 0 the wrapped one. The K differences stay the innermost axis, so the
    sums over combinations run as long vector loops. See the module notes for which offsets are needed."""
    t = state.max_threshold if threshold is None else threshold
    plan = state.plans.get(t)
    if plan is None:
        as_t = lambda a: torch.as_tensor(a, dtype=d.dtype, device=d.device)[:, None] if a.any() else None
        plan = state.plans[t] = [(as_t(F), as_t(G)) for F, G in _offset_plan(state.widths, t)]
    out = []
    for di, (F, G) in zip(d.unbind(-1), plan):
        x = di[..., None, :]
        if F is not None:
            x = x + F
        if G is not None:
            x = x - torch.sign(di)[..., None, :] * G
        out.append(x)
    return tuple(out)


def metric_sq(state: PlacementState, rows, f) -> torch.Tensor:
    """|A·f|² (Å²) through the metric tensor AᵀA for the images given per direction by f = (f0, f1, f2),
    fᵢ (b, …, Cᵢ, K) as from :func:`image_fractions`; returns (b, …, C, K). Each direction's terms are
    formed on its own offsets; only the sums run over all C = C0·C1·C2 combinations."""
    G = state.G[rows]
    lead, K = f[0].shape[:-2], f[0].shape[-1]
    shape = (G.shape[0],) + (1,) * (len(lead) - 1)
    g = lambda i, j: G[:, i, j].reshape(shape + (1, 1, 1, 1))
    f0, f1, f2 = f[0][..., :, None, None, :], f[1][..., None, :, None, :], f[2][..., None, None, :, :]
    sq = g(0, 0) * f0 * f0 + g(1, 1) * f1 * f1 + g(2, 2) * f2 * f2
    for (i, j), fi, fj in (((0, 1), f0, f1), ((0, 2), f0, f2), ((1, 2), f1, f2)):
        if state.oblique[i][j]:
            sq = sq + 2 * g(i, j) * fi * fj
    return sq.reshape(lead + (f[0].shape[-2] * f[1].shape[-2] * f[2].shape[-2], K))


def _sq_distances(state: PlacementState, rows, diff_frac: torch.Tensor) -> torch.Tensor:
    """Squared distances (b, T, C, K) for fractional differences (b, T, K, 3) over the tested images."""
    return metric_sq(state, rows, image_fractions(state, diff_frac - torch.round(diff_frac)))


def pair_sq_distances(state: PlacementState, rows, cand: torch.Tensor, K: int) -> torch.Tensor:
    """(b, T, C, K) squared distances from candidates (b, T, 3) to the first K images of `rows` (C lattice
    offsets each)."""
    return _sq_distances(state, rows, cand[:, :, None, :] - state.images[rows, None, :K, :])


def self_sq_distances(state: PlacementState, rows, cand: torch.Tensor) -> torch.Tensor:
    """(b, T, C, n') squared distances from candidates to their own images under the operations that can
    bring one within the largest threshold (`state.self_ops`: all but the identity unless a cell is thin).

    Entries of (numerically) zero length are the candidate itself and are set to +inf.
    """
    ops = state.self_ops
    imgs = torch.einsum("nij,btj->btni", state.R[ops], cand) + state.t[ops]
    sq = _sq_distances(state, rows, imgs - cand[:, :, None, :])
    return torch.where(sq < 1e-8, torch.full_like(sq, float("inf")), sq)


def first_true(ok: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(any, index of the first True) along the last axis."""
    return ok.any(dim=-1), torch.argmax(ok.to(torch.uint8), dim=-1)


def _rounds(total: int, per_round: int):
    done = 0
    while done < total:
        k = min(per_round, total - done)
        yield k
        done += k


def min_distance_ok(state, rows, cand, K, d_min) -> torch.Tensor:
    """(b, T): every image of placed atoms and of the candidate itself at ≥ d_min."""
    d2 = d_min * d_min
    ok = (self_sq_distances(state, rows, cand) >= d2).flatten(2).all(-1)
    if K > 0:
        sq = pair_sq_distances(state, rows, cand, K)
        valid = state.image_valid(rows, K)[:, None, None, :]
        ok &= ((sq >= d2) | ~valid).flatten(2).all(-1)
    return ok


def place_uniform(state: PlacementState, slot: int, rows: torch.Tensor, d_min: float, tries: int,
                  gen: torch.Generator, per_round: int = 3) -> torch.Tensor:
    """Uniform random position with every distance ≥ d_min; returns the rows that got an atom."""
    placed_rows = []
    pending = rows
    K = slot * state.n_ops
    for T in _rounds(tries, per_round):
        if pending.numel() == 0:
            break
        cand = torch.rand((pending.numel(), T, 3), generator=gen, device=state.xyz.device, dtype=state.xyz.dtype)
        any_ok, idx = first_true(min_distance_ok(state, pending, cand, K, d_min))
        good = pending[any_ok]
        state.place(good, slot, cand[any_ok, idx[any_ok]])
        placed_rows.append(good)
        pending = pending[~any_ok]
    return torch.cat(placed_rows) if placed_rows else rows[:0]


def bond_windows(r_new, r_other, mol, valid=None):
    """Squared distance windows (lo, hi, nb), each (b, K), of the bonded-or-far rule for new atoms of radius
    r_new (b,) against atoms of radius r_other (b, K): bonded when lo ≤ d² ≤ hi, far when d² ≥ nb. Where
    `valid` (b, K) is False the window covers every distance (no atom there)."""
    rsum = r_new[:, None] + r_other
    lo, hi = ((1 - mol.bond_window) * rsum) ** 2, ((1 + mol.bond_window) * rsum) ** 2
    nb = torch.clamp(mol.nonbonded_factor * rsum, min=mol.nonbonded_floor, max=mol.nonbonded_cap) ** 2
    if valid is not None:
        lo = torch.where(valid, lo, torch.full_like(lo, -float("inf")))
        hi = torch.where(valid, hi, torch.full_like(hi, float("inf")))
    return lo, hi, nb


def bond_rule_ok(sq, r_new, r_other, mol) -> torch.Tensor:
    """sq (b, T, C, K), r_new (b,), r_other (b, K): bonded (|d − ΣR| ≤ w·ΣR) or ≥ the non-bonded minimum."""
    lo, hi, nb = (x[:, None, None, :] for x in bond_windows(r_new, r_other, mol))
    return ((sq >= lo) & (sq <= hi)) | (sq >= nb)


def molecular_ok(state, rows, cand, K, r_new, mol) -> torch.Tensor:
    """(b, T): the bonded-or-far rule against every placed image and the candidate's own images."""
    ssq = self_sq_distances(state, rows, cand)
    ok = bond_rule_ok(ssq, r_new, r_new[:, None].expand(-1, ssq.shape[3]), mol).flatten(2).all(-1)
    if K > 0:
        sq = pair_sq_distances(state, rows, cand, K)
        rule = bond_rule_ok(sq, r_new, state.image_radius(rows, K), mol)
        valid = state.image_valid(rows, K)[:, None, None, :]
        ok &= (rule | ~valid).flatten(2).all(-1)
    return ok


def place_molecular(state: PlacementState, slot: int, rows: torch.Tensor, element: torch.Tensor,
                    r_new: torch.Tensor, anchor_mask: torch.Tensor, mol, gen: torch.Generator,
                    per_round: int = 5) -> torch.Tensor:
    """Bond a new atom (element/radius per row) to a random placed anchor (anchor_mask (b, S)).

    The candidate sits on a uniformly sampled sphere point (normalised Gaussian vector, Muller 1959)
    at a bond length (R_A + R_i)(1 ± jitter); it is accepted when every other atom image is bonded
    to it (within the window) or beyond the non-bonded minimum, its own images included. Rows
    without any anchor get a random position under the same rule. Returns the rows that got an atom.

    Only images within (longest bond + non-bonded cap) of the anchor can break the rule, so they are
    gathered once per anchor and the tries are tested against that short list.
    """
    if rows.numel() == 0:
        return rows
    dev, dt = state.xyz.device, state.xyz.dtype
    has_anchor = anchor_mask.any(dim=1)
    out = []
    free = rows[~has_anchor]
    if free.numel():
        out.append(_place_random_molecular(state, slot, free, element[~has_anchor], r_new[~has_anchor], mol, gen))
    rows, element, r_new, anchor_mask = rows[has_anchor], element[has_anchor], r_new[has_anchor], anchor_mask[has_anchor]
    if rows.numel() == 0:
        return torch.cat(out)
    anchor = torch.multinomial(anchor_mask.to(dt), 1, generator=gen).squeeze(1)
    ax = state.xyz[rows, anchor]
    A = state.A[rows]
    ax_cart = torch.einsum("bij,bj->bi", A, ax)
    ra = state.radius[rows, anchor]
    K = slot * state.n_ops
    # neighbour list of the anchor: anchor-relative Cartesian vectors of nearby images (b, M, 3)
    d = state.images[rows, :K] - ax[:, None, :]
    d = d - torch.round(d)
    # every image within reach of the anchor, whichever lattice translate is nearest to the candidate
    reach = (ra + r_new) * (1 + mol.bond_jitter) + mol.nonbonded_cap
    f = image_fractions(state, d, float(reach.max()) if len(reach) else 0.0)  # fᵢ (b, Cᵢ, K)
    C0, C1, C2 = (x.shape[1] for x in f)
    sq = metric_sq(state, rows, f).reshape(len(rows), C0, C1, C2, K)
    near = state.image_valid(rows, K)[:, None, None, None, :] & (sq < (reach**2)[:, None, None, None, None])
    # compact the near images to the front of each row (order does not matter: all are tested)
    count = near.flatten(1).sum(dim=1)
    M = max(int(count.max()), 1)
    r_i, c0, c1, c2, k_i = near.nonzero(as_tuple=True)  # row-major: each row's entries are consecutive
    slot_i = torch.arange(len(r_i), device=dev) - (torch.cumsum(count, 0) - count)[r_i]
    frac = torch.zeros((len(rows), M, 3), dtype=dt, device=dev)
    frac[r_i, slot_i] = torch.stack([f[0][r_i, c0, k_i], f[1][r_i, c1, k_i], f[2][r_i, c2, k_i]], dim=-1)
    nb_v = _to_cartesian(A, frac)  # (b, M, 3)
    nb_sq = (nb_v * nb_v).sum(-1)
    nb_valid = torch.arange(M, device=dev)[None, :] < count[:, None]
    nb_r = torch.zeros((len(rows), M), dtype=dt, device=dev)
    nb_r[r_i, slot_i] = state.radius[rows[r_i], torch.div(k_i, state.n_ops, rounding_mode="floor")]
    # windows of the rule per neighbour, and per row against the candidate's own images (same element)
    lo, hi, nb = bond_windows(r_new, nb_r, mol, nb_valid)
    own = bond_windows(r_new, r_new[:, None], mol)
    pending = torch.arange(rows.numel(), device=dev)
    for T in _rounds(mol.tries_per_anchor, per_round):
        if pending.numel() == 0:
            break
        b = pending.numel()
        bond = (ra[pending] + r_new[pending])[:, None] * (
            1 + mol.bond_jitter * (2 * torch.rand((b, T), generator=gen, device=dev, dtype=dt) - 1))
        u = torch.randn((b, T, 3), generator=gen, device=dev, dtype=dt)
        rel = bond[..., None] * u / torch.linalg.norm(u, dim=-1, keepdim=True)  # (b, T, 3)
        nv = nb_v[pending]  # |r − n|² = |r|² + |n|² − 2 r·n, one batched product instead of (b, T, M, 3)
        dsq = ((rel * rel).sum(-1)[:, :, None] + nb_sq[pending, None, :]
               - 2 * torch.bmm(rel, nv.transpose(1, 2)))  # (b, T, M)
        lo_p, hi_p, nb_p = lo[pending, None, :], hi[pending, None, :], nb[pending, None, :]
        ok = (((dsq >= lo_p) & (dsq <= hi_p)) | (dsq >= nb_p)).all(-1)
        cand = torch.einsum("bij,btj->bti", state.A_inv[rows[pending]], ax_cart[pending, None, :] + rel)
        ssq = self_sq_distances(state, rows[pending], cand).flatten(2)  # (b, T, C·n')
        lo_s, hi_s, nb_s = (x[pending, :, None] for x in own)
        ok &= (((ssq >= lo_s) & (ssq <= hi_s)) | (ssq >= nb_s)).all(-1)
        any_ok, idx = first_true(ok)
        good = pending[any_ok]
        state.element[rows[good], slot] = element[good]
        state.radius[rows[good], slot] = r_new[good]
        state.place(rows[good], slot, cand[any_ok, idx[any_ok]])
        out.append(rows[good])
        pending = pending[~any_ok]
    return torch.cat(out) if out else rows[:0]


def _place_random_molecular(state, slot, rows, element, r_new, mol, gen, per_round: int = 5):
    """A first atom: random position under the bonded-or-far rule (special-position atoms may exist)."""
    dev, dt = state.xyz.device, state.xyz.dtype
    K = slot * state.n_ops
    out = []
    pending = torch.arange(rows.numel(), device=dev)
    for T in _rounds(mol.tries_per_anchor, per_round):
        if pending.numel() == 0:
            break
        cand = torch.rand((pending.numel(), T, 3), generator=gen, device=dev, dtype=dt)
        any_ok, idx = first_true(molecular_ok(state, rows[pending], cand, K, r_new[pending], mol))
        good = pending[any_ok]
        state.element[rows[good], slot] = element[good]
        state.radius[rows[good], slot] = r_new[good]
        state.place(rows[good], slot, cand[any_ok, idx[any_ok]])
        out.append(rows[good])
        pending = pending[~any_ok]
    return torch.cat(out) if out else rows[:0]


def place_fixed(state: PlacementState, slot: int, rows: torch.Tensor, position, mode: str, d_min: float,
                mol=None) -> torch.Tensor:
    """Place atoms at a fixed fractional position (a special position) where the rules allow."""
    if rows.numel() == 0:
        return rows
    cand = torch.as_tensor(position, dtype=state.xyz.dtype, device=state.xyz.device).expand(rows.numel(), 1, 3)
    K = slot * state.n_ops
    if mode == "uniform":
        ok = min_distance_ok(state, rows, cand, K, d_min)[:, 0]
    else:
        ok = molecular_ok(state, rows, cand, K, state.radius[rows, slot], mol)[:, 0]
    good = rows[ok]
    state.place(good, slot, cand[ok, 0])
    return good
