"""CIF reading (small-molecule core CIF, classic `_cell_length_a` and dot-style `_cell.length_a` tags)
through gemmi's CIF parser: structures, reflection loops (.fcf and hkl-CIF), embedded
`_shelx_res_file`/`_shelx_hkl_file`, and writing of phased .fcf files (SHELXL LIST 3 style)."""

from __future__ import annotations

import re
from typing import Optional

import gemmi
import numpy as np

from ..crystal.cell import UnitCell
from ..crystal.reflections import ReflectionData
from ..crystal.structure import Site, Structure
from ..crystal.symmetry import SpaceGroup
from ..errors import InputFileError, InvalidInputError
from .common import PathLike, atomic_output, read_text


def _variants(tag: str) -> list[str]:
    """'_cell_length_a' → ['_cell_length_a', '_cell.length_a'] for the categories we read."""
    out = [tag]
    for cat in ("atom_site_aniso", "atom_site", "space_group_symop", "space_group", "symmetry_equiv",
                "symmetry", "cell", "refln", "diffrn_refln", "diffrn_radiation", "shelx", "exptl_crystal",
                "reflns", "diffrn_reflns", "chemical_formula"):
        if tag.startswith(f"_{cat}_"):
            out.append(f"_{cat}.{tag[len(cat) + 2:]}")
            break
    return out


def _value(block: gemmi.cif.Block, *tags: str) -> Optional[str]:
    for tag in tags:
        for t in _variants(tag):
            v = block.find_value(t)
            if v is not None and v not in ("?", "."):
                return v
    return None


def _number(s: Optional[str]) -> float:
    if s is None:
        return float("nan")
    return gemmi.cif.as_number(s)


def _column(block: gemmi.cif.Block, *tags: str):
    for tag in tags:
        for t in _variants(tag):
            col = block.find_values(t)
            if len(col):
                return list(col)
    return None


def _text(block: gemmi.cif.Block, tag: str) -> Optional[str]:
    v = _value(block, tag)
    return gemmi.cif.as_string(v) if v is not None else None


def read_cif_document(path: PathLike) -> gemmi.cif.Document:
    text = read_text(path)
    try:
        return gemmi.cif.read_string(text)
    except (RuntimeError, ValueError) as exc:
        msg = str(exc)
        m = re.search(r"(\d+):", msg)
        msg = re.sub(r"^\S*?:\d+:\d+(\(\d+\))?:\s*", "", msg)  # gemmi's "string:23:0(473): " position prefix
        if "unterminated" in msg or (m and text.count("\n") - int(m.group(1)) < 2) or not text.endswith("\n"):
            msg += " (is the file truncated?)"
        raise InputFileError(path, f"not a readable CIF: {msg}", int(m.group(1)) if m else None) from None


def cif_cell(block: gemmi.cif.Block, path=None) -> Optional[UnitCell]:
    vals = [_number(_value(block, f"_cell_{t}")) for t in
            ("length_a", "length_b", "length_c", "angle_alpha", "angle_beta", "angle_gamma")]
    if any(np.isnan(vals[:3])):
        return None
    vals = [v if not np.isnan(v) else 90.0 for v in vals]
    try:
        return UnitCell(*vals)
    except InvalidInputError as exc:
        raise InputFileError(path, f"data_{block.name}: {exc}") from None


def cif_space_group(block: gemmi.cif.Block, path=None) -> Optional[SpaceGroup]:
    """From symmetry operations when listed (most reliable), else Hall, H-M or number."""
    ops = _column(block, "_space_group_symop_operation_xyz", "_symmetry_equiv_pos_as_xyz")
    if ops:
        try:
            return SpaceGroup.from_operations([gemmi.cif.as_string(o) for o in ops])
        except InvalidInputError:
            pass
    for tag in ("_space_group_name_Hall", "_symmetry_space_group_name_Hall", "_space_group_name_H-M_alt",
                "_symmetry_space_group_name_H-M", "_space_group_IT_number", "_symmetry_Int_Tables_number"):
        v = _text(block, tag)
        if v:
            try:
                return SpaceGroup.from_name(v)
            except InvalidInputError:
                continue
    return None


def _u_from(block, tag_u, tag_b, n):
    u = _column(block, tag_u)
    if u is not None:
        return np.array([_number(x) for x in u])
    b = _column(block, tag_b)
    if b is not None:
        return np.array([_number(x) for x in b]) / (8 * np.pi**2)
    return np.full(n, np.nan)


def structure_from_block(block: gemmi.cif.Block, path=None) -> Optional[Structure]:
    """Structure from a CIF block with an _atom_site loop; None if the block has no atoms."""
    labels = _column(block, "_atom_site_label")
    fx = _column(block, "_atom_site_fract_x")
    if not fx:
        res = _text(block, "_shelx_res_file")
        if res:
            from .shelx import parse_shelx

            try:
                return parse_shelx(res, f"{path} (_shelx_res_file)").structure
            except InputFileError:
                return None
        return None
    cell = cif_cell(block, path)
    sg = cif_space_group(block, path)
    if cell is None:
        raise InputFileError(path, f"data_{block.name}: atoms but no cell parameters")
    if sg is None:
        raise InputFileError(path, f"data_{block.name}: atoms but no space group or symmetry operations")
    n = len(fx)
    labels = labels or [f"A{i + 1}" for i in range(n)]
    types = _column(block, "_atom_site_type_symbol") or labels
    fy = _column(block, "_atom_site_fract_y")
    fz = _column(block, "_atom_site_fract_z")
    occ = _column(block, "_atom_site_occupancy")
    calc = _column(block, "_atom_site_calc_flag")
    u = _u_from(block, "_atom_site_U_iso_or_equiv", "_atom_site_B_iso_or_equiv", n)
    aniso = {}
    alab = _column(block, "_atom_site_aniso_label")
    if alab:
        cols = [_column(block, f"_atom_site_aniso_U_{ij}") for ij in ("11", "22", "33", "12", "13", "23")]
        scale = 1.0
        if cols[0] is None:
            cols = [_column(block, f"_atom_site_aniso_B_{ij}") for ij in ("11", "22", "33", "12", "13", "23")]
            scale = 1 / (8 * np.pi**2)
        if all(c is not None for c in cols):
            for i, lab in enumerate(alab):
                vals = np.array([_number(c[i]) for c in cols]) * scale
                if np.all(np.isfinite(vals)):
                    aniso[gemmi.cif.as_string(lab)] = vals
    sites = []
    for i in range(n):
        lab = gemmi.cif.as_string(labels[i])
        if calc and gemmi.cif.as_string(calc[i]).lower() in ("dum", "dummy"):
            continue
        xyz = np.array([_number(fx[i]), _number(fy[i]), _number(fz[i])])
        if not np.all(np.isfinite(xyz)):
            raise InputFileError(path, f"data_{block.name}: atom {lab} has no fractional coordinates")
        o = _number(occ[i]) if occ else 1.0
        o = 1.0 if np.isnan(o) else o
        ui = u[i] if np.isfinite(u[i]) else 0.05
        try:
            sites.append(Site(lab, gemmi.cif.as_string(types[i]), xyz, o, ui, aniso.get(lab)))
        except InvalidInputError as exc:
            raise InputFileError(path, f"data_{block.name}: atom {lab}: {exc}") from None
    wl = _number(_value(block, "_diffrn_radiation_wavelength"))
    return Structure(cell, sg, sites, title=block.name, wavelength=None if np.isnan(wl) else wl,
                     source=str(path) if path else None)


def read_cif_structures(path: PathLike) -> list[Structure]:
    doc = read_cif_document(path)
    out = [s for s in (structure_from_block(b, path) for b in doc) if s is not None]
    return out


def read_cif_structure(path: PathLike, block: Optional[str] = None) -> Structure:
    """The structure of the named block, or of the first block with atoms."""
    doc = read_cif_document(path)
    blocks = [doc.find_block(block)] if block else list(doc)
    if block and blocks[0] is None:
        raise InputFileError(path, f"no data block '{block}'")
    for b in blocks:
        s = structure_from_block(b, path)
        if s is not None:
            return s
    raise InputFileError(path, "no data block with atom sites (_atom_site_fract_x) or _shelx_res_file")


# ---------------------------------------------------------------------------- reflections
_I_TAGS = [("_refln_F_squared_meas", "_refln_F_squared_sigma"), ("_refln_intensity_meas", "_refln_intensity_sigma"),
           ("_diffrn_refln_intensity_net", "_diffrn_refln_intensity_sigma"),
           ("_diffrn_refln_intensity_net", "_diffrn_refln_intensity_u"),
           ("_diffrn_refln_intensity_net", "_diffrn_refln_intensity_net_su")]
_F_TAGS = [("_refln_F_meas", "_refln_F_sigma"), ("_refln_F_meas_au", "_refln_F_meas_sigma_au")]


def reflections_from_block(block: gemmi.cif.Block, path=None) -> Optional[ReflectionData]:
    cell = cif_cell(block, path)
    sg = cif_space_group(block, path)
    for prefix in ("_refln", "_diffrn_refln"):
        h = _column(block, f"{prefix}_index_h")
        if not h:
            continue
        k = _column(block, f"{prefix}_index_k")
        l = _column(block, f"{prefix}_index_l")
        hkl = np.array([[int(_number(a)), int(_number(b)), int(_number(c))] for a, b, c in zip(h, k, l)])
        kind = None
        for (tv, ts), kd in [(t, "I") for t in _I_TAGS] + [(t, "F") for t in _F_TAGS]:
            if not tv.startswith(prefix + "_"):
                continue
            v = _column(block, tv)
            if v:
                s = _column(block, *[b for a, b in _I_TAGS + _F_TAGS if a == tv])  # any σ tag of this value
                vals = np.array([_number(x) for x in v])
                sig = np.array([_number(x) for x in s]) if s else np.full(len(vals), np.nan)
                kind = kd
                break
        phases = None
        if kind is None:  # calculated-only data, e.g. an .fcf LIST 3 with A/B or F_calc/phase
            a = _column(block, "_refln_A_calc")
            b = _column(block, "_refln_B_calc")
            fc = _column(block, "_refln_F_calc")
            if a and b:
                F = np.array([_number(x) for x in a]) + 1j * np.array([_number(x) for x in b])
                vals, sig, kind, phases = np.abs(F), np.full(len(F), np.nan), "F", np.angle(F)
            elif fc:
                vals, sig, kind = np.array([_number(x) for x in fc]), np.full(len(fc), np.nan), "F"
            else:
                raise InputFileError(path, f"data_{block.name}: reflection loop without measured or calculated values")
        if phases is None:
            a = _column(block, "_refln_A_calc")
            b = _column(block, "_refln_B_calc")
            ph = _column(block, "_refln_phase_calc")
            if a and b:
                phases = np.angle(np.array([_number(x) for x in a]) + 1j * np.array([_number(x) for x in b]))
            elif ph:
                phases = np.radians(np.array([_number(x) for x in ph]))
        ok = np.isfinite(vals)
        notes = []
        if not np.all(ok):
            notes.append(f"{np.count_nonzero(~ok)} reflections without a value skipped")
        data = ReflectionData(hkl[ok], vals[ok], sig[ok], kind, cell, sg,
                              phases=None if phases is None else phases[ok], source=str(path) if path else None,
                              notes=notes)
        return data
    hkl_text = _text(block, "_shelx_hkl_file")
    if hkl_text:
        from .hkl import parse_hklf

        data = parse_hklf(hkl_text, f"{path} (_shelx_hkl_file)")
        code = _number(_value(block, "_shelx_hkl_format_code", "_shelx_refln_list_code"))
        return data.with_symmetry(cell, sg)
    return None


def read_cif_reflections(path: PathLike, block: Optional[str] = None) -> ReflectionData:
    """Reflections from an hkl-CIF/.fcf `_refln` loop, `_diffrn_refln` loop or embedded `_shelx_hkl_file`.

    Cell and space group are taken from the same block, or any other block of the file.
    """
    doc = read_cif_document(path)
    blocks = [doc.find_block(block)] if block else list(doc)
    cell = sg = None
    for b in doc:
        cell = cell or cif_cell(b, path)
        sg = sg or cif_space_group(b, path)
    for b in blocks:
        if b is None:
            raise InputFileError(path, f"no data block '{block}'")
        data = reflections_from_block(b, path)
        if data is not None:
            return data.with_symmetry(data.cell or cell, data.space_group or sg)
    raise InputFileError(path, "no reflections: no _refln/_diffrn_refln loop and no _shelx_hkl_file")


# ---------------------------------------------------------------------------- writing
def format_fcf(hkl, f_meas, f_sigma, F_calc, cell: UnitCell, space_group: SpaceGroup, *,
               title: str = "crystalstudio", wavelength: Optional[float] = None) -> str:
    """Phased reflections as a SHELXL LIST 3 .fcf: h k l F_meas σ(F_meas) A_calc B_calc.

    A, B are the real and imaginary parts of the phased structure factor (|F| = |A + iB|). Olex2
    and SHELXL-aware programs read this for maps.
    """
    hkl = np.asarray(hkl, dtype=np.int64)
    F_calc = np.asarray(F_calc, dtype=np.complex128)
    name = re.sub(r"[^A-Za-z0-9_\-]", "_", title) or "crystalstudio"
    lines = ["#", "# h,k,l, Fo, sigma(Fo), A(calc), B(calc) written by CrystalStudio", "#",
             f"data_{name}", f"_shelx_title '{title}'", "_shelx_refln_list_code          3",
             f"_shelx_F_calc_maximum      {np.max(np.abs(F_calc)) if len(F_calc) else 0:.2f}"]
    if wavelength:
        lines.append(f"_diffrn_radiation_wavelength {wavelength:.5f}")
    d = cell.d_spacing(hkl) if len(hkl) else np.array([np.inf])
    lines += [f"_reflns_d_resolution_high  {np.min(d):.4f}",
              f"_space_group_crystal_system {space_group.crystal_system}",
              f"_space_group_IT_number {space_group.number}",
              f"_space_group_name_H-M_alt '{space_group.name}'",
              f"_space_group_name_Hall '{space_group.hall}'", "", "loop_", " _space_group_symop_operation_xyz"]
    lines += [f" '{t}'" for t in space_group.triplets()]
    names = ("length_a", "length_b", "length_c", "angle_alpha", "angle_beta", "angle_gamma")
    lines += [""] + [f"_cell_{n} {v:.5f}" for n, v in zip(names, cell.parameters)] + [""]
    lines += ["loop_", " _refln_index_h", " _refln_index_k", " _refln_index_l", " _refln_F_meas", " _refln_F_sigma",
              " _refln_A_calc", " _refln_B_calc"]
    for (h, k, l), fo, s, fc in zip(hkl, f_meas, f_sigma, F_calc):
        lines.append(f"{h:4d}{k:4d}{l:4d} {fo:11.3f} {s:9.3f} {fc.real:11.3f} {fc.imag:11.3f}")
    lines.append("")
    return "\n".join(lines)


def write_fcf(path: PathLike, *args, **kw) -> None:
    with atomic_output(path) as f:
        f.write(format_fcf(*args, **kw))


def format_cif_structure(structure: Structure, name: str = "crystalstudio") -> str:
    """A small-molecule CIF (cell, symmetry operations, atom sites, anisotropic U where present)."""
    block = re.sub(r"[^A-Za-z0-9_\-]", "_", name) or "crystalstudio"
    sg = structure.space_group
    lines = [f"data_{block}", "_audit_creation_method 'CrystalStudio'",
             f"_space_group_name_H-M_alt '{sg.name}'", f"_space_group_name_Hall '{sg.hall}'",
             f"_space_group_IT_number {sg.number}", f"_space_group_crystal_system {sg.crystal_system}"]
    names = ("length_a", "length_b", "length_c", "angle_alpha", "angle_beta", "angle_gamma")
    lines += [f"_cell_{n} {v:.5f}" for n, v in zip(names, structure.cell.parameters)]
    lines += [f"_cell_volume {structure.cell.volume:.3f}", "", "loop_", " _space_group_symop_operation_xyz"]
    lines += [f" '{t}'" for t in sg.triplets()]
    lines += ["", "loop_", " _atom_site_label", " _atom_site_type_symbol", " _atom_site_fract_x", " _atom_site_fract_y",
              " _atom_site_fract_z", " _atom_site_U_iso_or_equiv", " _atom_site_adp_type", " _atom_site_occupancy"]
    for s in structure.sites:
        adp = "Uani" if s.u_aniso is not None else "Uiso"
        lines.append(f" {s.label} {s.element} {s.xyz[0]:.6f} {s.xyz[1]:.6f} {s.xyz[2]:.6f} "
                     f"{s.u_equivalent(structure.cell):.5f} {adp} {s.occupancy:.4f}")
    aniso = [s for s in structure.sites if s.u_aniso is not None]
    if aniso:
        lines += ["", "loop_", " _atom_site_aniso_label"] + [f" _atom_site_aniso_U_{ij}" for ij in
                                                            ("11", "22", "33", "12", "13", "23")]
        for s in aniso:
            lines.append(f" {s.label} " + " ".join(f"{u:.5f}" for u in s.u_aniso))
    lines.append("")
    return "\n".join(lines)


def write_cif_structure(path: PathLike, structure: Structure, name: str = "crystalstudio") -> None:
    with atomic_output(path) as f:
        f.write(format_cif_structure(structure, name))
