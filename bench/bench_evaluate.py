"""`crystalstudio evaluate` throughput at the published PhAI size (42.4 M parameters, randomly initialised: the
speed does not depend on the weights, the number of repeated cycles does) on real P2₁/c-family structures,
against the goal of 5 structures/s on the 2-core CPU, with the arithmetic that bounds it.

Rows measured in the same run: the single-structure scan (one structure's 5 starts per forward pass, every cycle
run: the baseline), structures scanned together (plain), together with repeated inputs answered from earlier
passes (identical candidates), and the same with bf16 autocast (not identical: the changed fraction is printed).
Then the shipped small model over the whole folder.

    python bench/bench_evaluate.py [--threads 2] [--structures 6] [--cycles 10]
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import header  # noqa: E402

from crystalstudio.phasing.evaluate import EvaluateSettings, evaluate_folder, find_cifs, prepare_structure  # noqa: E402
from crystalstudio.phasing.models import default_phai_model  # noqa: E402
from crystalstudio.phasing.phai_grid import PhAIGrid  # noqa: E402
from crystalstudio.phasing.phai_inference import phai_scan, phai_scan_batch  # noqa: E402
from crystalstudio.phasing.phai_model import PhAI, PhAIConfig  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "structures"


def macs_per_forward(c: PhAIConfig) -> float:
    """Multiply–accumulates of one forward pass (convolutions, projection, mixer, output)."""
    gx, gy, gz = c.grid_shape
    vox, k3 = gx * gy * gz, c.kernel_size**3
    conv = 2 * vox * c.filters * k3 + 2 * c.cnn_depth * vox * c.filters * c.filters * k3
    proj = c.filters * vox * c.dim
    mixer = c.mlp_depth * (2 * c.filters * c.dim_token_exp * c.dim + 2 * c.filters * c.dim * c.dim_exp)
    return conv + proj + mixer + c.dim * 2 * c.reflections


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--structures", type=int, default=6)
    ap.add_argument("--cycles", type=int, default=10)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    header("evaluate: PhAI scans of real structures at the published size")
    cfg = PhAIConfig.published()
    mac = macs_per_forward(cfg)
    passes = args.cycles * 5
    print(f"arithmetic: {mac / 1e9:.1f} GMAC per forward pass, {passes} passes per structure (cycles 1–{args.cycles} "
          f"× 5 starts) = {passes * mac / 1e12:.2f} TMAC per structure; 5 structures/s needs "
          f"{5 * passes * mac / 1e12:.2f} TMAC/s = {10 * passes * mac / 1e12:.1f} TFLOP/s in fp32")
    torch.manual_seed(0)
    model = PhAI(cfg).eval()
    grid = PhAIGrid(cfg.max_index)
    if not DATA.is_dir():
        print(f"{DATA} is absent: nothing to run")
        return
    inputs = []
    for p in find_cifs(DATA):
        try:
            inputs.append(prepare_structure(p, grid, 1.0))
        except Exception:  # noqa: BLE001 - other space groups are simply not part of the set
            continue
        if len(inputs) == args.structures:
            break
    amp = np.stack([x.amplitudes for x in inputs])
    ref = np.stack([x.phases for x in inputs])
    S = len(inputs)
    with torch.inference_mode():
        model(grid.to_grid(torch.as_tensor(amp[:1], dtype=torch.float32)), grid.to_grid(torch.zeros(1, grid.n)))
        t0 = time.perf_counter()
        single = phai_scan(model, amp[0], max_cycles=args.cycles, reference_phases=ref[0], skip_repeats=False)
        t_single = time.perf_counter() - t0
        rate_single = 1 / t_single
        print(f"single-structure scan (5 rows per pass, every cycle): {t_single:.2f} s -> {rate_single:.3f} structures/s "
              f"({passes * mac / t_single / 1e9:.0f} GMAC/s achieved)")
        rows = []
        for label, skip, autocast in (("together, plain", False, False), ("together, repeats skipped", True, False),
                                      ("together, repeats skipped, bf16 autocast", True, True)):
            st = {}
            t0 = time.perf_counter()
            out = phai_scan_batch(model, amp, max_cycles=args.cycles, reference_phases=ref, skip_repeats=skip,
                                  autocast=autocast, stats=st, max_rows=40)
            dt = time.perf_counter() - t0
            rows.append((label, out))
            print(f"{S} structures {label}: {dt:.2f} s -> {S / dt:.3f} structures/s = {S / dt / rate_single:.2f}x the "
                  f"single scan; {st['forwards']} of {st['rows']} passes run ({st['forwards'] * mac / dt / 1e9:.0f} "
                  f"GMAC/s achieved)")
        plain, fast, bf16 = (r[1] for r in rows)
        same = all(np.array_equal(a.phases, b.phases) for p, f in zip(plain, fast) for a, b in zip(p, f))
        changed = np.mean([not np.array_equal(a.phases, b.phases) for p, f in zip(plain, bf16) for a, b in zip(p, f)])
        dr = max(abs(max(c.map_r for c in p) - max(c.map_r for c in f)) for p, f in zip(plain, bf16))
        print(f"skipped-repeat candidates identical to the plain scan: {same}; bf16 changes {100 * changed:.0f} % of "
              f"the candidates' phase sets (best map r moves by up to {dr:.3f})")
        print(f"single scan's best map r {max(c.map_r for c in single):.3f} = together's "
              f"{max(c.map_r for c in plain[0]):.3f}")
    # the shipped small model over the whole folder (what the tests and the README quote)
    import tempfile

    small = default_phai_model()
    with tempfile.TemporaryDirectory() as tmp:
        rep = evaluate_folder(small, DATA, tmp, EvaluateSettings(max_cycles=args.cycles))
    print(f"shipped small model (1.3 M parameters), whole folder: {len(rep.rows)} structures in {rep.seconds:.2f} s "
          f"(reading, structure factors, scans, CSV, PNG) -> {len(rep.rows) / rep.seconds:.1f} structures/s; "
          f"{rep.forwards} of {rep.plain_forwards} passes run")


if __name__ == "__main__":
    main()
