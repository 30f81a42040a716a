"""Detector images through fabio (CBF, EDF, TIFF, MAR/Rigaku .img, MarCCD, and their .bz2/.gz copies).

Conventions: ``data[row, column]`` as stored in the file, row 0 first (it is drawn at the top, as ALBULA and adxv
do); pixel coordinates x = column, y = row, in pixels from the image corner. Besides the counts a
:class:`DetectorImage` carries what tells a user whether to believe them: a pixel mask (PILATUS/EIGER mark module
gaps with −1 and defective pixels with −2), the diffraction geometry when the header states it (for resolution
rings and d-spacings under the cursor) and warnings (a header-only file, an empty frame).
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from ..errors import InputFileError
from .common import PathLike, check_readable

#: pixel-mask codes of :meth:`DetectorImage.pixel_mask` and what they mean
MASK_GAP, MASK_BAD = 1, 2
MASK_LABELS = {MASK_GAP: "module gap (−1)", MASK_BAD: "bad pixel (−2)"}


@dataclass
class DetectorGeometry:
    """Flat detector perpendicular to the beam (detector 2θ = 0).

    beam_x, beam_y: direct-beam position in pixels (x = column, y = row, from the image corner);
    pixel_x, pixel_y: pixel size (mm); distance: sample–detector distance (mm); wavelength (Å).
    """

    beam_x: float
    beam_y: float
    pixel_x: float
    pixel_y: float
    distance: float
    wavelength: float
    source: str = ""

    def two_theta(self, x, y):
        """Scattering angle 2θ (radians) at pixel coordinates (x, y)."""
        r = np.hypot((np.asarray(x, float) - self.beam_x) * self.pixel_x, (np.asarray(y, float) - self.beam_y) * self.pixel_y)
        return np.arctan2(r, self.distance)

    def d_spacing(self, x, y):
        """Resolution d = λ / (2 sin θ) in Å at pixel coordinates (x, y) (inf at the beam centre)."""
        s = np.sin(0.5 * self.two_theta(x, y))
        with np.errstate(divide="ignore"):
            return np.where(s > 0, self.wavelength / (2 * np.maximum(s, 1e-300)), np.inf)

    def ring_radius_mm(self, d: float) -> float:
        """Radius (mm) on the detector of the resolution ring d (Å); nan beyond 2θ = 90°."""
        x = self.wavelength / (2 * d)
        if not 0 < x < math.sqrt(0.5):
            return float("nan")
        return self.distance * math.tan(2 * math.asin(x))

    def resolution_range(self, shape) -> tuple[float, float]:
        """(d at the edge nearest the beam, d at the farthest corner) in Å for an image of `shape` (rows, cols)."""
        rows, cols = shape
        corners_x, corners_y = np.array([0, cols, 0, cols]), np.array([0, 0, rows, rows])
        d_corner = float(np.min(self.d_spacing(corners_x, corners_y)))
        edges_x = np.array([0, cols, np.clip(self.beam_x, 0, cols), np.clip(self.beam_x, 0, cols)])
        edges_y = np.array([np.clip(self.beam_y, 0, rows), np.clip(self.beam_y, 0, rows), 0, rows])
        d_edge = float(np.min(self.d_spacing(edges_x, edges_y)))
        return d_edge, d_corner

    def ring_resolutions(self, shape, candidates=(20, 10, 6, 5, 4, 3.5, 3, 2.5, 2, 1.8, 1.6, 1.5, 1.4, 1.3, 1.2,
                                                  1.1, 1.0, 0.9, 0.8, 0.7, 0.6, 0.5),
                         min_separation: float = 0.06) -> list[float]:
        """Round d values (Å) whose rings fall on the detector, from low to high resolution, neighbouring rings at
        least `min_separation` of the image size apart (so that their labels can be read)."""
        _, d_corner = self.resolution_range(shape)
        size = max(shape) * max(self.pixel_x, self.pixel_y)
        keep: list[float] = []
        for d in sorted(candidates):  # from the outermost ring inwards
            r = self.ring_radius_mm(d)
            if d < d_corner or not np.isfinite(r):
                continue
            if r < 0.08 * size:  # not crowding the beam stop
                break
            if not keep or self.ring_radius_mm(keep[-1]) - r >= min_separation * size:
                keep.append(d)
        return keep[::-1]


@dataclass
class DetectorImage:
    path: str
    data: np.ndarray  # (rows, columns) counts as float64
    format: str
    header: dict = field(default_factory=dict)
    geometry: Optional[DetectorGeometry] = None
    warnings: list[str] = field(default_factory=list)
    detector: str = ""
    two_theta_deg: Optional[float] = None  # detector swing angle when the header gives it

    def pixel_mask(self) -> np.ndarray:
        """int8 codes per pixel: 0 valid, MASK_GAP (−1 in the frame), MASK_BAD (−2).

        Applied only when every negative value is −1 or −2 (the PILATUS/EIGER marking); CCD frames whose
        negative values are offset-corrected noise keep them as data. Computed once (by the reader, in the
        worker thread that reads the file)."""
        if self._mask is None:
            self._mask = pixel_mask_of(self.data)
        return self._mask

    _mask: Optional[np.ndarray] = field(default=None, repr=False, compare=False)


def pixel_mask_of(data: np.ndarray) -> np.ndarray:
    """See :meth:`DetectorImage.pixel_mask`."""
    codes = np.zeros(data.shape, dtype=np.int8)
    neg = data < 0
    if not neg.any():
        return codes
    vals = data[neg]
    if np.all((vals == -1) | (vals == -2)):
        codes[neg] = np.where(vals == -1, MASK_GAP, MASK_BAD).astype(np.int8)
    return codes


_MINICBF = {
    "pixel": re.compile(r"#\s*Pixel_size\s+([-+\d.eE]+)\s*m\s*x\s*([-+\d.eE]+)\s*m"),
    "wavelength": re.compile(r"#\s*Wavelength\s+([-+\d.eE]+)\s*A"),
    "distance": re.compile(r"#\s*Detector_distance\s+([-+\d.eE]+)\s*m"),
    "beam": re.compile(r"#\s*Beam_xy\s*\(\s*([-+\d.eE]+)\s*,\s*([-+\d.eE]+)\s*\)\s*pixels"),
    "two_theta": re.compile(r"#\s*Detector_2theta\s+([-+\d.eE]+)\s*deg"),
    "detector": re.compile(r"#\s*Detector:\s*([^\r\n]+)"),
}


def geometry_from_header(header: dict) -> tuple[Optional[DetectorGeometry], str, Optional[float]]:
    """(geometry, detector name, detector 2θ in degrees) from a PILATUS/EIGER mini-CBF header (SLS convention).

    Other formats' headers name their geometry in too many conventions to trust without a file to check
    them against; they return no geometry (no rings, no d under the cursor) rather than a wrong one."""
    text = header.get("_array_data.header_contents", "")
    if not isinstance(text, str) or not text:
        return None, "", None
    m = {k: r.search(text) for k, r in _MINICBF.items()}
    detector = m["detector"].group(1).strip() if m["detector"] else ""
    two_theta = float(m["two_theta"].group(1)) if m["two_theta"] else None
    if not all(m[k] for k in ("pixel", "wavelength", "distance", "beam")):
        return None, detector, two_theta
    px, py = (1e3 * float(v) for v in m["pixel"].groups())
    dist = 1e3 * float(m["distance"].group(1))
    lam = float(m["wavelength"].group(1))
    bx, by = (float(v) for v in m["beam"].groups())
    if min(px, py, dist, lam) <= 0 or (two_theta is not None and abs(two_theta) > 0.01):
        return None, detector, two_theta
    return DetectorGeometry(bx, by, px, py, dist, lam, source="mini-CBF header"), detector, two_theta


def _frame_warnings(data: np.ndarray, fabio_messages: list[str]) -> list[str]:
    out = []
    incomplete = [m for m in fabio_messages if "incomplete" in m.lower() or "missing" in m.lower()]
    if incomplete:
        m = re.search(r"(\d+)\s*<\s*expected\s*(\d+)", incomplete[0])
        what = f"{int(m.group(1)):,} of {int(m.group(2)):,} data bytes present".replace(",", "\u202f") if m else incomplete[0]
        out.append(f"header-only or truncated file: {what}; the missing pixels read as 0")
    valid = data[data >= 0] if (data < 0).any() else data.ravel()
    if valid.size == 0 or float(np.nanmax(valid)) == float(np.nanmin(valid)):
        out.append(f"empty frame: every pixel is {float(valid.ravel()[0]) if valid.size else float('nan'):g}")
    elif not incomplete:
        zero = float(np.mean(valid == 0))
        if zero > 0.99:
            out.append(f"nearly empty frame: {100 * zero:.2f} % of the pixels are 0")
    return out


class _Collect(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def read_image(path: PathLike) -> DetectorImage:
    p = check_readable(path, max_bytes=8 * 1024**3)
    if p.suffix.lower() == ".npy":
        arr = np.load(p, allow_pickle=False)
        if arr.ndim != 2:
            raise InputFileError(p, f"array has shape {arr.shape}, expected a 2D image")
        data = arr.astype(np.float64)
        return DetectorImage(str(p), data, "npy", warnings=_frame_warnings(data, []))
    import fabio

    collect = _Collect()
    flog = logging.getLogger("fabio")
    flog.addHandler(collect)
    try:
        img = fabio.open(str(p))
        data = np.asarray(img.data, dtype=np.float64)
    except Exception as exc:  # noqa: BLE001 - fabio raises many types for unknown formats
        raise InputFileError(p, f"not a detector image fabio can read ({type(exc).__name__}: {str(exc)[:120]})") from None
    finally:
        flog.removeHandler(collect)
    if data.ndim != 2 or data.size == 0:
        raise InputFileError(p, f"image data have shape {data.shape}")
    header = dict(img.header)
    geometry, detector, two_theta = geometry_from_header(header)
    frame = DetectorImage(str(p), data, type(img).__name__.replace("Image", ""), header, geometry=geometry,
                          warnings=_frame_warnings(data, collect.messages), detector=detector, two_theta_deg=two_theta)
    frame.pixel_mask()  # here, in the reading (worker) thread
    return frame
