"""The science packages never import Qt (checked with Qt, pyqtgraph and vispy blocked)."""

import subprocess
import sys

SCIENCE = ["crystalstudio.crystal", "crystalstudio.io", "crystalstudio.phasing", "crystalstudio.diffuse",
           "crystalstudio.training"]

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


def test_science_imports_without_qt():
    out = subprocess.run([sys.executable, "-c", BLOCKER.format(pkgs=SCIENCE)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("ok")
