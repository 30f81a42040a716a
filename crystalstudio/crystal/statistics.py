"""Distributions of real and generated structures: cell volume, lengths, length ratios, β,
interatomic distances, volume per non-H atom, H fraction and element shares (general vs special
positions); log-normal fit of the volume; distances between distributions. (Reading a folder of CIFs and
writing PNG overlays: crystalstudio.io.structure_statistics.)

Volumes in Å³, lengths and distances in Å, angles in degrees.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Optional

import numpy as np
from scipy import stats as sps
from scipy.spatial import cKDTree

from ..jobs import check_cancel, report
from .structure import Structure

QUANTITIES = {
    "volume": "cell volume (Å³)",
    "length": "cell lengths (Å)",
    "ratio": "length ratios a2/a1, a3/a2",
    "beta": "monoclinic β (°)",
    "nn_distance": "nearest-neighbour distance (Å)",
    "volume_per_atom": "volume per non-H atom (Å³)",
    "h_fraction": "H mole fraction",
}


@dataclass
class StructureStatistics:
    """Per-structure and per-atom samples of each quantity, plus element counts."""

    samples: dict[str, np.ndarray]
    general_elements: dict[str, float] = field(default_factory=dict)
    special_elements: dict[str, float] = field(default_factory=dict)
    n_structures: int = 0
    skipped: list[str] = field(default_factory=list)  # 'file: reason' for unreadable inputs

    def element_shares(self, which: str = "general") -> dict[str, float]:
        table = self.general_elements if which == "general" else self.special_elements
        tot = sum(table.values())
        return {k: v / tot for k, v in sorted(table.items(), key=lambda kv: -kv[1])} if tot else {}

    def lognormal_volume_fit(self) -> tuple[float, float]:
        """Maximum-likelihood (μ, σ) of ln V."""
        lv = np.log(self.samples["volume"])
        return float(np.mean(lv)), float(np.std(lv, ddof=1) if len(lv) > 1 else 0.0)


def nearest_neighbour_distances(structure: Structure, include_h: bool = True, cutoff: float = 6.0) -> np.ndarray:
    """Distance (Å) from each asymmetric-unit atom to its nearest other atom (symmetry mates and
    periodic images included)."""
    p1 = structure.expand_to_p1()
    sites = [s for s in p1.sites if include_h or s.element != "H"]
    asu = [s for s in structure.sites if include_h or s.element != "H"]
    if len(sites) < 1 or not asu:
        return np.zeros(0)
    A = structure.cell.orthogonalization
    frac = np.array([s.xyz for s in sites])
    shifts = np.array([[i, j, k] for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1)])
    cart = ((frac[None] + shifts[:, None]).reshape(-1, 3)) @ A.T
    tree = cKDTree(cart)
    q = np.array([s.xyz % 1.0 for s in asu]) @ A.T
    d, _ = tree.query(q, k=2, distance_upper_bound=cutoff)
    nn = d[:, 1]
    return nn[np.isfinite(nn)]


def pair_distances(structure: Structure, r_max: float = 4.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All distances < r_max (Å) from asymmetric-unit atoms to every other atom image.

    Returns (distance, index of the ASU atom, element symbol of the partner) — each pair once per
    ASU atom.
    """
    p1 = structure.expand_to_p1()
    A = structure.cell.orthogonalization
    frac = np.array([s.xyz for s in p1.sites])
    els = np.array([s.element for s in p1.sites])
    n = int(np.ceil(r_max / min(structure.cell.parameters[:3]))) + 1
    rng = range(-n, n + 1)
    shifts = np.array([[i, j, k] for i in rng for j in rng for k in rng])
    cart = ((frac[None] + shifts[:, None]).reshape(-1, 3)) @ A.T
    partner_el = np.tile(els, len(shifts))
    tree = cKDTree(cart)
    q = np.array([s.xyz % 1.0 for s in structure.sites]) @ A.T
    out_d, out_i, out_e = [], [], []
    for i, neigh in enumerate(tree.query_ball_point(q, r_max)):
        d = np.linalg.norm(cart[neigh] - q[i], axis=1)
        keep = d > 1e-6
        out_d.append(d[keep])
        out_i.append(np.full(int(keep.sum()), i))
        out_e.append(partner_el[np.asarray(neigh, dtype=int)[keep]])
    if not out_d:
        return np.zeros(0), np.zeros(0, int), np.zeros(0, dtype="<U2")
    return np.concatenate(out_d), np.concatenate(out_i), np.concatenate(out_e)


def statistics_of(structures: Iterable[Structure], progress=None, cancel=None, total: Optional[int] = None,
                  max_nn_structures: Optional[int] = None) -> StructureStatistics:
    """Collect the distributions of a set of structures."""
    keys = ("volume", "length", "ratio", "beta", "nn_distance", "volume_per_atom", "h_fraction")
    acc: dict[str, list] = {k: [] for k in keys}
    gen_el: dict[str, float] = {}
    spec_el: dict[str, float] = {}
    n = 0
    for st in structures:
        check_cancel(cancel)
        cell = st.cell
        acc["volume"].append([cell.volume])
        L = np.sort(cell.parameters[:3])
        acc["length"].append(L)
        acc["ratio"].append([L[1] / L[0], L[2] / L[1]])
        if st.space_group.crystal_system == "monoclinic":
            acc["beta"].append([max(a for a in cell.parameters[3:])])
        comp = st.composition()
        heavy = sum(v for k, v in comp.items() if k != "H")
        hyd = comp.get("H", 0.0)
        if heavy > 0:
            acc["volume_per_atom"].append([cell.volume / heavy])
            acc["h_fraction"].append([hyd / (hyd + heavy)])
        if max_nn_structures is None or n < max_nn_structures:
            acc["nn_distance"].append(nearest_neighbour_distances(st, include_h=False))
        orders = st.site_symmetry_orders() if st.sites else []
        for s, o in zip(st.sites, orders):
            if s.element == "H":
                continue
            table = spec_el if o > 1 else gen_el
            table[s.element] = table.get(s.element, 0.0) + s.occupancy
        n += 1
        if total:
            report(progress, n / total, f"{n}/{total} structures")
    samples = {k: (np.concatenate([np.ravel(x) for x in v]) if v else np.zeros(0)) for k, v in acc.items()}
    return StructureStatistics(samples, gen_el, spec_el, n)


def statistics_of_batch(batch, max_structures: int = 2000) -> StructureStatistics:
    """Statistics of a generated :class:`~crystalstudio.crystal.generator.StructureBatch`."""
    n = min(len(batch), max_structures)
    return statistics_of((batch.structure(i) for i in range(n)), total=n, max_nn_structures=500)


def distribution_distance(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """Two-sample Kolmogorov–Smirnov statistic (and p) and the Wasserstein-1 distance."""
    a, b = np.asarray(a), np.asarray(b)
    if len(a) < 2 or len(b) < 2:
        return {"ks": float("nan"), "p": float("nan"), "wasserstein": float("nan")}
    ks = sps.ks_2samp(a, b)
    return {"ks": float(ks.statistic), "p": float(ks.pvalue), "wasserstein": float(sps.wasserstein_distance(a, b))}


def compare_statistics(real: StructureStatistics, generated: StructureStatistics) -> dict[str, dict[str, float]]:
    return {k: distribution_distance(real.samples[k], generated.samples[k]) for k in QUANTITIES}
