"""3D view (vispy/OpenGL): atoms coloured by element (legend above the view), bonds, the unit-cell box with
its a, b, c edges drawn as an axis triad (red, green, blue, labelled), peaks, and a density isosurface at a
σ level. Rotate with the left mouse button, zoom with the wheel.

Without an OpenGL context (e.g. QT_QPA_PLATFORM=offscreen) the widget says so instead of crashing.
"""

from __future__ import annotations

import os
from typing import Optional

import numpy as np
from PySide6 import QtCore, QtWidgets

from ...crystal.elements import covalent_radius, element_color
from ...crystal.maps import DensityMap
from ...crystal.structure import Structure
from ...crystal.scene import SceneData, build_scene


def opengl_available() -> bool:
    return os.environ.get("QT_QPA_PLATFORM", "") not in ("offscreen", "minimal") and \
        os.environ.get("CRYSTALSTUDIO_NO_GL", "") == ""


class Structure3DView(QtWidgets.QWidget):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.structure: Optional[Structure] = None
        self.dmap: Optional[DensityMap] = None
        self.peaks: Optional[np.ndarray] = None
        self._scene_data: Optional[SceneData] = None
        self.legend_elements: list[str] = []
        lay = QtWidgets.QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        row = QtWidgets.QHBoxLayout()
        self.iso_level = QtWidgets.QDoubleSpinBox(decimals=1, minimum=0.5, maximum=20, singleStep=0.5, value=2.0)
        self.iso_level.setToolTip("Isosurface level in σ of the map")
        self.show_iso = QtWidgets.QCheckBox("isosurface")
        self.show_iso.setChecked(True)
        self.show_iso.setToolTip("Show the density isosurface at the level below")
        self.show_bonds = QtWidgets.QCheckBox("bonds")
        self.show_bonds.setChecked(True)
        self.show_bonds.setToolTip("Draw bonds between atoms closer than the sum of their covalent radii (+ 0.45 Å)")
        self.legend = QtWidgets.QLabel("")
        self.legend.setToolTip("Atom colours by element (Jmol scheme); red crosses: peaks. Cell edges: a red, "
                               "b green, c blue")
        for w in (self.show_bonds, self.show_iso, QtWidgets.QLabel("level σ"), self.iso_level):
            row.addWidget(w)
        row.addStretch(1)
        row.addWidget(self.legend)
        lay.addLayout(row)
        self.canvas = None
        if opengl_available():
            try:
                self._make_canvas()
                lay.addWidget(self.canvas.native, 1)
            except Exception as exc:  # noqa: BLE001 - any GL failure degrades to a message
                self.canvas = None
                lay.addWidget(QtWidgets.QLabel(f"3D view unavailable: {exc}"), 1)
        else:
            msg = QtWidgets.QLabel("3D view needs OpenGL (not available on this display)")
            msg.setAlignment(QtCore.Qt.AlignCenter)
            lay.addWidget(msg, 1)
        for sig in (self.iso_level.valueChanged, self.show_iso.toggled, self.show_bonds.toggled):
            sig.connect(self.redraw)

    def _make_canvas(self) -> None:
        import vispy

        vispy.use("pyside6")
        from vispy import scene

        self._scene = scene
        self.canvas = scene.SceneCanvas(keys=None, bgcolor="white", show=False)
        self.view = self.canvas.central_widget.add_view()
        self.view.camera = scene.TurntableCamera(fov=30, elevation=25, azimuth=40)
        self.markers = scene.visuals.Markers(parent=self.view.scene)
        self.markers.set_gl_state("translucent", depth_test=True)
        self.peak_markers = scene.visuals.Markers(parent=self.view.scene)
        self.bonds = scene.visuals.Line(parent=self.view.scene, connect="segments", color=(0.35, 0.35, 0.35, 1), width=3)
        self.box = scene.visuals.Line(parent=self.view.scene, connect="segments", color=(0.35, 0.35, 0.5, 1), width=1.5)
        # axis triad: the a, b, c edges from the origin, coloured and labelled
        self.triad = scene.visuals.Line(parent=self.view.scene, connect="segments", width=4,
                                        color=np.zeros((6, 4), np.float32))
        self.triad_labels = scene.visuals.Text(["a", "b", "c"], parent=self.view.scene, font_size=14, bold=True,
                                               color=[(0.85, 0.1, 0.1, 1), (0.1, 0.6, 0.1, 1), (0.1, 0.2, 0.9, 1)],
                                               pos=np.zeros((3, 3)))
        self.iso = scene.visuals.Mesh(parent=self.view.scene, color=(0.2, 0.4, 1.0, 0.35))
        self.iso.set_gl_state("translucent", depth_test=True, cull_face=False)
        self.iso.visible = False

    def set_structure(self, structure: Optional[Structure], dmap: Optional[DensityMap] = None,
                      peaks: Optional[np.ndarray] = None, scene_data: Optional[SceneData] = None) -> None:
        """Show a model and map; scene_data, when a worker built it for the same objects and the current
        isosurface level, saves the P1 expansion, bonds and marching cubes on the GUI thread."""
        self.structure, self.dmap, self.peaks = structure, dmap, peaks
        self._scene_data = scene_data
        self.redraw()

    def iso_sigma(self) -> Optional[float]:
        """The isosurface level in σ the view wants now (None: isosurface off)."""
        return float(self.iso_level.value()) if self.show_iso.isChecked() else None

    def _current_scene(self) -> SceneData:
        sd = self._scene_data
        want = self.iso_sigma() if self.dmap is not None else None
        if sd is None or sd.structure is not self.structure or sd.iso_sigma != want:
            sd = build_scene(self.structure, self.dmap, want)
            self._scene_data = sd
        return sd

    def _update_legend(self, sd: Optional[SceneData]) -> None:
        elements = sorted(set(sd.elements) if sd is not None and len(sd.xyz) else set(),
                          key=lambda e: (e != "C", e != "H", e))
        html = []
        for e in elements:
            r, g, b = (int(255 * c) for c in element_color(e))
            dot = "●" if 0.3 * r + 0.59 * g + 0.11 * b < 215 else "○"  # white atoms: drawn with their grey rim
            if dot == "○":
                r = g = b = 80
            html.append(f"<span style='color:rgb({r},{g},{b}); font-size:14pt'>{dot}</span>&nbsp;{e}")
        if self.peaks is not None and len(self.peaks):
            html.append("<span style='color:rgb(255,50,50); font-size:12pt'>✚</span>&nbsp;peaks")
        self.legend.setText("&nbsp;&nbsp;".join(html))
        self.legend_elements = elements

    def redraw(self, *_) -> None:
        if self.canvas is None:
            self._update_legend(self._current_scene() if self.structure is not None else None)
            return
        cell = self.structure.cell if self.structure is not None else (self.dmap.cell if self.dmap is not None else None)
        if cell is None:
            self.markers.set_data(np.zeros((0, 3)))
            self._update_legend(None)
            return
        A = cell.orthogonalization
        corners = np.array([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)], dtype=float)
        edges = [(a, b) for a in range(8) for b in range(a + 1, 8) if np.sum(np.abs(corners[a] - corners[b])) == 1]
        self.box.set_data(pos=np.array([corners[e] for pair in edges for e in pair]) @ A.T)
        axes_rgba = np.array([(0.85, 0.1, 0.1, 1), (0.1, 0.6, 0.1, 1), (0.1, 0.2, 0.9, 1)], np.float32)
        self.triad.set_data(pos=np.array([[0, 0, 0], A[:, 0], [0, 0, 0], A[:, 1], [0, 0, 0], A[:, 2]]),
                            color=np.repeat(axes_rgba, 2, axis=0))
        centre = A @ np.array([0.5, 0.5, 0.5])
        # labels beside the middle of each edge, pushed away from the cell centre (visible however it is turned)
        self.triad_labels.pos = np.array([0.5 * A[:, k] + 0.12 * (0.5 * A[:, k] - centre) for k in range(3)])
        sd = self._current_scene()
        self._update_legend(sd)
        if len(sd.xyz):
            colors = np.array([(*element_color(e), 1.0) for e in sd.elements])
            sizes = np.array([8 + 10 * covalent_radius(e) for e in sd.elements])
            self.markers.set_data(sd.xyz, face_color=colors, size=sizes, edge_color=(0.2, 0.2, 0.2, 1), edge_width=1)
            show_bonds = self.show_bonds.isChecked() and len(sd.bonds)
            self.bonds.set_data(pos=sd.bonds if show_bonds else np.zeros((2, 3)))
        else:
            self.markers.set_data(np.zeros((1, 3)), size=0)
            self.bonds.set_data(pos=np.zeros((2, 3)))
        if self.peaks is not None and len(self.peaks):
            self.peak_markers.set_data((self.peaks % 1.0) @ A.T, face_color=(1, 0.2, 0.2, 0.9), size=7, symbol="cross")
        else:
            self.peak_markers.set_data(np.zeros((1, 3)), size=0)
        if sd.iso is not None:
            self.iso.set_data(vertices=sd.iso[0].astype(np.float32), faces=sd.iso[1])
            self.iso.visible = True
        else:
            self.iso.visible = False
        centre = A @ np.array([0.5, 0.5, 0.5])
        self.view.camera.center = tuple(centre)
        # the cell's bounding sphere (about its centre) just fits the view's smaller side, however it is turned
        # (3.2 × the longest edge left a long or oblique cell at half the view's height)
        radius = float(np.max(np.linalg.norm(corners @ A.T - centre, axis=1)))
        half_fov = np.radians(self.view.camera.fov / 2)
        self.view.camera.distance = 1.08 * radius / np.sin(half_fov)
        self.canvas.update()
