"""The layers: science packages never import Qt (checked by importing them with Qt, pyqtgraph and vispy blocked,
and by reading every import statement, also those inside functions); crystal does not import io (io reads and
writes crystal's objects); every module under gui/ is Qt code; no module changes process-wide state on import."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "crystalstudio"
SCIENCE = ["crystal", "io", "phasing", "diffuse", "training"]
FOUNDATION = {"errors", "jobs", "params", "devices", "outputs", "resources", "__init__"}
GUI_LIBRARIES = ("PySide6", "PyQt5", "PyQt6", "shiboken6", "pyqtgraph", "vispy")
# what each layer may import from the package (besides itself and the Qt-free foundation modules)
ALLOWED = {
    "crystal": set(),
    "io": {"crystal"},
    "phasing": {"crystal", "io"},
    "diffuse": {"crystal", "io"},
    "training": {"crystal", "io", "phasing", "diffuse"},
    "gui": {"crystal", "io", "phasing", "diffuse", "training"},
}

BLOCKER = """
import importlib.abc, sys, pkgutil, importlib
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split('.')[0] in ('PySide6', 'PyQt5', 'PyQt6', 'pyqtgraph', 'vispy', 'shiboken6'):
            raise ImportError('Qt is blocked in the science layer: ' + name)
sys.meta_path.insert(0, Block())
import crystalstudio
for pkg in {pkgs!r}:
    mod = importlib.import_module(pkg)
    for info in pkgutil.walk_packages(mod.__path__, pkg + '.'):
        importlib.import_module(info.name)
print('ok')
"""


def modules():
    for f in sorted(PACKAGE.rglob("*.py")):
        rel = f.relative_to(PACKAGE).with_suffix("")
        yield f, rel.parts


def imports(path: Path, parts: tuple) -> list[tuple[str, int]]:
    """(absolute module name, line) of every import in the file, at any depth (functions included)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    here = ["crystalstudio", *parts[:-1]] if parts[-1] != "__init__" else ["crystalstudio", *parts[:-1]]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.extend((a.name, node.lineno) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - (node.level - 1)]
                name = ".".join(base + ([node.module] if node.module else []))
                if node.module is None:  # from . import a, b
                    out.extend((f"{name}.{a.name}", node.lineno) for a in node.names)
                    continue
            else:
                name = node.module or ""
            out.append((name, node.lineno))
    return out


def test_science_imports_without_qt():
    pkgs = [f"crystalstudio.{p}" for p in SCIENCE]
    out = subprocess.run([sys.executable, "-c", BLOCKER.format(pkgs=pkgs)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("ok")


def test_layers_import_only_downwards():
    wrong = []
    for f, parts in modules():
        layer = parts[0] if len(parts) > 1 else None
        for name, line in imports(f, parts):
            top = name.split(".")[0]
            if layer in SCIENCE or layer is None and parts[0] in FOUNDATION:
                if top in GUI_LIBRARIES:
                    wrong.append(f"{f.relative_to(PACKAGE.parent)}:{line} imports {name} (Qt/graphics)")
            if top != "crystalstudio":
                continue
            target = name.split(".")[1] if name.count(".") else "__init__"
            if not ((PACKAGE / target).is_dir() or (PACKAGE / f"{target}.py").exists()):
                target = "__init__"  # a name from crystalstudio/__init__.py (__version__)
            if layer is None:  # a top-level module: the foundation imports only the foundation
                if parts[0] in FOUNDATION and target not in FOUNDATION:
                    wrong.append(f"{f.relative_to(PACKAGE.parent)}:{line} imports {name}")
                continue
            if target == layer or target in FOUNDATION or layer not in ALLOWED:
                continue
            if target not in ALLOWED[layer]:
                wrong.append(f"{f.relative_to(PACKAGE.parent)}:{line} imports {name}")
    assert not wrong, "imports against the layers:\n" + "\n".join(wrong)


def test_the_checker_sees_imports_inside_functions(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("def f():\n    from ..io.cif import read_cif\n    import vispy\n")
    assert imports(f, ("crystal", "m")) == [("crystalstudio.io.cif", 2), ("vispy", 3)]


def test_every_gui_module_is_qt_code():
    """Qt-free code belongs to a science package (where a worker thread or a script can use it)."""
    qt_free = []
    for f, parts in modules():
        if parts[0] != "gui" or parts[-1] == "__init__":
            continue
        names = [n for n, _ in imports(f, parts)]
        uses_qt = any(n.split(".")[0] in GUI_LIBRARIES for n in names)
        uses_gui = any(n.startswith("crystalstudio.gui") for n in names)
        if not (uses_qt or uses_gui):
            qt_free.append(str(f.relative_to(PACKAGE.parent)))
    assert not qt_free, f"Qt-free modules under gui/: {qt_free}"


SIDE_EFFECTS = {("warnings", "filterwarnings"), ("warnings", "simplefilter"), ("warnings", "resetwarnings"),
                ("gc", "disable"), ("gc", "set_threshold"), ("signal", "signal"), ("torch", "set_num_threads"),
                ("torch", "set_default_dtype"), ("matplotlib", "use"), ("locale", "setlocale"), ("os", "putenv")}


def module_level_calls(tree: ast.Module):
    """Calls executed when the module is imported (function bodies excluded)."""
    stack = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        if isinstance(node, ast.Call):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def test_no_process_wide_side_effects_at_import():
    """Importing a module never changes warnings filters, garbage collection, signal handlers, threads or
    the locale for the whole process (an application sets what it needs when it starts)."""
    found = []
    for f, parts in modules():
        for call in module_level_calls(ast.parse(f.read_text(encoding="utf-8"))):
            fn = call.func
            if isinstance(fn, ast.Attribute) and isinstance(fn.value, ast.Name) and (fn.value.id, fn.attr) in SIDE_EFFECTS:
                found.append(f"{f.relative_to(PACKAGE.parent)}:{call.lineno} {fn.value.id}.{fn.attr}")
    assert not found, found


def test_the_side_effect_checker_sees_module_level_calls():
    tree = ast.parse("import warnings\nwarnings.filterwarnings('ignore')\ndef f():\n    gc.disable()\n")
    assert [c.func.attr for c in module_level_calls(tree)] == ["filterwarnings"]
