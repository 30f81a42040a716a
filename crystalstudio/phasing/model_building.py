"""From phases to a labelled, refined model: peaks → atoms → elements, with a few rounds of
refine → electron count per site → re-assign → difference map → add/remove.

Elements come from the electrons each site scatters: after refining x y z and Uiso, a refinement of one
scattering-power factor per atom (its occupancy, with the overall scale held) gives occupancy × Z, an
estimate of the site's electrons that separates C/N/O on good data (tested on the real pairs in
../shared/data). With a cell content, the estimates are matched to the expected elements by a
minimum-cost assignment (log Z differences; each element gets the sites the composition allows, a few
more at a penalty). Without one, each site takes the nearest common element, and the notes say so.
Peaks that scatter like less than ~0.45 of the lightest expected atom, or sit closer than 0.6× the sum of
covalent radii (Cordero 2008) to a stronger atom, are removed; difference-map peaks at bonding distance
from the model are added while atoms are missing. Fractional coordinates, distances in Å, U in Å².
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Optional

import numpy as np
from scipy.optimize import linear_sum_assignment

from ..crystal.cell import UnitCell
from ..crystal.elements import atomic_number, covalent_radius
from ..crystal.maps import DensityMap, density_map, find_peaks
from ..crystal.structure import Site, Structure
from ..crystal.symmetry import SpaceGroup
from ..jobs import check_cancel, report
from .composition import Composition
from .anisotropic import MAX_ISOTROPIC_R1, anisotropic_allowed, refine_anisotropic
from .refinement import ObservedData, RefinementResult, RefinementStatistics, refine

# elements a site may become when no cell content is known (nearest Z wins)
COMMON_ELEMENTS = ("C", "N", "O", "F", "P", "S", "Cl", "K", "Ca", "Fe", "Cu", "Zn", "Br", "I")
VOLUME_PER_ATOM = 18.0  # Å³ per non-H atom of organic crystals, for a first guess of the atom count
U_SPURIOUS = 0.15  # Å²: a refined Uiso above this marks a peak that is not an atom
FORBIDDEN = 100.0  # assignment cost of an element whose cell count cannot fill the site's multiplicity


@dataclass
class ModelBuildingSettings:
    rounds: int = 4  # refine → re-assign → difference map rounds
    refine_cycles: int = 3  # LM cycles of scale, x y z, Uiso in the first round
    later_cycles: int = 2  # … and in the later rounds
    occupancy_cycles: int = 5  # then LM cycles of scattering factor + Uiso per atom (electrons per site)
    final_cycles: int = 5
    peak_factor: float = 1.3  # peaks searched: factor × expected atoms + 5
    min_peak_distance: float = 0.9  # Å between peaks kept
    min_z_fraction: float = 0.45  # sites scattering less than this × the lightest expected element are removed
    give_up_r1: float = 0.45  # R1 after the first round above which the phases are taken as wrong (saves time)
    difference_sigma: float = 3.0  # difference-map peaks below this (σ of the map) are never taken as atoms
    anisotropic: bool = True  # U_ij in the final cycles where the data allow (anisotropic.anisotropic_allowed)
    anisotropic_cycles: int = 6


@dataclass
class AtomRow:
    """One line of the atom table."""

    label: str
    element: str
    peak_height: float  # e/Å³ in the final Fo map (model phases, absolute scale)
    xyz: np.ndarray
    u_iso: float
    electrons: float  # estimated electrons at the site (occupancy × Z)
    electrons_esd: float  # its standard uncertainty from the least squares (nan where not refined)
    contact: float  # shortest distance to another atom (symmetry images included), Å
    contact_label: str


@dataclass
class StructureModel:
    structure: Structure  # labelled, refined (U_ij where the data allowed, else Uiso); chemical occupancies 1
    refinement: RefinementResult
    atoms: list[AtomRow]
    composition: Optional[Composition]
    expected_atoms: Optional[float]  # non-H atoms expected in the asymmetric unit
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    isotropic_statistics: Optional[RefinementStatistics] = None  # the last isotropic cycles, where U_ij followed

    @property
    def anisotropic(self) -> bool:
        return any(site.u_aniso is not None for site in self.structure.sites)

    @property
    def statistics(self):
        return self.refinement.statistics

    @property
    def n_atoms(self) -> int:
        return self.structure.n_sites

    def found_fraction(self) -> Optional[float]:
        """Atoms in the model (special positions counted by their share) / expected atoms."""
        if not self.expected_atoms:
            return None
        share = np.sum(1.0 / self.refinement.site_orders)
        return float(share / self.expected_atoms)


def expected_asu_atoms(composition: Optional[Composition], cell: UnitCell, space_group: SpaceGroup) -> float:
    """Non-H atoms expected in the asymmetric unit: from the cell content, else V / (18 Å³ · n_ops)."""
    if composition is not None and composition.n_non_hydrogen() > 0:
        return composition.n_non_hydrogen() / space_group.n_operations
    return cell.volume / (VOLUME_PER_ATOM * space_group.n_operations)


# ------------------------------------------------------------------------------------------ geometry
def _images(structure: Structure) -> tuple[np.ndarray, np.ndarray]:
    """All symmetry images (n_ops·N, 3) and the atom index of each."""
    x = structure.xyz
    img = structure.space_group.apply(x)  # (n_ops, N, 3)
    idx = np.broadcast_to(np.arange(len(x)), img.shape[:2])
    return img.reshape(-1, 3), idx.reshape(-1)


def distance_matrix(structure: Structure) -> np.ndarray:
    """(N, N) shortest distances between atoms i and any image of j (own images: j = i, identity excluded), Å."""
    N = structure.n_sites
    out = np.full((N, N), np.inf)
    if N == 0:
        return out
    img, idx = _images(structure)
    A = structure.cell.orthogonalization
    d = img[None, :, :] - structure.xyz[:, None, :]  # (N, n_ops·N, 3)
    d -= np.rint(d)
    dist = np.linalg.norm(d @ A.T, axis=-1)
    dist[dist < 1e-3] = np.inf  # the atom itself
    for j in range(N):
        out[:, j] = dist[:, idx == j].min(axis=1)
    return out


def contacts(structure: Structure, cutoff: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every contact from an atom of the asymmetric unit to any image of an atom (lattice translations
    included) shorter than `cutoff` Å: (i, j, d) arrays; an atom's contact with its own image counts."""
    N = structure.n_sites
    if N == 0:
        return np.zeros(0, int), np.zeros(0, int), np.zeros(0)
    img, idx = _images(structure)
    A = structure.cell.orthogonalization
    shifts = np.array(np.meshgrid([-1, 0, 1], [-1, 0, 1], [-1, 0, 1], indexing="ij")).reshape(3, -1).T
    I, J, D = [], [], []
    for i, x in enumerate(structure.xyz):
        d = img - x
        d -= np.rint(d)
        cart = (d[:, None, :] + shifts[None]) @ A.T  # (n_img, 27, 3)
        dist = np.linalg.norm(cart, axis=-1)
        # one image may sit on another (special positions): keep distinct positions only
        a, b = np.nonzero((dist < cutoff) & (dist > 1e-3))
        pos = np.round(cart[a, b], 3)
        _, first = np.unique(np.concatenate([idx[a][:, None], pos], axis=1), axis=0, return_index=True)
        I += [i] * len(first)
        J += list(idx[a][first])
        D += list(dist[a, b][first])
    return np.array(I, dtype=int), np.array(J, dtype=int), np.array(D)


def swap_by_geometry(elements: list[str], electrons: np.ndarray, structure: Structure, sigma_e: float = 0.08,
                     rounds: int = 2) -> list[str]:
    """Pairwise exchanges of elements (composition kept) that lower electron cost + bond-length cost.

    Electron cost Σ (ln e_i − ln Z_i)²/σ_e²; bond cost Σ over bonds ((d − r_i − r_j)/(0.2 (r_i + r_j)))², bonds
    being contacts shorter than min(1.3 (r_i + r_j), r_i + r_j + 0.5 Å) under the starting labels. Tells apart elements of similar Z
    by their coordination (Sn octahedrally bound to Cl at 2.8 Å, Cs 12-coordinated at 3.9 Å).
    """
    el = list(elements)
    n = len(el)
    if n < 2 or len(set(el)) < 2:
        return el
    lne = np.log(np.maximum(np.asarray(electrons, dtype=float), 1e-6))
    rad = {e: covalent_radius(e) for e in set(el)}
    lnz = {e: np.log(atomic_number(e)) for e in set(el)}
    r0 = np.array([rad[e] for e in el])
    I, J, D = contacts(structure, cutoff=2 * max(rad.values()) + 0.5)
    bond = D < np.minimum(1.3 * (r0[I] + r0[J]), r0[I] + r0[J] + 0.5)
    I, J, D = I[bond], J[bond], D[bond]

    def cost(lab):
        r = np.array([rad[e] for e in lab])
        rs = r[I] + r[J]
        ce = np.sum((lne - np.array([lnz[e] for e in lab])) ** 2) / sigma_e**2
        return ce + np.sum(((D - rs) / (0.2 * rs)) ** 2)

    best = cost(el)
    for _ in range(rounds):
        improved = False
        for i in range(n):
            for j in range(i + 1, n):
                # only exchanges the electron counts leave open (each site within 35 % of the other's element)
                if el[i] == el[j] or abs(lne[i] - lnz[el[j]]) > 0.3 or abs(lne[j] - lnz[el[i]]) > 0.3:
                    continue
                el[i], el[j] = el[j], el[i]
                c = cost(el)
                if c < best - 1e-9:
                    best, improved = c, True
                else:
                    el[i], el[j] = el[j], el[i]
        if not improved:
            break
    return el


def assemble(structure: Structure, tolerance: float = 0.45) -> Structure:
    """The same atoms moved by symmetry operations and lattice translations so that bonded atoms sit next to
    each other (connected molecules, as SHELXT writes them); each fragment's centre is then put in the cell.

    Starts from the heaviest atom and grows fragments breadth first: an unplaced atom joins at the image
    closest to a placed atom when that contact is a bond (r_i + r_j + tolerance)."""
    N = structure.n_sites
    if N < 2:
        return structure
    sg, A = structure.space_group, structure.cell.orthogonalization
    shifts = np.array(np.meshgrid([-1, 0, 1], [-1, 0, 1], [-1, 0, 1], indexing="ij")).reshape(3, -1).T
    img = sg.apply(structure.xyz % 1.0)  # (n_ops, N, 3)
    cand = (img[:, :, None, :] + shifts[None, None]).transpose(1, 0, 2, 3).reshape(N, -1, 3)  # (N, n_img, 3)
    r = np.array([covalent_radius(e) for e in structure.elements])
    pos = np.full((N, 3), np.nan)
    frag = np.full(N, -1)
    order = sorted(range(N), key=lambda i: -atomic_number(structure.elements[i]))
    n_frag = 0
    for seed in order:
        if frag[seed] >= 0:
            continue
        pos[seed], frag[seed] = structure.xyz[seed] % 1.0, n_frag
        queue = [seed]
        while queue:
            p = queue.pop(0)
            todo = np.flatnonzero(frag < 0)
            if not len(todo):
                break
            d = np.linalg.norm((cand[todo] - pos[p]) @ A.T, axis=-1)  # (n_todo, n_img)
            k = np.argmin(d, axis=1)
            dmin = d[np.arange(len(todo)), k]
            for j, kk, dd in zip(todo, k, dmin):
                if dd < r[j] + r[p] + tolerance:
                    pos[j], frag[j] = cand[j, kk], n_frag
                    queue.append(j)
        n_frag += 1
    for f in range(n_frag):  # each fragment's centre into the cell
        members = frag == f
        pos[members] -= np.floor(pos[members].mean(axis=0))
    sites = [replace(site, xyz=x) for site, x in zip(structure.sites, pos)]
    return replace(structure, sites=sites)


def bonded(dist: np.ndarray, elements, tolerance: float = 0.45) -> np.ndarray:
    """Bonds: d < max(r_i + r_j + tolerance, 1.2 (r_i + r_j)) (covalent radii, Å; the relative term lets the
    long contacts of large ions count, Cs–Cl 3.9 Å)."""
    r = np.array([covalent_radius(e) for e in elements])
    rs = r[:, None] + r[None, :]
    return dist < np.maximum(rs + tolerance, 1.2 * rs)


# ------------------------------------------------------------------------------------------ elements
def element_slots(composition: Composition, n_operations: int) -> list[tuple[str, int]]:
    """Asymmetric-unit sites each element may take: ⌈count/n_ops − 0.25⌉, at least 1."""
    out = []
    for e, c in composition.non_hydrogen.items():
        out.append((e, max(1, int(np.ceil(c / n_operations - 0.25)))))
    return out


def assign_elements(electrons: np.ndarray, composition: Optional[Composition], n_operations: int,
                    multiplicity: Optional[np.ndarray] = None, overflow_penalty: float = 0.12) -> tuple[list[str], float]:
    """Elements for sites with estimated electron counts (any common scale), and the scale that matched them.

    With a composition: the scale starts from the electron total (Σ electrons × multiplicity against the
    non-H electrons of the cell content), then alternates with a minimum-cost assignment of sites to the
    element slots (cost (ln sZ_est − ln Z)²; slots beyond the composition's share cost `overflow_penalty`
    more) and the median ratio of assigned to estimated electrons. Without: the nearest common element, with
    the scale that makes the median of the lighter 60 % of the sites carbon (6 electrons).
    `multiplicity`: atoms per cell of each site (n_ops / site-symmetry order; default n_ops).
    """
    z = np.maximum(np.asarray(electrons, dtype=np.float64), 1e-6)
    n = len(z)
    if n == 0:
        return [], 1.0
    if composition is None or not composition.non_hydrogen:
        # no cell content: the lighter 60 % of the sites taken as carbon-like (organic crystals), the rest by ratio
        scale = 6.0 / float(np.median(np.sort(z)[: max(1, int(np.ceil(0.6 * n)))]))
        return [min(COMMON_ELEMENTS, key=lambda e: abs(atomic_number(e) - scale * zz)) for zz in z], scale
    mult = np.full(n, float(n_operations)) if multiplicity is None else np.asarray(multiplicity, dtype=float)
    slots = element_slots(composition, n_operations)
    names, zs, pen = [], [], []
    for e, k in slots:
        for i in range(k + n):
            names.append(e)
            zs.append(atomic_number(e))
            pen.append(0.0 if i < k else overflow_penalty * (1 + 0.2 * (i - k)))
    zs, pen = np.log(np.array(zs, dtype=float)), np.array(pen)
    expected = sum(c * atomic_number(e) for e, c in composition.non_hydrogen.items())
    scale = expected / max(float(np.sum(z * mult)), 1e-12)
    # a site repeated more often in the cell than the element's atoms cannot be that element
    cap = np.array([composition.counts[e] for e in names])
    forbidden = mult[:, None] > cap[None, :] + 0.5
    choice = None
    for _ in range(6):
        cost = (np.log(scale * z)[:, None] - zs[None, :]) ** 2 + pen[None, :] + FORBIDDEN * forbidden
        rows, cols = linear_sum_assignment(cost)
        picked = cols[np.argsort(rows)]
        choice = [None if forbidden[i, c] else names[c] for i, c in enumerate(picked)]
        ok = np.array([c is not None for c in choice])
        if not ok.any():
            break
        target = np.array([atomic_number(e) for e in choice if e is not None], dtype=float)
        new = float(np.exp(np.median(np.log(target) - np.log(z[ok]))))
        if abs(new - scale) < 1e-3 * scale:
            break
        scale = new
    return choice, scale


def label_atoms(elements: list[str], order_key=None) -> list[str]:
    """C1, C2 …, N1 … in the given order (SHELX labels of at most 4 characters)."""
    counts: dict[str, int] = {}
    out = []
    for e in elements:
        counts[e] = counts.get(e, 0) + 1
        out.append(f"{e}{counts[e]}"[:4])
    return out


# ------------------------------------------------------------------------------------------ maps
def fo_map(data: ObservedData, fc: np.ndarray, scale: float, difference: bool = False) -> DensityMap:
    """Fo (or Fo − Fc) map with model phases on the absolute scale (e/Å³): Fo/√k."""
    ph = np.exp(1j * np.angle(fc))
    fo = data.fo / np.sqrt(scale)
    coef = (fo - np.abs(fc)) * ph if difference else fo * ph
    return density_map(data.cell, data.space_group, data.hkl, coef, d_min=data.d_min, sampling=3.0)


# ------------------------------------------------------------------------------------------ building
def _structure(cell, sg, elements, xyz, u, title="") -> Structure:
    sites = [Site(f"{e}{i + 1}", e, x, 1.0, float(uu)) for i, (e, x, uu) in enumerate(zip(elements, xyz, u))]
    return Structure(cell, sg, sites, title=title)


def build_model(data: ObservedData, hkl, amplitudes, phases, composition: Optional[Composition] = None, *,
                settings: Optional[ModelBuildingSettings] = None, title: str = "", wavelength: Optional[float] = None,
                progress=None, cancel=None) -> StructureModel:
    """A refined model from phases of the unique reflections `hkl` (with |F| `amplitudes`)."""
    s = settings or ModelBuildingSettings()
    t0 = time.perf_counter()
    cell, sg = data.cell, data.space_group
    n_ops = sg.n_operations
    notes: list[str] = []
    n_exp = expected_asu_atoms(composition, cell, sg)
    if composition is None:
        notes.append("no cell content known: elements from the electrons at each site alone (give --formula)")
    dmap = density_map(cell, sg, hkl, np.asarray(amplitudes) * np.exp(1j * np.asarray(phases)), d_min=data.d_min)
    max_peaks = int(np.ceil(s.peak_factor * n_exp)) + 5
    peaks = find_peaks(dmap, max_peaks=max_peaks, min_distance=s.min_peak_distance, threshold_sigma=1.0)
    if len(peaks) == 0:
        return _empty_model(Structure(cell, sg, [], title=title), data, composition, n_exp,
                            notes + ["the map has no peaks"], t0)
    # first guess: peaks (highest first) until their atoms per cell reach 1.15× the expected, elements from
    # the peak heights scaled to the cell content's electrons
    mult_all = n_ops / sg.site_symmetry_order(peaks.xyz, cell, tolerance=0.35)
    n_take = int(min(len(peaks), np.searchsorted(np.cumsum(mult_all), 1.15 * n_exp * n_ops) + 1))
    xyz = peaks.xyz[:n_take]
    elements, _ = assign_elements(np.maximum(peaks.height[:n_take], 1e-6), composition, n_ops, mult_all[:n_take])
    fits = np.array([e is not None for e in elements])
    xyz, elements = xyz[fits], [e for e in elements if e is not None]
    u = np.full(len(xyz), 0.03)
    lightest_z = min((atomic_number(e) for e in (composition.non_hydrogen if composition else ["C"])), default=6)
    res: Optional[RefinementResult] = None
    electrons = None
    for rnd in range(s.rounds):
        check_cancel(cancel)
        if len(xyz) == 0:
            break
        report(progress, rnd / (s.rounds + 1), f"model building: round {rnd + 1}, {len(xyz)} atoms")
        st = _structure(cell, sg, elements, xyz, u, title)
        res = refine(st, data, cycles=s.refine_cycles if rnd == 0 else s.later_cycles, tolerance=1e-3, cancel=cancel)
        xyz = res.structure.xyz
        u = res.structure.u_iso
        # electrons per site: scattering factor and Uiso refined together from a common Uiso (a Uiso adapted
        # to the current label would hand that label back), positions and scale held
        neutral = replace(res.structure, sites=[replace(site, u_iso=float(np.median(u))) for site in res.structure.sites])
        occ_fit = refine(neutral, data, cycles=s.occupancy_cycles, refine_xyz=False, refine_u=True,
                         refine_occupancy=True, refine_scale=False, scale=res.statistics.scale, tolerance=1e-3,
                         cancel=cancel)
        electrons = np.array([site.occupancy * atomic_number(site.element) for site in occ_fit.structure.sites])
        e_esd = _electron_esd(occ_fit)
        new_elements, zscale = assign_elements(electrons, composition, n_ops, n_ops / res.site_orders)
        electrons, e_esd = electrons * zscale, e_esd * zscale
        if composition is not None and all(e is not None for e in new_elements):
            new_elements = swap_by_geometry(new_elements, electrons, _structure(cell, sg, new_elements, xyz, u))
        # spurious sites: fit no element, too few electrons, U at its upper bound, or too close to a stronger site
        fits = np.array([e is not None for e in new_elements])
        new_elements = [e if e is not None else "C" for e in new_elements]
        keep = fits & (electrons >= s.min_z_fraction * lightest_z) & (u < U_SPURIOUS)
        dist = distance_matrix(_structure(cell, sg, new_elements, xyz, u))
        r = np.array([covalent_radius(e) for e in new_elements])
        clash = dist < 0.6 * (r[:, None] + r[None, :])
        for i in np.argsort(electrons):  # weakest first
            if keep[i] and np.any(clash[i] & keep & (electrons > electrons[i])):
                keep[i] = False
            elif keep[i] and clash[i, i]:
                keep[i] = False  # too close to its own image and not on the special position
        removed = int((~keep).sum())
        changed = int(np.sum((np.array(new_elements) != np.array(elements)) & keep))
        elements = [e for e, k in zip(new_elements, keep) if k]
        xyz, u, electrons, e_esd = xyz[keep], u[keep], electrons[keep], e_esd[keep]
        # missing atoms from the difference map, while the model holds fewer atoms per cell than expected
        added = 0
        in_cell = float(np.sum(n_ops / res.site_orders[keep])) if keep.any() else 0.0
        missing = n_exp * n_ops - in_cell
        if missing > 0.5 and len(xyz):
            fill = _lightest_major(composition)
            r_reach = max((covalent_radius(e) for e in composition.non_hydrogen), default=covalent_radius(fill)) \
                if composition is not None else covalent_radius(fill)
            added_xyz = _difference_peaks(data, res, xyz, elements, missing, fill, s.difference_sigma, r_reach)
            if len(added_xyz):
                elements += [fill] * len(added_xyz)
                xyz = np.concatenate([xyz, added_xyz])
                u = np.concatenate([u, np.full(len(added_xyz), float(np.median(u)) if len(u) else 0.03)])
                electrons = np.concatenate([electrons, np.full(len(added_xyz), float(atomic_number(fill)))])
                e_esd = np.concatenate([e_esd, np.full(len(added_xyz), np.nan)])
                added = len(added_xyz)
        notes_round = f"round {rnd + 1}: {len(xyz)} atoms, R1 {res.statistics.r1:.3f}; {removed} removed, {added} added, {changed} elements changed"
        notes.append(notes_round)
        if len(xyz) == 0:
            break
        if rnd == 0 and res.statistics.r1 > s.give_up_r1:
            notes.append(f"stopped: R1 {res.statistics.r1:.2f} after the first round — the phases do not hold a structure")
            break
        if removed == 0 and added == 0 and changed == 0 and rnd >= 1:
            break
    if len(xyz) == 0:
        return _empty_model(Structure(cell, sg, [], title=title), data, composition, n_exp,
                            notes + ["every peak was rejected"], t0)
    # final refinement; labels by element (heaviest first), then by electrons
    order = sorted(range(len(xyz)), key=lambda i: (-atomic_number(elements[i]), -electrons[i]))
    elements = [elements[i] for i in order]
    xyz, u, electrons, e_esd = xyz[order], u[order], electrons[order], e_esd[order]
    st = assemble(_structure(cell, sg, elements, xyz, u, title))
    labels = label_atoms(elements)
    for site, lab in zip(st.sites, labels):
        site.label = lab
    st.wavelength = wavelength
    report(progress, s.rounds / (s.rounds + 1), "model building: final refinement")
    res = refine(st, data, cycles=s.final_cycles, tolerance=1e-3, cancel=cancel)
    res, iso_stats = _anisotropic_cycles(res, data, notes, s.anisotropic_cycles if s.anisotropic else 0, cancel)
    atoms = atom_table(res, data, electrons, e_esd)
    report(progress, 1.0, f"model: {len(atoms)} atoms, R1 {res.statistics.r1:.3f}")
    return StructureModel(res.structure, res, atoms, composition, n_exp if composition is not None else None, notes,
                          time.perf_counter() - t0, iso_stats)


def _anisotropic_cycles(res: RefinementResult, data: ObservedData, notes: list, cycles: int, cancel=None):
    """U_ij for every atom when the data allow (≥ 10 reflections per parameter at 9 per atom), the isotropic
    model explains the data (R1 ≤ MAX_ISOTROPIC_R1) and `cycles`; kept only if they lower wR2. Returns the
    result and the isotropic statistics (None if it stays isotropic)."""
    n = res.structure.n_sites
    if cycles <= 0 or not n:
        return res, None
    if not res.statistics.r1 <= MAX_ISOTROPIC_R1:
        notes.append(f"isotropic: R1 {res.statistics.r1:.2f} > {MAX_ISOTROPIC_R1:.2f}, U_ij would fit noise")
        return res, None
    if not anisotropic_allowed(len(data), n):
        notes.append(f"isotropic: {len(data)} reflections for {1 + 9 * n} anisotropic parameters "
                     "(fewer than 10 per parameter)")
        return res, None
    ani = refine_anisotropic(res.structure, data, cycles=cycles, tolerance=1e-3, cancel=cancel,
                             scale=res.statistics.scale)
    if not ani.statistics.wr2 < res.statistics.wr2:
        notes.append("isotropic: U_ij did not lower wR2")
        return res, None
    if ani.non_positive_definite:
        notes.append(f"isotropic (U_ij non-positive-definite): {', '.join(ani.non_positive_definite)}")
    notes.append(f"anisotropic: R1 {ani.statistics.r1:.4f} (isotropic {res.statistics.r1:.4f}), "
                 f"{ani.statistics.n_par} parameters")
    return ani, res.statistics


def refine_model(structure: Structure, data: ObservedData, composition: Optional[Composition] = None,
                 expected_atoms: Optional[float] = None, notes=(), cycles: int = 6, cancel=None,
                 anisotropic_cycles: int = 6) -> StructureModel:
    """A model a user edited (elements changed, atoms deleted) refined again: x y z, Uiso and scale, then
    the electrons per site from the scattering-factor refinement, U_ij where the data allow (as build_model
    does; `anisotropic_cycles` 0 keeps it isotropic), and the atom table."""
    t0 = time.perf_counter()
    if structure.n_sites == 0:
        return _empty_model(structure, data, composition, expected_atoms, list(notes) + ["the model has no atoms"], t0)
    st = replace(structure, sites=[replace(site, occupancy=1.0, u_aniso=None) for site in structure.sites])
    res = refine(st, data, cycles=cycles, tolerance=1e-3, cancel=cancel)
    neutral = replace(res.structure, sites=[replace(site, u_iso=float(np.median(res.structure.u_iso)))
                                            for site in res.structure.sites])
    occ_fit = refine(neutral, data, cycles=5, refine_xyz=False, refine_u=True, refine_occupancy=True,
                     refine_scale=False, scale=res.statistics.scale, tolerance=1e-3, cancel=cancel)
    electrons = np.array([site.occupancy * atomic_number(site.element) for site in occ_fit.structure.sites])
    e_esd = _electron_esd(occ_fit)
    if composition is not None:
        zscale = assign_elements(electrons, composition, structure.space_group.n_operations,
                                 structure.space_group.n_operations / res.site_orders)[1]
        electrons, e_esd = electrons * zscale, e_esd * zscale
    notes = list(notes)
    final, iso_stats = _anisotropic_cycles(res, data, notes, anisotropic_cycles, cancel)
    return StructureModel(final.structure, final, atom_table(final, data, electrons, e_esd), composition,
                          expected_atoms if composition is not None else None, notes, time.perf_counter() - t0,
                          iso_stats)


def _lightest_major(composition: Optional[Composition]) -> str:
    """The element a difference-map peak becomes: the most abundant non-H element (C in organics)."""
    if composition is None or not composition.non_hydrogen:
        return "C"
    return max(composition.non_hydrogen.items(), key=lambda kv: (kv[1], -atomic_number(kv[0])))[0]


def _difference_peaks(data: ObservedData, res: RefinementResult, xyz, elements, missing: float, fill: str,
                      sigma: float = 3.0, r_reach: Optional[float] = None) -> np.ndarray:
    """Fo − Fc peaks that could be the missing atoms (≤ `missing` atoms per cell in all): ≥ `sigma` σ of the
    difference map and ≥ 20 % of the Fo-map height expected of a `fill` atom (heights scaled by Z), not closer than
    0.75 × (r_i + r_fill) or 1 Å to any atom, and within bonding reach (r_i + r_reach + 0.5 Å; r_reach: the largest
    radius of the cell content, so that a Li 2 Å from an O counts) of one."""
    k = res.statistics.scale
    sg, cell = data.space_group, data.cell
    diff = fo_map(data, res.fc, k, difference=True)
    fo = fo_map(data, res.fc, k)
    atom_heights = fo.value_at(xyz)
    z = np.array([atomic_number(e) for e in elements], dtype=float)
    ref_height = float(np.median(atom_heights / z)) * atomic_number(fill)  # heights grow about as Z
    pk = find_peaks(diff, max_peaks=int(4 * missing) + 10, min_distance=1.0, threshold_sigma=sigma)
    if len(pk) == 0:
        return np.zeros((0, 3))
    model = Structure(cell, sg, [Site(f"A{i}", e, x) for i, (e, x) in enumerate(zip(elements, xyz))])
    img, idx = _images(model)
    radii = np.array([covalent_radius(e) for e in elements])[idx]
    r_fill = covalent_radius(fill)
    r_reach = r_fill if r_reach is None else r_reach
    A = cell.orthogonalization
    mult = sg.n_operations / sg.site_symmetry_order(pk.xyz, cell, tolerance=0.35)
    out, total = [], 0.0
    for x, h, m in zip(pk.xyz, pk.height, mult):
        if h < 0.2 * ref_height:
            continue
        d = img - x
        d -= np.rint(d)
        dist = np.linalg.norm(d @ A.T, axis=1)
        if np.any(dist < np.maximum(1.0, 0.75 * (radii + r_fill))) or not np.any(dist <= radii + r_reach + 0.5):
            continue
        if out:
            dd = np.array(out) - x
            dd -= np.rint(dd)
            if np.linalg.norm(dd @ A.T, axis=1).min() < 1.0:
                continue
        if total + m > missing + 0.5 * m:
            continue
        out.append(x)
        total += m
        if total >= missing:
            break
    return np.array(out).reshape(-1, 3)


def _electron_esd(fit: RefinementResult) -> np.ndarray:
    """Standard uncertainty of occupancy × Z (electrons) per site from a scattering-factor refinement."""
    z = np.array([atomic_number(e) for e in fit.structure.elements], dtype=float)
    if fit.occupancy_esd is None:
        return np.full(len(z), np.nan)
    return fit.occupancy_esd * fit.site_orders * z


def atom_table(res: RefinementResult, data: ObservedData, electrons=None, electrons_esd=None) -> list[AtomRow]:
    """Label, element, Fo-map height (e/Å³), xyz, Uiso, electrons and shortest contact of every atom."""
    st = res.structure
    fo = fo_map(data, res.fc, res.statistics.scale)
    heights = fo.value_at(st.xyz) if st.n_sites else np.zeros(0)
    dist = distance_matrix(st)
    rows = []
    for i, site in enumerate(st.sites):
        j = int(np.argmin(dist[i])) if st.n_sites else 0
        e = float(electrons[i]) if electrons is not None else float(atomic_number(site.element))
        esd = float(electrons_esd[i]) if electrons_esd is not None else float("nan")
        rows.append(AtomRow(site.label, site.element, float(heights[i]), site.xyz.copy(), float(site.u_iso), e, esd,
                            float(dist[i, j]), st.sites[j].label))
    return rows


def _empty_model(st: Structure, data: ObservedData, composition, n_exp, notes, t0) -> StructureModel:
    from .refinement import RefinementStatistics, agreement

    stats: RefinementStatistics = agreement(data, np.zeros(len(data), dtype=complex) + 1e-12, scale=0.0)
    res = RefinementResult(st, stats, np.zeros(len(data), dtype=complex), np.zeros(0), np.zeros(0, dtype=int), 0,
                           False, np.zeros(0, dtype=bool), 0.0)
    return StructureModel(st, res, [], composition, n_exp if composition is not None else None, notes,
                          time.perf_counter() - t0)


__all__ = ["ModelBuildingSettings", "StructureModel", "AtomRow", "build_model", "refine_model", "assemble", "assign_elements",
           "atom_table", "distance_matrix", "bonded", "contacts", "swap_by_geometry", "expected_asu_atoms", "fo_map"]
