"""`crystalstudio` — the GUI when called without a subcommand, else a command-line job.

  crystalstudio [FILE]                      open the desktop application (embedded default without FILE)
  crystalstudio generate --n N --seed S …   shards of artificial structures + reflections
  crystalstudio stats FOLDER …              distributions of a folder of CIFs (vs generated)
  crystalstudio phase REFLECTIONS …         solve a structure (charge flipping or PhAI)
  crystalstudio train CONFIG                headless training (also under torchrun)
  crystalstudio factorise VOLUME|PLANE …    DSFU-Net factorisation of a diffuse-scattering plane, α ratios
  crystalstudio evaluate MODEL FOLDER …     a PhAI model measured on real P2₁/c-family CIFs

Bad input ends with a one-line reason on stderr and a non-zero exit status.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from typing import Callable, Optional

from . import __version__
from .errors import Cancelled, CrystalStudioError

SUBCOMMANDS: dict[str, Callable[[argparse._SubParsersAction], None]] = {}


def subcommand(name: str):
    def deco(fn):
        SUBCOMMANDS[name] = fn
        return fn

    return deco


class TextProgress:
    """A one-line progress bar on stderr (no output when stderr is not a terminal, except the end)."""

    def __init__(self, label: str, stream=None):
        self.label = label
        self.stream = stream or sys.stderr
        self.t0 = time.perf_counter()
        self.tty = self.stream.isatty()
        self._last = 0.0

    def __call__(self, fraction: float, message: str = "") -> None:
        now = time.perf_counter()
        if not self.tty or (now - self._last < 0.1 and fraction < 1):
            return
        self._last = now
        el = now - self.t0
        eta = el / fraction * (1 - fraction) if fraction > 0 else float("nan")
        bar = "#" * int(30 * fraction)
        self.stream.write(f"\r{self.label} [{bar:<30}] {100 * fraction:5.1f}%  {message}  ETA {eta:5.0f} s ")
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


# ------------------------------------------------------------------------------------------ generate
GENERATOR_OPTIONS = {"space_group": "--space-group", "content.mode": "--mode", "cell.a_min": "--a-min",
                     "cell.a_max": "--a-max", "cell.volume_distribution": "--volume-distribution",
                     "cell.lognormal_mu": "--lognormal-mu", "cell.lognormal_sigma": "--lognormal-sigma",
                     "cell.volume_min": "--volume-min", "cell.volume_max": "--volume-max",
                     "cell.ratio_max": "--ratio-max", "content.max_atoms_asu": "--max-atoms-asu",
                     "content.u_iso": "--u-iso", "content.include_hydrogen": "--hydrogen"}


def _add_generator_options(p) -> None:
    from .crystal.generator.settings import GeneratorSettings
    from .params import add_arguments

    p.add_argument("--config", help="JSON generator settings (space_group, cell, content, molecule), or a PhAI "
                                    "training configuration: the structures it trains on")
    p.set_defaults(generator_options=add_arguments(p, GeneratorSettings, include=list(GENERATOR_OPTIONS),
                                                   names=GENERATOR_OPTIONS))


def _generator_settings(args):
    """Settings from --config (or the defaults), then the options given on the command line."""
    from .crystal.generator.settings import GeneratorSettings

    base = GeneratorSettings()
    if args.config:
        import json

        try:
            head = json.loads(open(args.config, encoding="utf-8").read())
        except (OSError, ValueError):
            head = None  # the loader below names the problem
        if isinstance(head, dict) and "kind" in head:  # a training configuration: the structures it trains on
            from .training.config import PhAITrainConfig

            base = PhAITrainConfig.load(args.config).generator
        else:
            base = GeneratorSettings.load(args.config, section="generator")
    return args.generator_options.apply(base, args).check()


@subcommand("generate")
def _add_generate(sub):
    from .io.shard_export import ShardExportSettings
    from .params import add_arguments

    p = sub.add_parser("generate", help="generate artificial structures and their reflections into HDF5 shards")
    p.add_argument("--out", required=True, help="output folder (complete shards found there are kept: resume)")
    p.set_defaults(run=_run_generate, job_options=add_arguments(p, ShardExportSettings))
    p.add_argument("--workers", type=int, default=0, help="shards generated at once in separate processes "
                                                          "(0: one per CPU core; CPU only; the same shards either way)")
    _add_generator_options(p)


def _run_generate(args) -> int:
    from .io.shard_export import export_shards
    from .io.shards import shard_paths

    s = _generator_settings(args)
    job = args.job_options.apply(None, args)
    bar = TextProgress("generate")
    try:
        import os

        res = export_shards(args.out, job.n, s, job.seed, shard_size=job.shard_size, max_index=job.max_index,
                            d_min=job.d_min or None, device=job.device, progress=bar,
                            workers=args.workers or os.cpu_count() or 1)
    except KeyboardInterrupt:
        bar.close()
        print(f"interrupted: {len(shard_paths(args.out))} complete shard(s) kept in {args.out}; "
              "run the same command again to resume", file=sys.stderr)
        return 130
    bar.close()
    rate = res.n_written / res.seconds if res.seconds > 0 else float("inf")
    print(f"{res.n_structures} structures ({res.n_written} generated, {res.n_resumed} resumed) in "
          f"{res.seconds:.2f} s wall ({rate:.0f} structures/s) -> {args.out}")
    return 0


# ------------------------------------------------------------------------------------------ stats
@subcommand("stats")
def _add_stats(sub):
    p = sub.add_parser("stats", help="distributions of a folder of CIFs against generated structures")
    p.add_argument("folder", help="folder of .cif files (searched recursively)")
    p.add_argument("--generated", type=_count_arg, default=2000, metavar="N",
                   help="generated structures to compare [≥ 0; default 2000; 0: none]")
    p.add_argument("--seed", type=_count_arg, default=0, metavar="N", help="seed of the generated structures")
    p.add_argument("--png", help="write histogram overlays to this PNG")
    p.add_argument("--tables", help="write element tables fitted from the CIFs into this folder")
    p.set_defaults(run=_run_stats)
    _add_generator_options(p)


def _count_arg(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number (got {text!r})") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be ≥ 0 (got {v})")
    return v


def _whole_arg(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number (got {text!r})") from None


def _float_arg(text: str) -> float:
    from .params import _float_arg as number

    return number(text)


def _run_stats(args) -> int:
    from pathlib import Path

    from .crystal.generator import generate_batch
    from .crystal.generator.elements_table import ElementTable
    from .crystal.statistics import compare_statistics, statistics_of_batch
    from .io.element_tables import write_element_table
    from .io.structure_statistics import plot_overlays, statistics_from_cif_folder
    from .outputs import output_folder, prepare_output_folder

    settings = _generator_settings(args) if args.generated else None
    if args.png:  # outputs checked before the work
        prepare_output_folder(Path(args.png).resolve().parent, "folder of the PNG")
    with output_folder(args.tables, "tables folder") if args.tables else contextlib.nullcontext():
        real = statistics_from_cif_folder(args.folder)
        mu, sigma = real.lognormal_volume_fit()
        print(f"{real.n_structures} structures from {args.folder}; log-normal volume fit: mu={mu:.4f} "
              f"sigma={sigma:.4f} (median {pow(2.718281828, mu):.0f} Å³)")
        for line in real.skipped:
            print(f"  skipped {line}")
        gen = None
        if args.generated:
            gen = statistics_of_batch(generate_batch(args.generated, settings, args.seed))
            for q, d in compare_statistics(real, gen).items():
                print(f"  {q:16s} KS {d['ks']:.3f}  W1 {d['wasserstein']:.3f}")
        if args.png:
            plot_overlays(real, gen, args.png)
            print(f"overlays -> {args.png}")
        if args.tables:
            for which in ("general", "special"):
                shares = real.element_shares(which)
                if shares:
                    write_element_table(Path(args.tables) / f"{which}_positions.csv", ElementTable(shares),
                                        f"fitted from {real.n_structures} structures in {args.folder}")
            print(f"element tables -> {args.tables}")
    return 0


# ------------------------------------------------------------------------------------------ phase
PHASE_OPTIONS = None  # the ParamOptions of the phase command (built with its parser)


@subcommand("phase")
def _add_phase(sub):
    global PHASE_OPTIONS
    from .params import add_arguments
    from .phasing.parameters import DEFAULTS, PhasingParameters

    p = sub.add_parser("phase", help="solve a structure from reflections: phases, a refined model with elements, "
                                     "R1 and a verdict")
    p.add_argument("reflections", help=".hkl (HKLF 4, or HKLF 3 with --amplitudes), .fcf, hkl-CIF, .cif with "
                                       "_shelx_hkl_file, .mtz, XDS_ASCII")
    p.add_argument("--structure", help="reference model (.cif/.res/.ins): map r and phase error are printed; it also "
                                       "gives cell, symmetry and cell content when the data lack them")
    p.add_argument("--cell", nargs=6, type=_float_arg, metavar=("A", "B", "C", "AL", "BE", "GA"))
    p.add_argument("--space-group")
    p.add_argument("--model", help="PhAI weights (published PhAI_model.pth or a CrystalStudio checkpoint); "
                                   "default: the shipped small model")
    p.add_argument("--starts", type=_whole_arg, default=None, metavar="N",
                   help=f"random starts (charge flipping {DEFAULTS.cf_starts}, 1…64; PhAI {DEFAULTS.phai_starts}, 0…64)")
    PHASE_OPTIONS = add_arguments(p, PhasingParameters, exclude=("cf_starts", "phai_starts"),
                                  names={"cf_iterations": "--iterations", "phai_cycles": "--cycles"})
    p.add_argument("--out", required=True, help="output folder: solution.fcf, map.ccp4, peaks.res, phases.csv, "
                                                "model.res + model.hkl")
    p.set_defaults(run=_run_phase, check=_check_phase)


def _check_phase(args) -> None:
    """--starts against the bounds of the chosen method (known only once every option is parsed)."""
    if args.starts is None:
        return
    from .params import ParamsError, _resolve, validate_value
    from .phasing.parameters import PhasingParameters

    method = getattr(args, "param:method", PhasingParameters().method)
    try:
        validate_value(_resolve(PhasingParameters, "phai_starts" if method == "phai" else "cf_starts"), args.starts)
    except ParamsError as exc:
        raise argparse.ArgumentTypeError(f"argument --starts: {exc}" + (" for charge flipping" if method != "phai"
                                                                          and args.starts == 0 else "")) from None


def _run_phase(args) -> int:
    from .crystal.cell import UnitCell
    from .crystal.symmetry import SpaceGroup
    from .phasing.parameters import PhasingParameters
    from .phasing.solve import export_solution, prepare_problem, solve_charge_flipping, solve_phai

    params = PHASE_OPTIONS.apply(PhasingParameters(), args)
    if args.starts is not None:
        params = params.replace(**{"phai_starts" if params.method == "phai" else "cf_starts": args.starts})
    cell = UnitCell(*args.cell) if args.cell else None
    sg = SpaceGroup.from_name(args.space_group) if args.space_group else None
    problem = prepare_problem(args.reflections, structure=args.structure, cell=cell, space_group=sg,
                              formula=params.formula, z=params.z, amplitudes=params.amplitudes)
    print(problem.summary())
    bar = TextProgress(params.method)
    t0 = time.perf_counter()
    if params.method == "phai":
        from .phasing.models import default_phai_model
        from .phasing.phai_inference import load_phai
        from .phasing.settings import require_phai_group
        from .phasing.solve import phai_domain_warnings

        require_phai_group(problem.space_group)
        model = load_phai(args.model) if args.model else default_phai_model()
        if not args.model:
            from .phasing.models import shipped_phai_note

            print(shipped_phai_note())
        for w in phai_domain_warnings(problem, model):
            print(f"warning: {w}")
        sols = solve_phai(problem, model, max_cycles=params.phai_cycles, random_starts=params.phai_starts,
                          seed=params.seed, build=params.build_model, stop_when_solved=params.stop_when_solved,
                          progress=bar)
        on = int(sols[0].phased.sum())
        print(f"PhAI phased {on} of {len(problem.hkl)} unique measured reflections (those on its list); the other "
              f"{len(problem.hkl) - on} are left out of solution.fcf and the map (no phase 0 written for them)")
    else:
        from .phasing.charge_flipping import ChargeFlippingSettings

        s = ChargeFlippingSettings(random_starts=params.cf_starts, max_iterations=params.cf_iterations, seed=params.seed)
        sols = solve_charge_flipping(problem, s, progress=bar, build=params.build_model,
                                     stop_when_solved=params.stop_when_solved)
    bar.close()
    dt = time.perf_counter() - t0
    best = sols[0]
    print(f"{'candidate':38s} {'FOM':>8s} {'R1':>7s}  verdict" + ("      map r  phase error" if best.map_r is not None else ""))
    for i, sol in enumerate(sols[:10]):
        r1 = "—" if sol.r1 is None else f"{sol.r1:.3f}"
        v = "—" if sol.verdict is None else sol.verdict.status
        extra = f"  {sol.map_r:6.3f}  {sol.phase_error:6.1f}°" if sol.map_r is not None else ""
        print(f"{'*' if i == 0 else ' '} {sol.label:36s} {sol.fom:8.4f} {r1:>7s}  {v:11s}{extra}")
    paths = export_solution(problem, best, args.out)
    if best.model is not None and best.model.n_atoms:
        m = best.model
        print(f"model: {m.n_atoms} atoms ({' '.join(f'{e}{n}' for e, n in _element_counts(m.structure).items())}) "
              f"in the asymmetric unit; {m.statistics.line()}; refined on F² (Levenberg–Marquardt)")
        for n in m.notes:
            print(f"  {n}")
    print(f"done in {dt:.1f} s; best: {best.label} -> {', '.join(paths.values())}")
    if best.map_r is not None:
        print(f"map r {best.map_r:.3f}  phase error {best.phase_error:.1f}° against the reference model")
    verdict = best.verdict
    if verdict is None:
        from .phasing.verdict import Verdict

        verdict = Verdict("not solved", None, ["no model was built (--no-build-model)"])
    print(verdict.line())
    return 0


def _element_counts(structure) -> dict:
    out: dict = {}
    for e in structure.elements:
        out[e] = out.get(e, 0) + 1
    return out


# ------------------------------------------------------------------------------------------ evaluate
@subcommand("evaluate")
def _add_evaluate(sub):
    p = sub.add_parser("evaluate", help="measure a PhAI model on a folder of real P2₁/c-family CIFs (seed paper 1's "
                                        "protocol: solved fraction, median map r, per-structure CSV, r-vs-volume PNG)")
    p.add_argument("model", help="PhAI weights (published PhAI_model.pth layout or a CrystalStudio checkpoint)")
    p.add_argument("folder", help="folder of .cif files (searched recursively; other space groups are listed, "
                                  "not evaluated)")
    p.add_argument("--out", default="evaluation", help="output folder (a re-run resumes there)")
    from .params import add_arguments
    from .phasing.evaluate import EvaluateSettings

    p.set_defaults(evaluate_options=add_arguments(
        p, EvaluateSettings, include=["cell_range", "d_min", "max_cycles", "random_starts", "seed",
                                      "structures_per_batch", "autocast"],
        names={"cell_range": "--cells", "max_cycles": "--cycles", "random_starts": "--starts",
               "structures_per_batch": "--batch", "autocast": "--bf16"}))
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.set_defaults(run=_run_evaluate)


def _run_evaluate(args) -> int:
    import torch

    from .phasing.evaluate import EvaluateSettings, evaluate_model_file

    if args.threads:
        torch.set_num_threads(args.threads)
    s = args.evaluate_options.apply(EvaluateSettings(), args)
    bar = TextProgress("evaluate")
    try:
        rep = evaluate_model_file(args.model, args.folder, args.out, s, device=args.device, progress=bar)
    except KeyboardInterrupt:
        bar.close()
        print(f"interrupted: finished structures are kept in {args.out}/results.csv; run the same command again "
              "to resume", file=sys.stderr)
        return 130
    bar.close()
    print(rep.summary, end="")
    for sk in rep.skipped:
        print(f"  skipped {sk['file']}: {sk['reason']}")
    passes = f"; {rep.forwards} of {rep.plain_forwards} network passes run" if rep.plain_forwards else ""
    print(f"{rep.evaluated_now} structures evaluated now ({len(rep.rows) - rep.evaluated_now} resumed) in "
          f"{rep.seconds:.1f} s{passes} -> {', '.join(rep.paths.values())}")
    return 0


# ------------------------------------------------------------------------------------------ factorise
@subcommand("factorise")
def _add_factorise(sub):
    from .diffuse.factorise import MIN_MEASURED_FRACTION, FactoriseSettings
    from .params import add_arguments

    p = sub.add_parser("factorise", help="factorise a diffuse-scattering plane into I_FF and I_SRO (DSFU-Net) and "
                                         "refine Warren–Cowley ratios",
                       description="A plane of a Meerkat/Yell volume (.h5) or a plain plane (.npy, TIFF, EDF …) is "
                                   "factorised by the DSFU-Net generators; Warren–Cowley ratios are refined when the "
                                   f"plane's geometry is known. A plane with less than {100 * MIN_MEASURED_FRACTION:.0f} "
                                   "%% of its grid measured is refused.")
    p.add_argument("volume", metavar="INPUT", help="Meerkat/Yell HDF5 reconstruction, or a 2D plane (.npy, .tif, .edf)")
    opts = add_arguments(p, FactoriseSettings, exclude=("size",))
    p.add_argument("--punch", action="store_const", const="punch", dest="param:bragg", default=argparse.SUPPRESS,
                   help="same as --bragg punch")
    p.add_argument("--cell", type=_float_arg, nargs=6, metavar=("A", "B", "C", "AL", "BE", "GA"),
                   help="plain planes: unit cell a b c α β γ (Å, degrees), for α refinement")
    p.add_argument("--extent", type=float, nargs=4, metavar=("H0", "H1", "K0", "K1"),
                   help="plain planes: in-plane indices at the first and last column and row")
    p.add_argument("--model-ff", help="form-factor generator (published .pth layout); default: shipped small model")
    p.add_argument("--model-sro", help="short-range-order generator; default: shipped small model")
    p.add_argument("--out", required=True, help="output folder")
    p.set_defaults(run=_run_factorise, factorise_options=opts)


def _run_factorise(args) -> int:
    from .diffuse.factorise import (FactoriseSettings, alpha_rows, export_factorisation, factorise_plane, load_models,
                                    load_plane, measured_rule)

    settings = args.factorise_options.apply(FactoriseSettings(), args)
    if args.cell or args.extent:
        settings = settings.replace(cell=tuple(args.cell) if args.cell else None,
                                    extent=tuple(args.extent) if args.extent else None)
    plane = load_plane(args.volume, settings)
    gff, gsro, hashes = load_models(args.model_ff, args.model_sro)
    total = plane.intensity.size
    print(f"plane {plane.label}: {plane.n_measured:,} of {total:,} pixels measured "
          f"({100 * plane.n_measured / total:.1f} %; the rule: {measured_rule(total)})")
    for note in plane.notes:
        print(f"  {note}")
    bar = TextProgress("factorise")
    try:
        res = factorise_plane(plane, gff, gsro, settings, model_hashes=hashes, progress=bar)
    finally:
        bar.close()
    paths = export_factorisation(res, args.out)
    print(f"networks: {res.passes} pass{'es (dropout on)' if res.passes > 1 else ' (deterministic)'} in "
          f"{res.seconds['networks']:.2f} s; product residual R {res.product_r:.3f} over the measured pixels")
    if res.ff_spread is not None:
        print(f"maps ff_spread_over_passes, sro_spread_over_passes: the {res.spread_label}")
    if res.wc is None:
        print(res.alpha_note)
    else:
        if res.alpha_note:
            print(res.alpha_note)
        other = res.wc_network if res.wc is res.wc_plane else res.wc_plane
        print(f"Warren–Cowley ratios α(uv)/α(00) from the {res.wc.source} (a normalised plane fixes only ratios);")
        print(f"  σ {res.wc.sigma_kind}")
        if other is not None:
            print(f"  right: from the {other.source}, σ {other.sigma_kind}")
        key = "network" if res.wc is res.wc_plane else "plane"
        for r in alpha_rows(res)[:12]:
            right = (f"    {r[f'alpha_{key}']:+.4f} ± {r[f'sigma_{key}']:.4f}" if f"alpha_{key}" in r else "")
            print(f"  ({r['u']} {r['v']})".ljust(12) + f"{r['alpha']:+.4f} ± {r['sigma']:.4f}{right}")
    print("-> " + ", ".join(sorted(paths.values())))
    return 0


# ------------------------------------------------------------------------------------------ train
TRAIN_OPTIONS = ["run_dir", "steps", "batch_size", "lr", "optimizer", "schedule", "warmup_steps", "val_every",
                 "checkpoint_every", "early_stop_patience", "time_limit_s", "seed", "device", "num_threads", "amp"]


@subcommand("train")
def _add_train(sub):
    from .params import add_arguments
    from .training.config import TrainConfig

    p = sub.add_parser("train", help="headless training of PhAI or DSFU-Net (also under torchrun --nproc-per-node N)")
    p.add_argument("config", help="JSON run configuration (see resources/configs/); the options below override it")
    p.add_argument("--no-resume", action="store_true", help="start afresh even if the run directory has a checkpoint "
                                                            "(an older metrics log is kept beside)")
    p.set_defaults(run=_run_train, train_options=add_arguments(p, TrainConfig, include=TRAIN_OPTIONS))


def _run_train(args) -> int:
    import os
    import signal
    import threading

    from .outputs import output_folder
    from .training.config import TrainConfig
    from .training.phai_trainer import train
    from .training.runlog import RunControl

    cfg = args.train_options.apply(TrainConfig.load(args.config), args).check()
    main_rank = int(os.environ.get("RANK", "0")) == 0
    bar = TextProgress(f"train {cfg.kind}") if main_rank else None
    control = RunControl(cfg.run_dir)
    interrupted = []

    def first_interrupt(*_):  # Ctrl-C: stop after the current step with a checkpoint; a second one aborts
        interrupted.append(True)
        control.request_stop()
        signal.signal(signal.SIGINT, signal.default_int_handler)
        if main_rank:
            print("\ninterrupt: stopping after this step and writing a checkpoint (Ctrl-C again aborts)",
                  file=sys.stderr)

    old = signal.signal(signal.SIGINT, first_interrupt) if threading.current_thread() is threading.main_thread() else None
    t0 = time.perf_counter()
    try:
        with output_folder(cfg.run_dir, "run directory"):
            res = train(cfg, resume=not args.no_resume, progress=bar, control=control)
    except KeyboardInterrupt:
        if bar:
            bar.close()
        from .training.runlog import read_metrics

        ends = [r for r in read_metrics(cfg.run_dir) if r.get("kind") == "end"]
        at = ends[-1].get("checkpoint_step") if ends else None
        what = f"the checkpoint of step {at} resumes the run" if at is not None else \
            "no checkpoint was written: the run starts over"
        print(f"aborted: {what} ({cfg.run_dir})", file=sys.stderr)
        return 130
    finally:
        if old is not None:
            signal.signal(signal.SIGINT, old)
    if bar:
        bar.close()
    if not main_rank:
        return 130 if interrupted else 0
    vals = ", ".join(f"{k} {v:.4f}" for k, v in res.items() if isinstance(v, float) and k.startswith("val_"))
    began = f"resumed at step {res['start_step']}, " if res["resumed"] else ""
    at = f" (validation at step {res['validated_at']}: {vals})" if vals else ""
    if interrupted:
        print(f"interrupted at step {res['step']} of {cfg.steps}: checkpoint written, run the same command to "
              f"resume -> {cfg.run_dir}{at}", file=sys.stderr)
        return 130
    status = "trained to" if res["reason"] == "completed" else f"{res['reason']} at"
    print(f"{began}{status} step {res['step']} of {cfg.steps} in {time.perf_counter() - t0:.1f} s -> {cfg.run_dir}{at}")
    return 0


# ------------------------------------------------------------------------------------------ main
def build_parser() -> argparse.ArgumentParser:
    from .params import OneLineArgumentParser

    p = OneLineArgumentParser(prog="crystalstudio", description="CrystalStudio: deep-learning crystallography "
                              "(GUI without a subcommand; FILE opens a structure, reflections, map or volume)")
    p.add_argument("--version", action="version", version=f"crystalstudio {__version__}")
    p.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    sub = p.add_subparsers(dest="command", metavar="{" + ",".join(SUBCOMMANDS) + "}",
                           parser_class=OneLineArgumentParser)
    for name, add in SUBCOMMANDS.items():
        add(sub)
    return p


def _one_line(text: str, limit: int = 400) -> str:
    """Whitespace and line breaks collapsed: a message for one line of a terminal."""
    s = " ".join(str(text).split())
    return s if len(s) <= limit else s[: limit - 1] + "…"


def describe_error(exc: BaseException) -> tuple[str, int]:
    """(one-line message, exit status) for an exception that ended a command."""
    if isinstance(exc, Cancelled):
        return "cancelled", 130
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted", 130
    if isinstance(exc, CrystalStudioError):
        return f"error: {_one_line(exc)}", 2
    if isinstance(exc, MemoryError):
        return "error: out of memory (try fewer structures at once or a smaller batch)", 1
    if isinstance(exc, OSError):
        what = f"{exc.filename}: " if exc.filename else ""
        return f"error: {what}{_one_line(exc.strerror or exc)}", 2
    name = type(exc).__name__
    text = _one_line(exc)
    if name == "OutOfMemoryError" or "out of memory" in text.lower():
        return "error: the GPU ran out of memory (use a smaller batch, or --device cpu)", 1
    if "cuda" in text.lower() and isinstance(exc, (RuntimeError, AssertionError)):
        return f"error: CUDA is not usable here ({_one_line(text, 160)}); use --device cpu", 1
    return f"internal error: {name}: {_one_line(text, 240)}; rerun with --debug for the traceback", 1


def _check_common_options(args) -> None:
    """Before any work: a device that can run the job, and an output folder that can be written."""
    for key, device in vars(args).items():  # --device of any command, plain or a settings field
        if device and isinstance(device, str) and (key == "device" or key.endswith(".device") or key == "param:device"):
            from .devices import resolve_device

            resolve_device(device)


def _run_command(args) -> int:
    _check_common_options(args)
    out = getattr(args, "out", None)
    if out and getattr(args, "checks_out", True):
        from .outputs import output_folder

        with output_folder(out):
            return int(args.run(args) or 0)
    return int(args.run(args) or 0)


def _looks_like_command(word: str) -> bool:
    import re

    return bool(re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]*", word))


def main(argv: Optional[list[str]] = None) -> int:
    """Run a subcommand (every failure: one line on stderr and a non-zero status; --debug: the traceback)
    or open the GUI (on FILE when one is given)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    first = argv[0] if argv else None
    if first is not None and (first in SUBCOMMANDS or first in ("-h", "--help", "--version")):
        try:
            parser = build_parser()
            args, extra = parser.parse_known_args(argv)  # bad options: argparse's one-line error
        except SystemExit as exc:
            return exc.code if isinstance(exc.code, int) else 2
        if extra:  # named with the subcommand (argparse blames "crystalstudio"), with the nearest option
            import difflib

            sub = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
            known = [o for a in sub.choices[args.command]._actions for o in a.option_strings] if sub else []
            close = difflib.get_close_matches(extra[0].split("=")[0], known, n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]}?" if close and extra[0].startswith("-") else ""
            print(f"crystalstudio {args.command}: error: unrecognized arguments: {' '.join(extra)}{hint} (see --help)",
                  file=sys.stderr)
            return 2
        if args.command is None:
            build_parser().print_help()
            return 0
        try:  # checks that need every option of the command (bounds that depend on another option)
            getattr(args, "check", lambda a: None)(args)
        except argparse.ArgumentTypeError as exc:
            print(f"crystalstudio {args.command}: error: {exc} (see --help)", file=sys.stderr)
            return 2
        try:
            return _run_command(args)
        except BaseException as exc:  # noqa: BLE001 - every failure becomes one line (the traceback with --debug)
            if debug or isinstance(exc, SystemExit):
                raise
            message, status = describe_error(exc)
            print(f"crystalstudio {args.command}: {message}", file=sys.stderr)
            return status
    if first is not None and not first.startswith("-"):
        from pathlib import Path

        if not Path(first).exists():
            if _looks_like_command(first):
                import difflib

                close = difflib.get_close_matches(first, list(SUBCOMMANDS), n=1, cutoff=0.5)
                hint = f"; did you mean '{close[0]}'?" if close else \
                    f" (commands: {', '.join(SUBCOMMANDS)}; or give a file to open)"
                print(f"crystalstudio: error: unknown command '{first}'{hint}", file=sys.stderr)
            else:
                print(f"crystalstudio: error: {first}: file does not exist", file=sys.stderr)
            return 2
    from .params import OneLineArgumentParser

    gui = OneLineArgumentParser(prog="crystalstudio", add_help=False)
    gui.add_argument("file", nargs="?")
    gui.add_argument("--fresh-preferences", action="store_true", help="start with default settings")
    gargs, qt_args = gui.parse_known_args(argv)
    from .gui.app import run_gui

    return run_gui(gargs.file, fresh_preferences=gargs.fresh_preferences, qt_args=qt_args)


if __name__ == "__main__":
    sys.exit(main())
