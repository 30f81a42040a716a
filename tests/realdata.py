"""Where the real data is ($CRYSTALSTUDIO_DATA, else ../shared/data beside the checkout), and the structure +
reflection pairs several tests use. Tests that need it skip cleanly when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _data_dir() -> Path | None:
    env = os.environ.get("CRYSTALSTUDIO_DATA")
    candidate = Path(env) if env else ROOT.parent / "shared" / "data"
    return candidate if (candidate / "pairs").is_dir() else None


DATA = _data_dir()


def needs_data(*parts: str) -> Path:
    """Path inside the data folder, or skip the calling test when it is absent."""
    if DATA is None:
        pytest.skip("real data folder ../shared/data is absent")
    p = DATA.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"{p} is absent")
    return p


PAIRS = [
    ("ntd106c_P-1/P-1.cif", "ntd106c_P-1/DK_NTD106c_0m.hkl"),
    ("183_C2c/183.res", "183_C2c/183.hkl"),
    ("cod2240189_R-3c/2240189.res", "cod2240189_R-3c/2240189.hkl"),
    ("Co110_P-1/Co110.res", "Co110_P-1/Co110.hkl"),
    ("ylid_P212121_formats/shelx.cif", "ylid_P212121_formats/target.hkl"),
    ("ylid_P212121_formats/olex.cif", "ylid_P212121_formats/olex.cif"),
    ("timmy_P212121/timmy.cif", "timmy_P212121/timmy.cif"),
    ("sucrose_P21/sucrose.res", "sucrose_P21/sucrose.hkl"),
    ("sucrose_P21/nosphera2_sucrose.cif", "sucrose_P21/nosphera2_sucrose.hkl"),
    ("gemmi_2242624_P-1/2242624.cif", "gemmi_2242624_P-1/2242624.hkl"),
    ("water_Mn_P21c/nosphera2_water.cif", "water_Mn_P21c/nosphera2_water.hkl"),
    ("water_Mn_P21c/water.ins", "water_Mn_P21c/water.hkl"),
    ("epoxide_P21n/epoxide.cif", "epoxide_P21n/epoxide.hkl"),
    ("epoxide_P21n/olex2_epoxide_with_fcf.cif", "epoxide_P21n/olex2_epoxide_with_fcf.cif"),
    ("cod2229150_PrSO4OH_P21n/2229150.cif", "cod2229150_PrSO4OH_P21n/2229150.hkl"),
    ("alanine_P212121/alanine.cif", "alanine_P212121/alanine.cif"),
    ("ZZULI2_Cu_P21n/ZZULI2.ins", "ZZULI2_Cu_P21n/ZZULI2.hkl"),
]
EMBEDDED = [
    "embedded_hkl/SH2185_Cu_P212121.cif",
    "embedded_hkl/cod1516218_P4nmm.cif",
    "embedded_hkl/cod1550236_P-1.cif",
    "embedded_hkl/cod2019572_R-3.cif",
    "embedded_hkl/cod2238212_P-1.cif",
    "embedded_hkl/cod2242045_P-1.cif",
    "embedded_hkl/cod4003024_Pm-3m.cif",
]
