"""A PhAI model measured on real crystal structures, as seed paper 1 measures it (its Tables 1–2, Fig. 5).

For every CIF of the P2₁/c family (P2₁/c, P2₁/n, P2₁/a, any cell choice of No. 14) the structure is moved
to the P 1 21/c 1 setting the model works in, |F| and φ are calculated on the model's reflection list
(list reflections with d < d_min are set to 0: the model's resolution), and the inference scan runs
(cycles 1…N × {zero start, random starts}). Two candidates are kept per structure:
  best — the candidate with the highest map r against the true phases (the paper's protocol), and
  FOM  — the candidate the figure of merit ranks first (what a user without the true phases gets).
A structure counts as solved when r ≥ 0.8. Map r is Σ|F|² cos Δφ / Σ|F|² at the best of the 8 origins.

Classes (written down here, reported in the summary):
  size      '≤A Å'    every axis of the P2₁/c cell ≤ A (A = the model's largest training edge, 10 Å),
            'A–2A Å'  the longest axis in (A, 2A] (the paper's 'larger cells', 10–20 Å),
            '>2A Å'   beyond (evaluated, outside both of the paper's sets);
  compound  'organic'        C and H present, no metal atom,
            'metal-organic'  C and H present and at least one metal atom,
            'inorganic'      everything else (no C, or C without H: carbonates, carbides, cyanide salts).
            Metal: any element except H, He, B, C, N, O, F, Ne, Si, P, S, Cl, Ar, Ge, As, Se, Br, Kr,
            Sb, Te, I, Xe, At, Rn (non-metals and the metalloids, as the CSD counts 'organic').

Outputs in the output folder (all written atomically; a re-run skips structures already in results.csv):
  results.csv     one row per structure;       skipped.csv   files not evaluated, with the reason;
  summary.txt     f (solved fraction) and median r per pick, size class and compound class;
  r_vs_volume.png map r against cell volume by class, both picks (the paper's Fig. 5);
  evaluation.json model, settings and the summary (a re-run with other settings is refused).
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ..errors import CrystalStudioError, InvalidInputError
from ..params import FloatRange, Params, param
from ..jobs import check_cancel, report
from .phai_grid import PhAIGrid, scale_amplitudes

NON_METALS = frozenset("H He B C N O F Ne Si P S Cl Ar Ge As Se Br Kr Sb Te I Xe At Rn".split())
COMPOUND_CLASSES = ("organic", "metal-organic", "inorganic")
PICKS = ("best", "fom")
PICK_NAMES = {"best": "best by map r (paper)", "fom": "FOM pick (what a user gets)"}
RESULT_COLUMNS = [
    "file", "title", "space_group", "a", "b", "c", "beta", "volume", "size_class", "compound_class", "elements",
    "n_sites", "reflections", "best_r", "best_phase_error", "best_start", "best_cycles", "fom_r",
    "fom_phase_error", "fom_start", "fom_cycles", "fom_value", "fom_rank_of_best", "candidates_distinct",
    "random_best_r",
]


class EvaluateSettings(Params):
    """One evaluation job (the `evaluate` command's options, the Training panel's evaluation dialog)."""

    max_cycles: int = param(10, ge=1, le=100, label="cycles",
                            help="recycling cycles: the scan's candidates are cycles 1…N of every start")
    random_starts: int = param(4, ge=0, le=64, label="random starts", help="random starts besides the zero start")
    seed: int = param(0, ge=0, help="random starts: numpy default_rng(seed), the same for every structure")
    d_min: float = param(1.0, unit="Å", ge=0, le=10, label="d min",
                         help="list reflections with d < d_min are set to 0 (seed paper 1's resolution); 0: whole list")
    cell_range: FloatRange(gt=0) = param((4.0, 10.0), unit="Å", label="training cell edges",
                                         help="the model's training cell edges (default: what the checkpoint records, "
                                              "else 4–10 Å); size classes: all axes ≤ the upper edge, and up to "
                                              "twice it")
    solved_r: float = param(0.8, ge=0, le=1, label="solved at r ≥", help="map r at or above which a structure counts "
                                                                          "as solved (the papers' 0.8)")
    structures_per_batch: int = param(16, ge=1, le=4096, label="structures per batch",
                                      help="structures whose scans share the network's batches")
    max_rows: int = param(64, ge=1, le=65536, label="rows per pass",
                          help="rows (structure × start) per forward pass")
    skip_repeats: bool = param(True, label="skip repeated inputs",
                               help="answer a row whose input phases were seen before from that pass (identical "
                                    "results, fewer passes)")
    autocast: bool = param(False, label="bf16/fp16 autocast",
                           help="reduced-precision network passes: faster, results no longer identical to fp32")

    def scan_key(self) -> dict:
        """The settings that change per-structure results or classes (a resumed run must share them)."""
        return {k: getattr(self, k) for k in ("max_cycles", "random_starts", "seed", "d_min")} | \
            {"cell_range": list(self.cell_range)} | \
            ({"autocast": True} if self.autocast else {})


# ------------------------------------------------------------------------------------------ classes
def compound_class(elements) -> str:
    """'organic', 'metal-organic' or 'inorganic' by the rule in the module docstring."""
    els = set(elements)
    if "C" in els and "H" in els:
        return "metal-organic" if els - NON_METALS else "organic"
    return "inorganic"


def size_classes(a_max: float) -> tuple[str, str, str]:
    return (f"≤{a_max:g} Å", f"{a_max:g}–{2 * a_max:g} Å", f">{2 * a_max:g} Å")


def size_class(cell_lengths, a_max: float) -> str:
    longest = float(np.max(cell_lengths))
    small, large, beyond = size_classes(a_max)
    return small if longest <= a_max + 1e-6 else large if longest <= 2 * a_max + 1e-6 else beyond


# ------------------------------------------------------------------------------------------ input
@dataclass
class EvaluationInput:
    """One structure in the model's setting with |F| (scaled, 0 beyond d_min) and true φ (degrees) on the list."""

    file: str
    title: str
    space_group: str  # of the file
    cell: np.ndarray  # (6,) P2₁/c setting
    volume: float
    elements: list[str]
    n_sites: int
    amplitudes: np.ndarray  # (R,)
    phases: np.ndarray  # (R,) degrees


def find_cifs(folder) -> list[Path]:
    root = Path(folder)
    if not root.is_dir():
        raise InvalidInputError(f"{root}: not a folder")
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() == ".cif")


def list_amplitudes_phases(structure, grid: PhAIGrid, d_min: float) -> tuple[np.ndarray, np.ndarray]:
    """|F| scaled as the network expects and φ (degrees) on the list, for a structure in P 1 21/c 1."""
    from ..crystal.structure_factors import structure_factors

    F = structure_factors(structure, grid.hkl)
    if d_min > 0:
        F = np.where(structure.cell.d_spacing(grid.hkl) >= d_min - 1e-9, F, 0)
    amp = scale_amplitudes(torch.as_tensor(np.abs(F))[None])[0].numpy()
    phases = np.degrees(np.angle(F)) * (amp > 0)
    return amp, phases


def prepare_structure(path, grid: PhAIGrid, d_min: float, name: Optional[str] = None) -> EvaluationInput:
    """Read a CIF, check it is P2₁/c family, change to P 1 21/c 1 and compute the list (raises on any problem)."""
    from ..io.structures import read_structure
    from .settings import to_p21c

    st = read_structure(path)
    sg = st.space_group
    if sg.number != 14:
        raise InvalidInputError(f"space group {sg.short_name} (No. {sg.number}) is not in the P2₁/c family")
    if not st.sites:
        raise InvalidInputError("no atoms")
    p = to_p21c(st)
    amp, ph = list_amplitudes_phases(p, grid, d_min)
    if np.count_nonzero(amp) < 10:
        raise InvalidInputError(f"fewer than 10 reflections of the PhAI list at d ≥ {d_min:g} Å")
    return EvaluationInput(name or Path(path).name, st.title, sg.short_name, p.cell.parameters.copy(),
                           float(p.cell.volume), sorted(set(p.elements)), p.n_sites, amp, ph)


# ------------------------------------------------------------------------------------------ scan
def evaluate_inputs(model, inputs: list[EvaluationInput], settings: EvaluateSettings, *, stats: Optional[dict] = None,
                    progress=None, cancel=None) -> list[dict]:
    """Scan a batch of prepared structures together; one result row (dict) per structure."""
    from .phai_inference import phai_scan_batch

    if not inputs:
        return []
    grid = PhAIGrid(model.config.max_index)
    cands = phai_scan_batch(model, np.stack([x.amplitudes for x in inputs]), max_cycles=settings.max_cycles,
                            random_starts=settings.random_starts, seed=settings.seed,
                            reference_phases=np.stack([x.phases for x in inputs]), progress=progress, cancel=cancel,
                            skip_repeats=settings.skip_repeats, max_rows=settings.max_rows, stats=stats,
                            autocast=settings.autocast)
    rand = random_best_r(inputs, settings.max_cycles * (1 + settings.random_starts), grid, settings.seed)
    rows = []
    for x, cs, r0 in zip(inputs, cands, rand):
        fom = cs[0]
        best_i = int(np.argmax([c.map_r for c in cs]))  # first maximum in FOM order
        best = cs[best_i]
        a, b, c, _, beta, _ = x.cell
        rows.append({
            "file": x.file, "title": x.title, "space_group": x.space_group, "a": a, "b": b, "c": c, "beta": beta,
            "volume": x.volume, "size_class": size_class(x.cell[:3], settings.cell_range[1]),
            "compound_class": compound_class(x.elements), "elements": " ".join(x.elements), "n_sites": x.n_sites,
            "reflections": int(np.count_nonzero(x.amplitudes[~grid.absent])),
            "best_r": best.map_r, "best_phase_error": best.phase_error, "best_start": best.start,
            "best_cycles": best.cycles, "fom_r": fom.map_r, "fom_phase_error": fom.phase_error,
            "fom_start": fom.start, "fom_cycles": fom.cycles, "fom_value": fom.fom, "fom_rank_of_best": best_i + 1,
            "candidates_distinct": len({c.phases.tobytes() for c in cs}), "random_best_r": r0,
        })
    # numbers as results.csv holds them, so that a resumed run summarises exactly what a fresh one does
    return [{k: round(float(v), 6) if isinstance(v, (float, np.floating)) else v for k, v in r.items()} for r in rows]


def random_best_r(inputs: list[EvaluationInput], n: int, grid: PhAIGrid, seed: int = 0) -> list[float]:
    """The chance level of the 'best' pick: the highest map r among n random 0/π phase sets per structure
    (as many as the scan has candidates), so a best-pick r can be read against what choosing among that many
    guesses with the true phases in hand gives anyway."""
    from .phai_grid import phase_metrics

    rng = np.random.default_rng(seed + 7919)
    out = []
    for x in inputs:
        P = torch.as_tensor(rng.choice([0.0, -180.0], size=(n, grid.n)).astype(np.float32))
        T = torch.as_tensor(x.phases, dtype=torch.float32)[None].expand(n, -1)
        A = torch.as_tensor(x.amplitudes, dtype=torch.float32)[None].expand(n, -1)
        out.append(float(phase_metrics(P, T, A, torch.as_tensor(grid.hkl))[2].max()))
    return out


# ------------------------------------------------------------------------------------------ files
def _format(v) -> str:
    if isinstance(v, (float, np.floating)):
        return f"{float(v):.6f}"
    return str(v)


def write_rows(path, columns: list[str], rows: list[dict]) -> None:
    from ..io.common import atomic_output

    with atomic_output(path, "w") as f:
        w = csv.writer(f)
        w.writerow(columns)
        for r in rows:
            w.writerow([_format(r.get(c, "")) for c in columns])


_INT_COLUMNS = {"n_sites", "reflections", "best_start", "best_cycles", "fom_start", "fom_cycles", "fom_rank_of_best",
                "candidates_distinct"}
_FLOAT_COLUMNS = {"a", "b", "c", "beta", "volume", "best_r", "best_phase_error", "fom_r", "fom_phase_error",
                  "fom_value", "random_best_r"}


def read_results(path) -> list[dict]:
    """Rows of a results.csv (numbers converted); [] when the file does not exist."""
    p = Path(path)
    if not p.exists():
        return []
    with open(p, newline="") as f:
        reader = csv.DictReader(f)
        missing = set(RESULT_COLUMNS) - set(reader.fieldnames or [])
        if missing:
            raise InvalidInputError(f"{p}: not an evaluation results file (missing {', '.join(sorted(missing))})")
        rows = []
        for line, r in enumerate(reader, start=2):
            try:
                rows.append({k: int(v) if k in _INT_COLUMNS else float(v) if k in _FLOAT_COLUMNS else v
                             for k, v in r.items()})
            except (TypeError, ValueError):
                raise InvalidInputError(f"{p}, line {line}: unreadable row") from None
    return rows


def model_fingerprint(path) -> dict:
    p = Path(path)
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return {"sha256": h.hexdigest(), "bytes": p.stat().st_size}


# ------------------------------------------------------------------------------------------ summary
@dataclass
class GroupFigures:
    group: str  # 'all', a size class or a compound class
    n: int
    solved: dict  # pick → fraction solved
    median_r: dict  # pick → median map r


def summarise(rows: list[dict], settings: EvaluateSettings) -> list[GroupFigures]:
    groups = [("all", rows)]
    for sc in size_classes(settings.cell_range[1]):
        groups.append((f"cells {sc}", [r for r in rows if r["size_class"] == sc]))
    for cc in COMPOUND_CLASSES:
        groups.append((cc, [r for r in rows if r["compound_class"] == cc]))
    out = []
    for name, rs in groups:
        solved, med = {}, {}
        for pick in PICKS:
            r = np.array([x[f"{pick}_r"] for x in rs], dtype=float)
            solved[pick] = float(np.mean(r >= settings.solved_r)) if len(r) else float("nan")
            med[pick] = float(np.median(r)) if len(r) else float("nan")
        out.append(GroupFigures(name, len(rs), solved, med))
    return out


def summary_text(figures: list[GroupFigures], rows: list[dict], settings: EvaluateSettings, model_label: str,
                 skipped: list[dict]) -> str:
    lines = [f"PhAI evaluation of {model_label}",
             f"scan: cycles 1–{settings.max_cycles} × (zero start + {settings.random_starts} random, seed "
             f"{settings.seed}); |F| on the list to d_min {settings.d_min:g} Å; solved: map r ≥ {settings.solved_r:g}",
             f"{len(rows)} structures evaluated, {len(skipped)} file{'' if len(skipped) == 1 else 's'} skipped "
             "(skipped.csv)",
             "",
             f"{'group':22s} {'n':>4s}   {'f best':>7s} {'median r':>9s}   {'f FOM':>7s} {'median r':>9s}"]
    for g in figures:
        if g.n == 0:
            lines.append(f"{g.group:22s} {0:4d}   {'–':>7s} {'–':>9s}   {'–':>7s} {'–':>9s}")
            continue
        lines.append(f"{g.group:22s} {g.n:4d}   {g.solved['best']:7.2f} {g.median_r['best']:9.3f}   "
                     f"{g.solved['fom']:7.2f} {g.median_r['fom']:9.3f}")
    if rows:
        hit = sum(1 for r in rows if r["fom_rank_of_best"] == 1)
        n_cand = settings.max_cycles * (1 + settings.random_starts)
        r0 = np.array([r["random_best_r"] for r in rows])
        lines += ["", f"the FOM ranks the best candidate first for {hit} of {len(rows)} structures",
                  f"chance level of the best pick (best of {n_cand} random phase sets): median r {np.median(r0):.3f}, "
                  f"solved {np.mean(r0 >= settings.solved_r):.2f}"]
    lines += ["", "best: the candidate with the highest map r against the true phases (seed paper 1's protocol);",
              "FOM: the candidate the figure of merit ranks first (no true phases needed: what a user gets).",
              f"size classes by the longest axis of the P2₁/c cell; compound classes: organic = C and H, no metal; "
              "metal-organic = C and H and a metal; inorganic = the rest."]
    return "\n".join(lines) + "\n"


def plot_r_vs_volume(rows: list[dict], path, settings: EvaluateSettings, title: str = "") -> None:
    """PNG: map r against cell volume, one panel per pick, marker/colour by compound class, filled for cells
    within the model's edge, open beyond (the paper's Fig. 5)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    from ..io.common import atomic_path

    style = {"organic": ("o", "tab:blue"), "metal-organic": ("s", "tab:orange"), "inorganic": ("^", "tab:green")}
    a_max = settings.cell_range[1]
    small = size_classes(a_max)[0]
    fig = Figure(figsize=(11, 4.4), dpi=100)
    axes = [fig.add_subplot(1, 2, i + 1) for i in range(2)]
    rs = [r[f"{p}_r"] for r in rows for p in PICKS]
    lo = min([0.0] + rs) - 0.05
    for ax, pick in zip(axes, PICKS):
        for cc, (marker, colour) in style.items():
            for filled in (True, False):
                sel = [r for r in rows if r["compound_class"] == cc and (r["size_class"] == small) == filled]
                if sel:
                    ax.scatter([r["volume"] for r in sel], [r[f"{pick}_r"] for r in sel], marker=marker, s=36,
                               facecolors=colour if filled else "none", edgecolors=colour, linewidths=1.2)
        ax.axhline(settings.solved_r, color="0.4", ls="--", lw=1)
        n = len(rows)
        f = np.mean([r[f"{pick}_r"] >= settings.solved_r for r in rows]) if n else float("nan")
        med = np.median([r[f"{pick}_r"] for r in rows]) if n else float("nan")
        ax.set_title(f"{PICK_NAMES[pick]}: f = {f:.2f}, median r = {med:.3f} (n = {n})", fontsize=9)
        ax.set_xlabel("cell volume (Å³)")
        ax.set_ylabel("map correlation r")
        ax.set_ylim(lo, 1.02)
        ax.grid(alpha=0.3)
    handles = [Line2D([], [], ls="", marker=m, color=c, label=cc) for cc, (m, c) in style.items()]
    handles += [Line2D([], [], ls="", marker="o", color="0.3", label=f"all axes ≤ {a_max:g} Å"),
                Line2D([], [], ls="", marker="o", mfc="none", color="0.3", label=f"an axis > {a_max:g} Å"),
                Line2D([], [], ls="--", color="0.4", label=f"solved: r ≥ {settings.solved_r:g}")]
    fig.legend(handles=handles, fontsize=8, loc="center right")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 0.85, 1))
    with atomic_path(path, ".png") as tmp:
        fig.savefig(tmp, format="png")


# ------------------------------------------------------------------------------------------ the job
@dataclass
class EvaluationReport:
    out_dir: Path
    rows: list[dict]
    skipped: list[dict]
    figures: list[GroupFigures]
    summary: str
    seconds: float
    evaluated_now: int
    forwards: int = 0  # network passes run in this call
    plain_forwards: int = 0  # passes the plain scan would have run
    paths: dict = field(default_factory=dict)


def evaluate_folder(model, folder, out_dir, settings: Optional[EvaluateSettings] = None, *,
                    model_path=None, model_label: Optional[str] = None, progress=None,
                    cancel=None) -> EvaluationReport:
    """Evaluate `model` on every P2₁/c-family CIF under `folder`; resumable (see the module docstring).

    On cancel the rows finished so far stay in results.csv and :class:`~crystalstudio.errors.Cancelled` is raised.
    """
    s = settings or EvaluateSettings()
    dom = getattr(model, "domain", None) or {}
    if "cell_range" not in s.model_fields_set and "a_max" in dom:  # the checkpoint's training cells
        s = s.replace(cell_range=(float(dom.get("a_min", s.cell_range[0])), float(dom["a_max"])))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    grid = PhAIGrid(model.config.max_index)
    label = model_label or (Path(model_path).name if model_path else "model")
    meta = {"model": model_fingerprint(model_path) if model_path else {"label": label},
            "model_file": str(Path(model_path).resolve()) if model_path else None,
            "model_config": model.config.to_dict(), "scan": s.scan_key(), "folder": str(Path(folder).resolve())}
    meta_path = out / "evaluation.json"
    if meta_path.exists():
        try:
            old = json.loads(meta_path.read_text())
        except (OSError, json.JSONDecodeError):
            old = {}
        for key in ("model", "model_config", "scan"):
            if key in old and old[key] != meta[key]:
                raise InvalidInputError(f"{out} holds an evaluation with another {key.replace('_', ' ')} "
                                        f"({old[key]} ≠ {meta[key]}); give another --out or empty the folder")
    files = find_cifs(folder)
    if not files:
        raise InvalidInputError(f"{folder}: no .cif files")
    root = Path(folder)
    names = [p.relative_to(root).as_posix() for p in files]
    rows = read_results(out / "results.csv")
    done = {r["file"] for r in rows}
    rows = [r for r in rows if r["file"] in set(names)]
    todo = [(p, n) for p, n in zip(files, names) if n not in done]
    skipped: list[dict] = []
    stats_total = {"forwards": 0, "rows": 0}
    evaluated_now = 0
    report(progress, 0.0, f"{len(done & set(names))} of {len(files)} files already evaluated")
    from ..io.common import write_text_atomic

    write_text_atomic(meta_path, json.dumps(meta, indent=2))
    i = 0
    while i < len(todo):
        check_cancel(cancel)
        inputs = []
        while i < len(todo) and len(inputs) < s.structures_per_batch:
            p, n = todo[i]
            i += 1
            try:
                inputs.append(prepare_structure(p, grid, s.d_min, name=n))
            except CrystalStudioError as exc:
                skipped.append({"file": n, "reason": str(exc).replace(str(p) + ": ", "")})
            except Exception as exc:  # noqa: BLE001 - an unreadable file never ends the run; its reason is listed
                skipped.append({"file": n, "reason": f"{type(exc).__name__}: {exc}"})
        base = (len(files) - len(todo) + i - len(inputs)) / len(files)
        span = len(inputs) / len(files)
        st: dict = {}
        new = evaluate_inputs(model, inputs, s, stats=st, cancel=cancel,
                              progress=lambda f, m: report(progress, base + span * f,
                                                           f"{evaluated_now + len(rows)} structures evaluated; {m}"))
        stats_total["forwards"] += st.get("forwards", 0)
        stats_total["rows"] += st.get("rows", 0)
        evaluated_now += len(new)
        rows.extend(new)
        order = {n: k for k, n in enumerate(names)}
        rows.sort(key=lambda r: order.get(r["file"], len(order)))
        write_rows(out / "results.csv", RESULT_COLUMNS, rows)
        report(progress, base + span, f"{len(rows)} structures evaluated, {len(skipped)} skipped")
    # files skipped in an earlier run were not kept as rows: they are read again (cheap) and listed again
    write_rows(out / "skipped.csv", ["file", "reason"], skipped)
    figures = summarise(rows, s)
    text = summary_text(figures, rows, s, label, skipped)
    write_text_atomic(out / "summary.txt", text)
    plot_r_vs_volume(rows, out / "r_vs_volume.png", s, title=f"PhAI evaluation: {label}")
    meta["summary"] = [dataclasses.asdict(g) for g in figures]
    write_text_atomic(meta_path, json.dumps(meta, indent=2))
    report(progress, 1.0, f"{len(rows)} structures evaluated, {len(skipped)} skipped")
    paths = {k: str(out / v) for k, v in (("csv", "results.csv"), ("skipped", "skipped.csv"),
                                          ("summary", "summary.txt"), ("png", "r_vs_volume.png"),
                                          ("json", "evaluation.json"))}
    return EvaluationReport(out, rows, skipped, figures, text, time.perf_counter() - t0, evaluated_now,
                            stats_total["forwards"], stats_total["rows"], paths)



def evaluate_model_file(model_path, folder, out_dir, settings: Optional[EvaluateSettings] = None, *, device=None,
                        progress=None, cancel=None) -> EvaluationReport:
    """:func:`evaluate_folder` for a model file (published PhAI_model.pth layout or a CrystalStudio checkpoint)."""
    from .phai_inference import load_phai

    model = load_phai(model_path, device=device)
    return evaluate_folder(model, folder, out_dir, settings, model_path=model_path, progress=progress, cancel=cancel)
