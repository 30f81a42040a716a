"""From a Meerkat volume or a plain plane image to I_FF, I_SRO and Warren–Cowley ratios: the `factorise` job
and the Diffuse panel's pipeline. Intensities are relative (normalised to the plane's maximum).

Rules a user can rely on:
- Only measured pixels enter a fit (the product check, both α methods); pixels filled after punching Bragg
  peaks or left unmeasured feed the networks as the published pre-processing wants, never the fits.
- A plane with fewer than MIN_MEASURED_FRACTION of its grid measured is refused (InvalidInputError).
- α ratios come from the measured plane divided by a radial form-factor estimate ('plane', the default: on
  the calibration set it is several times more accurate than the shipped networks) or from the networks'
  I_SRO ('network'); both are reported, each with σ calibrated on simulated alloy planes (calibration.py).
- The per-pixel maps of the N-pass inference are the spread over the passes, not a calibrated σ, and are
  named so everywhere.
- Bragg peaks are searched on every integer plane and counted in the output. Punching (and filling) them is the
  default, because a peak at every node adds to every Warren–Cowley ratio at once (kept, the real volume's hk0
  ratios rose from |α| ≤ 0.012 to +0.08 … +0.23) and the networks put the peaks into I_SRO; `bragg='keep'` warns.
  Punching comes before symmetry averaging, so no mate moves a peak off its node.
"""

from __future__ import annotations

import csv
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal, Optional

import numpy as np
import torch
from pydantic import AfterValidator

from ..crystal.cell import UnitCell
from ..errors import InputFileError, InvalidInputError, ModelFileError
from ..jobs import check_cancel, report
from ..params import Params, param
from ..resources import resource_path
from .calibration import AlphaCalibration, calibration_for, file_sha256, load_calibrations
from .dsfu_net import DSFUGenerator, factorise, load_generator
from .planes import (PlaneGeometry, ResampledPlane, average_plane, find_bragg_peaks, parse_plane,
                     plane_from_volume, postprocess, preprocess, punch_and_fill, volume_q_extent)
from .warren_cowley import (SYMMETRIES, WarrenCowleyResult, fit_warren_cowley, refine_plane_radial,
                            resolve_symmetry)

SHIPPED = {"ff": "dsfu_ff_small.pt", "sro": "dsfu_sro_small.pt"}
MIN_MEASURED_FRACTION = 0.10  # of the grid's pixels: below this a plane is refused
NETWORK_Q_RANGE = (6.0, 8.0)  # Å⁻¹: the grid half widths the networks were trained on
VOLUME_SUFFIXES = (".h5", ".hdf5", ".nxs")
ALPHA_METHODS = ("plane", "network")


def _plane_name(v: str) -> str:
    try:
        parse_plane(v)
    except InvalidInputError as exc:
        raise ValueError(str(exc)) from None
    return v.strip().lower()


def _symmetry_name(v: str) -> str:
    try:
        return resolve_symmetry(v)
    except InvalidInputError as exc:
        raise ValueError(str(exc)) from None


def _grid_size(v: int) -> int:
    if v not in (64, 128, 256, 512):
        raise ValueError(f"the networks take 256 pixels per side (64, 128 or 512 also run), not {v}")
    return v


PlaneName = Annotated[str, AfterValidator(_plane_name)]
SymmetryName = Annotated[str, AfterValidator(_symmetry_name)]
GridSize = Annotated[int, AfterValidator(_grid_size)]


class FactoriseSettings(Params):
    """One factorisation job: the `factorise` options and the Diffuse panel's fields (defaults, bounds, help)."""

    plane: PlaneName = param("hk1", label="Plane", suggestions=["hk0", "hk1", "h0l", "0kl"],
                             help="plane to cut: hkn, hnl or nkl (e.g. hk1, h0l, 2kl); for a plain image, the plane "
                                  "it shows")
    q_max: Optional[float] = param(None, unit="Å⁻¹", gt=0, le=50, label="Q max", decimals=2, step=0.5,
                                   help="half width of the square Q grid (2π included); auto: the volume's extent "
                                        "in the plane")
    size: GridSize = param(256, label="grid", help="pixels per side of the Q grid (the networks take 256)")
    average: Literal["none", "friedel", "mm", "4mm"] = param(
        "none", label="Average", help="symmetry-average the measured pixels with their mates about the grid centre "
                                      "(after Bragg peaks are punched)")
    bragg: Literal["punch", "keep"] = param(
        "punch", label="Bragg peaks", help="Bragg peaks found at integer nodes: punch and fill them (left out of every "
                                           "fit), or keep them (a warning only)")
    passes: int = param(8, ge=1, le=256, label="Passes",
                        help="network passes; > 1 turns dropout on and gives the spread over the passes")
    alpha_from: Literal["plane", "network"] = param(
        "plane", label="α from", help="the α table from the measured plane / radial I_FF ('plane') or from the "
                                      "networks' I_SRO ('network'); the other is reported beside it")
    symmetry: SymmetryName = param("none", label="α symmetry", suggestions=list(SYMMETRIES),
                                   help="Warren–Cowley constraints: none, 2/m, mm, 4mm, 6mm")
    max_index: int = param(3, ge=1, le=8, label="max |u|, |v|", help="Warren–Cowley vectors |u|, |v| ≤ this")
    threshold: float = param(0.05, ge=0, lt=1, label="bin threshold", decimals=3, step=0.01,
                             help="network α: leave out folded bins below this fraction of the brightest")
    scale: Literal["auto", "demo", "raw"] = param(
        "auto", label="Values", help="plain images: 'demo' = DSFU-Net demo input (linear, scaled to [−1, 1], −1 = no "
                                     "data), 'raw' = intensities (NaN = no data), 'auto' = demo when a 256×256 image "
                                     "lies in [−1, 1] with negative values")
    cell: Optional[tuple[float, float, float, float, float, float]] = param(
        None, gui=False, help="plain images: unit cell a b c α β γ (Å, degrees), for α refinement")
    extent: Optional[tuple[float, float, float, float]] = param(
        None, gui=False, help="plain images: in-plane indices at the first and last column and row: h0 h1 k0 k1")


def measured_rule(pixels: int) -> str:
    need = int(np.ceil(MIN_MEASURED_FRACTION * pixels))
    return f"at least {100 * MIN_MEASURED_FRACTION:.0f} % of the grid measured ({need:,} of {pixels:,} pixels)"


def check_measured(plane: ResampledPlane) -> None:
    """Refuse a plane with too few measured pixels (InvalidInputError, one line naming the rule)."""
    n, total = plane.n_measured, plane.intensity.size
    if n < MIN_MEASURED_FRACTION * total:
        raise InvalidInputError(f"plane {plane.label}: {n:,} of {total:,} pixels measured ({100 * n / total:.1f} %); "
                                f"factorisation needs {measured_rule(total)}")


def default_generators(device=None) -> tuple[DSFUGenerator, DSFUGenerator]:
    out = []
    for key in ("ff", "sro"):
        p = resource_path("models", SHIPPED[key])
        if not p.exists():
            raise ModelFileError(p, "the shipped DSFU-Net model is missing; give --model-ff and --model-sro")
        out.append(load_generator(p, device))
    return out[0], out[1]


def model_paths(ff: Optional[str] = None, sro: Optional[str] = None) -> tuple[Path, Path]:
    if bool(ff) != bool(sro):
        raise InvalidInputError("give both generator files (I_FF and I_SRO) or neither")
    if ff:
        return Path(ff), Path(sro)
    return resource_path("models", SHIPPED["ff"]), resource_path("models", SHIPPED["sro"])


def load_models(ff: Optional[str] = None, sro: Optional[str] = None, device=None):
    """(I_FF generator, I_SRO generator, {'ff': sha256, 'sro': sha256}) — the shipped models by default."""
    pf, ps = model_paths(ff, sro)
    for p in (pf, ps):
        if not p.exists():
            raise ModelFileError(p, "model file does not exist" if ff else
                                 "the shipped DSFU-Net model is missing; give --model-ff and --model-sro")
    return load_generator(pf, device), load_generator(ps, device), {"ff": file_sha256(pf), "sro": file_sha256(ps)}


# ------------------------------------------------------------------------------------------ planes
def prepare_plane(plane: ResampledPlane, settings: FactoriseSettings) -> ResampledPlane:
    """Bragg search (and punching, by the settings' policy), then symmetry averaging: punching comes first,
    on the plane as measured, so averaging cannot move a peak off its node."""
    peaks = find_bragg_peaks(plane)
    plane.bragg = peaks
    if peaks.count:
        if settings.bragg == "punch":
            plane = punch_and_fill(plane, peaks)
        else:
            plane.notes.append(f"warning: {peaks.summary()} kept (bragg 'keep'): the networks and the fits take "
                               "them as diffuse scattering")
    elif peaks.note:
        plane.notes.append(peaks.note)
    if settings.average != "none":
        plane = average_plane(plane, settings.average)
    return plane


def load_volume_plane(volume, settings: FactoriseSettings) -> ResampledPlane:
    """Cut, resample and prepare a plane of a :class:`~crystalstudio.io.meerkat.MeerkatVolume`."""
    q_max = settings.q_max if settings.q_max is not None else round(volume_q_extent(volume, settings.plane), 3)
    p = plane_from_volume(volume, settings.plane, q_max, settings.size)
    if settings.q_max is None:
        p.notes.insert(0, f"Q grid ±{q_max:.2f} Å⁻¹: the volume's extent in the plane")
    lo, hi = NETWORK_Q_RANGE
    if not lo <= q_max <= hi:
        p.notes.append(f"note: Q max {q_max:.2f} Å⁻¹ lies outside the networks' training range {lo:g}–{hi:g} Å⁻¹")
    p.notes.extend(getattr(volume, "warnings", []))
    return prepare_plane(p, settings)


def plain_image_array(path) -> np.ndarray:
    from ..io.images import read_image

    p = Path(path)
    if p.suffix.lower() == ".npy":
        try:
            arr = np.load(p, allow_pickle=False)
        except Exception as exc:  # noqa: BLE001
            raise InputFileError(p, f"not a NumPy array file ({str(exc)[:120]})") from None
        arr = np.asarray(arr)
        while arr.ndim > 2 and arr.shape[0] == 1:
            arr = arr[0]
        if arr.ndim != 2:
            raise InputFileError(p, f"array has shape {arr.shape}; a plane is 2D (or 1×1×N×M as the DSFU-Net demo)")
        if not np.issubdtype(arr.dtype, np.number):
            raise InputFileError(p, f"array holds {arr.dtype}, not numbers")
        return arr.astype(np.float64)
    return read_image(p).data


NET_MULTIPLE = 64  # the DSFU-Net U-Net halves its input six times: plane sides must be multiples of this


def load_plain_plane(path, settings: FactoriseSettings) -> ResampledPlane:
    """A 2D plane from .npy (the DSFU-Net demo input) or an image fabio reads (TIFF, EDF, …).

    Conventions: 'demo' — linear intensities scaled to [−1, 1] with −1 where there is no data (as the
    authors' demo/INPUT/*.npy); 'raw' — intensities with NaN where there is no data. Geometry (for α) comes
    from `settings.cell` and `settings.extent`: columns run along the plane's first in-plane index from h0 to
    h1, rows along the second from k0 to k1 (row 0 holds k0)."""
    p = Path(path)
    arr = plain_image_array(p)
    rows, cols = arr.shape
    finite = np.isfinite(arr)
    if not finite.any():
        raise InvalidInputError(f"{p}: no finite pixel")
    scale = settings.scale
    notes = []
    if scale == "auto":
        v = arr[finite]
        demo = arr.shape == (256, 256) and v.min() >= -1 and v.max() <= 1 and v.min() < 0
        scale = "demo" if demo else "raw"
        notes.append(f"read as {'DSFU-Net demo input (linear, scaled to [−1, 1], −1 = no data)' if demo else 'raw intensities (NaN = no data)'}"
                     f"; --scale {'raw' if demo else 'demo'} reads it the other way")
    if scale == "demo":
        v = arr[finite]
        if v.min() < -1 - 1e-6 or v.max() > 1 + 1e-6:
            raise InvalidInputError(f"{p}: values {v.min():.3g} … {v.max():.3g} lie outside [−1, 1]: not a demo-style "
                                    "plane (use --scale raw)")
        measured = finite & (arr > -1)
        intensity = np.where(measured, (arr + 1) / 2, np.nan)
    else:
        measured = finite
        intensity = np.where(finite, arr, np.nan)
    geometry, index_map = None, None
    axis, n = parse_plane(settings.plane)
    if settings.cell is not None and settings.extent is not None:
        try:
            cell = UnitCell(*[float(x) for x in settings.cell])
        except Exception as exc:  # noqa: BLE001
            raise InvalidInputError(f"cell {settings.cell}: {exc}") from None
        geometry = PlaneGeometry(cell, axis, float(n))
        h0, h1, k0, k1 = (float(x) for x in settings.extent)
        if h0 == h1 or k0 == k1:
            raise InvalidInputError("extent: the first and last indices must differ (h0 ≠ h1, k0 ≠ k1)")
        index_map = np.array([[(h1 - h0) / (cols - 1), 0.0, h0], [0.0, (k1 - k0) / (rows - 1), k0]])
        d = geometry.M @ index_map[:, :2]
        sides = np.linalg.norm(d, axis=0)
        cosang = float(d[:, 0] @ d[:, 1] / (sides[0] * sides[1]))
        if abs(sides[0] / sides[1] - 1) > 0.02 or abs(cosang) > 0.02:
            notes.append(f"note: the pixels are {sides[0]:.4f} × {sides[1]:.4f} Å⁻¹ at {np.degrees(np.arccos(cosang)):.1f}°, "
                         "not the square Cartesian Q grid the networks were trained on")
        notes.append(f"geometry: cell {cell}, columns {'hkl'[geometry.inplane[0]]} {h0:g} … {h1:g}, rows "
                     f"{'hkl'[geometry.inplane[1]]} {k0:g} … {k1:g}")
    elif settings.cell is not None or settings.extent is not None:
        raise InvalidInputError("α refinement of a plain plane needs both the cell and the plane's extent "
                                "(--cell a b c al be ga --extent h0 h1 k0 k1)")
    else:
        notes.append("no geometry (cell and extent not given): factorisation only, no Warren–Cowley ratios")
    if arr.shape != (settings.size, settings.size):
        notes.append(f"note: {cols}×{rows} pixels; the networks were trained on {settings.size}×{settings.size}")
    pad_r, pad_c = -rows % NET_MULTIPLE, -cols % NET_MULTIPLE
    if pad_r or pad_c:  # the U-Net halves the plane six times: unmeasured pixels after the last row and column
        intensity = np.pad(intensity, ((0, pad_r), (0, pad_c)), constant_values=np.nan)
        measured = np.pad(measured, ((0, pad_r), (0, pad_c)), constant_values=False)
        notes.append(f"note: padded to {cols + pad_c}×{rows + pad_r} pixels with unmeasured ones after the last "
                     f"column and row (the networks need sides that are multiples of {NET_MULTIPLE})")
    label = PlaneGeometry.label(geometry) if geometry is not None else f"{p.name}"
    plane = ResampledPlane(intensity, geometry, None, label, measured, index_map, notes)
    return prepare_plane(plane, settings)


def load_plane(path, settings: Optional[FactoriseSettings] = None, **kw) -> ResampledPlane:
    """A volume's plane (HDF5) or a plain plane image, prepared by the settings (keywords override them)."""
    s = (settings or FactoriseSettings()).replace(**kw) if kw else (settings or FactoriseSettings())
    if str(path).lower().endswith(VOLUME_SUFFIXES):
        from ..io.meerkat import read_meerkat

        return load_volume_plane(read_meerkat(path), s)
    return load_plain_plane(path, s)


# ------------------------------------------------------------------------------------------ factorisation
@dataclass
class FactorisationResult:
    plane: ResampledPlane
    input_image: np.ndarray  # preprocessed network input (−1 where masked)
    ff: np.ndarray  # relative I_FF ((y+1)/2)², mean over the passes
    sro: np.ndarray
    product: np.ndarray  # k·I_FF·I_SRO, k fitted to the measured pixels
    measured: np.ndarray  # the input plane normalised to max 1 (NaN where not measured)
    residual: np.ndarray  # measured − product (NaN where not measured)
    ff_spread: Optional[np.ndarray] = None  # spread of I_FF over the N passes (not a calibrated σ)
    sro_spread: Optional[np.ndarray] = None
    sro_passes: Optional[np.ndarray] = None  # (N, n, n) relative I_SRO of every pass
    passes: int = 1
    wc: Optional[WarrenCowleyResult] = None  # the α table (by settings.alpha_from)
    wc_plane: Optional[WarrenCowleyResult] = None
    wc_network: Optional[WarrenCowleyResult] = None
    alpha_note: str = ""  # why there is no α table, when there is none
    model_hashes: dict = field(default_factory=dict)
    settings: Optional[FactoriseSettings] = None
    seconds: dict = field(default_factory=dict)

    @property
    def product_r(self) -> float:
        m = np.isfinite(self.measured)
        return float(np.sum(np.abs(self.residual[m])) / max(np.sum(self.measured[m]), 1e-12))

    @property
    def spread_label(self) -> str:
        return f"spread over {self.passes} passes (not a calibrated σ)"

    # kept for callers of the first version
    @property
    def ff_std(self):
        return self.ff_spread

    @property
    def sro_std(self):
        return self.sro_spread


def factorise_plane(plane: ResampledPlane, gen_ff: DSFUGenerator, gen_sro: DSFUGenerator,
                    settings: Optional[FactoriseSettings] = None, *, model_hashes: Optional[dict] = None,
                    calibrations: Optional[dict] = None, device=None, progress=None, cancel=None,
                    **kw) -> FactorisationResult:
    """Run the networks on a plane (refused when too few pixels are measured) and refine α where the plane's
    geometry allows. Keywords override fields of `settings`."""
    s = (settings or FactoriseSettings()).replace(**kw) if kw else (settings or FactoriseSettings())
    check_measured(plane)
    t0 = time.perf_counter()
    dev = device or "cpu"
    x = torch.as_tensor(preprocess(np.where(np.isfinite(plane.intensity), plane.intensity, np.nan)))[None, None].to(dev)
    share = 0.85 if plane.has_geometry else 1.0

    def net_progress(f, m):
        report(progress, share * f, m)

    fac = factorise(gen_ff.to(dev), gen_sro.to(dev), x, passes=s.passes, dropout=s.passes > 1, keep_passes=True,
                    progress=net_progress, cancel=cancel)
    t1 = time.perf_counter()
    check_cancel(cancel)
    ff = postprocess(fac.ff[0, 0].cpu().numpy())
    sro = postprocess(fac.sro[0, 0].cpu().numpy())
    sro_passes = postprocess(fac.sro_passes[:, 0, 0].cpu().numpy()).astype(np.float32)
    prod = ff * sro
    prod /= max(prod.max(), 1e-12)
    m = plane.measured
    top = float(np.max(plane.intensity[m])) if m.any() else 1.0
    meas = np.where(m, plane.intensity / max(top, 1e-300), np.nan)
    k = float(np.sum(meas[m] * prod[m]) / max(np.sum(prod[m] ** 2), 1e-12)) if m.any() else 1.0
    resid = np.where(m, meas - k * prod, np.nan)
    ffs = srs = None
    if s.passes > 1:  # spread over the passes of the relative intensities themselves
        ffs = np.std(postprocess(fac.ff_passes[:, 0, 0].cpu().numpy()), axis=0, ddof=1)
        srs = np.std(sro_passes, axis=0, ddof=1)
    out = FactorisationResult(plane, x[0, 0].cpu().numpy(), ff, sro, k * prod, meas, resid, ffs, srs, sro_passes,
                              s.passes, model_hashes=dict(model_hashes or {}), settings=s,
                              seconds={"networks": t1 - t0})
    refine_alpha(out, s, calibrations=calibrations, cancel=cancel,
                 progress=lambda f, msg: report(progress, share + (1 - share) * f, msg))
    out.seconds["total"] = time.perf_counter() - t0
    report(progress, 1.0, "done")
    return out


def refine_alpha(res: FactorisationResult, settings: Optional[FactoriseSettings] = None, *, calibrations=None,
                 progress=None, cancel=None) -> FactorisationResult:
    """(Re)fit the Warren–Cowley ratios of a factorisation by both methods, with calibrated σ; the table shown
    is the one `settings.alpha_from` names. Sets `res.alpha_note` when the plane allows no α."""
    s = settings or res.settings or FactoriseSettings()
    res.settings = s
    plane = res.plane
    res.wc = res.wc_plane = res.wc_network = None
    if not plane.has_geometry:
        res.alpha_note = ("no Warren–Cowley ratios: the plane has no geometry (give the cell and the plane's h/k "
                          "extent); factorisation only")
        return res
    if not float(plane.geometry.n).is_integer():
        res.alpha_note = f"no Warren–Cowley ratios: {plane.label} is not an integer plane"
        return res
    cals = load_calibrations() if calibrations is None else calibrations
    h, k = plane.indices()
    punched = plane.bragg is not None and plane.bragg.every_node and plane.bragg.pixels.any()
    failed = {}
    report(progress, 0.0, "α from the measured plane")
    try:
        res.wc_plane = refine_plane_radial(plane.intensity, h, k, plane.q_abs(), plane.measured,
                                           max_index=s.max_index, symmetry=s.symmetry)
        _calibrate(res.wc_plane, calibration_for("plane", cals=cals, bragg=punched))
    except InvalidInputError as exc:
        failed["plane"] = str(exc)
    check_cancel(cancel)
    report(progress, 0.3, "α from the networks' I_SRO")
    try:
        wc_net = fit_warren_cowley(res.sro, h, k, measured=plane.measured, max_index=s.max_index,
                                   symmetry=s.symmetry, threshold=s.threshold, source="networks' I_SRO")
        if res.sro_passes is not None and len(res.sro_passes) > 1:
            per = []
            for i, img in enumerate(res.sro_passes):
                check_cancel(cancel)
                report(progress, 0.3 + 0.7 * i / len(res.sro_passes), f"α of network pass {i + 1}")
                per.append(fit_warren_cowley(img, h, k, measured=plane.measured, max_index=s.max_index,
                                             symmetry=s.symmetry, threshold=s.threshold).alpha)
            wc_net.sigma_passes = np.std(np.stack(per), axis=0, ddof=1)
        _calibrate(wc_net, calibration_for("network", res.model_hashes, cals=cals, bragg=punched))
        res.wc_network = wc_net
    except InvalidInputError as exc:
        failed["network"] = str(exc)
    names = {"plane": "the measured plane", "network": "the networks' I_SRO"}
    primary, other = s.alpha_from, ("network" if s.alpha_from == "plane" else "plane")
    res.wc = res.wc_plane if primary == "plane" else res.wc_network
    notes = [f"α from {names[m]} failed: {failed[m]}" for m in (primary, other) if m in failed]
    if res.wc is None and other not in failed:
        res.wc = res.wc_plane if other == "plane" else res.wc_network
        notes.append(f"the α table comes from {names[other]} instead")
    if res.wc is None:
        raise InvalidInputError(f"plane {plane.label}: no Warren–Cowley ratios: " + "; ".join(notes))
    res.alpha_note = "; ".join(notes)
    report(progress, 1.0, "α refined")
    return res


def _calibrate(wc: WarrenCowleyResult, cal: Optional[AlphaCalibration]) -> None:
    if cal is None:
        sp = wc.sigma_passes if wc.sigma_passes is not None else 0.0
        wc.sigma = np.sqrt(wc.sigma_fit**2 + np.asarray(sp) ** 2)
        wc.sigma_kind = ("NOT calibrated for these models: least squares ⊕ spread over passes; it does not cover "
                         "the model error" if wc.sigma_passes is not None else
                         "NOT calibrated: least squares only; it does not cover the model error")
        return
    wc.sigma = cal.sigma(wc.alpha, wc.sigma_fit, wc.sigma_passes)
    wc.sigma_kind = cal.label()


# ------------------------------------------------------------------------------------------ export
def save_png(path, img: np.ndarray, title: str = "", cmap: str = "magma", symmetric: bool = False,
             unit: str = "relative intensity", extent=None, axis_labels=("Qx (Å⁻¹)", "Qy (Å⁻¹)")) -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    from ..io.common import atomic_path

    fig = Figure(figsize=(4.6, 4.0), dpi=100)
    ax = fig.add_subplot(111)
    data = np.ma.masked_invalid(img)
    kw = {"extent": extent} if extent is not None else {}
    if symmetric:
        v = float(np.nanmax(np.abs(img))) if np.isfinite(img).any() else 1.0
        im = ax.imshow(data, origin="lower", cmap="coolwarm", vmin=-(v or 1), vmax=v or 1, **kw)
    else:
        im = ax.imshow(data, origin="lower", cmap=cmap, **kw)
    cb = fig.colorbar(im, ax=ax, fraction=0.046)
    cb.set_label(unit, fontsize=8)
    ax.set_title(title, fontsize=9)
    if extent is not None:
        ax.set_xlabel(axis_labels[0], fontsize=8)
        ax.set_ylabel(axis_labels[1], fontsize=8)
    else:
        ax.set_xlabel("column", fontsize=8)
        ax.set_ylabel("row", fontsize=8)
    ax.set_facecolor("#7f7f7f")  # unmeasured pixels: grey
    fig.tight_layout()
    with atomic_path(path, ".png") as tmp:
        fig.savefig(tmp, format="png")


def alpha_rows(res: FactorisationResult) -> list[dict]:
    rows = []
    if res.wc is None:
        return rows
    for i, ((u, v), mem) in enumerate(zip(res.wc.vectors, res.wc.members)):
        r = {"u": u, "v": v, "alpha": res.wc.alpha[i], "sigma": res.wc.sigma[i],
             "members": " ".join(f"({x} {y})" for x, y in mem), "sigma_fit": res.wc.sigma_fit[i]}
        for name, wc in (("plane", res.wc_plane), ("network", res.wc_network)):
            if wc is not None:
                r[f"alpha_{name}"], r[f"sigma_{name}"] = wc.alpha[i], wc.sigma[i]
        if res.wc_network is not None and res.wc_network.sigma_passes is not None:
            r["sigma_passes"] = res.wc_network.sigma_passes[i]
        rows.append(r)
    return rows


def export_factorisation(res: FactorisationResult, out_dir, progress=None, cancel=None) -> dict[str, str]:
    """Arrays (.npy) and pictures (.png, with colour bar and axes) of the plane, its mask, both components, the
    product and residual, the spread over the passes, the α table (alpha.csv) and a summary (factorisation.json).
    Every file is written atomically."""
    from ..io.common import atomic_output, atomic_path

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plane = res.plane
    n = res.passes
    extent = None
    if plane.q_max is not None:
        extent = (-plane.q_max, plane.q_max, -plane.q_max, plane.q_max)
    items = [("plane", res.measured, f"{plane.label} measured (normalised)", "relative intensity", False),
             ("measured_mask", plane.measured.astype(np.float32), f"{plane.label}: 1 = measured, 0 = not", "measured",
              False),
             ("ff", res.ff, "I_FF (networks)", "relative intensity", False),
             ("sro", res.sro, "I_SRO (networks)", "relative intensity", False),
             ("product", res.product, "k·I_FF·I_SRO", "relative intensity", False),
             ("residual", res.residual, "measured − product", "relative intensity", True)]
    if res.ff_spread is not None:
        items += [("ff_spread_over_passes", res.ff_spread, f"I_FF spread over {n} passes (not a σ)",
                   "relative intensity", False),
                  ("sro_spread_over_passes", res.sro_spread, f"I_SRO spread over {n} passes (not a σ)",
                   "relative intensity", False)]
    paths = {}
    for i, (name, arr, title, unit, sym) in enumerate(items):
        check_cancel(cancel)
        report(progress, i / (len(items) + 2), f"writing {name}")
        with atomic_path(out / f"{name}.npy", ".npy") as tmp:
            with open(tmp, "wb") as f:
                np.save(f, np.asarray(arr, dtype=np.float32))
        save_png(out / f"{name}.png", arr, title, symmetric=sym, unit=unit, extent=extent,
                 cmap="gray" if name == "measured_mask" else "magma")
        paths[name] = str(out / f"{name}.npy")
    if res.wc is not None:
        rows = alpha_rows(res)
        cols = ["u", "v", "alpha", "sigma", "members", "sigma_fit"] + [c for c in ("alpha_plane", "sigma_plane",
                                                                                   "alpha_network", "sigma_network",
                                                                                   "sigma_passes") if c in rows[0]]
        with atomic_output(out / "alpha.csv") as f:
            f.write(f"# Warren-Cowley ratios alpha(uv)/alpha(00) of plane {plane.label} (only ratios are determined; "
                    "w cannot be separated on one integer plane)\n")
            f.write(f"# alpha, sigma: from the {res.wc.source}; sigma {res.wc.sigma_kind}\n")
            if res.wc_network is not None and res.wc_plane is not None:
                f.write(f"# alpha_plane/sigma_plane: measured plane / radial I_FF, sigma {res.wc_plane.sigma_kind}\n")
                f.write(f"# alpha_network/sigma_network: networks' I_SRO, sigma {res.wc_network.sigma_kind}\n")
            if "sigma_passes" in cols:
                f.write(f"# sigma_passes: spread of the network ratios over {n} passes\n")
            w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
            w.writeheader()
            for r in rows:
                w.writerow({c: (f"{r[c]:.5f}" if isinstance(r[c], (float, np.floating)) else r[c]) for c in cols})
        paths["alpha"] = str(out / "alpha.csv")
    summary = {"plane": plane.label, "measured_pixels": plane.n_measured, "pixels": int(plane.intensity.size),
               "notes": plane.notes, "passes": n, "maps_spread": res.spread_label if res.ff_spread is not None else None,
               "product_r": res.product_r, "alpha_note": res.alpha_note,
               "alpha_source": res.wc.source if res.wc else None, "sigma": res.wc.sigma_kind if res.wc else None,
               "settings": res.settings.to_dict() if res.settings else None,
               "bragg_peaks": plane.bragg.count if plane.bragg is not None else None, "seconds": res.seconds}
    with atomic_output(out / "factorisation.json") as f:
        json.dump(summary, f, indent=1, default=str)
        f.write("\n")
    paths["summary"] = str(out / "factorisation.json")
    report(progress, 1.0, "written")
    return paths


__all__ = ["FactoriseSettings", "FactorisationResult", "factorise_plane", "refine_alpha", "load_plane",
           "load_volume_plane", "load_plain_plane", "export_factorisation", "default_generators", "load_models",
           "check_measured", "measured_rule", "prepare_plane", "alpha_rows", "MIN_MEASURED_FRACTION"]
