"""Structure statistics from files: every structure of a folder of CIFs, and PNG overlays of real against
generated distributions (the statistics themselves: crystalstudio.crystal.statistics)."""

from __future__ import annotations

import glob
import os
from typing import Optional

import numpy as np

from ..crystal.statistics import QUANTITIES, StructureStatistics, statistics_of
from ..errors import CrystalStudioError
from ..jobs import check_cancel, report
from .cif import read_cif_structures
from .common import atomic_path


def statistics_from_cif_folder(folder: str, progress=None, cancel=None, recursive: bool = True) -> StructureStatistics:
    """Statistics of every readable structure in a folder of CIFs (unreadable files are listed in
    `skipped` with the reason, not silently dropped)."""
    pattern = os.path.join(folder, "**", "*.cif") if recursive else os.path.join(folder, "*.cif")
    files = sorted(glob.glob(pattern, recursive=recursive))
    if not files:
        raise CrystalStudioError(f"{folder}: no .cif files")
    structures, skipped = [], []
    for i, f in enumerate(files):
        check_cancel(cancel)
        try:
            structures.extend(s for s in read_cif_structures(f) if s.sites)
        except CrystalStudioError as exc:
            skipped.append(f"{os.path.basename(f)}: {exc}")
        report(progress, 0.5 * (i + 1) / len(files), f"read {i + 1}/{len(files)} files")
    stats = statistics_of(structures, cancel=cancel)
    stats.skipped = skipped
    report(progress, 1.0, f"{stats.n_structures} structures")
    return stats


def plot_overlays(real: Optional[StructureStatistics], generated: Optional[StructureStatistics], path: str,
                  quantities: Optional[list[str]] = None) -> None:
    """PNG with one normalised histogram panel per quantity (real vs generated), written atomically."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    qs = quantities or list(QUANTITIES)
    fig = Figure(figsize=(4 * min(len(qs), 4), 3.2 * int(np.ceil(len(qs) / 4))), dpi=100)
    for i, q in enumerate(qs):
        ax = fig.add_subplot(int(np.ceil(len(qs) / 4)), min(len(qs), 4), i + 1)
        data = [(n, s.samples[q]) for n, s in (("real", real), ("generated", generated)) if s is not None]
        data = [(n, x) for n, x in data if len(x)]
        if data:
            allx = np.concatenate([x for _, x in data])
            bins = np.linspace(np.percentile(allx, 0.5), np.percentile(allx, 99.5) + 1e-9, 40)
            for n, x in data:
                ax.hist(x, bins=bins, density=True, alpha=0.55, label=f"{n} ({len(x)})")
            ax.legend(fontsize=7)
        ax.set_title(QUANTITIES[q], fontsize=9)
    fig.tight_layout()
    with atomic_path(path, ".png") as tmp:
        fig.savefig(tmp, format="png")
