"""PhAI: published layout, model files, the fixture data, input building, recycling, and training
(resume after a kill, DDP equivalence, learning)."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from crystalstudio.crystal.generator import GeneratorSettings, generate_batch
from crystalstudio.crystal.reflections import unique_reflections
from crystalstudio.errors import InvalidInputError, ModelFileError
from crystalstudio.phasing.phai_grid import PhAIGrid
from crystalstudio.phasing.phai_grid import phase_metrics, scale_amplitudes
from crystalstudio.phasing.phai_inference import (emap_skewness, load_phai, phai_input_from_reflections, phai_scan,
                                                  recycle)
from crystalstudio.phasing.phai_model import PhAI, PhAIConfig, count_parameters
from crystalstudio.training.config import TrainConfig
from crystalstudio.training.phai_trainer import PhAITrainer
from crystalstudio.training.runlog import read_metrics
from tests.realdata import needs_data

TINY = {"preset": "small", "filters": 8, "dim": 64, "dim_exp": 64, "dim_token_exp": 16, "mlp_depth": 1, "cnn_depth": 1}


def test_published_layout_and_strict_reload(tmp_path):
    model = PhAI(PhAIConfig.published())
    sd = model.state_dict()
    keys = list(sd)
    assert count_parameters(model) == 42_443_882 and len(sd) == 158
    assert keys[:3] == ["net_a.1.weight", "net_a.1.bias", "net_a.3.weight"]
    assert keys[-2:] == ["net_output.3.weight", "net_output.3.bias"]
    assert "net_convolution_layers.0.0.conv1.weight" in sd and "net_mixer_layers.8.weight" in sd
    torch.save(sd, tmp_path / "PhAI_model.pth")
    back = load_phai(tmp_path / "PhAI_model.pth", expected=PhAIConfig.published())
    assert all(torch.equal(back.state_dict()[k], v) for k, v in sd.items())
    with pytest.raises(ModelFileError, match="architecture differs"):
        load_phai(tmp_path / "PhAI_model.pth", expected=PhAIConfig.small())
    x = torch.rand(1, 21, 11, 11)
    assert back(x, torch.zeros_like(x)).shape == (1, 2, 1205)


def test_unsafe_and_foreign_files_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    torch.save({"model": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(ModelFileError, match="weights-only"):
        load_phai(tmp_path / "evil.pt")
    torch.save({"foo.weight": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(ModelFileError, match="not a PhAI state dict"):
        load_phai(tmp_path / "other.pt")
    (tmp_path / "text.pt").write_text("hello")
    with pytest.raises(ModelFileError, match="text.pt"):
        load_phai(tmp_path / "text.pt")


def read_example(path):
    blocks = [b for b in path.read_text().split("refcode") if b.strip()]
    out = []
    for b in blocks:
        rows = [ln.split() for ln in b.splitlines()[2:] if ln.strip()]
        a = np.array(rows, dtype=float)
        out.append(a)
    return out


def test_fixture_order_encoding_and_map_r():
    ex = read_example(needs_data("phai", "example_data.txt"))
    weights = np.load(needs_data("phai", "average_weights.npy"))
    grid = PhAIGrid(10)
    assert len(ex) == 10
    for a in ex:
        assert a.shape == (1205, 6)
        assert np.array_equal(a[:, :3].astype(int), grid.hkl)  # the PhAI reflection order
        assert a[:, 3].max() == pytest.approx(1.0)  # |F| scaled to max 1
        assert set(np.unique(a[:, 5])) <= {0.0, -180.0}
    assert np.array_equal(weights == 0, grid.absent)  # the 84 P2₁/c absences
    A = torch.as_tensor(np.stack([a[:, 3] for a in ex]), dtype=torch.float32)
    T = torch.as_tensor(np.stack([a[:, 4] for a in ex]), dtype=torch.float32)
    P = torch.as_tensor(np.stack([a[:, 5] for a in ex]), dtype=torch.float32)
    acc, err, r = phase_metrics(P, T, A, torch.as_tensor(grid.hkl))
    assert torch.all(r > 0.995) and torch.all(acc > 0.95)
    # random phases: far below; the E-map skewness prefers the true phases
    rng = np.random.default_rng(0)
    R = torch.as_tensor(rng.choice([0.0, -180.0], size=P.shape), dtype=torch.float32)
    assert torch.all(phase_metrics(R, T, A, torch.as_tensor(grid.hkl))[2] < 0.5)
    for a, rnd in zip(ex, R.numpy()):
        assert emap_skewness(a[:, 4], a[:, 3], grid) > emap_skewness(rnd, a[:, 3], grid) + 0.3


def test_input_from_measured_list_matches_grid_calculation():
    batch = generate_batch(3, GeneratorSettings(), seed=2)
    grid = PhAIGrid(10)
    direct = scale_amplitudes(batch.structure_factors(grid.hkl).abs()).numpy()
    for i in range(3):
        st = batch.structure(i)
        hkl = unique_reflections(st.cell, st.space_group, 0.3)  # covers every list index of a ≥ 4 Å cell
        from crystalstudio.crystal.structure_factors import structure_factors

        F = np.abs(structure_factors(st, hkl))
        inp = phai_input_from_reflections(hkl, F, st.space_group)
        ok = direct[i] > 1e-3
        assert np.allclose(inp.amplitudes[ok], direct[i][ok], atol=1e-4)
        lz = (grid.hkl[:, 2] == 0) & (grid.hkl[:, 0] < 0)  # the (−h, k, 0) duplicates are filled too
        assert np.all(inp.amplitudes[lz & ok] > 0)
        assert inp.n_outside > 0 and "beyond" in inp.notes[0]
    with pytest.raises(InvalidInputError, match="P2₁/c"):
        from crystalstudio.crystal.symmetry import SpaceGroup

        phai_input_from_reflections(hkl, F, SpaceGroup.from_name("P 1 21/n 1"))


def test_recycling_feeds_phases_back_and_scores_every_candidate():
    torch.manual_seed(0)
    model = PhAI(PhAIConfig.from_dict({**PhAIConfig.small().to_dict(), "filters": 8, "dim": 64, "dim_exp": 64,
                                      "dim_token_exp": 16, "mlp_depth": 1, "cnn_depth": 1})).eval()
    grid = PhAIGrid(10)
    amp = torch.rand(2, 1205)
    ph, pr = recycle(model, amp, torch.zeros(2, 1205), 3)
    assert ph.shape == (3, 2, 1205) and set(torch.unique(ph).tolist()) <= {0.0, -180.0}
    inp = torch.zeros(2, 1205)
    with torch.no_grad():
        for c in range(3):  # each cycle sees the previous cycle's phases; pr is the chosen class's probability
            logits = model(grid.to_grid(amp), grid.to_grid(inp))
            assert torch.equal(ph[c], torch.where(logits[:, 1] > logits[:, 0], 0.0, -180.0))
            assert torch.allclose(pr[c], torch.softmax(logits, dim=1).max(dim=1).values, atol=1e-6)
            inp = ph[c]
    ref = np.where(np.random.default_rng(1).random(1205) < 0.5, 0.0, -180.0)
    cands = phai_scan(model, amp[0].numpy(), max_cycles=4, random_starts=2, reference_phases=ref)
    assert sorted((c.start, c.cycles) for c in cands) == [(s, k) for s in range(3) for k in range(1, 5)]
    zero = {c.cycles: c for c in cands if c.start == 0}
    ph4, _ = recycle(model, amp[:1], torch.zeros(1, 1205), 4)
    F2 = amp[0].numpy().astype(np.float64) ** 2
    origins = np.array([[x, y, z] for x in (0, 0.5) for y in (0, 0.5) for z in (0, 0.5)])
    for k in range(1, 5):
        c = zero[k]
        assert np.array_equal(c.phases, ph4[k - 1, 0].numpy())
        before = np.zeros(1205) if k == 1 else ph4[k - 2, 0].numpy()
        assert c.stable == pytest.approx(np.mean(c.phases == before))
        assert c.fom == pytest.approx(c.skewness * (0.5 + 0.5 * c.stable) * c.confidence, rel=1e-6)
        # map r by hand: Σ|F|² cos Δφ / Σ|F|² at the best of the eight P2₁/c origins
        shifted = ref[None] + 360.0 * (origins @ grid.hkl.T)
        r = (F2 * np.cos(np.radians(c.phases[None] - shifted))).sum(1) / F2.sum()
        assert c.map_r == pytest.approx(r.max(), abs=1e-5)


def _tiny_cfg(run_dir, steps, **kw):
    d = dict(kind="phai", run_dir=str(run_dir), model=TINY, batch_size=8, steps=steps, data_shards=2, val_every=2,
             val_size=16, checkpoint_every=1, warmup_steps=0, cycles_max=2, device="cpu", lr=1e-3, seed=5,
             weight_structures=64, generator={"content": {"max_atoms_asu": 24}})
    d.update(kw)
    return TrainConfig.from_dict(d)


def _losses(run_dir):
    return [r["loss"] for r in read_metrics(run_dir) if r["kind"] == "train"]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_resume_after_kill_gives_the_same_curve(tmp_path):
    PhAITrainer(_tiny_cfg(tmp_path / "a", 6), resume=False).run()
    ref = _losses(tmp_path / "a")
    cfg = _tiny_cfg(tmp_path / "b", 6)
    cfg.save(tmp_path / "b.json")
    proc = subprocess.Popen([sys.executable, "-m", "crystalstudio.cli", "train", str(tmp_path / "b.json"), "--no-resume"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and len(_losses(tmp_path / "b")) < 3:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    n_before = len(_losses(tmp_path / "b"))
    assert 3 <= n_before < 6
    PhAITrainer(_tiny_cfg(tmp_path / "b", 6), resume=True).run()
    got = _losses(tmp_path / "b")
    assert len(got) == 6 and np.allclose(got, ref, rtol=0, atol=1e-7)


def test_different_architecture_checkpoint_refused(tmp_path):
    PhAITrainer(_tiny_cfg(tmp_path, 2), resume=False).run()
    other = _tiny_cfg(tmp_path, 4, model={**TINY, "filters": 12})
    with pytest.raises(ModelFileError, match="architecture"):
        PhAITrainer(other, resume=True).run()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_ddp_two_processes_match_single(tmp_path):
    single = _tiny_cfg(tmp_path / "s", 4, val_every=0, checkpoint_every=0)
    PhAITrainer(single, resume=False).run()
    cfg = _tiny_cfg(tmp_path / "d", 4, val_every=0, checkpoint_every=0)
    cfg.save(tmp_path / "d.json")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    with socket.socket() as sock:  # a free port: a fixed one collided when two suites ran at once (child abort -6)
        sock.bind(("127.0.0.1", 0))
        port = str(sock.getsockname()[1])
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", port,
                          "-m", "crystalstudio.cli", "train", str(tmp_path / "d.json"), "--no-resume"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    a, b = _losses(tmp_path / "s"), _losses(tmp_path / "d")
    assert len(a) == len(b) == 4 and np.allclose(a, b, atol=1e-5)
    sa = torch.load(tmp_path / "s" / "checkpoint_last.pt", weights_only=True)["model"]
    sb = torch.load(tmp_path / "d" / "checkpoint_last.pt", weights_only=True)["model"]
    # Adam divides by √v: parameters with near-zero gradients (e.g. the phase stem, phases start at 0)
    # amplify summation-order differences, so compare against the size of 4 updates (lr·steps = 4e-3)
    assert max((sa[k] - sb[k]).abs().max().item() for k in sa) < 5e-4
    start = [r for r in read_metrics(tmp_path / "d") if r["kind"] == "start"][0]
    assert start["world"] == 2


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_short_training_reduces_the_loss(tmp_path):
    # structures come from pools (one generation call per 512), as on a GPU: the same data stream, generated faster
    cfg = _tiny_cfg(tmp_path, 100, batch_size=32, data_shards=4, val_every=0, checkpoint_every=0, cycles_max=1,
                    d_min_range=[0.0, 0.0], drop_max=0.0, lr=3e-3, pool_size=512)
    PhAITrainer(cfg, resume=False).run()
    loss = _losses(tmp_path)
    # from ln 2 = 0.693 (chance) the origin-invariant loss must move clearly below chance within 100 steps
    assert np.mean(loss[-20:]) < min(np.mean(loss[:10]) - 0.008, 0.688)
