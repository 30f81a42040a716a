"""Space-group symmetry through gemmi, vectorised for many reflections and sites.

Conventions: an operation maps fractional coordinates x → R x + t. Reflections transform as
h → Rᵀh with F(Rᵀh) = F(h)·exp(−2πi h·t). The phase of F(h) = Σ f exp(+2πi h·x) is in radians
unless a function says degrees.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import gemmi
import numpy as np

from ..errors import InvalidInputError

_GRID = 24  # every Wyckoff coordinate and origin shift of the tabulated groups is a multiple of 1/24


def _clean_name(name: str) -> str:
    s = name.strip().strip("'\"").strip()
    s = re.sub(r"\((\d)\)", r"\1", s)  # P2(1)/c → P21/c
    s = re.sub(r"_(\d)", r"\1", s)  # P2_1/c → P21/c
    return re.sub(r"\s+", " ", s)


@functools.lru_cache(maxsize=512)
def _lookup(name: str) -> gemmi.SpaceGroup:
    s = _clean_name(name)
    if not s:
        raise InvalidInputError("empty space-group name")
    if re.fullmatch(r"\d{1,3}", s):
        sg = gemmi.find_spacegroup_by_number(int(s))
        if sg is None:
            raise InvalidInputError(f"no space group number {s}")
        return sg
    for candidate in (s, s.replace(" ", ""), s.capitalize()):
        sg = gemmi.find_spacegroup_by_name(candidate)
        if sg is not None:
            return sg
    try:  # a Hall symbol, e.g. "-P 2ybc"
        ops = gemmi.symops_from_hall(s)
        sg = gemmi.find_spacegroup_by_ops(ops)
        if sg is not None:
            return sg
    except (RuntimeError, ValueError):
        pass
    raise InvalidInputError(f"unknown space group '{name}'")


def _ops_arrays(ops) -> tuple[np.ndarray, np.ndarray]:
    rots = np.array([np.array(op.rot) / op.DEN for op in ops], dtype=np.float64)
    trans = np.array([np.array(op.tran) / op.DEN for op in ops], dtype=np.float64)
    return np.rint(rots).astype(np.int64), trans % 1.0


@dataclass(frozen=True)
class SpecialPoint:
    """A Wyckoff position with no free parameter (e.g. an inversion centre in P2₁/c)."""

    multiplicity: int  # number of positions in the conventional cell
    site_symmetry_order: int  # order of the stabilizer (n_ops / multiplicity)
    positions: np.ndarray  # (multiplicity, 3) fractional coordinates in [0, 1)

    @property
    def representative(self) -> np.ndarray:
        return self.positions[0]


class SpaceGroup:
    """A space group in a given setting (immutable)."""

    def __init__(self, sg: gemmi.SpaceGroup):
        self._sg = sg
        self._ops = sg.operations()
        self.rotations, self.translations = _ops_arrays(list(self._ops))
        self.sym_rotations, self.sym_translations = _ops_arrays(self._ops.sym_ops)
        self.centring_vectors = np.array(self._ops.cen_ops, dtype=np.float64) / 24.0

    # ---------------------------------------------------------------- construction
    @classmethod
    def from_name(cls, name: "str | int | SpaceGroup") -> "SpaceGroup":
        """From a Hermann–Mauguin symbol (P21/c, P 1 21/n 1, P2(1)/c), a Hall symbol or a number."""
        if isinstance(name, SpaceGroup):
            return name
        if isinstance(name, gemmi.SpaceGroup):
            return cls(name)
        return _cached_group(_lookup(str(name)).xhm())

    @classmethod
    def from_operations(cls, triplets: list[str]) -> "SpaceGroup":
        """From symmetry operations as xyz triplets (all of them, or generators)."""
        try:
            ops = [gemmi.Op(t.replace(" ", "")) for t in triplets]
        except (RuntimeError, ValueError) as exc:
            raise InvalidInputError(f"bad symmetry operation: {exc}") from None
        if not any(op.triplet() == "x,y,z" for op in ops):
            ops.insert(0, gemmi.Op("x,y,z"))
        group = gemmi.GroupOps(ops)
        group.add_missing_elements()
        sg = gemmi.find_spacegroup_by_ops(group)
        if sg is None:
            raise InvalidInputError("the symmetry operations do not form a tabulated space-group setting")
        return cls(sg)

    # ---------------------------------------------------------------- names
    @property
    def gemmi(self) -> gemmi.SpaceGroup:
        return self._sg

    @property
    def gemmi_ops(self) -> gemmi.GroupOps:
        return self._ops

    @property
    def name(self) -> str:
        """Extended Hermann–Mauguin symbol, e.g. 'P 1 21/c 1'."""
        return self._sg.xhm()

    @property
    def short_name(self) -> str:
        return self._sg.short_name()

    @property
    def number(self) -> int:
        return self._sg.number

    @property
    def hall(self) -> str:
        return self._sg.hall

    @property
    def crystal_system(self) -> str:
        return self._sg.crystal_system_str()

    @property
    def n_operations(self) -> int:
        """All operations of the conventional cell, centring included."""
        return len(self.rotations)

    @property
    def is_centrosymmetric(self) -> bool:
        return self._ops.is_centrosymmetric()

    @property
    def inversion_at_origin(self) -> bool:
        """True when (−x, −y, −z) is an operation (structure factors are then real)."""
        inv = np.all(self.sym_rotations == -np.eye(3, dtype=np.int64), axis=(1, 2))
        return bool(np.any(inv & np.all(np.isclose(self.sym_translations % 1.0, 0.0), axis=1)))

    @property
    def is_sohncke(self) -> bool:
        return self._sg.is_sohncke()

    def __eq__(self, other) -> bool:
        return isinstance(other, SpaceGroup) and self.hall == other.hall

    def __hash__(self) -> int:
        return hash(self.hall)

    def __repr__(self) -> str:
        return f"SpaceGroup('{self.name}')"

    def __str__(self) -> str:
        return f"{self.short_name} (No. {self.number})"

    def triplets(self) -> list[str]:
        return [op.triplet() for op in self._ops]

    # ---------------------------------------------------------------- reflections
    def is_absent(self, hkl) -> np.ndarray:
        """Systematic absences (bool per reflection)."""
        return self._ops.systematic_absences(np.ascontiguousarray(hkl, dtype=np.int32))

    def epsilon(self, hkl) -> np.ndarray:
        """Epsilon factor (number of operations leaving h unchanged, centring included)."""
        return self._ops.epsilon_factor_array(np.ascontiguousarray(hkl, dtype=np.int32))

    def is_centric(self, hkl) -> np.ndarray:
        return self._ops.centric_flag_array(np.ascontiguousarray(hkl, dtype=np.int32))

    def equivalents(self, hkl) -> tuple[np.ndarray, np.ndarray]:
        """All symmetry mates Rᵀh (n_sym, M, 3) and their phase shifts −2π h·t (n_sym, M), radians."""
        h = np.asarray(hkl, dtype=np.int64)
        mates = np.einsum("mi,nij->nmj", h, self.sym_rotations)
        shifts = -2 * np.pi * np.einsum("mi,ni->nm", h, self.sym_translations)
        return mates, shifts

    def multiplicity(self, hkl) -> np.ndarray:
        """Number of distinct reflections ±Rᵀh in the full sphere (Friedel mates counted)."""
        mates, _ = self.equivalents(hkl)
        allm = np.concatenate([mates, -mates], axis=0)  # (2n, M, 3)
        keys = _encode(allm)
        keys.sort(axis=0)
        return 1 + np.count_nonzero(np.diff(keys, axis=0), axis=0)

    def to_asu(self, hkl) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Map reflections into gemmi's reciprocal asymmetric unit.

        Returns (hkl_asu, phase_shift, friedel): φ(h_asu) = s·(φ(h) + phase_shift) where s = −1
        if friedel else +1 (radians).
        """
        h = np.asarray(hkl, dtype=np.int64).reshape(-1, 3)
        if len(h) == 0:
            return h.copy(), np.zeros(0), np.zeros(0, dtype=bool)
        keys = _encode(h)
        uniq, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
        asu = gemmi.ReciprocalAsu(self._sg)
        out = np.empty((len(uniq), 3), dtype=np.int64)
        isym = np.empty(len(uniq), dtype=np.int64)
        for j, i in enumerate(first):
            hh, isym[j] = asu.to_asu(h[i].tolist(), self._ops)
            out[j] = hh
        op_index = (isym - 1) // 2
        friedel = isym % 2 == 0
        hu = h[first]
        mapped = np.einsum("mi,mij->mj", hu, self.sym_rotations[op_index])
        sign = np.where(friedel, -1, 1)[:, None]
        if not np.array_equal(sign * mapped, out):
            raise RuntimeError("inconsistent ISYM from gemmi.ReciprocalAsu.to_asu")
        shift = -2 * np.pi * np.einsum("mi,mi->m", hu, self.sym_translations[op_index])
        return out[inverse], shift[inverse], friedel[inverse]

    def expand_to_p1(self, hkl, values=None, friedel: bool = True):
        """All distinct reflections of the full sphere generated from `hkl` (unique set).

        values: complex structure factors for `hkl` (optional); they are carried with the phase
        shifts of each operation. Returns (hkl_p1, values_p1 or None, source index).
        """
        h = np.asarray(hkl, dtype=np.int64).reshape(-1, 3)
        mates, shifts = self.equivalents(h)
        n = len(mates)
        src = np.broadcast_to(np.arange(len(h)), (n, len(h)))
        allm, allshift, allsrc = mates, shifts, src
        sign = np.ones((n, len(h)))
        if friedel:
            allm = np.concatenate([mates, -mates])
            allshift = np.concatenate([shifts, shifts])
            allsrc = np.concatenate([src, src])
            sign = np.concatenate([sign, -sign])
        flat = allm.reshape(-1, 3)
        keys = _encode(flat)
        _, first = np.unique(keys, return_index=True)
        out_h = flat[first]
        out_src = allsrc.reshape(-1)[first]
        if values is None:
            return out_h, None, out_src
        v = np.asarray(values)[out_src] * np.exp(1j * allshift.reshape(-1)[first])
        conj = sign.reshape(-1)[first] < 0
        v = np.where(conj, np.conj(v), v)
        return out_h, v, out_src

    # ---------------------------------------------------------------- real space
    def apply(self, xyz) -> np.ndarray:
        """Images R x + t of fractional positions (…, 3) under every operation → (n_ops, …, 3)."""
        x = np.asarray(xyz, dtype=np.float64)
        return np.einsum("nij,...j->n...i", self.rotations, x) + self.translations.reshape(
            (-1,) + (1,) * (x.ndim - 1) + (3,)
        )

    def site_symmetry_order(self, xyz, cell=None, tolerance: float = 0.05) -> np.ndarray:
        """Number of operations mapping each site onto itself (modulo lattice translations).

        tolerance: Å when `cell` is given, else fractional units (divided by 10 Å as a guess).
        """
        x = np.atleast_2d(np.asarray(xyz, dtype=np.float64))
        images = self.apply(x)  # (n, S, 3)
        d = images - x[None]
        d -= np.rint(d)
        if cell is not None:
            dist = np.linalg.norm(d @ cell.orthogonalization.T, axis=-1)
        else:
            dist = np.linalg.norm(d, axis=-1) * 10.0
        return np.count_nonzero(dist < tolerance, axis=0)

    def site_multiplicity(self, xyz, cell=None, tolerance: float = 0.05) -> np.ndarray:
        """Number of distinct positions in the conventional cell generated from each site."""
        return self.n_operations // self.site_symmetry_order(xyz, cell, tolerance)

    @functools.cached_property
    def _free_axes(self) -> np.ndarray:
        """Orthonormal basis (k, 3) of directions along which the origin floats (polar groups)."""
        stack = np.concatenate([np.eye(3) - r for r in self.rotations])
        _, sv, vt = np.linalg.svd(stack)
        rank = int(np.sum(sv > 1e-8))
        return vt[rank:]

    @property
    def free_origin_axes(self) -> np.ndarray:
        return self._free_axes

    def permissible_origin_shifts(self, inverted: bool = False, grid: int = _GRID) -> np.ndarray:
        """Origin shifts s (fractional, in [0,1)) on a 1/grid lattice that keep the set of operations.

        With inverted=True the shifts map the operations of the inverted structure (x → −x) onto
        the group (needed to compare an enantiomorph). For polar groups the free directions show
        up as full lines/planes of grid points.
        """
        return _permissible_shifts(self.hall, inverted, grid)

    def is_permissible_shift(self, s: np.ndarray, inverted: bool = False) -> np.ndarray:
        """Vectorised test on shifts (K, 3)."""
        s = np.atleast_2d(np.asarray(s, dtype=np.float64))
        sigma = -1.0 if inverted else 1.0
        ok = np.ones(len(s), dtype=bool)
        lattice = np.concatenate([np.zeros((1, 3)), self.centring_vectors])
        for r, t in zip(self.sym_rotations, self.sym_translations):
            delta = (sigma - 1.0) * t + s @ (np.eye(3) - r).T  # (K,3) must be a lattice/centring vector
            d = delta[:, None, :] - lattice[None]
            d -= np.rint(d)
            ok &= np.any(np.all(np.abs(d) < 1e-6, axis=-1), axis=1)
        return ok

    def special_points(self) -> list[SpecialPoint]:
        """Wyckoff positions without free parameters, found on a 1/24 grid (fractional, in [0,1))."""
        return _special_points(self.hall)

    # ---------------------------------------------------------------- settings
    def reference_setting(self) -> tuple["SpaceGroup", np.ndarray, np.ndarray]:
        """The ITA reference setting and the change of basis to it.

        Returns (reference group, B, o) with x_ref = B x + o for fractional coordinates; the new
        cell vectors are (a b c)·B⁻¹ and Miller indices transform as h_ref = B⁻ᵀ h.
        """
        op = self._sg.basisop
        B = np.array(op.rot, dtype=np.float64) / op.DEN
        o = np.array(op.tran, dtype=np.float64) / op.DEN
        ref = SpaceGroup(gemmi.get_spacegroup_reference_setting(self.number))
        return ref, B, o

    def transformed(self, B, o=(0.0, 0.0, 0.0)) -> "SpaceGroup":
        """This group in coordinates x' = B x + o."""
        B = np.asarray(B, dtype=np.float64)
        o = np.asarray(o, dtype=np.float64)
        Binv = np.linalg.inv(B)
        ops = []
        for r, t in zip(self.rotations, self.translations):
            r2 = B @ r @ Binv
            t2 = (B @ t + o - r2 @ o) % 1.0
            ops.append(_op_from_matrix(r2, t2))
        group = gemmi.GroupOps(ops)
        sg = gemmi.find_spacegroup_by_ops(group)
        if sg is None:
            raise InvalidInputError(f"{self.short_name} transformed by B={B.tolist()} is not a tabulated setting")
        return SpaceGroup(sg)


def _op_from_matrix(r: np.ndarray, t: np.ndarray) -> gemmi.Op:
    seitz = [[*map(float, r[i]), float(t[i])] for i in range(3)] + [[0.0, 0.0, 0.0, 1.0]]
    return gemmi.seitz_to_op(seitz)


def _encode(hkl: np.ndarray) -> np.ndarray:
    h = np.asarray(hkl, dtype=np.int64)
    return ((h[..., 0] + 1024) << 22) | ((h[..., 1] + 1024) << 11) | (h[..., 2] + 1024)


def encode_hkl(hkl) -> np.ndarray:
    """Unique int64 key per Miller index triple (|h|, |k|, |l| < 1024)."""
    return _encode(np.asarray(hkl))


@functools.lru_cache(maxsize=256)
def _cached_group(xhm: str) -> SpaceGroup:
    return SpaceGroup(gemmi.SpaceGroup(xhm))


@functools.lru_cache(maxsize=256)
def _permissible_shifts(hall: str, inverted: bool, grid: int) -> np.ndarray:
    sg = SpaceGroup(gemmi.find_spacegroup_by_ops(gemmi.symops_from_hall(hall)))
    g = np.arange(grid) / grid
    pts = np.stack(np.meshgrid(g, g, g, indexing="ij"), axis=-1).reshape(-1, 3)
    return pts[sg.is_permissible_shift(pts, inverted)]


@functools.lru_cache(maxsize=256)
def _special_points(hall: str) -> list[SpecialPoint]:
    sg = SpaceGroup(gemmi.find_spacegroup_by_ops(gemmi.symops_from_hall(hall)))
    g = np.arange(_GRID) / _GRID
    pts = np.stack(np.meshgrid(g, g, g, indexing="ij"), axis=-1).reshape(-1, 3)
    images = sg.apply(pts)  # (n, P, 3)
    d = images - pts[None]
    d -= np.rint(d)
    fixed = np.all(np.abs(d) < 1e-9, axis=-1)  # (n, P)
    candidates = []
    eye = np.eye(3)
    for p in np.flatnonzero(fixed.sum(axis=0) > 1):
        rots = sg.rotations[fixed[:, p]]
        stack = np.concatenate([r - eye for r in rots])
        if np.linalg.matrix_rank(stack) == 3:
            candidates.append(p)
    seen: set[int] = set()
    keys = np.rint(pts * _GRID).astype(np.int64) % _GRID
    key_index = {tuple(k): i for i, k in enumerate(keys)}
    result = []
    for p in candidates:
        if p in seen:
            continue
        orbit = np.rint((images[:, p] % 1.0) * _GRID).astype(np.int64) % _GRID
        members = sorted({key_index[tuple(k)] for k in orbit})
        seen.update(members)
        order = int(fixed[:, p].sum())
        result.append(SpecialPoint(sg.n_operations // order, order, pts[members]))
    result.sort(key=lambda w: (w.multiplicity, tuple(w.representative)))
    return result


P21C = "P 1 21/c 1"
