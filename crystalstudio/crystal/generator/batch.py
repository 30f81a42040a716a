"""Batched artificial-structure generation: cells, contents, placement and structure factors.

A run is reproducible from (settings, seed, batch size, device). Structures are padded into slot
arrays; `occupancy` is chemical (1 for every placed atom) and the structure-factor kernel divides
special-position atoms by their site-symmetry order.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from ...errors import InvalidInputError
from ...jobs import check_cancel, report
from ..cell import UnitCell, cell_volume
from ..elements import covalent_radius
from ..structure import Site, Structure
from ..structure_factors import ScatteringTable, separable_allowed, structure_factors_batched
from ..symmetry import SpaceGroup
from .cells import sample_cells
from .elements_table import ElementTable
from .placement import make_state, place_fixed, place_molecular, place_uniform
from .settings import GeneratorSettings


@dataclass
class StructureBatch:
    """B generated structures in one space group, padded to S atom slots."""

    space_group: SpaceGroup
    symbols: list[str]  # element index → symbol
    cells: np.ndarray  # (B, 6)
    xyz: np.ndarray  # (B, S, 3) fractional
    element: np.ndarray  # (B, S) index into symbols
    placed: np.ndarray  # (B, S) bool
    special: np.ndarray  # (B, S) bool: on a point special position
    site_order: np.ndarray  # (B, S) site-symmetry order (1 on general positions)
    u_iso: np.ndarray  # (B, S) Å²
    n_requested: np.ndarray  # (B,) atoms asked for (before drops)
    seed: int
    settings: GeneratorSettings

    def __len__(self) -> int:
        return len(self.cells)

    @property
    def n_atoms(self) -> np.ndarray:
        return self.placed.sum(axis=1)

    @property
    def volumes(self) -> np.ndarray:
        return cell_volume(self.cells)

    def structure(self, i: int) -> Structure:
        cell = UnitCell(*self.cells[i])
        sites = []
        counts: dict[str, int] = {}
        for j in np.flatnonzero(self.placed[i]):
            el = self.symbols[self.element[i, j]]
            counts[el] = counts.get(el, 0) + 1
            sites.append(Site(f"{el}{counts[el]}", el, self.xyz[i, j], 1.0, float(self.u_iso[i, j])))
        return Structure(cell, self.space_group, sites, title=f"generated seed {self.seed} #{i}")

    def scattering_table(self) -> ScatteringTable:
        return ScatteringTable(self.symbols)

    def structure_factors(self, hkl, *, d_min: Optional[float] = None, device=None, dtype=torch.float32,
                          rows: Optional[np.ndarray] = None, chunk: int = 64,
                          form_factor_grid: Optional[int] = 4096) -> torch.Tensor:
        """Complex F (B, M) at Miller indices (M, 3); reflections with d < d_min are set to 0.

        Atoms are compacted to the front of each row and rows are processed in chunks of similar
        atom count, so padding costs little.
        """
        sel = np.arange(len(self)) if rows is None else np.asarray(rows)
        hkl = np.asarray(hkl)
        table = self.scattering_table()
        placed = self.placed[sel]
        front = np.argsort(~placed, axis=1, kind="stable")
        take = lambda a: np.take_along_axis(a[sel], front, axis=1)
        xyz = np.take_along_axis(self.xyz[sel], front[..., None], axis=1)
        element, u_iso, order_ = take(self.element), take(self.u_iso), take(self.site_order)
        occ = np.where(take(self.placed), 1.0 / order_, 0.0)
        counts = placed.sum(axis=1)
        cells = self.cells[sel]
        inside = None if d_min is None else _inv_d2(cells, hkl) <= 1.0 / d_min**2
        # chunks of similar volume: similar atom counts and similar sets of reflections inside d_min
        # the separable kernel works on the whole index box (chunks of similar atom count); the direct one
        # only on reflections inside d_min (chunks of similar volume share most of them)
        separable = separable_allowed(self.space_group, torch.as_tensor(cells))
        by_size = np.argsort(counts, kind="stable") if separable else np.lexsort((counts, cell_volume(cells)))
        out = None
        for start in range(0, len(sel), chunk):
            ix = by_size[start : start + chunk]
            n = max(int(counts[ix].max()), 1)
            cols = np.arange(len(hkl)) if (inside is None or separable) else np.flatnonzero(inside[ix].any(axis=0))
            if out is None:
                cdt = torch.complex64 if dtype == torch.float32 else torch.complex128
                out = torch.zeros((len(sel), len(hkl)), dtype=cdt, device=device or "cpu")
            if len(cols) == 0:
                continue
            F = structure_factors_batched(hkl[cols], cells[ix], xyz[ix, :n], element[ix, :n], occ[ix, :n],
                                          u_iso[ix, :n], self.space_group, table.coefficients, device=device,
                                          dtype=dtype, form_factor_grid=form_factor_grid)
            if inside is not None:
                F = F * torch.as_tensor(inside[np.ix_(ix, cols)], device=F.device)
            out[np.ix_(ix, cols)] = F
        return out


def _inv_d2(cells: np.ndarray, hkl: np.ndarray) -> np.ndarray:
    """1/d² (B, M) for cells (B, 6) and shared hkl (M, 3)."""
    from ..cell import orthogonalization_matrix

    Binv = np.linalg.inv(orthogonalization_matrix(cells))  # rows of A⁻¹ are a*, b*, c*
    G = Binv @ Binv.transpose(0, 2, 1)  # reciprocal metric tensors (B, 3, 3), Å⁻²
    h = np.asarray(hkl, dtype=np.float64)
    q = np.stack([h[:, 0] ** 2, h[:, 1] ** 2, h[:, 2] ** 2, 2 * h[:, 0] * h[:, 1], 2 * h[:, 0] * h[:, 2],
                  2 * h[:, 1] * h[:, 2]], axis=1)  # (M, 6): hᵀG*h as one matrix product
    g = np.stack([G[:, 0, 0], G[:, 1, 1], G[:, 2, 2], G[:, 0, 1], G[:, 0, 2], G[:, 1, 2]], axis=1)
    return g @ q.T


def _counts(V, n_ops, special_share, c, rng):
    """Non-H atoms on general positions and H atoms per structure (asymmetric-unit counts)."""
    v_atom = rng.uniform(*c.volume_per_atom, len(V))
    n_asym = np.clip(np.rint(V / (n_ops * v_atom)), 1, c.max_atoms_asu).astype(np.int64)
    n_general = np.maximum(n_asym - np.floor(special_share + 0.5).astype(np.int64), 1)
    heavy_total = n_general + special_share
    if c.include_hydrogen:
        x_h = rng.uniform(*c.hydrogen_fraction, len(V))
        n_h = np.rint(heavy_total * x_h / (1 - x_h)).astype(np.int64)
    else:
        n_h = np.zeros(len(V), dtype=np.int64)
    return n_general, n_h


def generate_batch(n: int, settings: Optional[GeneratorSettings] = None, seed: int = 0, *, device=None,
                   chunk: int = 512, progress=None, cancel=None) -> StructureBatch:
    """Generate `n` structures. Work is done in chunks of similar atom count (less padding)."""
    s = settings or GeneratorSettings()
    c, mol = s.content, s.molecule
    if c.mode not in ("uniform", "molecules"):
        raise InvalidInputError(f"unknown generation mode '{c.mode}'")
    sg = SpaceGroup.from_name(s.space_group)
    rng = np.random.default_rng(seed)
    device = torch.device(device) if device is not None else torch.device("cpu")
    dtype = torch.float32  # distances to ~1e-6 Å: ample for placement
    general = ElementTable.resolve(c.general_table, "general")
    special_tab = ElementTable.resolve(c.special_table, "special")
    symbols = list(dict.fromkeys(general.symbols + special_tab.symbols + ["H"]))
    sym_index = {e: i for i, e in enumerate(symbols)}
    radii = np.array([covalent_radius(e) for e in symbols])

    # ---- cells and counts (numpy, cheap)
    xhm = sg.name
    cells = sample_cells(n, s.cell, sg.crystal_system, rng, rhombohedral_axes=xhm.endswith(":R"))
    V = cell_volume(cells)
    points = sg.special_points()
    n_ops = sg.n_operations
    occ_special = rng.random((n, len(points))) < c.special_probability if points else np.zeros((n, 0), bool)
    special_share = (occ_special * np.array([p.multiplicity for p in points])[None, :] / n_ops).sum(axis=1) \
        if points else np.zeros(n)
    n_gen, n_h = _counts(V, n_ops, special_share, c, rng)
    el_special = rng.choice([sym_index[e] for e in special_tab.symbols], size=(n, len(points)), p=special_tab.probabilities)
    u_struct = rng.uniform(*c.u_iso, n)

    P = len(points)
    n_total = P + n_gen + n_h
    # chunks of similar atom count and the same set of thin cell directions (less padding, fewer
    # lattice offsets to test)
    from ..cell import orthogonalization_matrix

    Amat = orthogonalization_matrix(cells)
    widths = np.stack([V / np.linalg.norm(np.cross(Amat[:, :, j], Amat[:, :, k]), axis=-1)
                       for j, k in ((1, 2), (2, 0), (0, 1))], axis=1)
    S_all = int(P + (n_gen + n_h).max())
    xyz = np.zeros((n, S_all, 3))
    element = np.zeros((n, S_all), dtype=np.int64)
    placed = np.zeros((n, S_all), dtype=bool)
    special = np.zeros((n, S_all), dtype=bool)
    site_order = np.ones((n, S_all), dtype=np.int64)
    u_iso = np.zeros((n, S_all))
    gen = torch.Generator(device=device)
    gen.manual_seed(int(rng.integers(0, 2**62)))
    d_thr = c.d_min if c.mode == "uniform" else \
        min(mol.nonbonded_cap, max(mol.nonbonded_floor, mol.nonbonded_factor * 2 * radii.max()))
    thin = (widths < 2 * d_thr) @ np.array([1, 2, 4])
    order = np.lexsort((n_gen + n_h, thin))
    done = 0
    for start in range(0, n, chunk):
        check_cancel(cancel)
        idx = order[start : start + chunk]
        b = len(idx)
        ng, nh = n_gen[idx], n_h[idx]
        S = int(P + (ng + nh).max())
        st = make_state(cells[idx], sg, S, d_thr, device, dtype)
        # element per slot: specials, general heavy atoms, then hydrogens
        el = np.zeros((b, S), dtype=np.int64)
        el[:, :P] = el_special[idx]
        heavy_draw = rng.choice([sym_index[e] for e in general.symbols], size=(b, S), p=general.probabilities)
        slot_ix = np.arange(S)[None, :]
        is_heavy = (slot_ix >= P) & (slot_ix < P + ng[:, None])
        is_h = (slot_ix >= P + ng[:, None]) & (slot_ix < P + ng[:, None] + nh[:, None])
        el = np.where(is_heavy, heavy_draw, el)
        el = np.where(is_h, sym_index["H"], el)
        st.element[:] = torch.as_tensor(el, device=device)
        st.radius[:] = torch.as_tensor(radii[el], device=device, dtype=dtype)
        all_rows = torch.arange(b, device=device)
        # special positions first (fixed coordinates; dropped if they break the distance rules)
        for k, p in enumerate(points):
            rows = torch.as_tensor(np.flatnonzero(occ_special[idx, k]), device=device)
            place_fixed(st, k, rows, p.representative, c.mode, c.d_min, mol)
        heavy_mask = torch.zeros((b, S), dtype=torch.bool, device=device)
        heavy_mask[:, :P] = True
        for slot in range(P, S):
            check_cancel(cancel)  # per atom slot: a cancelled export stops within a fraction of a second
            active = (slot < torch.as_tensor(P + ng + nh, device=device))
            rows = all_rows[active]
            if rows.numel() == 0:
                continue
            if c.mode == "uniform":
                place_uniform(st, slot, rows, c.d_min, c.tries, gen)
            else:
                hydrogen = torch.as_tensor(is_h[:, slot], device=device)[rows]
                pending = rows
                pending_h = hydrogen
                for attempt in range(mol.elements_per_atom):
                    if pending.numel() == 0:
                        break
                    if attempt == 0:
                        elem = st.element[pending, slot]
                    else:  # another element (hydrogens stay hydrogens)
                        redraw = torch.as_tensor(rng.choice([sym_index[e] for e in general.symbols],
                                                            size=pending.numel(), p=general.probabilities),
                                                 device=device)
                        elem = torch.where(pending_h, torch.full_like(redraw, sym_index["H"]), redraw)
                    r_new = torch.as_tensor(radii, dtype=dtype, device=device)[elem]
                    anchors = st.placed[pending] & (heavy_mask[pending] | ~pending_h[:, None])
                    anchors[:, slot:] = False
                    got = place_molecular(st, slot, pending, elem, r_new, anchors, mol, gen)
                    keep = ~torch.isin(pending, got)
                    pending, pending_h = pending[keep], pending_h[keep]
            heavy_mask[:, slot] = torch.as_tensor(~is_h[:, slot], device=device)
        xyz[idx, :S] = st.xyz.cpu().numpy()
        element[idx, :S] = st.element.cpu().numpy()
        placed[idx, :S] = st.placed.cpu().numpy()
        special[idx, :P] = placed[idx, :P]
        for k, p in enumerate(points):
            site_order[idx, k] = p.site_symmetry_order
        done += b
        report(progress, done / n, f"{done}/{n} structures")
    u_iso = np.clip(u_struct[:, None] + rng.uniform(-c.u_iso_deviation, c.u_iso_deviation, (n, S_all)), 1e-3, None)
    u_iso = np.where(placed, u_iso, 0.0)
    return StructureBatch(sg, symbols, cells, xyz, element, placed, special, site_order, u_iso, n_total, seed, s)


def time_generation(n: int, settings: Optional[GeneratorSettings] = None, seed: int = 0, **kw) -> tuple[StructureBatch, float]:
    t0 = time.perf_counter()
    batch = generate_batch(n, settings, seed, **kw)
    return batch, time.perf_counter() - t0
