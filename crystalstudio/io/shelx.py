"""SHELX .res/.ins reading and writing (gemmi reads no SHELX files).

Understands TITL, CELL, ZERR, LATT, SYMM, SFAC (short and long form), UNIT, FVAR, HKLF, END,
continuation lines ('='), free variables in coordinates, occupancies and U (10·m + p), riding
Uiso (negative: multiple of the previous non-H atom's Ueq) and anisotropic U (SHELX order
U11 U22 U33 U23 U13 U12). Occupancies in SHELX are crystallographic; the Structure gets chemical
occupancies (× site-symmetry order).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Optional

import gemmi
import numpy as np

from ..crystal.cell import UnitCell
from ..crystal.elements import normalize_symbol
from ..crystal.structure import Site, Structure, u_cif_to_cartesian
from ..crystal.symmetry import SpaceGroup
from ..errors import InputFileError, InvalidInputError
from .common import PathLike, read_text, write_text_atomic

COMMANDS = set(
    """ABIN ACTA AFIX ANIS ANSC ANSR BASF BEDE BIND BLOC BOND BUMP CELL CGLS CHIV CONF CONN DAMP DANG DEFS
    DELU DFIX DISP EADP END EQIV EXTI EXYZ FEND FLAT FMAP FRAG FREE FVAR GRID HFIX HKLF HTAB ISOR LATT LAUE
    LIST L.S. LONE MERG MOLE MORE MOVE MPLA NCSY NEUT OMIT PART PLAN PRIG REM RESI RIGU RTAB SADI SAME SFAC
    SHEL SIMU SIZE SPEC STIR SUMP SWAT SYMM TEMP TITL TWIN TWST UNIT WGHT WIGL WPDB XNPD ZERR CONF DELU
    ABSC SUMP""".split()
)

CENTRING = {
    1: [],
    2: [(0.5, 0.5, 0.5)],
    3: [(2 / 3, 1 / 3, 1 / 3), (1 / 3, 2 / 3, 2 / 3)],
    4: [(0, 0.5, 0.5), (0.5, 0, 0.5), (0.5, 0.5, 0)],
    5: [(0, 0.5, 0.5)],
    6: [(0.5, 0, 0.5)],
    7: [(0.5, 0.5, 0)],
}


@dataclass
class ShelxFile:
    structure: Structure
    sfac: list[str]
    unit: list[float]
    fvar: list[float]
    latt: int
    symm: list[str]
    z: Optional[float] = None
    hklf: Optional[int] = None
    q_peaks: list[tuple[str, np.ndarray, float]] = field(default_factory=list)


def _free(v: float, fvar: list[float], path, line: int) -> float:
    """Decode a SHELX parameter 10·m + p (|v| > 5)."""
    if abs(v) <= 5:
        return v
    a = abs(v)
    m = int((a + 5) // 10)
    p = a - 10 * m
    if m == 1:
        return p if v > 0 else -p
    if m - 1 >= len(fvar):
        raise InputFileError(path, f"free variable {m} used but FVAR defines only {len(fvar)}", line)
    fv = fvar[m - 1]
    return p * fv if v > 0 else p * (1 - fv)


def _logical_lines(text: str):
    """(line number, upper keyword, tokens, raw) with '=' continuations joined; stops after END."""
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        raw = lines[i]
        start = i + 1
        stripped = raw.strip()
        if not stripped or stripped.startswith(("!", "REM", "rem", "Rem")):
            i += 1
            continue
        body = raw.split("!")[0].rstrip()
        while body.endswith("=") and i + 1 < len(lines):
            i += 1
            body = body[:-1] + " " + lines[i].split("!")[0].strip()
        i += 1
        tokens = body.split()
        if not tokens:
            continue
        yield start, tokens[0].upper(), tokens, body
        if tokens[0].upper() == "END":
            return


def _floats(tokens, path, line, what):
    try:
        return [float(t) for t in tokens]
    except ValueError:
        raise InputFileError(path, f"{what}: expected numbers, got '{' '.join(tokens)}'", line) from None


def space_group_from_latt_symm(latt: int, symm: list[str]) -> SpaceGroup:
    ops = [gemmi.Op("x,y,z")]
    for s in symm:
        ops.append(gemmi.Op(s.replace(" ", "").lower()))
    if latt > 0:
        ops += [gemmi.Op("-x,-y,-z") * op for op in list(ops)]
    cen = CENTRING.get(abs(latt))
    if cen is None:
        raise InvalidInputError(f"LATT {latt} is not a SHELX lattice type (±1…±7)")
    base = list(ops)
    for c in cen:
        shift = gemmi.Op("x+{},y+{},z+{}".format(*(_frac_str(v) for v in c)))
        ops += [shift * op for op in base]
    group = gemmi.GroupOps(ops)
    group.add_missing_elements()
    sg = gemmi.find_spacegroup_by_ops(group)
    if sg is None:
        raise InvalidInputError("LATT/SYMM do not describe a tabulated space-group setting")
    return SpaceGroup(sg)


def _frac_str(v: float) -> str:
    from fractions import Fraction

    return str(Fraction(v).limit_denominator(24))


def parse_shelx(text: str, path: Optional[PathLike] = None) -> ShelxFile:
    """Parse .res/.ins text into a Structure (raises :class:`InputFileError` naming the line)."""
    title = ""
    cell = None
    wavelength = None
    z = None
    latt = 1
    symm: list[str] = []
    sfac: list[str] = []
    unit: list[float] = []
    fvar: list[float] = []
    hklf = None
    atoms = []  # (line, name, sfac index, values)
    seen_cell = False
    seen_end = False
    for ln, key, tok, raw in _logical_lines(text):
        if key == "TITL":
            title = raw[4:].strip()
        elif key == "CELL":
            v = _floats(tok[1:], path, ln, "CELL")
            if len(v) != 7:
                raise InputFileError(path, f"CELL needs wavelength and 6 parameters, found {len(v)} numbers", ln)
            wavelength = v[0]
            try:
                cell = UnitCell(*v[1:])
            except InvalidInputError as exc:
                raise InputFileError(path, f"CELL: {exc}", ln) from None
            seen_cell = True
        elif key == "ZERR":
            v = _floats(tok[1:2], path, ln, "ZERR")
            z = v[0] if v else None
        elif key == "LATT":
            latt = int(_floats(tok[1:2], path, ln, "LATT")[0])
        elif key == "SYMM":
            symm.append(raw.strip()[4:].strip())
        elif key == "SFAC":
            rest = tok[1:]
            if len(rest) >= 2 and _is_number(rest[1]):  # long form: one element with coefficients
                sfac.append(_element(rest[0], path, ln))
            else:
                sfac.extend(_element(t, path, ln) for t in rest)
        elif key == "UNIT":
            unit = _floats(tok[1:], path, ln, "UNIT")
        elif key == "FVAR":
            fvar.extend(_floats(tok[1:], path, ln, "FVAR"))
        elif key == "HKLF":
            hklf = int(_floats(tok[1:2], path, ln, "HKLF")[0]) if len(tok) > 1 else 4
        elif key == "END":
            seen_end = True
            break
        elif key in COMMANDS or key[:4] in COMMANDS:
            continue
        else:
            name = tok[0]
            if len(tok) < 5 or not _is_number(tok[1]):
                if raw[:1].isspace():  # SHELXL continuation text (e.g. of a multi-line TITL)
                    continue
                raise InputFileError(path, f"unrecognised instruction or atom line '{raw.strip()[:60]}'", ln)
            atoms.append((ln, name, tok[1:]))
    if not seen_cell:
        raise InputFileError(path, "no CELL instruction")
    if not seen_end:
        raise InputFileError(path, "no END instruction: the file looks truncated", len(text.splitlines()))
    if not sfac:
        raise InputFileError(path, "no SFAC instruction")
    try:
        sg = space_group_from_latt_symm(latt, symm)
    except (InvalidInputError, RuntimeError, ValueError) as exc:
        raise InputFileError(path, f"symmetry (LATT {latt}, {len(symm)} SYMM): {exc}") from None
    if not fvar:
        fvar = [1.0]
    sites: list[Site] = []
    q_peaks = []
    last_ueq = 0.05
    sof_cryst = []
    for ln, name, vals in atoms:
        v = _floats(vals, path, ln, f"atom {name}")
        isf = int(v[0])
        if len(v) < 4:
            raise InputFileError(path, f"atom {name}: needs SFAC number and x y z", ln)
        xyz = np.array([_free(x, fvar, path, ln) for x in v[1:4]])
        sof = _free(v[4], fvar, path, ln) if len(v) > 4 else 1.0
        if re.fullmatch(r"Q\d+", name.upper()):
            height = v[7] if len(v) > 7 else (v[6] if len(v) > 6 else 0.0)
            q_peaks.append((name, xyz, height))
            continue
        if not 1 <= isf <= len(sfac):
            raise InputFileError(path, f"atom {name}: SFAC number {isf} but only {len(sfac)} SFAC elements", ln)
        element = sfac[isf - 1]
        u_aniso = None
        if len(v) >= 11:
            u11, u22, u33, u23, u13, u12 = (_free(x, fvar, path, ln) for x in v[5:11])
            u_aniso = np.array([u11, u22, u33, u12, u13, u23])
            u_iso = None
        else:
            u = v[5] if len(v) > 5 else 0.05
            if u < 0:
                u_iso = -u * last_ueq
            else:
                u_iso = _free(u, fvar, path, ln)
        site = Site(name, element, xyz, 1.0, u_iso if u_iso is not None else 0.0, u_aniso)
        if element != "H":
            last_ueq = site.u_equivalent(cell)
        sites.append(site)
        sof_cryst.append(sof)
    structure = Structure(cell, sg, sites, title=title, wavelength=wavelength,
                          source=str(path) if path is not None else None)
    if sites:
        orders = structure.site_symmetry_orders()
        for s, sof, o in zip(sites, sof_cryst, orders):
            s.occupancy = float(sof * o)
    return ShelxFile(structure, sfac, unit, fvar, latt, symm, z, hklf, q_peaks)


def _is_number(t: str) -> bool:
    try:
        float(t)
        return True
    except ValueError:
        return False


def _element(t: str, path, line) -> str:
    try:
        return normalize_symbol(t)
    except InvalidInputError as exc:
        raise InputFileError(path, f"SFAC: {exc}", line) from None


def read_shelx(path: PathLike) -> ShelxFile:
    return parse_shelx(read_text(path), path)


def read_res(path: PathLike) -> Structure:
    """Structure from a SHELX .res or .ins file."""
    return read_shelx(path).structure


# ---------------------------------------------------------------------------- writing
def latt_symm(space_group: SpaceGroup) -> tuple[int, list[str]]:
    """SHELX LATT number and SYMM cards (identity, inversion and centring implied) for a group."""
    cen = [tuple(np.round(c, 6)) for c in space_group.centring_vectors if np.any(np.abs(c) > 1e-9)]
    code = None
    for k, vecs in CENTRING.items():
        if sorted(tuple(np.round(np.array(v) % 1.0, 6)) for v in vecs) == sorted(cen):
            code = k
            break
    if code is None:
        raise InvalidInputError(f"{space_group} has a centring SHELX cannot express")
    R, t = space_group.sym_rotations, space_group.sym_translations
    centro = space_group.inversion_at_origin
    cards = []
    for r, tt in zip(R, t):
        if np.array_equal(r, np.eye(3, dtype=r.dtype)) and np.allclose(tt % 1, 0):
            continue
        if centro and np.linalg.det(r) < 0:
            continue
        cards.append(_op_triplet(r, tt))
    return (code if centro else -code), cards


def _op_triplet(r, t) -> str:
    parts = []
    for i in range(3):
        terms = []
        for j, ax in enumerate("XYZ"):
            if r[i, j] == 1:
                terms.append(f"+{ax}")
            elif r[i, j] == -1:
                terms.append(f"-{ax}")
            elif r[i, j] != 0:
                terms.append(f"{int(r[i, j]):+d}*{ax}")
        expr = "".join(terms).lstrip("+")
        tr = float(t[i]) % 1.0
        if tr > 1e-6:
            expr = f"{_frac_str(tr)}{'' if expr.startswith('-') else '+'}{expr}"
        parts.append(expr)
    return ", ".join(parts)


def format_res(structure: Structure, *, title: Optional[str] = None, wavelength: Optional[float] = None,
               q_peaks=None, extra_commands: Optional[list[str]] = None, hklf: int = 4, sfac: Optional[list[str]] = None,
               unit: Optional[dict] = None, fvar: Optional[list[float]] = None) -> str:
    """SHELX .res/.ins text: atoms with SFAC numbers, crystallographic sofs (11.0 = fixed full) and
    Uiso (Ueq for anisotropic atoms are written as U11…U12); optional Q-peaks (name, xyz, height).
    `sfac` (order, may add elements such as H), `unit` (cell content per element) and `fvar` (overall
    scale first) default to the model's elements, its atom count and 1."""
    cell = structure.cell
    lam = wavelength or structure.wavelength or 0.71073
    latt, symm = latt_symm(structure.space_group)
    sfac = list(sfac or [])
    for el in structure.elements:
        if el not in sfac:
            sfac.append(el)
    if not sfac:
        sfac = ["C"]
    comp = dict(unit) if unit else (structure.composition() if structure.sites else {})
    lines = [f"TITL {title or structure.title or 'CrystalStudio'}"[:80],
             "CELL {:.5f} {:.4f} {:.4f} {:.4f} {:.3f} {:.3f} {:.3f}".format(lam, *cell.parameters),
             "ZERR {} 0 0 0 0 0 0".format(structure.space_group.n_operations),
             f"LATT {latt}"]
    lines += [f"SYMM {s}" for s in symm]
    lines.append("SFAC " + " ".join(sfac))
    lines.append("UNIT " + " ".join(f"{max(comp.get(e, 1.0), 1.0):g}" for e in sfac))
    for c in extra_commands or []:
        lines.append(c)
    lines.append("FVAR " + " ".join(f"{v:.5f}" for v in (fvar or [1.0])))
    occ = structure.crystallographic_occupancies() if structure.sites else []
    for s, o in zip(structure.sites, occ):
        x, y, zz = s.xyz
        head = f"{s.label[:4]:<5}{sfac.index(s.element) + 1:d} {x:10.6f} {y:10.6f} {zz:10.6f} {10 + o:10.5f}"
        if s.u_aniso is not None:
            u11, u22, u33, u12, u13, u23 = s.u_aniso
            lines.append(f"{head} {u11:9.5f} {u22:9.5f} =")
            lines.append(f"    {u33:9.5f} {u23:9.5f} {u13:9.5f} {u12:9.5f}")
        else:
            lines.append(f"{head} {s.u_iso:9.5f}")
    for i, (name, xyz, height) in enumerate(q_peaks or []):
        lines.append(f"{name:<5}1 {xyz[0]:10.6f} {xyz[1]:10.6f} {xyz[2]:10.6f} 11.00000 0.05 {height:8.2f}")
    lines += [f"HKLF {hklf}", "END", ""]
    return "\n".join(lines)


def write_res(path: PathLike, structure: Structure, **kw) -> None:
    write_text_atomic(path, format_res(structure, **kw))


__all__ = ["ShelxFile", "parse_shelx", "read_shelx", "read_res", "format_res", "write_res", "latt_symm",
           "space_group_from_latt_symm", "u_cif_to_cartesian"]
