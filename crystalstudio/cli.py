"""`crystalstudio` — the GUI when called without a subcommand, else a command-line job.

  crystalstudio [FILE]                      open the desktop application (embedded default without FILE)
  crystalstudio generate --n N --seed S …   shards of artificial structures + reflections
  crystalstudio stats FOLDER …              distributions of a folder of CIFs (vs generated)
  crystalstudio phase REFLECTIONS …         solve a structure (charge flipping or PhAI)
  crystalstudio train CONFIG                headless training (also under torchrun)
  crystalstudio factorise VOLUME …          DSFU-Net factorisation of a diffuse-scattering plane

Bad input ends with a one-line reason on stderr and a non-zero exit status.
"""

from __future__ import annotations

import argparse
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
@subcommand("generate")
def _add_generate(sub):
    p = sub.add_parser("generate", help="generate artificial structures and their reflections into HDF5 shards")
    p.add_argument("--n", type=int, required=True, help="number of structures")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--mode", choices=["uniform", "molecules"], default="uniform")
    p.add_argument("--space-group", default="P 1 21/c 1", help="any name gemmi knows (default P21/c)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--config", help="JSON file with generator settings (cell/content/molecule sections)")
    p.add_argument("--shard-size", type=int, default=10000)
    p.add_argument("--max-index", type=int, default=10, help="reflections h²+k²+l² ≤ m² (PhAI grid for m=10)")
    p.add_argument("--d-min", type=float, default=1.0, help="resolution limit in Å (0: none)")
    p.add_argument("--a-min", type=float)
    p.add_argument("--a-max", type=float)
    p.add_argument("--volume-distribution", choices=["uniform", "lognormal"])
    p.add_argument("--device", default=None, help="cpu or cuda (default: cpu)")
    p.set_defaults(run=_run_generate)


def _generator_settings(args):
    import json

    from .crystal.generator import GeneratorSettings

    s = GeneratorSettings()
    if getattr(args, "config", None):
        with open(args.config) as f:
            d = json.load(f)
        s = GeneratorSettings.from_dict(d.get("generator", d))
    s.space_group = args.space_group or s.space_group
    s.content.mode = args.mode or s.content.mode
    if args.a_min:
        s.cell.a_min = args.a_min
    if args.a_max:
        s.cell.a_max = args.a_max
    if args.volume_distribution:
        s.cell.volume_distribution = args.volume_distribution
    return s


def _run_generate(args) -> int:
    from .crystal.generator.export import export_shards

    s = _generator_settings(args)
    bar = TextProgress("generate")
    try:
        res = export_shards(args.out, args.n, s, args.seed, shard_size=args.shard_size, max_index=args.max_index,
                            d_min=args.d_min or None, device=args.device, progress=bar)
    except KeyboardInterrupt:
        bar.close()
        from .io.shards import shard_paths

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
    p.add_argument("--generated", type=int, default=2000, help="generated structures to compare (0: none)")
    p.add_argument("--mode", choices=["uniform", "molecules"], default="uniform")
    p.add_argument("--space-group", default="P 1 21/c 1")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--png", help="write histogram overlays to this PNG")
    p.add_argument("--tables", help="write element tables fitted from the CIFs into this folder")
    p.set_defaults(run=_run_stats, config=None, a_min=None, a_max=None, volume_distribution=None)


def _run_stats(args) -> int:
    from .crystal.generator import generate_batch
    from .crystal.generator.elements_table import ElementTable
    from .crystal.statistics import compare_statistics, plot_overlays, statistics_from_cif_folder, statistics_of_batch

    real = statistics_from_cif_folder(args.folder)
    mu, sigma = real.lognormal_volume_fit()
    print(f"{real.n_structures} structures from {args.folder}; log-normal volume fit: mu={mu:.4f} sigma={sigma:.4f} "
          f"(median {pow(2.718281828, mu):.0f} Å³)")
    for line in real.skipped:
        print(f"  skipped {line}")
    gen = None
    if args.generated:
        gen = statistics_of_batch(generate_batch(args.generated, _generator_settings(args), args.seed))
        for q, d in compare_statistics(real, gen).items():
            print(f"  {q:16s} KS {d['ks']:.3f}  W1 {d['wasserstein']:.3f}")
    if args.png:
        plot_overlays(real, gen, args.png)
        print(f"overlays -> {args.png}")
    if args.tables:
        from pathlib import Path

        Path(args.tables).mkdir(parents=True, exist_ok=True)
        for which in ("general", "special"):
            shares = real.element_shares(which)
            if shares:
                ElementTable(shares).write_csv(Path(args.tables) / f"{which}_positions.csv",
                                               f"fitted from {real.n_structures} structures in {args.folder}")
        print(f"element tables -> {args.tables}")
    return 0


# ------------------------------------------------------------------------------------------ phase
def _bounded(kind, lo=None, hi=None, what="value"):
    """argparse type: a number within [lo, hi] (checked at parse time)."""
    def conv(text):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be a{'n integer' if kind is int else ' number'}, got '{text}'")
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            raise argparse.ArgumentTypeError(f"{what} must lie in [{lo:g}, {hi:g}], got {text}")
        return v
    return conv


@subcommand("phase")
def _add_phase(sub):
    from .phasing.parameters import DEFAULTS, FIELDS

    def rng(name, kind=int):
        f = FIELDS[name]
        return _bounded(kind, f.minimum, f.maximum, name.replace("_", " "))

    p = sub.add_parser("phase", help="solve a structure from reflections: phases, a refined model with elements, "
                                     "R1 and a verdict")
    p.add_argument("reflections", help=".hkl (HKLF 4, or HKLF 3 with --amplitudes), .fcf, hkl-CIF, .cif with "
                                       "_shelx_hkl_file, .mtz, XDS_ASCII")
    p.add_argument("--structure", help="reference model (.cif/.res/.ins): map r and phase error are printed; it also "
                                       "gives cell, symmetry and cell content when the data lack them")
    p.add_argument("--cell", nargs=6, type=_bounded(float, 0, None, "cell parameter"),
                   metavar=("A", "B", "C", "AL", "BE", "GA"))
    p.add_argument("--space-group")
    p.add_argument("--formula", help=FIELDS["formula"].help)
    p.add_argument("--z", type=rng("z", float), help=FIELDS["z"].help)
    p.add_argument("--amplitudes", action="store_true", help=FIELDS["amplitudes"].help)
    p.add_argument("--method", choices=["charge-flipping", "phai"], default=DEFAULTS.method)
    p.add_argument("--model", help="PhAI weights (published PhAI_model.pth or a CrystalStudio checkpoint); "
                                   "default: the shipped small model")
    p.add_argument("--starts", type=_bounded(int, 0, 64, "starts"), default=None,
                   help=f"random starts (charge flipping {DEFAULTS.cf_starts}, PhAI {DEFAULTS.phai_starts})")
    p.add_argument("--iterations", type=rng("cf_iterations"), default=DEFAULTS.cf_iterations,
                   help=FIELDS["cf_iterations"].help)
    p.add_argument("--cycles", type=rng("phai_cycles"), default=DEFAULTS.phai_cycles, help=FIELDS["phai_cycles"].help)
    p.add_argument("--seed", type=rng("seed"), default=DEFAULTS.seed)
    p.add_argument("--no-model", action="store_true", help="phases, map and peaks only: no model, R1 or verdict")
    p.add_argument("--all-starts", action="store_true", help="run every start even after one is solved")
    p.add_argument("--out", required=True, help="output folder: solution.fcf, map.ccp4, peaks.res, phases.csv, "
                                                "model.res + model.hkl")
    p.set_defaults(run=_run_phase)


def _check_writable(folder) -> bool:
    """Create `folder` if needed and prove it is writable before any work; returns whether it was created."""
    import os
    import tempfile
    from pathlib import Path

    out = Path(folder)
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=out, prefix=".write-test-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise CrystalStudioError(f"{out}: output folder is not writable ({exc.strerror or exc})") from None
    return created


def _run_phase(args) -> int:
    from .crystal.cell import UnitCell
    from .crystal.symmetry import SpaceGroup
    from .phasing.parameters import PhasingParameters
    from .phasing.solve import export_solution, prepare_problem, solve_charge_flipping, solve_phai

    params = PhasingParameters(method=args.method, seed=args.seed, formula=args.formula, z=args.z,
                               amplitudes=args.amplitudes, cf_iterations=args.iterations, phai_cycles=args.cycles,
                               build_model=not args.no_model, stop_when_solved=not args.all_starts)
    if args.starts is not None:
        if args.method == "phai":
            params.phai_starts = args.starts
        else:
            params.cf_starts = max(1, args.starts)
    if args.z is not None and not args.formula:
        raise CrystalStudioError("--z needs --formula (Z multiplies the formula)")
    cell = UnitCell(*args.cell) if args.cell else None
    sg = SpaceGroup.from_name(args.space_group) if args.space_group else None
    created = _check_writable(args.out)
    try:
        return _phase(args, params, cell, sg, prepare_problem, solve_charge_flipping, solve_phai, export_solution)
    except BaseException:
        if created:
            _remove_if_empty(args.out)
        raise


def _remove_if_empty(folder) -> None:
    from pathlib import Path

    try:
        Path(folder).rmdir()  # only succeeds when nothing was written
    except OSError:
        pass


def _phase(args, params, cell, sg, prepare_problem, solve_charge_flipping, solve_phai, export_solution) -> int:
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

        verdict = Verdict("not solved", None, ["no model was built (--no-model)"])
    print(verdict.line())
    return 0


def _element_counts(structure) -> dict:
    out: dict = {}
    for e in structure.elements:
        out[e] = out.get(e, 0) + 1
    return out


# ------------------------------------------------------------------------------------------ factorise
@subcommand("factorise")
def _add_factorise(sub):
    p = sub.add_parser("factorise", help="factorise a diffuse-scattering plane into I_FF and I_SRO (DSFU-Net)")
    p.add_argument("volume", help="Meerkat/Yell HDF5 reconstruction")
    p.add_argument("--plane", default="hk1", help="hkn, hnl or nkl (e.g. hk1, h0l)")
    p.add_argument("--q-max", type=float, default=7.0, help="half width of the 256×256 Q grid (Å⁻¹, 2π included)")
    p.add_argument("--model-ff", help="form-factor generator (published .pth layout); default: shipped small model")
    p.add_argument("--model-sro", help="short-range-order generator; default: shipped small model")
    p.add_argument("--passes", type=int, default=1, help=">1: dropout on, mean ± std over the passes")
    p.add_argument("--symmetry", default="none", help="Warren–Cowley constraints: none, mm (square/rect.), "
                                                      "4mm (square), 6mm (hexagonal), 2/m (u,v)→(−u,v)")
    p.add_argument("--average", default="none", choices=["none", "friedel", "mm", "4mm"], help="symmetry-average the plane")
    p.add_argument("--punch", action="store_true", help="punch and fill Bragg positions")
    p.add_argument("--max-index", type=int, default=3, help="Warren–Cowley vectors |u|, |v| ≤ this")
    p.add_argument("--out", required=True)
    p.set_defaults(run=_run_factorise)


def _run_factorise(args) -> int:
    from .diffuse.dsfu_net import load_generator
    from .diffuse.factorise import default_generators, export_factorisation, factorise_plane, load_plane
    from .diffuse.warren_cowley import SYMMETRIES

    if args.symmetry not in SYMMETRIES:
        match = [k for k in SYMMETRIES if k.split(" ")[0] == args.symmetry]
        if not match:
            raise CrystalStudioError(f"unknown symmetry '{args.symmetry}'")
        args.symmetry = match[0]
    plane = load_plane(args.volume, args.plane, args.q_max, symmetry=args.average, punch=args.punch)
    if args.model_ff or args.model_sro:
        if not (args.model_ff and args.model_sro):
            raise CrystalStudioError("give both --model-ff and --model-sro")
        gff, gsro = load_generator(args.model_ff), load_generator(args.model_sro)
    else:
        gff, gsro = default_generators()
    res = factorise_plane(plane, gff, gsro, passes=args.passes, dropout=args.passes > 1, max_index=args.max_index,
                          symmetry=args.symmetry)
    paths = export_factorisation(res, args.out)
    print(f"plane {plane.label}: {int(plane.mask.sum())} of {plane.mask.size} pixels measured; factorised in "
          f"{res.seconds['total']:.2f} s; product residual R {res.product_r:.3f}")
    if res.wc is not None:
        print("Warren–Cowley ratios α(uv)/α(00) (a normalised output fixes only ratios):")
        for name, a, s in res.wc.table()[:12]:
            print(f"  {name:10s} {a:+.4f} ± {s:.4f}")
    print("-> " + ", ".join(sorted(paths.values())))
    return 0


# ------------------------------------------------------------------------------------------ train
@subcommand("train")
def _add_train(sub):
    p = sub.add_parser("train", help="headless training of PhAI or DSFU-Net (also under torchrun --nproc-per-node N)")
    p.add_argument("config", help="JSON run configuration (see resources/configs/)")
    p.add_argument("--run-dir", help="override the run directory")
    p.add_argument("--steps", type=int, help="override the number of steps")
    p.add_argument("--device", help="cpu, cuda or auto")
    p.add_argument("--no-resume", action="store_true", help="start afresh even if the run directory has a checkpoint")
    p.set_defaults(run=_run_train)


def _run_train(args) -> int:
    import os

    from .training.config import TrainConfig
    from .training.phai_trainer import train

    cfg = TrainConfig.load(args.config)
    if args.run_dir:
        cfg.run_dir = args.run_dir
    if args.steps:
        cfg.steps = args.steps
    if args.device:
        cfg.device = args.device
    main_rank = int(os.environ.get("RANK", "0")) == 0
    bar = TextProgress(f"train {cfg.kind}") if main_rank else None
    t0 = time.perf_counter()
    try:
        res = train(cfg, resume=not args.no_resume, progress=bar)
    except KeyboardInterrupt:
        if bar:
            bar.close()
        print(f"interrupted: the last checkpoint in {cfg.run_dir} resumes the run", file=sys.stderr)
        return 130
    if bar:
        bar.close()
    if main_rank:
        vals = ", ".join(f"{k} {v:.4f}" for k, v in res.items() if isinstance(v, float))
        print(f"trained to step {res['step']} in {time.perf_counter() - t0:.1f} s -> {cfg.run_dir}; {vals}")
    return 0


# ------------------------------------------------------------------------------------------ main
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="crystalstudio", description="CrystalStudio: deep-learning crystallography "
                                "(GUI without a subcommand; FILE opens a structure, reflections, map or volume)")
    p.add_argument("--version", action="version", version=f"crystalstudio {__version__}")
    sub = p.add_subparsers(dest="command", metavar="{" + ",".join(SUBCOMMANDS) + "}")
    for name, add in SUBCOMMANDS.items():
        add(sub)
    return p


def main(argv: Optional[list[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in SUBCOMMANDS or (argv and argv[0] in ("-h", "--help", "--version")):
        args = build_parser().parse_args(argv)
        if args.command is None:
            build_parser().print_help()
            return 0
        try:
            return int(args.run(args) or 0)
        except Cancelled:
            print("crystalstudio: cancelled", file=sys.stderr)
            return 130
        except CrystalStudioError as exc:
            print(f"crystalstudio {args.command}: error: {exc}", file=sys.stderr)
            return 2
        except (OSError, ValueError) as exc:
            print(f"crystalstudio {args.command}: error: {exc}", file=sys.stderr)
            return 2
    gui = argparse.ArgumentParser(prog="crystalstudio", add_help=False)
    gui.add_argument("file", nargs="?")
    gui.add_argument("--fresh-preferences", action="store_true", help="start with default settings")
    gargs, qt_args = gui.parse_known_args(argv)
    from .gui.app import run_gui

    return run_gui(gargs.file, fresh_preferences=gargs.fresh_preferences, qt_args=qt_args)


if __name__ == "__main__":
    sys.exit(main())
