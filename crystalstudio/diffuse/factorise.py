"""From a Meerkat volume to I_FF, I_SRO and Warren–Cowley ratios: the `factorise` job and the Diffuse panel's
pipeline. Intensities are relative (normalised to the plane's maximum)."""

from __future__ import annotations

import csv
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ..errors import ModelFileError
from ..jobs import check_cancel, report
from ..resources import resource_path
from .dsfu_net import DSFUGenerator, factorise, load_generator
from .planes import ResampledPlane, plane_from_volume, postprocess, preprocess, punch_and_fill, symmetry_average
from .warren_cowley import WarrenCowleyResult, refine_warren_cowley

SHIPPED = {"ff": "dsfu_ff_small.pt", "sro": "dsfu_sro_small.pt"}


def default_generators(device=None) -> tuple[DSFUGenerator, DSFUGenerator]:
    out = []
    for key in ("ff", "sro"):
        p = resource_path("models", SHIPPED[key])
        if not p.exists():
            raise ModelFileError(p, "the shipped DSFU-Net model is missing; give --model-ff and --model-sro")
        out.append(load_generator(p, device))
    return out[0], out[1]


@dataclass
class FactorisationResult:
    plane: ResampledPlane
    input_image: np.ndarray  # preprocessed network input (−1 where masked)
    ff: np.ndarray  # relative I_FF ((y+1)/2)²
    sro: np.ndarray
    product: np.ndarray  # I_FF·I_SRO normalised to max 1
    measured: np.ndarray  # the input plane normalised to max 1 (NaN where masked)
    residual: np.ndarray  # measured − product (NaN where masked)
    ff_std: Optional[np.ndarray] = None
    sro_std: Optional[np.ndarray] = None
    wc: Optional[WarrenCowleyResult] = None
    seconds: dict = field(default_factory=dict)

    @property
    def product_r(self) -> float:
        m = np.isfinite(self.measured)
        return float(np.sum(np.abs(self.residual[m])) / max(np.sum(self.measured[m]), 1e-12))


def factorise_plane(plane: ResampledPlane, gen_ff: DSFUGenerator, gen_sro: DSFUGenerator, *, passes: int = 1,
                    dropout: bool = False, refine: bool = True, max_index: int = 3, symmetry: str = "none",
                    device=None, progress=None, cancel=None) -> FactorisationResult:
    t0 = time.perf_counter()
    x = torch.as_tensor(preprocess(plane.intensity))[None, None].to(device or "cpu")
    report(progress, 0.2, "networks")
    fac = factorise(gen_ff.to(device or "cpu"), gen_sro.to(device or "cpu"), x, passes=passes, dropout=dropout)
    t1 = time.perf_counter()
    check_cancel(cancel)
    ff = postprocess(fac.ff[0, 0].cpu().numpy())
    sro = postprocess(fac.sro[0, 0].cpu().numpy())
    prod = ff * sro
    prod /= max(prod.max(), 1e-12)
    meas = plane.intensity / max(np.nanmax(plane.intensity), 1e-12) if np.isfinite(plane.intensity).any() else plane.intensity
    # scale the product to the measurement by least squares over measured pixels
    m = np.isfinite(meas)
    k = float(np.sum(meas[m] * prod[m]) / max(np.sum(prod[m] ** 2), 1e-12)) if m.any() else 1.0
    resid = np.where(m, meas - k * prod, np.nan)
    ffs = fac.ff_std[0, 0].cpu().numpy() if fac.ff_std is not None else None
    srs = fac.sro_std[0, 0].cpu().numpy() if fac.sro_std is not None else None
    out = FactorisationResult(plane, x[0, 0].cpu().numpy(), ff, sro, k * prod, meas, resid, ffs, srs,
                              seconds={"networks": t1 - t0})
    if refine and float(plane.geometry.n).is_integer():
        report(progress, 0.8, "Warren–Cowley refinement")
        out.wc = refine_warren_cowley(sro, plane.geometry, plane.q_max, max_index=max_index, symmetry=symmetry)
    out.seconds["total"] = time.perf_counter() - t0
    report(progress, 1.0, "done")
    return out


def load_plane(volume_path, plane: str, q_max: float = 7.0, size: int = 256, symmetry: str = "none",
               punch: bool = False) -> ResampledPlane:
    from ..io.meerkat import read_meerkat

    vol = read_meerkat(volume_path)
    p = plane_from_volume(vol, plane, q_max, size)
    img = p.intensity
    if symmetry != "none":
        img = symmetry_average(img, symmetry)
    if punch:
        img = punch_and_fill(img, p.geometry, q_max)
    return ResampledPlane(img, p.geometry, q_max, p.label)


def save_png(path, img: np.ndarray, title: str = "", cmap: str = "magma", symmetric: bool = False) -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    from ..io.common import atomic_path

    fig = Figure(figsize=(4.2, 4.0), dpi=100)
    ax = fig.add_subplot(111)
    data = np.ma.masked_invalid(img)
    if symmetric:
        v = np.nanmax(np.abs(img)) or 1.0
        im = ax.imshow(data, origin="lower", cmap="coolwarm", vmin=-v, vmax=v)
    else:
        im = ax.imshow(data, origin="lower", cmap=cmap)
    fig.colorbar(im, ax=ax, fraction=0.046)
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    fig.tight_layout()
    with atomic_path(path, ".png") as tmp:
        fig.savefig(tmp, format="png")


def export_factorisation(res: FactorisationResult, out_dir) -> dict[str, str]:
    """plane/ff/sro/product/residual (+ std) as .npy and .png, and the α table as CSV."""
    from ..io.common import atomic_output, atomic_path

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    items = {"plane": res.measured, "ff": res.ff, "sro": res.sro, "product": res.product, "residual": res.residual}
    if res.ff_std is not None:
        items["ff_std"], items["sro_std"] = res.ff_std, res.sro_std
    paths = {}
    for name, arr in items.items():
        with atomic_path(out / f"{name}.npy", ".npy") as tmp:
            with open(tmp, "wb") as f:
                np.save(f, np.asarray(arr, dtype=np.float32))
        save_png(out / f"{name}.png", arr, f"{res.plane.label} {name}", symmetric=(name == "residual"))
        paths[name] = str(out / f"{name}.npy")
    if res.wc is not None:
        with atomic_output(out / "alpha.csv") as f:
            w = csv.writer(f)
            f.write("# Warren-Cowley ratios alpha(uv)/alpha(00) from the normalised I_SRO (only ratios are determined)\n")
            w.writerow(["u", "v", "alpha", "sigma", "members"])
            for (u, v), a, s, mem in zip(res.wc.vectors, res.wc.alpha, res.wc.sigma, res.wc.members):
                w.writerow([u, v, f"{a:.5f}", f"{s:.5f}", " ".join(f"({x} {y})" for x, y in mem)])
        paths["alpha"] = str(out / "alpha.csv")
    return paths
