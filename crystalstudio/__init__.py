"""CrystalStudio: deep-learning crystallography from the desktop.

Science packages (``crystal``, ``io``, ``phasing``, ``diffuse``, ``training``) never import Qt;
``gui`` wires them to widgets through worker threads.
"""

__version__ = "0.1.0"
