"""The one run loop (PhAI and DSFU-Net): configuration fields honoured or refused, the summary step, a clean
stop on Ctrl-C with a checkpoint, resume that continues the curve, and metrics logs never overwritten."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from crystalstudio.errors import InputFileError
from crystalstudio.params import ParamsError
from crystalstudio.training.config import DSFUTrainConfig, PhAITrainConfig, TrainConfig
from crystalstudio.training.runlog import read_metrics

TINY = {"preset": "small", "filters": 4, "dim": 32, "dim_exp": 32, "dim_token_exp": 8, "mlp_depth": 1, "cnn_depth": 1}


def tiny_phai(run_dir, steps, **kw) -> PhAITrainConfig:
    d = dict(kind="phai", run_dir=str(run_dir), model=TINY, batch_size=4, steps=steps, data_shards=2, val_every=0,
             val_size=8, checkpoint_every=0, warmup_steps=0, cycles_max=2, device="cpu", lr=1e-3, seed=5,
             generator={"cell": {"a_max": 7.0}, "content": {"max_atoms_asu": 8}})
    d.update(kw)
    return TrainConfig.from_dict(d)


def losses(run_dir):
    return [r["loss"] for r in read_metrics(run_dir) if r["kind"] == "train"]


@pytest.mark.parametrize("data,message", [
    ({"kind": "dsfu", "cycles_max": 2}, "cycles_max: a phai setting; this configuration trains dsfu"),
    ({"kind": "phai", "diffuse": {}}, "diffuse: a dsfu setting"),
    ({"tensorboard": True}, "tensorboard: not supported"),
    ({"optimizer": "rmsprop", "betas": [0.5, 0.9]}, "RMSprop has no betas"),
    ({"batch_size": 10, "data_shards": 4}, "batch_size (10) must be a multiple of data_shards (4)"),
    ({"kind": "gan"}, "kind: must be one of 'phai', 'dsfu'"),
    ({"kind": "dsfu", "diffuse": {"sizee": 64}}, "unknown diffuse setting 'sizee'"),
    ({"steps": -1}, "steps: must be ≥ 1 (got -1)"),
])
def test_configuration_fields_refused_with_a_reason(data, message):
    with pytest.raises(InputFileError) as e:
        TrainConfig.from_dict(data, "run.json")
    assert message in str(e.value) and str(e.value).startswith("run.json: ")


def test_kind_picks_the_class_and_its_defaults():
    phai, dsfu = TrainConfig.from_dict({}), TrainConfig.from_dict({"kind": "dsfu"})
    assert isinstance(phai, PhAITrainConfig) and isinstance(dsfu, DSFUTrainConfig)
    # DSFU-Net's published recipe is its class's defaults, not a rewrite inside the trainer
    assert (dsfu.optimizer, dsfu.lr, dsfu.betas, dsfu.grad_clip) == ("adam", 2e-4, (0.5, 0.999), 0.0)
    assert phai.generator.content.u_iso == (0.005, 0.06) and phai.to_dict(complete=False) == {}
    partial = TrainConfig.from_dict({"generator": {"cell": {"a_max": 12.0}}})
    assert partial.generator.content.u_iso == (0.005, 0.06) and partial.generator.cell.a_max == 12.0
    assert partial.to_dict(complete=False) == {"generator": {"cell": {"a_max": 12.0}}}


def test_summary_names_the_last_step_not_the_last_validation(tmp_path):
    from crystalstudio.training.phai_trainer import PhAITrainer

    res = PhAITrainer(tiny_phai(tmp_path, 5, val_every=3)).run()
    assert res["step"] == 5 and res["validated_at"] == 3 and res["reason"] == "completed" and not res["stopped"]
    end = [r for r in read_metrics(tmp_path) if r["kind"] == "end"][-1]
    assert end["step"] == 5 and torch.load(tmp_path / "checkpoint_last.pt", weights_only=True)["step"] == 5


def test_early_stop_and_fresh_start_keeps_the_old_log(tmp_path):
    from crystalstudio.training.phai_trainer import PhAITrainer

    # a learning rate too small to move the validation map r: patience 2 stops after the third validation
    res = PhAITrainer(tiny_phai(tmp_path, 10, val_every=1, early_stop_patience=2, lr=1e-9)).run()
    assert res["reason"] == "early stop" and res["step"] == 3 and res["stopped"]
    first = (tmp_path / "metrics.jsonl").read_text()
    res = PhAITrainer(tiny_phai(tmp_path, 2), resume=False).run()
    assert res["step"] == 2 and not res["resumed"]
    assert (tmp_path / "metrics.1.jsonl").read_text() == first  # kept, not overwritten
    assert any("kept as metrics.1.jsonl" in r.get("event", "") for r in read_metrics(tmp_path))


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_ctrl_c_checkpoints_and_the_rerun_resumes(tmp_path):
    from crystalstudio.training.phai_trainer import PhAITrainer

    PhAITrainer(tiny_phai(tmp_path / "ref", 6)).run()
    ref = losses(tmp_path / "ref")
    cfg = tiny_phai(tmp_path / "run", 6)
    cfg.save(tmp_path / "run.json")
    argv = [sys.executable, "-m", "crystalstudio.cli", "train", str(tmp_path / "run.json")]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and len(losses(tmp_path / "run")) < 2:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    step = torch.load(tmp_path / "run" / "checkpoint_last.pt", weights_only=True)["step"]
    assert 2 <= step < 6 and f"interrupted at step {step} of 6: checkpoint written" in err and "Traceback" not in err
    again = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith(f"resumed at step {step}, trained to step 6 of 6")
    got = losses(tmp_path / "run")
    assert len(got) == 6 and np.allclose(got, ref, rtol=0, atol=1e-7)  # the same curve as without the interrupt
    assert not (tmp_path / "run" / "metrics.1.jsonl").exists()


def test_cli_steps_override_and_final_step_printed(tmp_path):
    cfg = tiny_phai(tmp_path / "r", 100, val_every=2)
    cfg.save(tmp_path / "c.json")
    out = subprocess.run([sys.executable, "-m", "crystalstudio.cli", "train", str(tmp_path / "c.json"), "--steps", "3"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("trained to step 3 of 3") and "validation at step 2" in out.stdout
    saved = json.loads((tmp_path / "r" / "config.json").read_text())
    assert saved["steps"] == 3 and saved["val_every"] == 2  # the run records what it ran with (complete)


def test_dsfu_honours_every_optimiser_field(tmp_path):
    from crystalstudio.training.dsfu_trainer import DSFUTrainer

    cfg = TrainConfig.from_dict(dict(kind="dsfu", run_dir=str(tmp_path), model={"width": 4}, batch_size=2,
                                     data_shards=1, steps=2, val_size=2, val_every=2, device="cpu", seed=3,
                                     optimizer="adamw", weight_decay=0.01, betas=[0.8, 0.95], grad_clip=0.5,
                                     diffuse={"size": 64, "mc_swaps": 50, "mc_size": 6, "pool": 2}))
    loop = DSFUTrainer(cfg)
    res = loop.run()
    assert res["step"] == 2 and res["validated_at"] == 2
    assert len(loop.optimizers) == 2 and all(isinstance(o, torch.optim.AdamW) for o in loop.optimizers)
    for o in loop.optimizers:
        g = o.param_groups[0]
        assert g["betas"] == (0.8, 0.95) and g["weight_decay"] == 0.01
    ck = torch.load(tmp_path / "checkpoint_last.pt", weights_only=True)
    assert ck["config"]["grad_clip"] == 0.5 and ck["width"] == 4
    assert (tmp_path / "generator_ff.pt").exists() and (tmp_path / "sample.npz").exists()
    with pytest.raises(ParamsError, match="RMSprop has no betas"):
        cfg.replace(optimizer="rmsprop").check()
