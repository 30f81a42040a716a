"""Uncertainties of Warren–Cowley ratios that cover the truth.

A least-squares σ knows only the scatter of the folded bins; the networks add their own error, and a plane is
never exactly I_FF(|Q|)·I_SRO. The reported σ combines three terms,

    σ² = (k_fit·σ_fit)² + (k_passes·σ_passes)² + σ_model² + (r_model·|α|)²,

σ_fit from the least squares, σ_passes the spread of the ratios over the N network passes (network method),
and a model-error term (absolute and relative) — the constants calibrated by bench/bench_alpha_calibration.py
on simulated alloy planes that no network was trained on (crystalstudio.diffuse.alloys), so that the truth
lies within 1σ for ~68 % and within 2σ for ~95 % of the ratios of planes held out from the calibration —
separately for planes whose Bragg peaks were punched at every node (the holes at the nodes leave the common
level of all ratios less well determined).
The constants live in resources/models/dsfu_alpha_calibration.json. A network calibration holds only for the
models it was measured with (their SHA-256 is stored); other models get σ_fit ⊕ σ_passes, labelled
"not calibrated".
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from ..resources import resource_path

CALIBRATION_FILE = "dsfu_alpha_calibration.json"


@dataclass
class AlphaCalibration:
    method: str  # 'plane' (measured plane / radial I_FF) or 'network' (the networks' I_SRO)
    bragg: bool = False  # for planes whose Bragg peaks were punched at every node (the hole widens the errors)
    k_fit: float = 1.0
    k_passes: float = 1.0
    sigma_model: float = 0.0
    r_model: float = 0.0
    planes: int = 0  # calibration planes
    held_out: dict = field(default_factory=dict)  # coverage_1sigma, coverage_2sigma, mean_abs_error, planes, values
    models: dict = field(default_factory=dict)  # {'ff': sha256, 'sro': sha256} for the network method
    description: str = ""

    def sigma(self, alpha, sigma_fit, sigma_passes=None) -> np.ndarray:
        a = np.abs(np.asarray(alpha, dtype=np.float64))
        var = (self.k_fit * np.asarray(sigma_fit)) ** 2 + self.sigma_model**2 + (self.r_model * a) ** 2
        if sigma_passes is not None:
            var = var + (self.k_passes * np.asarray(sigma_passes)) ** 2
        return np.sqrt(var)

    def label(self) -> str:
        h = self.held_out
        m = h.get("molecular") if h else None
        kind = "simulated alloy" + (" and molecular" if m else "") + " planes"
        if self.bragg:
            kind += " with Bragg peaks punched"
        text = f"calibrated on {self.planes} {kind}"
        if h:
            text += (f"; on {h.get('planes', 0)} held-out alloy planes the truth lay within 1σ for "
                     f"{100 * h.get('coverage_1sigma', 0):.0f} % and within 2σ for {100 * h.get('coverage_2sigma', 0):.0f} % "
                     f"of {h.get('values', 0)} ratios")
        if m:
            text += f" (molecular planes: 2σ {100 * m.get('coverage_2sigma', 0):.0f} %)"
        return text


def file_sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def calibration_path() -> Path:
    return resource_path("models", CALIBRATION_FILE)


def load_calibrations(path=None) -> dict[str, AlphaCalibration]:
    """{'plane': …, 'network': …} from the shipped file (empty when it is absent or unreadable)."""
    p = Path(path) if path else calibration_path()
    try:
        raw = json.loads(p.read_text())
    except (OSError, ValueError):
        return {}
    out = {}
    for key, d in raw.get("methods", {}).items():
        try:
            out[key] = AlphaCalibration(**d)
        except TypeError:
            continue
    return out


def calibration_summary(path=None) -> dict:
    """The benchmark's overall held-out figures per method ({'plane': {...}, 'network': {...}}; empty if none)."""
    p = Path(path) if path else calibration_path()
    try:
        return dict(json.loads(p.read_text()).get("held_out_alloys", {}))
    except (OSError, ValueError, AttributeError):
        return {}


def save_calibrations(cals: dict[str, AlphaCalibration], path, extra: Optional[dict] = None) -> None:
    from ..io.common import atomic_output

    doc = {"about": "σ calibration of Warren–Cowley ratios (crystalstudio.diffuse.calibration); written by "
                    "bench/bench_alpha_calibration.py", **(extra or {}),
           "methods": {k: asdict(v) for k, v in cals.items()}}
    with atomic_output(path) as f:
        json.dump(doc, f, indent=1)
        f.write("\n")


def calibration_key(method: str, bragg: bool) -> str:
    return f"{method}_bragg" if bragg else method


def calibration_for(method: str, model_hashes: Optional[dict] = None, cals: Optional[dict] = None,
                    bragg: bool = False) -> Optional[AlphaCalibration]:
    """The calibration that applies, or None: the one for planes with punched Bragg peaks when `bragg`, and a
    network calibration only for the models it was measured with."""
    cals = load_calibrations() if cals is None else cals
    cal = cals.get(calibration_key(method, bragg))
    if cal is None:
        return None
    if method == "network" and cal.models and model_hashes != cal.models:
        return None
    return cal


def coverage(errors: np.ndarray, sigmas: np.ndarray) -> tuple[float, float]:
    z = np.abs(errors) / np.maximum(sigmas, 1e-300)
    return float(np.mean(z <= 1)), float(np.mean(z <= 2))


def fit_calibration(method: str, alpha, truth, sigma_fit, sigma_passes=None, groups=None) -> AlphaCalibration:
    """Constants for which the truth lies within 1σ for ≥ 68.3 % and within 2σ for ≥ 95.4 % of the given ratios,
    with the smallest geometric-mean σ (the sharpest σ that covers; grid search over k_fit, k_passes, σ_model,
    r_model). With `groups` (boolean masks, e.g. alloy and molecular planes) the coverage must hold in each."""
    alpha, truth, sigma_fit = (np.asarray(a, dtype=np.float64) for a in (alpha, truth, sigma_fit))
    err = alpha - truth
    sp = None if sigma_passes is None else np.asarray(sigma_passes, dtype=np.float64)
    groups = [np.ones(len(err), dtype=bool)] if groups is None else [np.asarray(g, dtype=bool) for g in groups]
    groups = [g for g in groups if g.any()]
    best, best_cost = None, np.inf
    k_fits = [0.0, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0]
    k_passes = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0] if sp is not None else [0.0]
    s_models = [0.0, 0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1]
    r_models = [0.0, 0.02, 0.05, 0.1, 0.2, 0.3]
    for kf in k_fits:
        for kp in k_passes:
            for sm in s_models:
                for rm in r_models:
                    cal = AlphaCalibration(method, k_fit=kf, k_passes=kp, sigma_model=sm, r_model=rm)
                    sig = cal.sigma(alpha, sigma_fit, sp)
                    covered = True
                    for g in groups:
                        c1, c2 = coverage(err[g], sig[g])
                        covered &= c1 >= 0.683 and c2 >= 0.954
                    if not covered:
                        continue
                    cost = float(np.mean(np.log(np.maximum(sig, 1e-12))))
                    if cost < best_cost:
                        best, best_cost = cal, cost
    if best is None:  # nothing on the grid covers: the widest
        best = AlphaCalibration(method, k_fit=k_fits[-1], k_passes=k_passes[-1], sigma_model=s_models[-1],
                                r_model=r_models[-1])
    best.planes = 0
    return best
