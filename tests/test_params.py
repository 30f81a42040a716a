"""The settings framework: validation in our words, JSON files that round-trip, argparse options that only
override what the user gave, and Qt forms that edit an object in place."""

from __future__ import annotations

import argparse
import json
from typing import Literal, Optional

import pytest
from crystalstudio.errors import InputFileError
from crystalstudio.params import (Device, FloatRange, OneLineArgumentParser, Params, ParamsError, add_arguments,
                                  describe, param, rule, section, tooltip)


class Cell(Params):
    a_min: float = param(4.0, unit="Å", gt=0, help="shortest cell length", label="a min")
    a_max: float = param(10.0, unit="Å", gt=0, help="longest cell length", label="a max")
    volume_min: Optional[float] = param(None, unit="Å³", ge=0, help="lower volume bound (auto: a_min³)")

    @rule
    def _lengths(self):
        if self.a_min > self.a_max:
            raise ValueError(f"a_min ({self.a_min:g} Å) must not exceed a_max ({self.a_max:g} Å)")


class Job(Params):
    steps: int = param(2000, ge=1, help="optimiser steps")
    lr: float = param(5e-4, gt=0, help="learning rate")
    mode: Literal["uniform", "molecules"] = param("uniform", help="how atoms are placed")
    u_iso: FloatRange(ge=0) = param((0.01, 0.1), unit="Å²", help="per-structure Uiso range")
    amp: bool = param(True, help="mixed precision")
    device: Device = param("auto", help="compute device")
    name: str = param("run", help="a name")
    cell: Cell = section(Cell, "Unit cell")
    tables: dict = param(default_factory=dict, gui=False, help="opaque, kept as it is")


@pytest.mark.parametrize("data,message", [
    ({"steps": -1}, "config.json: steps: must be ≥ 1 (got -1)"),
    ({"stepz": 3}, "stepz: unknown setting (did you mean 'steps'?)"),
    ({"cell": {"a_mn": 3}}, "cell.a_mn: unknown setting (did you mean 'a_min'?)"),
    ({"cell": {"a_min": 12}}, "a_min (12 Å) must not exceed a_max (10 Å)"),
    ({"u_iso": [0.2, 0.1]}, "u_iso: the lower end must not exceed the upper end"),
    ({"u_iso": [-1, 0.1]}, "u_iso[0]: must be ≥ 0 (got -1)"),
    ({"u_iso": [1]}, "u_iso: must have 2 values"),
    ({"mode": "x"}, "mode: must be one of 'uniform', 'molecules' (got \"x\")"),
    ({"steps": 1.5}, "steps: must be a whole number (got 1.5)"),
    ({"lr": "fast"}, "lr: must be a number (got \"fast\")"),
    ({"lr": float("nan")}, "lr: must be a finite number"),
    ({"device": "gpu"}, "device: unknown device 'gpu' (a GPU is 'cuda')"),
    ({"cell": {"volume_min": -3}}, "cell.volume_min: must be ≥ 0 (got -3)"),
])
def test_validation_messages_name_file_field_and_problem(data, message):
    with pytest.raises(InputFileError) as e:
        Job.from_dict(data, "config.json")
    text = str(e.value)
    assert text.startswith("config.json: ") and message in text and "\n" not in text
    assert "Input should" not in text and "np.float64" not in text


def test_load_errors_name_file_and_line(tmp_path):
    p = tmp_path / "config.json"
    p.write_text('{\n  "mode": "molecules",\n  "cell": {\n    "a_max": 12,\n    "a_min": -1\n  }\n}\n')
    with pytest.raises(InputFileError, match=r"config.json, line 5: cell.a_min: must be > 0 \(got -1\)"):
        Job.load(p)
    p.write_text('{"steps": 3,}')
    with pytest.raises(InputFileError, match=r"config.json, line 1: not valid JSON"):
        Job.load(p)
    p.write_bytes(b'{"name": "\xff"}')
    with pytest.raises(InputFileError, match="not UTF-8"):
        Job.load(p)
    p.write_text("[1, 2]")
    with pytest.raises(InputFileError, match="expected a JSON object"):
        Job.load(p)
    with pytest.raises(InputFileError, match="does not exist"):
        Job.load(tmp_path / "missing.json")


def test_round_trip_keeps_exactly_the_loaded_fields(tmp_path):
    p = tmp_path / "job.json"
    original = {"steps": 500000, "lr": 0.0005, "mode": "molecules", "cell": {"a_max": 12.0}, "tables": {"C": 0.5}}
    p.write_text(json.dumps(original))
    job = Job.load(p)
    job.save(tmp_path / "again.json")
    assert json.loads((tmp_path / "again.json").read_text()) == original
    job.cell.volume_min = 100.0  # an edit inside a section the file did not mention is saved too
    fresh = Job()
    fresh.cell.a_min = 3.0
    assert fresh.to_dict(complete=False) == {"cell": {"a_min": 3.0}}
    assert Job.from_dict(job.to_dict(complete=False)) == job
    assert set(Job().to_dict()) == set(Job.model_fields)  # complete: every field


def test_assignment_is_validated_and_rules_checked_on_demand():
    job = Job()
    with pytest.raises(ParamsError, match="must be ≥ 1"):
        job.steps = 0
    assert job.steps == 2000 and "steps" not in job.model_fields_set
    job.cell.a_min = 20.0  # code may change related fields one after the other …
    with pytest.raises(ParamsError, match="must not exceed"):
        job.check()  # … and the rules hold when the job starts
    job.cell.a_max = 30.0
    assert job.check() is job and job.to_dict(complete=False) == {"cell": {"a_min": 20.0, "a_max": 30.0}}


def test_describe_and_tooltip():
    info = describe(Job)
    assert info["steps"].kind == "int" and info["steps"].ge == 1 and info["steps"].default == 2000
    assert info["u_iso"].kind == "range" and info["u_iso"].ge == 0
    assert info["mode"].choices == ("uniform", "molecules")
    assert info["cell"].kind == "section" and info["tables"].kind == "other" and not info["tables"].gui
    vmin = describe(Cell)["volume_min"]
    assert vmin.optional and vmin.unit == "Å³"
    assert tooltip(describe(Cell)["a_min"]) == "shortest cell length. unit Å; allowed > 0; default 4"


def _parser():
    p = OneLineArgumentParser(prog="job")
    opts = add_arguments(p, Job, include=["steps", "lr", "mode", "u_iso", "amp", "device", "cell.a_min",
                                          "cell.volume_min"])
    return p, opts


@pytest.mark.parametrize("argv,message", [
    (["--steps", "-1"], "argument --steps: must be ≥ 1 (got -1)"),
    (["--steps", "x"], "argument --steps: must be a whole number (got 'x')"),
    (["--lr", "0"], "argument --lr: must be > 0 (got 0)"),
    (["--u-iso", "1", "0"], "argument --u-iso: the lower end must not exceed the upper end"),
    (["--mode", "q"], "argument --mode: invalid choice: 'q'"),
    (["--device", "gpu"], "argument --device: unknown device 'gpu'"),
])
def test_options_checked_at_parse_time_in_one_line(argv, message, capsys):
    p, _ = _parser()
    with pytest.raises(SystemExit) as e:
        p.parse_args(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and message in err and err.count("\n") == 1 and err.startswith("job: error: ")


def test_only_given_options_override(tmp_path):
    p, opts = _parser()
    loaded = Job.from_dict({"steps": 7, "mode": "molecules", "cell": {"a_max": 12.0}})
    args = p.parse_args(["--lr", "0.001", "--a-min", "3", "--volume-min", "auto", "--no-amp"])
    assert opts.given(args) == {"lr": 0.001, "amp": False, "cell.a_min": 3.0, "cell.volume_min": None}
    job = opts.apply(loaded, args)
    assert job.steps == 7 and job.mode == "molecules" and job.lr == 0.001 and not job.amp
    assert job.cell.a_min == 3.0 and job.cell.a_max == 12.0
    assert opts.apply(loaded, p.parse_args([])) is loaded
    with pytest.raises(ParamsError, match=r"a_min \(30 Å\) must not exceed a_max \(12 Å\) \(with --a-min\)"):
        opts.apply(loaded, p.parse_args(["--a-min", "30"]))
    assert "optimiser steps [≥ 1; default 2000]" in " ".join(p.format_help().split())


def test_form_edits_object_in_place(qtbot):
    from crystalstudio.gui.views.forms import ParamsForm

    job = Job.from_dict({"mode": "molecules", "cell": {"a_max": 12.0}, "tables": {"C": 1.0}})
    form = ParamsForm(job, "Job")
    qtbot.addWidget(form)
    seen = []
    form.changed.connect(lambda path: seen.append(path))
    form.invalid.connect(lambda path, msg: seen.append(("invalid", path, msg)))
    assert form.editor("mode").currentText() == "molecules" and form.editor("lr").text() == "0.0005"
    assert "tables" not in form.editors  # dicts are kept, never shown
    assert form.editor("steps").minimum() == 1  # bounds from the declaration
    assert "allowed ≥ 1" in form.editor("steps").toolTip()
    a_min = form.editor("cell.a_min")
    a_min.setValue(20.0)  # rejected by the cross-field rule: object unchanged, editor marked
    assert job.cell.a_min == 4.0 and seen[-1][0] == "invalid" and "must not exceed" in a_min.toolTip()
    a_min.setValue(5.0)
    assert job.cell.a_min == 5.0 and seen[-1] == "cell.a_min" and a_min.styleSheet() == ""
    vmin = form.editor("cell.volume_min")
    assert vmin.text() == "auto"
    vmin.setValue(50.0)
    assert job.cell.volume_min == 50.0
    vmin.setValue(vmin.minimum())
    assert job.cell.volume_min is None
    assert job.to_dict(complete=False) == {"mode": "molecules", "cell": {"a_min": 5.0, "a_max": 12.0,
                                                                          "volume_min": None}, "tables": {"C": 1.0}}
    other = Job()
    form.bind(other)  # a loaded configuration: the editors show it, nothing is written
    assert form.editor("mode").currentText() == "uniform" and form.editor("cell.a_min").value() == 4.0
    assert other.to_dict(complete=False) == {}
    form.editor("u_iso")[1].setValue(0.2)
    assert other.u_iso == (0.01, 0.2)
