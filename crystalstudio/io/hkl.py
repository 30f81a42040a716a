"""SHELX HKLF 4 (F², σ) and HKLF 3 (F, σ) reflection files.

Fixed columns (3I4, 2F8.2, I4): h k l in columns 1–12, value 13–20, σ 21–28, optional batch 29–32.
Never split on white space ('  -1  10-100' is a valid line). Reading stops at the 0 0 0 terminator;
anything after it (often the instructions or a second list) is ignored.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from ..crystal.reflections import ReflectionData
from ..errors import InputFileError
from .common import PathLike, read_text


def _field(line: str, a: int, b: int) -> str:
    return line[a:b].strip()


def parse_hklf(text: str, path: Optional[PathLike] = None, code: int = 4) -> ReflectionData:
    """Parse HKLF 4 (code=4, intensities) or HKLF 3 (code=3, amplitudes) text."""
    hkl, val, sig, bat = [], [], [], []
    has_batch = False
    terminated = False
    n_lines = 0
    for ln, raw in enumerate(text.splitlines(), start=1):
        line = raw.rstrip("\r\n")
        if not line.strip():
            continue
        n_lines += 1
        if len(line.rstrip()) < 12:
            raise InputFileError(path, f"line too short for h k l in columns 1-12: '{line.strip()}'", ln)
        try:
            h, k, l = int(line[0:4]), int(line[4:8]), int(line[8:12])
        except ValueError:
            if ln == 1 or not hkl:
                raise InputFileError(path, f"not an HKLF {code} file: columns 1-12 are not three integers "
                                           f"('{line[:40].strip()}')", ln) from None
            raise InputFileError(path, f"columns 1-12 are not three integers: '{line[:40].strip()}'", ln) from None
        if h == 0 and k == 0 and l == 0:
            terminated = True
            break
        fv, fs = _field(line, 12, 20), _field(line, 20, 28)
        if not fs:
            raise InputFileError(path, "line ends before the σ column (21-28): truncated or not HKLF format", ln)
        try:
            v = float(fv) if fv else 0.0
            s = float(fs) if fs else 0.0
        except ValueError:
            raise InputFileError(path, f"columns 13-28 are not two numbers (F8.2, F8.2): '{line[12:28]}'", ln) from None
        b = _field(line, 28, 32)
        if b:
            try:
                bat.append(int(b))
                has_batch = True
            except ValueError:
                raise InputFileError(path, f"batch number in columns 29-32 is not an integer: '{b}'", ln) from None
        else:
            bat.append(0)
        if not (np.isfinite(v) and np.isfinite(s)):
            raise InputFileError(path, "value or sigma is not finite", ln)
        hkl.append((h, k, l))
        val.append(v)
        sig.append(s)
    if not hkl:
        raise InputFileError(path, "no reflections before the 0 0 0 terminator" if terminated else "no reflections")
    notes = [] if terminated else ["no 0 0 0 terminator (file may be truncated)"]
    return ReflectionData(np.array(hkl), np.array(val), np.array(sig), "I" if code == 4 else "F",
                          batch=np.array(bat) if has_batch else None, source=str(path) if path else None, notes=notes)


def read_hklf(path: PathLike, code: int = 4) -> ReflectionData:
    return parse_hklf(read_text(path), path, code)


def format_hklf4(hkl, intensities, sigmas) -> str:
    """HKLF 4 text; values that do not fit F8.2 are written with fewer decimals (as SHELX does)."""
    out = []
    for (h, k, l), i, s in zip(np.asarray(hkl), intensities, sigmas):
        out.append(f"{h:4d}{k:4d}{l:4d}{_f8(i)}{_f8(s)}")
    out.append(f"{0:4d}{0:4d}{0:4d}{_f8(0.0)}{_f8(0.0)}")
    return "\n".join(out) + "\n"


def _f8(x: float) -> str:
    for dec in (2, 1, 0):
        s = f"{x:8.{dec}f}"
        if len(s) <= 8:
            return s
    raise ValueError(f"{x} does not fit an F8 field")
