"""Detector images through fabio (CBF, EDF, TIFF, MAR/Rigaku .img, MarCCD, and their .bz2/.gz copies)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import InputFileError
from .common import PathLike, check_readable


@dataclass
class DetectorImage:
    path: str
    data: np.ndarray  # (rows, columns) counts as float64
    format: str
    header: dict = field(default_factory=dict)


def read_image(path: PathLike) -> DetectorImage:
    p = check_readable(path, max_bytes=8 * 1024**3)
    if p.suffix.lower() == ".npy":
        arr = np.load(p, allow_pickle=False)
        if arr.ndim != 2:
            raise InputFileError(p, f"array has shape {arr.shape}, expected a 2D image")
        return DetectorImage(str(p), arr.astype(np.float64), "npy")
    import fabio

    try:
        img = fabio.open(str(p))
        data = np.asarray(img.data, dtype=np.float64)
    except Exception as exc:  # noqa: BLE001 - fabio raises many types for unknown formats
        raise InputFileError(p, f"not a detector image fabio can read ({type(exc).__name__}: {str(exc)[:120]})") from None
    if data.ndim != 2 or data.size == 0:
        raise InputFileError(p, f"image data have shape {data.shape}")
    return DetectorImage(str(p), data, type(img).__name__.replace("Image", ""), dict(img.header))
