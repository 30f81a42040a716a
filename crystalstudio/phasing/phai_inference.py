"""PhAI inference: model files, input from measured reflections, phase recycling and the scan of
seed paper 1 (cycles 1…N × {zero start, random starts}) with a figure of merit that needs no true phases.

Phases in degrees; amplitudes |F| on the PhAI reflection list (see phai_grid).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ..crystal.symmetry import SpaceGroup, encode_hkl
from ..errors import InvalidInputError, ModelFileError, torch_load_error
from ..jobs import check_cancel, report
from .phai_grid import PhAIGrid
from .phai_model import PhAI, PhAIConfig, decode_phases


# ------------------------------------------------------------------------------------------ model files
def config_from_state_dict(sd: dict) -> PhAIConfig:
    """Infer the architecture from parameter shapes (published layout)."""
    try:
        conv = sd["net_a.1.weight"]
        filters, kernel = conv.shape[0], conv.shape[-1]
        cnn_depth = len({k.split(".")[1] for k in sd if k.startswith("net_convolution_layers.")})
        proj = sd["net_projection_layer.1.weight"]
        dim, grid = proj.shape
        mixer_ids = {int(k.split(".")[1]) for k in sd if k.startswith("net_mixer_layers.") and k.count(".") >= 4}
        mlp_depth = len(mixer_ids)
        token_exp = sd["net_mixer_layers.0.0.layer1.weight"].shape[0] if mlp_depth else 1
        dim_exp = sd["net_mixer_layers.0.1.layer1.weight"].shape[0] if mlp_depth else 1
        reflections = sd["net_output.3.weight"].shape[0] // 2
    except KeyError as exc:
        raise ModelFileError(None, f"not a PhAI state dict: missing {exc}") from None
    m = next((m for m in range(1, 64) if (2 * m + 1) * (m + 1) ** 2 == grid), None)
    if m is None:
        raise ModelFileError(None, f"projection input {grid} is not a (2m+1)(m+1)² grid")
    return PhAIConfig(m, int(filters), int(kernel), cnn_depth, int(dim), int(dim_exp), int(token_exp), mlp_depth,
                      int(reflections))


def load_phai(path, device=None, expected: Optional[PhAIConfig] = None) -> PhAI:
    """A PhAI model from a published state-dict file or a CrystalStudio checkpoint (weights only, strict).

    Refuses pickled code (weights_only=True), files that are not PhAI state dicts, and architectures that
    differ from `expected` — with a message that names the file and the mismatch.
    """
    p = Path(path)
    if not p.is_file():
        raise ModelFileError(p, "model file does not exist")
    try:
        obj = torch.load(str(p), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - unpickling errors come in many types
        raise torch_load_error(p, exc) from None
    sd = obj
    domain = dict(PUBLISHED_DOMAIN)
    if isinstance(obj, dict) and "model" in obj and isinstance(obj["model"], dict):
        sd = obj["model"]
        domain.update(training_domain(obj))
        if obj.get("kind") not in (None, "phai"):
            raise ModelFileError(p, f"checkpoint holds a '{obj.get('kind')}' model, not PhAI")
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise ModelFileError(p, "file holds no state dict of tensors")
    sd = {re.sub(r"^(module\.|_orig_mod\.)", "", k): v for k, v in sd.items()}
    try:
        cfg = config_from_state_dict(sd)
    except ModelFileError as exc:
        raise ModelFileError(p, exc.problem) from None
    if expected is not None and cfg != expected:
        diff = ", ".join(f"{k} {getattr(cfg, k)} (expected {getattr(expected, k)})"
                         for k in cfg.to_dict() if getattr(cfg, k) != getattr(expected, k))
        raise ModelFileError(p, f"architecture differs: {diff}")
    model = PhAI(cfg)
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as exc:
        first = str(exc).split("\n")[0:3]
        raise ModelFileError(p, "state dict does not fit the PhAI layout: " + " ".join(first)[:300]) from None
    model.eval()
    model.domain = domain  # what the weights were trained on (PhAI warns outside it)
    return model.to(device or "cpu")


# The published PhAI (and the shipped small model) were trained on P2₁/c cells with edges 4–10 Å.
PUBLISHED_DOMAIN = {"space_group": "P 1 21/c 1", "a_min": 4.0, "a_max": 10.0}


def training_domain(checkpoint: dict) -> dict:
    """The training domain a CrystalStudio checkpoint records ("domain", else its generator settings)."""
    dom = checkpoint.get("domain")
    if isinstance(dom, dict):
        return {k: v for k, v in dom.items() if k in ("space_group", "a_min", "a_max") and v is not None}
    try:
        gen = checkpoint["config"]["generator"]
        return {"space_group": gen.get("space_group", PUBLISHED_DOMAIN["space_group"]),
                "a_min": float(gen["cell"]["a_min"]), "a_max": float(gen["cell"]["a_max"])}
    except (KeyError, TypeError, ValueError):
        return {}


# ------------------------------------------------------------------------------------------ input
@dataclass
class PhAIInput:
    amplitudes: np.ndarray  # (R,) scaled to max 1
    measured: np.ndarray  # (R,) bool: a measured reflection fills the slot
    n_used: int  # measured unique reflections that map into the list
    n_outside: int  # measured unique reflections beyond the index sphere
    notes: list[str] = field(default_factory=list)


def phai_input_from_reflections(hkl, amplitudes, space_group: SpaceGroup, grid: PhAIGrid = PhAIGrid()) -> PhAIInput:
    """Fill the PhAI list from measured |F| of a P2₁/c data set (any symmetry-equivalent indices).

    Every list slot takes the measured amplitude of its symmetry equivalent (so the l = 0, h < 0 slots
    duplicate (|h|, k, 0)); absences and unmeasured slots stay 0; |F| is scaled to max 1.
    """
    if space_group.number != 14 or space_group.name != "P 1 21/c 1":
        raise InvalidInputError(f"PhAI is trained for P2₁/c (setting P 1 21/c 1); the data are in {space_group.name}. "
                                "Transform P2₁/n and P2₁/a to P2₁/c first (the Phasing panel does)")
    hkl = np.asarray(hkl, dtype=np.int64)
    F = np.asarray(amplitudes, dtype=np.float64)
    if len(hkl) == 0:
        raise InvalidInputError("no reflections")
    asu_meas, _, _ = space_group.to_asu(hkl)
    keys_meas = encode_hkl(asu_meas)
    order = np.argsort(keys_meas)
    keys_sorted, F_sorted = keys_meas[order], F[order]
    asu_grid, _, _ = space_group.to_asu(grid.hkl)
    keys_grid = encode_hkl(asu_grid)
    pos = np.clip(np.searchsorted(keys_sorted, keys_grid), 0, len(keys_sorted) - 1)
    found = keys_sorted[pos] == keys_grid
    out = np.where(found, F_sorted[pos], 0.0)
    out[grid.absent] = 0.0
    if out.max() <= 0:
        raise InvalidInputError("no measured reflection falls on the PhAI list (|h|, k, l ≤ 10, h²+k²+l² ≤ 100)")
    out = out / out.max()
    unique_meas = np.unique(keys_meas)
    used = np.isin(unique_meas, keys_grid[found])
    n_outside = int(np.count_nonzero(~np.isin(unique_meas, keys_grid)))
    notes = [f"{int(used.sum())} unique reflections on the PhAI list, {n_outside} beyond it "
             f"(|h|, k, l ≤ {grid.max_index}, h²+k²+l² ≤ {grid.max_index ** 2}) left out",
             f"{int(np.count_nonzero(~found & ~grid.absent))} of {int(np.count_nonzero(~grid.absent))} "
             "non-absent list reflections unmeasured (set to 0)"]
    return PhAIInput(out, found & ~grid.absent, int(used.sum()), n_outside, notes)


# ------------------------------------------------------------------------------------------ recycling
@torch.no_grad()
def recycle(model: PhAI, amplitudes: torch.Tensor, start_phases: torch.Tensor, cycles: int,
            grid: Optional[PhAIGrid] = None, autocast: bool = False, cancel=None):
    """Run `cycles` passes, feeding argmax phases back. amplitudes, start_phases: (B, R) (degrees).

    Returns phases (cycles, B, R) in degrees and probabilities of the chosen class (cycles, B, R).
    """
    grid = grid or PhAIGrid(model.config.max_index)
    dev = next(model.parameters()).device
    a = grid.to_grid(amplitudes.to(dev, torch.float32))
    ph = start_phases.to(dev, torch.float32)
    out_ph, out_p = [], []
    for _ in range(cycles):
        check_cancel(cancel)
        with torch.autocast(device_type=dev.type, dtype=torch.bfloat16 if dev.type == "cpu" else torch.float16,
                            enabled=autocast):
            logits = model(a, grid.to_grid(ph))
        prob = torch.softmax(logits.float(), dim=1)
        ph = decode_phases(logits)
        out_ph.append(ph)
        out_p.append(prob.max(dim=1).values)
    return torch.stack(out_ph), torch.stack(out_p)


@dataclass
class PhAICandidate:
    start: int  # 0 = zero start, else random start number
    cycles: int
    phases: np.ndarray  # (R,) degrees
    fom: float  # figure of merit (higher is better), no true phases needed
    confidence: float  # |F|²-weighted mean probability of the chosen phases
    skewness: float  # skewness of the E-map
    stable: float  # fraction of phases unchanged from the previous cycle
    map_r: Optional[float] = None  # against reference phases, when known
    phase_error: Optional[float] = None


class EMapSkewness:
    """Skewness ⟨ρ³⟩/⟨ρ²⟩^{3/2} of the P2₁/c map from (|F|, φ) on the list — a direct-methods FOM (it sums the
    triplet invariants |F_h F_k F_{h+k}| cos(φ_h + φ_k − φ_{h+k}), so it is origin invariant). The symmetry
    expansion is set up once; each phase set then costs one FFT."""

    def __init__(self, amplitudes: np.ndarray, grid: PhAIGrid):
        sg = SpaceGroup.from_name("P21/c")
        keep = np.flatnonzero(np.asarray(amplitudes) > 0)
        asu, _, _ = sg.to_asu(grid.hkl[keep])
        _, first = np.unique(encode_hkl(asu), return_index=True)
        self.sel = keep[first]  # one list reflection per independent reflection
        mates, shifts = sg.equivalents(grid.hkl[self.sel])
        allm = np.concatenate([mates, -mates]).reshape(-1, 3)
        self.shift = np.concatenate([shifts, shifts]).reshape(-1)
        self.sign = np.concatenate([np.ones_like(shifts), -np.ones_like(shifts)]).reshape(-1)
        self.src = np.tile(np.arange(len(self.sel)), 2 * len(mates))
        _, uniq = np.unique(encode_hkl(allm), return_index=True)
        self.n = 2 * grid.max_index + 4  # > 2|h|max: no aliasing; 24³ for m = 10
        self.pos = np.ravel_multi_index(tuple((allm[uniq] % self.n).T), (self.n,) * 3)
        self.uniq = uniq
        self.amp = np.asarray(amplitudes, dtype=np.float64)[self.sel]

    def __call__(self, phases_deg: np.ndarray) -> float:
        phi = np.radians(np.asarray(phases_deg, dtype=np.float64)[self.sel])
        ph = (phi[self.src] + self.shift) * self.sign
        F = self.amp[self.src[self.uniq]] * np.exp(1j * ph[self.uniq])
        X = np.zeros(self.n**3, dtype=np.complex128)
        X[self.pos] = F
        rho = np.fft.fftn(X.reshape((self.n,) * 3)).real
        rho -= rho.mean()
        s2 = np.mean(rho**2)
        return float(np.mean(rho**3) / max(s2, 1e-300) ** 1.5)


def emap_skewness(phases_deg: np.ndarray, amplitudes: np.ndarray, grid: PhAIGrid) -> float:
    """One-off E-map skewness (see :class:`EMapSkewness`)."""
    return EMapSkewness(amplitudes, grid)(phases_deg)


def scan_starts(n_reflections: int, random_starts: int, seed: int = 0) -> np.ndarray:
    """Start phases (1 + random_starts, R) in degrees: row 0 all zero, then random 0/−180 rows drawn
    from numpy's default_rng(seed) — every structure of a batched scan gets the same starts."""
    starts = np.zeros((1 + random_starts, n_reflections), dtype=np.float32)
    if random_starts:
        starts[1:] = np.random.default_rng(seed).choice([0.0, -180.0], size=(random_starts, n_reflections))
    return starts


@dataclass
class RecyclingRuns:
    phases: np.ndarray  # (C, S, B, R) degrees: output of cycle c for structure s, start b
    probs: np.ndarray  # (C, S, B, R) probability of the chosen class
    forwards: int  # rows actually passed through the network (≤ C·S·B)


@torch.no_grad()
def recycle_starts(model: PhAI, amplitudes, starts: np.ndarray, max_cycles: int, *, skip_repeats: bool = True,
                   max_rows: int = 64, autocast: bool = False, progress=None, cancel=None) -> RecyclingRuns:
    """Recycle every start of every structure for `max_cycles` cycles.

    amplitudes (S, R) scaled |F|; starts (B, R) degrees. Rows (structure, start) go through the network in
    batches of at most `max_rows`. Recycling is deterministic, so with `skip_repeats` a row whose input phases
    equal an input already seen for the same structure (an earlier cycle of any start — converged rows and
    2-cycles — or another start in this cycle) takes that input's output instead of a new forward pass.
    """
    grid = PhAIGrid(model.config.max_index)
    dev = next(model.parameters()).device
    amp = torch.as_tensor(np.asarray(amplitudes, dtype=np.float32).reshape(-1, grid.n))
    S, B = amp.shape[0], len(starts)
    C = max_cycles
    out_ph = np.zeros((C, S, B, grid.n), dtype=np.float32)
    out_p = np.zeros((C, S, B, grid.n), dtype=np.float32)
    ph = np.broadcast_to(np.asarray(starts, dtype=np.float32), (S, B, grid.n)).reshape(S * B, grid.n).copy()
    row_s = np.repeat(np.arange(S), B)
    seen: dict[tuple[int, bytes], tuple[int, int]] = {}  # (structure, input phases) → (cycle, row) of its output
    forwards = 0

    def forward(rows: np.ndarray):
        res_ph, res_p = [], []
        for i in range(0, len(rows), max_rows):
            check_cancel(cancel)
            r = rows[i : i + max_rows]
            a = grid.to_grid(amp[row_s[r]].to(dev))
            p = grid.to_grid(torch.as_tensor(ph[r]).to(dev))
            with torch.autocast(device_type=dev.type, dtype=torch.bfloat16 if dev.type == "cpu" else torch.float16,
                                enabled=autocast):
                logits = model(a, p)
            res_p.append(torch.softmax(logits.float(), dim=1).max(dim=1).values.cpu().numpy())
            res_ph.append(decode_phases(logits).cpu().numpy())
        return np.concatenate(res_ph), np.concatenate(res_p)

    for c in range(C):
        check_cancel(cancel)
        if skip_repeats:
            keys = [(int(s), k.tobytes()) for s, k in zip(row_s, np.packbits(ph < -90.0, axis=1))]
            todo, first = [], {}
            for r, key in enumerate(keys):
                if key not in seen and key not in first:
                    first[key] = r
                    todo.append(r)
            todo = np.asarray(todo, dtype=np.int64)
        else:
            todo = np.arange(S * B)
        if len(todo):
            ph_new, p_new = forward(todo)
            forwards += len(todo)
            out_ph[c].reshape(S * B, -1)[todo] = ph_new
            out_p[c].reshape(S * B, -1)[todo] = p_new
        if skip_repeats:
            for key in first:
                seen[key] = (c, first[key])
            for r, key in enumerate(keys):
                c0, r0 = seen[key]
                if (c0, r0) != (c, r):
                    out_ph[c].reshape(S * B, -1)[r] = out_ph[c0].reshape(S * B, -1)[r0]
                    out_p[c].reshape(S * B, -1)[r] = out_p[c0].reshape(S * B, -1)[r0]
        ph = out_ph[c].reshape(S * B, -1).copy()
        report(progress, (c + 1) / C, f"cycle {c + 1}/{C}: {forwards} network passes")
    return RecyclingRuns(out_ph, out_p, forwards)


def scan_candidates(amplitudes: np.ndarray, starts: np.ndarray, phases: np.ndarray, probs: np.ndarray,
                    grid: PhAIGrid, reference_phases: Optional[np.ndarray] = None) -> list[PhAICandidate]:
    """Candidates of one structure from its recycling runs (phases, probs: (C, B, R)), sorted by figure of
    merit (stable: ties keep cycle-then-start order); map r and phase error when reference phases are given."""
    from .phai_grid import phase_metrics

    C, B = phases.shape[:2]
    w2 = amplitudes.astype(np.float64) ** 2
    skew = EMapSkewness(amplitudes, grid)
    sk_memo: dict[bytes, float] = {}
    cands = []
    for c in range(C):
        for b in range(B):
            ph_c = phases[c][b]
            stable = float(np.mean(ph_c == (phases[c - 1][b] if c > 0 else starts[b])))
            conf = float(np.sum(w2 * probs[c][b]) / max(np.sum(w2), 1e-12))
            key = np.packbits(ph_c < -90.0).tobytes()
            if key not in sk_memo:
                sk_memo[key] = skew(ph_c)
            sk = sk_memo[key]
            cands.append(PhAICandidate(b, c + 1, ph_c.copy(), sk * (0.5 + 0.5 * stable) * conf, conf, sk, stable))
    if reference_phases is not None:
        P = torch.as_tensor(np.stack([x.phases for x in cands]))
        T = torch.as_tensor(np.asarray(reference_phases, dtype=np.float32))[None].expand(len(cands), -1)
        A = torch.as_tensor(np.asarray(amplitudes, dtype=np.float32))[None].expand(len(cands), -1)
        _, err, r = phase_metrics(P, T, A, torch.as_tensor(grid.hkl))
        for x, e, rr in zip(cands, err.tolist(), r.tolist()):
            x.map_r, x.phase_error = rr, e
    cands.sort(key=lambda x: -x.fom)
    return cands


def phai_scan(model: PhAI, amplitudes: np.ndarray, *, max_cycles: int = 10, random_starts: int = 4, seed: int = 0,
              reference_phases: Optional[np.ndarray] = None, progress=None, cancel=None,
              autocast: bool = False, skip_repeats: bool = True) -> list[PhAICandidate]:
    """The inference scan: every start (zero + random) recycled up to `max_cycles`; each (start, cycle) is a
    candidate. All starts run as one batch. Candidates come back sorted by figure of merit.

    FOM = E-map skewness × (0.5 + 0.5·stability) × confidence: a correct solution gives a peaky, positive
    map, phases that no longer change under recycling, and confident logits.
    """
    return phai_scan_batch(model, np.asarray(amplitudes)[None], max_cycles=max_cycles, random_starts=random_starts,
                           seed=seed, reference_phases=None if reference_phases is None else
                           np.asarray(reference_phases)[None], progress=progress, cancel=cancel, autocast=autocast,
                           skip_repeats=skip_repeats)[0]


def phai_scan_batch(model: PhAI, amplitudes: np.ndarray, *, max_cycles: int = 10, random_starts: int = 4,
                    seed: int = 0, reference_phases: Optional[np.ndarray] = None, progress=None, cancel=None,
                    autocast: bool = False, skip_repeats: bool = True, max_rows: int = 64,
                    stats: Optional[dict] = None) -> list[list[PhAICandidate]]:
    """:func:`phai_scan` of S structures at once (amplitudes (S, R), reference phases (S, R) or None): the
    rows of all structures share the network's batches. Each structure's candidates equal its own scan's.
    `stats`, when given, receives 'forwards' (network passes run) and 'rows' (passes of the plain scan)."""
    grid = PhAIGrid(model.config.max_index)
    amp = np.asarray(amplitudes).reshape(-1, grid.n)  # the network gets float32; the FOM the values as given
    starts = scan_starts(grid.n, random_starts, seed)
    runs = recycle_starts(model, amp, starts, max_cycles, skip_repeats=skip_repeats, max_rows=max_rows,
                          autocast=autocast, cancel=cancel, progress=lambda f, m: report(progress, 0.9 * f, m))
    if stats is not None:
        stats.update(forwards=runs.forwards, rows=max_cycles * len(starts) * len(amp))
    out = []
    for s in range(len(amp)):
        check_cancel(cancel)
        ref = None if reference_phases is None else np.asarray(reference_phases)[s]
        out.append(scan_candidates(amp[s], starts, runs.phases[:, s], runs.probs[:, s], grid, ref))
    report(progress, 1.0, "scan done")
    return out
