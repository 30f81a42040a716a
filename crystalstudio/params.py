"""One typed settings object per job: each field once, with its unit, bounds, default and help.

The command line (``argparse`` options), the JSON configuration files and the GUI forms are all built
from, and validated by, one :class:`Params` subclass per job — as DIALS keeps one parameter scope for
its command line and its GUI. Qt-free: the form builder lives in ``crystalstudio.gui.views.forms``.

How a job declares its settings::

    from typing import Literal, Optional
    from crystalstudio.params import Device, FloatRange, Params, param, rule, section

    class CellSettings(Params):
        a_min: float = param(4.0, unit="Å", gt=0, label="a min", help="shortest cell length")
        a_max: float = param(10.0, unit="Å", gt=0, label="a max", help="longest cell length")

        @rule                                    # a cross-field rule: checked on load, on options, by check()
        def _lengths(self):
            if self.a_min > self.a_max:
                raise ValueError(f"a_min ({self.a_min:g} Å) must not exceed a_max ({self.a_max:g} Å)")

    class MyJob(Params):
        steps: int = param(2000, ge=1, label="Steps", help="optimiser steps")
        mode: Literal["uniform", "molecules"] = param("uniform", help="how atoms are placed")   # a combo box
        volume_min: Optional[float] = param(None, unit="Å³", gt=0, help="lower volume bound (auto: a_min³)")
        u_iso: FloatRange(ge=0, le=1) = param((0.01, 0.1), unit="Å²", help="per-structure Uiso range")
        device: Device = param("auto", help="auto, cpu, cuda or cuda:N")
        cell: CellSettings = section(CellSettings, "Unit cell")           # a nested section (a group box)
        tables: Optional[dict] = param(None, gui=False, help="…")         # loaded and saved, never in a form

and how it is used::

    s = MyJob.load("job.json", section="job")   # InputFileError "job.json, line 3: steps: must be ≥ 1 (got -1)"
    s.steps = 10                                # each assignment is type- and bounds-checked (ParamsError)
    s.check()                                   # the cross-field rules too (call it where the job starts)
    s.save("job.json")                          # atomic; only the fields loaded or set since: load → save is exact
    opts = add_arguments(parser, MyJob, include=["steps", "mode", "cell.a_min"], names={"cell.a_min": "--a-min"})
    s = opts.apply(s, parser.parse_args())      # only the options the user gave override the loaded settings
    form = ParamsForm(s, "My job")              # crystalstudio.gui.views.forms: edits `s` in place

A family of jobs can share a base class and pick the subclass by a key (see training.config.TrainConfig,
which overrides `_concrete`); `WithDefaults` gives a nested section other defaults than its class's.

Fields (top-level or nested) are read by ``describe``: kinds int, float, bool, str, choice (Literal),
range (two floats), section (a nested Params) and other (dict/list: loaded and saved, not in forms).
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import json
import math
import os
import tempfile
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Literal, Optional, Union

import contextvars
import functools

import annotated_types
from pydantic import (AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, WrapValidator,
                      model_validator)

from .errors import CrystalStudioError, InputFileError, InvalidInputError

__all__ = ["Params", "param", "section", "WithDefaults", "rule", "FloatRange", "Device", "describe", "ParamInfo",
           "ParamsError", "format_errors", "add_arguments", "ParamOptions", "tooltip", "bounds_text",
           "write_json_atomic", "OneLineArgumentParser"]


class ParamsError(InvalidInputError):
    """Settings that do not validate: the message names the field(s) and the problem on one line."""


# ------------------------------------------------------------------------------------------ declaring
def param(default: Any = ..., *, help: str = "", unit: Optional[str] = None, label: Optional[str] = None,
          ge: Optional[float] = None, gt: Optional[float] = None, le: Optional[float] = None,
          lt: Optional[float] = None, step: Optional[float] = None, decimals: Optional[int] = None,
          gui: bool = True, suggestions: Optional[list[str]] = None, default_factory=None) -> Any:
    """A settings field: default, unit (shown in labels, tooltips and --help), bounds (checked everywhere),
    help text, a short GUI label, and form hints (spin-box step, decimals; ``gui=False`` hides it from
    forms; ``suggestions`` are offered in an editable combo box for str fields)."""
    extra = {"unit": unit, "label": label, "step": step, "decimals": decimals, "gui": gui, "suggestions": suggestions}
    extra = {k: v for k, v in extra.items() if v is not None}
    kw: dict[str, Any] = dict(description=help, json_schema_extra=extra, ge=ge, gt=gt, le=le, lt=lt)
    if default_factory is not None:
        return Field(default_factory=default_factory, **kw)
    return Field(default, **kw)


def section(cls: type["Params"], label: str, help: str = "", defaults: Optional[dict] = None) -> Any:
    """A nested settings section (its own Params class, a group box in forms). With `defaults` (a nested dict)
    the section's defaults differ from its class's — annotate the field `WithDefaults(cls, defaults)` too."""
    if defaults is not None:
        return Field(default_factory=dict, validate_default=True, description=help, json_schema_extra={"label": label})
    return Field(default_factory=cls, description=help, json_schema_extra={"label": label})


def _deep_merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _unmark_defaults(obj: BaseModel, defaults: dict, given: dict) -> None:
    """Fields that only the section's own defaults set are not 'set' (they are not saved back)."""
    for k, v in defaults.items():
        sub = getattr(obj, k, None)
        if isinstance(v, dict) and isinstance(sub, BaseModel):
            _unmark_defaults(sub, v, given.get(k) if isinstance(given.get(k), dict) else {})
        if k not in given:
            obj.model_fields_set.discard(k)


def WithDefaults(cls: type["Params"], defaults: dict):  # noqa: N802
    """Annotation of a section whose defaults differ from its class's: a given (partial) dict is laid over
    `defaults`, and what only the defaults set stays unset (load → save gives back the file)."""

    def merge(value, handler):
        if isinstance(value, dict):
            out = handler(_deep_merge(defaults, value))
            _unmark_defaults(out, defaults, value)
            return out
        return handler(value)

    return typing.Annotated[cls, WrapValidator(merge)]


_ASSIGNING = contextvars.ContextVar("crystalstudio_params_assigning", default=False)


def rule(fn):
    """A cross-field rule of a settings class: a method that raises ValueError (or a CrystalStudioError) with
    a message in the field's words. Checked when settings are loaded, built from options or `check()`ed —
    not on each assignment, so code may change related fields one after another (a_min, then a_max)."""

    @functools.wraps(fn)
    def wrapper(self):
        if _ASSIGNING.get():
            return self
        try:
            fn(self)
        except CrystalStudioError as exc:
            raise ValueError(str(exc)) from None
        return self

    return model_validator(mode="after")(wrapper)


def _device_name(v: str) -> str:
    from .devices import check_device_name

    try:
        return check_device_name(v)
    except InvalidInputError as exc:
        raise ValueError(str(exc)) from None


Device = typing.Annotated[str, AfterValidator(_device_name)]
"""A compute device name: auto, cpu, cuda or cuda:N (availability is checked by devices.resolve_device)."""


def _ordered(v):
    if v[0] > v[1]:
        raise ValueError(f"the lower end must not exceed the upper end (got [{_fmt(v[0])}, {_fmt(v[1])}])")
    return v


def FloatRange(ge: Optional[float] = None, le: Optional[float] = None, gt: Optional[float] = None,
               lt: Optional[float] = None, ordered: bool = True):  # noqa: N802
    """Annotation of a (low, high) pair of floats with bounds on both ends and low ≤ high (`ordered`)."""
    elem = Annotated_float(ge=ge, le=le, gt=gt, lt=lt)
    if not ordered:
        return tuple[elem, elem]
    return typing.Annotated[tuple[elem, elem], AfterValidator(_ordered)]


def Annotated_float(**bounds):  # noqa: N802
    bounds = {k: v for k, v in bounds.items() if v is not None}
    return typing.Annotated[float, Field(**bounds)] if bounds else float


# ------------------------------------------------------------------------------------------ the base class
class Params(BaseModel):
    """Base class of every job's settings: unknown keys refused, each assigned value validated (type and
    bounds; cross-field rules by `check()`), no NaN/inf. Nested sections are Params too."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False,
                              use_attribute_docstrings=False, protected_namespaces=())

    def __setattr__(self, name: str, value: Any) -> None:
        if name not in type(self).model_fields:
            return super().__setattr__(name, value)
        token = _ASSIGNING.set(True)
        try:
            super().__setattr__(name, value)
        except ValidationError as exc:
            raise ParamsError(format_errors(exc)) from None
        finally:
            _ASSIGNING.reset(token)

    def check(self):
        """Every field and cross-field rule (sections included); ParamsError naming them, else self."""
        try:
            type(self).model_validate(_dump_set(self))  # unset fields hold their defaults; rules may ask what was set
        except ValidationError as exc:
            raise ParamsError(format_errors(exc)) from None
        return self

    # ---- dictionaries
    @classmethod
    def from_dict(cls, data: Any, source: Any = None):
        """Validated settings from a dict (JSON object); errors name `source` (a file) and the field."""
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise _error(source, f"expected a JSON object of {cls.__name__} settings, got {type(data).__name__}")
        try:
            return cls._concrete(data, source).model_validate(data)
        except ValidationError as exc:
            raise _error(source, format_errors(exc)) from None

    @classmethod
    def _concrete(cls, data: dict, source=None) -> type["Params"]:
        """The class that validates `data` (a family of settings classes picks one by a key, e.g. 'kind')."""
        return cls

    def to_dict(self, complete: bool = True) -> dict:
        """JSON-ready dict: every field (`complete`) or only those loaded or set since (round-trips a file)."""
        if complete:
            return self.model_dump(mode="json")
        return _dump_set(self)

    def copy(self):  # noqa: A003 - the settings' own deep copy
        return self.model_copy(deep=True)

    def replace(self, **changes):
        """A validated copy with some fields changed (fields set so far stay set)."""
        d = _dump_set(self)
        d.update(changes)
        return type(self).from_dict(d)

    # ---- files
    @classmethod
    def load(cls, path, section: Optional[str] = None):
        """Settings from a JSON file (optionally the object under key `section`, or the whole file when the
        key is absent). Errors: one line naming the file, the line where known, the field and the problem."""
        p = Path(path)
        try:
            raw = p.read_bytes()
        except FileNotFoundError:
            raise InputFileError(p, "file does not exist") from None
        except IsADirectoryError:
            raise InputFileError(p, "is a folder, not a file") from None
        except OSError as exc:
            raise InputFileError(p, exc.strerror or str(exc)) from None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = raw[: exc.start].count(b"\n") + 1
            raise InputFileError(p, "not UTF-8 text (is it a JSON settings file?)", line) from None
        if not text.strip():
            raise InputFileError(p, "file is empty (expected a JSON object)")
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputFileError(p, f"not valid JSON: {exc.msg.lower()} (column {exc.colno})", exc.lineno) from None
        if section is not None and isinstance(data, dict) and section in data:
            data = data[section]
        if not isinstance(data, dict):
            raise InputFileError(p, f"expected a JSON object of settings, got {type(data).__name__}")
        try:
            return cls._concrete(data, p).model_validate(data)
        except ValidationError as exc:
            errs = exc.errors()
            line = _line_of(text, errs[0]["loc"]) if errs else None
            raise InputFileError(p, format_errors(exc), line) from None

    def save(self, path, complete: bool = False) -> None:
        """Write JSON atomically: only the loaded/set fields (default; load → save gives back the same JSON)
        or every field (`complete`, e.g. the record of what a run used)."""
        write_json_atomic(path, self.to_dict(complete=complete))


def _error(source, message: str) -> CrystalStudioErrorType:
    if source is None:
        return ParamsError(message)
    return InputFileError(source, message)


CrystalStudioErrorType = Union[ParamsError, InputFileError]


def _dump_set(obj: BaseModel) -> dict:
    """The fields loaded or assigned (recursively: a section counts when anything inside it was set)."""
    out = {}
    for name in type(obj).model_fields:
        value = getattr(obj, name)
        if isinstance(value, BaseModel):
            sub = _dump_set(value)
            if sub or name in obj.model_fields_set:
                out[name] = sub
        elif name in obj.model_fields_set:
            out[name] = TypeAdapter(Any).dump_python(value, mode="json")
    return out


def write_json_atomic(path, data: Any) -> None:
    """JSON (indented, UTF-8) written to a temporary file beside `path`, then renamed onto it."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2, ensure_ascii=False)
            f.write("\n")
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _line_of(text: str, loc: tuple) -> Optional[int]:
    """1-based line of the key at `loc` in a JSON text (keys searched in order; None when not found)."""
    pos, found = 0, False
    for key in loc:
        if not isinstance(key, str):
            continue
        i = text.find(json.dumps(key), pos)
        if i < 0:
            break
        pos, found = i, True
    return text.count("\n", 0, pos) + 1 if found else None


# ------------------------------------------------------------------------------------------ error messages
def _fmt(v: Any) -> str:
    """A value as a user typed it: 3, 0.0005, 1e-06, "adamw", [1, 2] (never np.float64(…))."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "null"
    if isinstance(v, (int, float)) or type(v).__module__ == "numpy":
        try:
            f = float(v)
        except (TypeError, ValueError):
            return str(v)
        if math.isfinite(f) and f.is_integer() and abs(f) < 1e15:
            return str(int(f))
        return repr(f)
    if isinstance(v, BaseModel):
        return type(v).__name__
    try:
        s = json.dumps(v, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        s = str(v)
    return s if len(s) <= 60 else s[:57] + "…"


def _where(loc: tuple) -> str:
    """('cell', 'a_min') → cell.a_min; ('u_iso', 0) → u_iso[0] (validator tags in the location dropped)."""
    out = ""
    for k in loc:
        if isinstance(k, int):
            out += f"[{k}]"
        elif "[" not in str(k) and "(" not in str(k):
            out += ("." if out else "") + str(k)
    return out


def _message(err: dict) -> str:
    t, ctx, inp = err["type"], err.get("ctx") or {}, err.get("input")
    got = f" (got {_fmt(inp)})"
    simple = {
        "greater_than_equal": lambda: f"must be ≥ {_fmt(ctx.get('ge'))}",
        "greater_than": lambda: f"must be > {_fmt(ctx.get('gt'))}",
        "less_than_equal": lambda: f"must be ≤ {_fmt(ctx.get('le'))}",
        "less_than": lambda: f"must be < {_fmt(ctx.get('lt'))}",
        "literal_error": lambda: f"must be one of {ctx.get('expected', '').replace(' or ', ', ')}",
        "int_parsing": lambda: "must be a whole number",
        "int_type": lambda: "must be a whole number",
        "int_from_float": lambda: "must be a whole number",
        "float_parsing": lambda: "must be a number",
        "float_type": lambda: "must be a number",
        "finite_number": lambda: "must be a finite number",
        "bool_parsing": lambda: "must be true or false",
        "bool_type": lambda: "must be true or false",
        "string_type": lambda: "must be text (in quotes)",
        "dict_type": lambda: "must be a JSON object",
        "model_type": lambda: "must be a JSON object of settings",
        "model_attributes_type": lambda: "must be a JSON object of settings",
        "list_type": lambda: "must be a list",
        "tuple_type": lambda: "must be a list",
        "too_short": lambda: f"must have {ctx.get('min_length')} entries",
        "too_long": lambda: f"must have at most {ctx.get('max_length')} entries",
    }
    if t == "missing":
        return "is required"
    if t == "extra_forbidden":
        return "unknown setting"
    if t == "value_error":
        return str(ctx.get("error", err.get("msg", ""))).removeprefix("Value error, ")
    if t in simple:
        return simple[t]() + got
    msg = str(err.get("msg", t)).replace("Input should be", "must be")
    return msg + got


def format_errors(exc: ValidationError, max_errors: int = 3) -> str:
    """A pydantic ValidationError in our words, on one line: "steps: must be ≥ 1 (got -1); …"."""
    parts = []
    errs = exc.errors()
    for err in errs[:max_errors]:
        loc = tuple(err["loc"])
        if err["type"] == "missing" and loc and isinstance(loc[-1], int):  # a pair given with too few values
            where, msg = _where(loc[:-1]), f"must have {loc[-1] + 1} values (got {_fmt(err.get('input'))})"
        else:
            where, msg = _where(loc), _message(err)
        if err["type"] == "extra_forbidden":
            msg += _suggest(exc, loc)
        parts.append(f"{where}: {msg}" if where else msg)
    if len(errs) > max_errors:
        parts.append(f"and {len(errs) - max_errors} more")
    return "; ".join(parts)


def _suggest(exc: ValidationError, loc: tuple) -> str:
    """' (did you mean …?)' from the fields of the model that refused the key."""
    model = _model_at(_TITLE_MODELS.get(exc.title), loc[:-1])
    if model is None:
        return ""
    close = difflib.get_close_matches(str(loc[-1]), list(model.model_fields), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


class _ModelRegistry(dict):
    def get(self, key, default=None):  # refreshed lazily: subclasses are created after import
        if key not in self:
            stack = list(Params.__subclasses__())
            while stack:
                c = stack.pop()
                self.setdefault(c.__name__, c)
                stack.extend(c.__subclasses__())
        return super().get(key, default)


_TITLE_MODELS = _ModelRegistry()


def _model_at(model, path: tuple):
    for key in path:
        if model is None or isinstance(key, int) or key not in getattr(model, "model_fields", {}):
            return None
        model = _section_class(model.model_fields[key].annotation)
    return model


# ------------------------------------------------------------------------------------------ introspection
@dataclass(frozen=True)
class ParamInfo:
    """What a form, an option or a tooltip needs to know about one field."""

    name: str  # field name
    path: str  # dotted path from the root settings object (cell.a_min)
    kind: str  # int | float | bool | str | choice | range | section | other
    optional: bool  # None allowed ('auto')
    default: Any
    help: str
    unit: Optional[str]
    label: str
    ge: Optional[float] = None
    gt: Optional[float] = None
    le: Optional[float] = None
    lt: Optional[float] = None
    choices: tuple = ()
    step: Optional[float] = None
    decimals: Optional[int] = None
    gui: bool = True
    suggestions: tuple = ()
    section: Optional[type] = None  # the nested Params class for kind 'section'
    required: bool = False  # no default
    metavar: Optional[str] = None
    adapter: Any = None  # TypeAdapter validating one value of this field (bounds included)


def _strip_optional(tp):
    if typing.get_origin(tp) is Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return args[0], True
    return tp, False


def _unannotate(tp):
    meta = []
    while typing.get_origin(tp) is typing.Annotated:
        meta.extend(tp.__metadata__)
        tp = typing.get_args(tp)[0]
    return tp, meta


def _section_class(tp):
    tp, _ = _strip_optional(_unannotate(tp)[0])
    return tp if isinstance(tp, type) and issubclass(tp, BaseModel) else None


def _bounds(meta) -> dict:
    out = {}
    for m in meta:
        for key, cls in (("ge", annotated_types.Ge), ("gt", annotated_types.Gt), ("le", annotated_types.Le),
                         ("lt", annotated_types.Lt)):
            if isinstance(m, cls):
                out[key] = getattr(m, key)
        if hasattr(m, "metadata"):  # a FieldInfo inside Annotated
            out.update(_bounds(m.metadata))
    return out


@functools.lru_cache(maxsize=None)
def describe(cls: type[BaseModel], prefix: str = "") -> dict[str, ParamInfo]:
    """ParamInfo for each field of `cls` (sections included as kind 'section'; recurse with `prefix`).
    Computed once per class and prefix: treat the dict as read-only."""
    out = {}
    for name, f in cls.model_fields.items():
        extra = f.json_schema_extra if isinstance(f.json_schema_extra, dict) else {}
        tp, meta = _unannotate(f.annotation)
        tp, optional = _strip_optional(tp)
        tp, meta2 = _unannotate(tp)
        meta = list(f.metadata) + meta + meta2
        bounds = _bounds(meta)
        origin = typing.get_origin(tp)
        choices: tuple = ()
        if origin is Literal:
            kind, choices = "choice", tuple(typing.get_args(tp))
        elif tp is bool:
            kind = "bool"
        elif tp is int:
            kind = "int"
        elif tp is float:
            kind = "float"
        elif tp is str:
            kind = "str"
        elif origin is tuple and len(typing.get_args(tp)) == 2:
            elems = [_unannotate(a) for a in typing.get_args(tp)]
            if all(e[0] is float for e in elems):
                kind = "range"
                bounds = _bounds(elems[0][1])
            else:
                kind = "other"
        elif isinstance(tp, type) and issubclass(tp, BaseModel):
            kind = "section"
        else:
            kind = "other"
        required = f.is_required()
        default = None if required else f.get_default(call_default_factory=True)
        adapter = TypeAdapter(typing.Annotated[(f.annotation, *f.metadata)]) if f.metadata else TypeAdapter(f.annotation)
        out[name] = ParamInfo(
            name=name, path=prefix + name, kind=kind, optional=optional, default=default,
            help=f.description or "", unit=extra.get("unit"), label=extra.get("label") or name.replace("_", " "),
            choices=choices, step=extra.get("step"), decimals=extra.get("decimals"), gui=extra.get("gui", True),
            suggestions=tuple(extra.get("suggestions") or ()), section=tp if kind == "section" else None,
            adapter=adapter, required=required, metavar="DEVICE" if f.annotation is Device else None, **bounds)
    return out


def bounds_text(info: ParamInfo) -> str:
    """'≥ 1', '0 ≤ … ≤ 1', '> 0' (empty when unbounded)."""
    lo = f"{_fmt(info.ge)} ≤ " if info.ge is not None else (f"{_fmt(info.gt)} < " if info.gt is not None else "")
    hi = f" ≤ {_fmt(info.le)}" if info.le is not None else (f" < {_fmt(info.lt)}" if info.lt is not None else "")
    if lo and hi:
        return f"{lo}…{hi}"
    if lo:
        return ("≥ " if info.ge is not None else "> ") + lo.split(" ")[0]
    if hi:
        return hi.strip()
    return ""


def _default_text(info: ParamInfo) -> str:
    if info.required:
        return "required"
    d = info.default
    if d is None:
        return "auto"
    if isinstance(d, tuple):
        return "–".join(_fmt(x) for x in d)
    return _fmt(d).strip('"')


def tooltip(info: ParamInfo) -> str:
    """Help text, unit, allowed range and default in one tooltip."""
    bits = [info.help.rstrip(".")] if info.help else []
    unit = f" {info.unit}" if info.unit else ""
    b = bounds_text(info)
    if info.kind == "range":
        b = f"each end {b}, low ≤ high" if b else "low ≤ high"
    tail = []
    if unit.strip():
        tail.append(f"unit{unit}")
    if b:
        tail.append(f"allowed {b}")
    if info.kind == "choice":
        tail.append("one of " + ", ".join(map(str, info.choices)))
    tail.append(f"default {_default_text(info)}")
    return ". ".join(bits + ["; ".join(tail)])


def validate_value(info: ParamInfo, value: Any) -> Any:
    """One value checked against the field (bounds, type); ParamsError in our words when it fails."""
    try:
        return info.adapter.validate_python(value)
    except ValidationError as exc:
        raise ParamsError(format_errors(exc)) from None


# ------------------------------------------------------------------------------------------ argparse
class OneLineArgumentParser(argparse.ArgumentParser):
    """argparse with one-line errors: "crystalstudio train: error: argument --steps: must be ≥ 1 (got -1)"."""

    def error(self, message: str):  # noqa: D401 - argparse API
        self.exit(2, f"{self.prog}: error: {message.splitlines()[0] if message else message} (see --help)\n")


def _option_name(path: str) -> str:
    return "--" + path.split(".")[-1].replace("_", "-")


class _Validate(argparse.Action):
    """Converts and checks a value at parse time through the field's own validator."""

    def __init__(self, option_strings, dest, info: ParamInfo, **kw):
        self.info = info
        super().__init__(option_strings, dest, **kw)

    def __call__(self, parser, namespace, values, option_string=None):
        info = self.info
        v = values
        if info.optional and isinstance(v, str) and v.lower() in ("auto", "none"):
            v = None
        elif info.kind == "range":
            v = tuple(values)
        elif info.kind == "int" and isinstance(v, str):
            try:
                v = int(v)
            except ValueError:
                parser.error(f"argument {option_string}: must be a whole number (got {values!r})")
        elif info.kind == "float" and isinstance(v, str):
            try:
                v = float(v)
            except ValueError:
                parser.error(f"argument {option_string}: must be a number (got {values!r})")
        try:
            v = validate_value(info, v)
        except ParamsError as exc:
            parser.error(f"argument {option_string}: {exc}")
        setattr(namespace, self.dest, v)


class ParamOptions:
    """The options `add_arguments` made; `apply` copies the ones the user gave onto a settings object."""

    def __init__(self, cls: type[Params], options: dict[str, str]):
        self.cls = cls
        self.options = options  # dotted path → option string

    def given(self, args: argparse.Namespace) -> dict[str, Any]:
        """{dotted path: value} of the options present on the command line."""
        ns = vars(args)
        return {path: ns[_dest(path)] for path in self.options if _dest(path) in ns}

    def apply(self, obj: Optional[Params], args: argparse.Namespace) -> Params:
        """A validated copy of `obj` (None: the class defaults) with the given options set; untouched
        fields keep their state (loaded or default), so only what the user typed overrides a config."""
        given = self.given(args)
        if obj is not None and not given:
            return obj
        d = _dump_set(obj) if obj is not None else {}
        for path, value in given.items():
            node = d
            keys = path.split(".")
            for k in keys[:-1]:
                node = node.setdefault(k, {})
            node[keys[-1]] = list(value) if isinstance(value, tuple) else value
        try:
            return (type(obj) if obj is not None else self.cls).model_validate(d)
        except ValidationError as exc:
            opts = " ".join(self.options[p] for p in given)
            raise ParamsError(format_errors(exc) + (f" (with {opts})" if opts else "")) from None


def _dest(path: str) -> str:
    return "param:" + path


def _resolve(cls: type[BaseModel], path: str) -> ParamInfo:
    keys = path.split(".")
    model, prefix = cls, ""
    for k in keys[:-1]:
        info = describe(model, prefix)[k]
        if info.section is None:
            raise KeyError(path)
        model, prefix = info.section, prefix + k + "."
    return describe(model, prefix)[keys[-1]]


def add_arguments(parser: argparse.ArgumentParser, cls: type[Params], include: Optional[Iterable[str]] = None,
                  exclude: Iterable[str] = (), names: Optional[dict[str, str]] = None,
                  required: Iterable[str] = ()) -> ParamOptions:
    """Options for the fields of `cls` (top-level scalars by default, or the dotted paths in `include`),
    named --field-name unless `names` says otherwise; values are checked at parse time and absent options
    leave no trace in the namespace (so they never override a loaded configuration). Fields without a
    default are required options, as are the paths in `required`."""
    names = dict(names or {})
    required = set(required)
    if include is None:
        include = [n for n, i in describe(cls).items() if i.kind not in ("section", "other")]
    options = {}
    for path in include:
        if path in exclude:
            continue
        info = _resolve(cls, path)
        opt = names.get(path, _option_name(path))
        helptext = info.help or info.label
        extra = [f"{info.unit}" if info.unit else "", bounds_text(info),
                 "required" if info.required else f"default {_default_text(info)}"]
        helptext = f"{helptext} [{'; '.join(e for e in extra if e)}]".replace("%", "%%")
        kw: dict[str, Any] = dict(dest=_dest(path), default=argparse.SUPPRESS, help=helptext)
        if path in required or info.required:
            kw["required"] = True
        if info.kind == "bool":
            parser.add_argument(opt, action=argparse.BooleanOptionalAction, **kw)
        elif info.kind == "choice":
            parser.add_argument(opt, choices=[str(c) for c in info.choices], **kw)
        elif info.kind == "range":
            parser.add_argument(opt, nargs=2, type=_float_arg, metavar=("LOW", "HIGH"), action=_Validate, info=info, **kw)
        elif info.kind in ("int", "float", "str"):
            metavar = info.metavar or {"int": "N", "float": "X", "str": "TEXT"}[info.kind]
            parser.add_argument(opt, metavar=metavar, action=_Validate, info=info, **kw)
        else:
            raise TypeError(f"{cls.__name__}.{path} ({info.kind}) cannot be a command-line option")
        options[path] = opt
    return ParamOptions(cls, options)


def _float_arg(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number (got {text!r})") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"must be a finite number (got {text!r})")
    return v
