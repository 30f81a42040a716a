"""Diffuse panel: open a Meerkat reconstruction (or a detector image for inspection), cut a plane onto a
Cartesian Q grid, factorise it with DSFU-Net into I_FF and I_SRO (with an N-pass uncertainty map), check
the product against the input, refine Warren–Cowley ratios, export arrays, PNGs and the α table."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import numpy as np
from PySide6 import QtCore, QtWidgets

from ...diffuse.warren_cowley import SYMMETRIES
from ..views.image_view import ImagePanel
from .base import Panel

log = logging.getLogger("crystalstudio")

IMAGE_SUFFIXES = (".cbf", ".edf", ".tif", ".tiff", ".img", ".mccd", ".cbf.bz2", ".edf.bz2", ".img.bz2", ".mccd.bz2",
                  ".bz2", ".npy")


class DiffusePanel(Panel):
    routing_priority = 1
    title = "Diffuse"
    suffixes = (".h5", ".hdf5", ".nxs") + IMAGE_SUFFIXES

    def __init__(self, window, default_content: bool = True):
        super().__init__(window, default_content)
        self.volume = None
        self.plane = None
        self.result = None

        self.open_button = QtWidgets.QPushButton("Open volume / image…")
        self.info = QtWidgets.QLabel("no volume")
        self.info.setWordWrap(True)
        self.plane_edit = QtWidgets.QLineEdit("hk1")
        self.plane_edit.setToolTip("Plane: hkn, hnl or nkl (n an index, e.g. hk1, h0l, 2kl)")
        self.qmax = QtWidgets.QDoubleSpinBox(decimals=2, minimum=0.5, maximum=20, value=7.0, singleStep=0.5)
        self.qmax.setToolTip("Half width of the 256×256 Cartesian Q grid (Å⁻¹, 2π included; the networks were "
                             "trained on 6–8)")
        self.average = QtWidgets.QComboBox()
        self.average.addItems(["none", "friedel", "mm", "4mm"])
        self.average.setToolTip("Symmetry-average the plane before factorising")
        self.punch = QtWidgets.QCheckBox("punch and fill Bragg peaks")
        self.cut_button = QtWidgets.QPushButton("Cut plane")
        self.ff_model = QtWidgets.QLineEdit()
        self.ff_model.setPlaceholderText("I_FF generator: empty = shipped small model")
        self.sro_model = QtWidgets.QLineEdit()
        self.sro_model.setPlaceholderText("I_SRO generator: empty = shipped small model")
        self.passes = QtWidgets.QSpinBox(minimum=1, maximum=64, value=8)
        self.passes.setToolTip("1: deterministic (dropout off); N > 1: dropout on, mean ± std over N passes")
        self.factorise_button = QtWidgets.QPushButton("Factorise")
        self.symmetry = QtWidgets.QComboBox()
        self.symmetry.addItems(list(SYMMETRIES))
        self.max_index = QtWidgets.QSpinBox(minimum=1, maximum=6, value=3)
        self.refine_button = QtWidgets.QPushButton("Refine α")
        self.alpha_table = QtWidgets.QTableWidget(0, 3)
        self.alpha_table.setHorizontalHeaderLabels(["vector (u v)", "α(uv)/α(00)", "σ"])
        self.alpha_table.horizontalHeader().setStretchLastSection(True)
        note = QtWidgets.QLabel("The networks' outputs are normalised: only ratios of α are determined, not their "
                                "absolute values. Vectors with different w cannot be told apart on one integer plane.")
        note.setWordWrap(True)
        note.setStyleSheet("color: #a05000")
        self.export_button = QtWidgets.QPushButton("Export arrays, PNGs, α table…")
        form = QtWidgets.QFormLayout()
        form.addRow(self.open_button)
        form.addRow(self.info)
        form.addRow("Plane", self.plane_edit)
        form.addRow("Q max (Å⁻¹)", self.qmax)
        form.addRow("Average", self.average)
        form.addRow(self.punch)
        form.addRow(self.cut_button)
        form.addRow("I_FF model", self.ff_model)
        form.addRow("I_SRO model", self.sro_model)
        form.addRow("Passes", self.passes)
        form.addRow(self.factorise_button)
        form.addRow("α symmetry", self.symmetry)
        form.addRow("max |u|, |v|", self.max_index)
        form.addRow(self.refine_button)
        left = QtWidgets.QWidget()
        ll = QtWidgets.QVBoxLayout(left)
        ll.addLayout(form)
        ll.addWidget(self.alpha_table, 1)
        ll.addWidget(note)
        ll.addWidget(self.export_button)

        names = ["measured plane", "mask", "I_FF", "I_SRO", "product I_FF·I_SRO", "residual", "σ(I_FF)", "σ(I_SRO)"]
        self.images = {n: ImagePanel(n, diverging=(n == "residual")) for n in names}
        grid = QtWidgets.QGridLayout()
        for i, n in enumerate(names):
            grid.addWidget(self.images[n], i // 4, i % 4)
        right = QtWidgets.QWidget()
        right.setLayout(grid)
        split = QtWidgets.QSplitter(QtCore.Qt.Horizontal)
        split.addWidget(left)
        split.addWidget(right)
        split.setStretchFactor(1, 1)
        lay = QtWidgets.QHBoxLayout(self)
        lay.addWidget(split)

        self.open_button.clicked.connect(self._ask_open)
        self.cut_button.clicked.connect(self.cut)
        self.factorise_button.clicked.connect(self.factorise)
        self.refine_button.clicked.connect(self.refine)
        self.export_button.clicked.connect(self._ask_export)
        for b in (self.cut_button, self.factorise_button, self.refine_button, self.export_button):
            b.setEnabled(False)

    # ------------------------------------------------------------------ files
    def accepts(self, path: Path) -> bool:
        name = path.name.lower()
        return name.endswith(self.suffixes)

    def _ask_open(self):
        path, _ = QtWidgets.QFileDialog.getOpenFileName(self, "Volume or image", self.window_.last_dir(".h5"),
                                                        "Reconstructions and images (*.h5 *.hdf5 *.cbf *.edf *.tif *.img "
                                                        "*.mccd *.bz2);;All files (*)")
        if path:
            self.window_.open_path(path)

    def open_file(self, path: str) -> None:
        name = Path(path).name.lower()
        if name.endswith((".h5", ".hdf5", ".nxs")):
            from ...io.meerkat import read_meerkat

            self.run("open volume", read_meerkat, path, label=f"Reading {Path(path).name}", on_result=self._volume_loaded)
        else:
            from ...io.images import read_image

            self.run("open image", read_image, path, label=f"Reading {Path(path).name}", on_result=self._image_loaded)

    def _volume_loaded(self, vol) -> None:
        self.volume = vol
        lim = [f"{'hkl'[i]} {vol.lower_limits[i]:g}…{vol.lower_limits[i] + (vol.shape[i] - 1) * vol.step_sizes[i]:g}"
               for i in range(3)]
        self.info.setText(f"{Path(vol.path).name}: {vol.layout}, {vol.shape[0]}×{vol.shape[1]}×{vol.shape[2]}, "
                          f"steps {vol.step_sizes.round(4).tolist()}, {', '.join(lim)}; cell {vol.cell}")
        self.cut_button.setEnabled(True)
        self.cut()

    def _image_loaded(self, img) -> None:
        self.volume = None
        self.info.setText(f"{Path(img.path).name}: detector image {img.data.shape[1]}×{img.data.shape[0]} "
                          f"({img.format}); shown for inspection (factorisation needs a reconstructed volume)")
        self.images["measured plane"].scale.setCurrentText("log")
        self.images["measured plane"].set_image(img.data.astype(float),
                                                readout=lambda i, j: f"pixel x {j}, y {i}")
        for n, panel in self.images.items():
            if n != "measured plane":
                panel.set_image(None)
        for b in (self.cut_button, self.factorise_button, self.refine_button, self.export_button):
            b.setEnabled(False)

    # ------------------------------------------------------------------ work
    def _readout(self, geometry, q_max, size=256):
        from ...diffuse.planes import q_grid

        x, y = q_grid(q_max, size)

        def f(i, j):
            h = geometry.hkl(x[i, j], y[i, j])
            return f"h k l = {h[0]:.3f} {h[1]:.3f} {h[2]:.3f}  |Q| = {np.hypot(x[i, j], y[i, j]):.2f} Å⁻¹"

        return f

    def cut(self) -> None:
        from ...diffuse.factorise import load_plane

        if self.volume is None:
            return
        args = (self.volume.path, self.plane_edit.text(), self.qmax.value())
        kw = dict(symmetry=self.average.currentText(), punch=self.punch.isChecked())
        self.run("cut plane", load_plane, *args, label="Cutting plane", key="diffuse-cut", on_result=self._plane_cut, **kw)

    def _plane_cut(self, plane) -> None:
        self.plane = plane
        self.result = None
        ro = self._readout(plane.geometry, plane.q_max, plane.intensity.shape[0])
        self.images["measured plane"].scale.setCurrentText("sqrt")
        self.images["measured plane"].set_image(plane.intensity, ro)
        self.images["mask"].set_image((~plane.mask).astype(float), ro)
        for n in ("I_FF", "I_SRO", "product I_FF·I_SRO", "residual", "σ(I_FF)", "σ(I_SRO)"):
            self.images[n].set_image(None)
        self.factorise_button.setEnabled(True)
        log.info("plane %s: %.0f %% of pixels measured", plane.label, 100 * plane.mask.mean())

    def factorise(self) -> None:
        from ...diffuse.dsfu_net import load_generator
        from ...diffuse.factorise import default_generators, factorise_plane

        if self.plane is None:
            return
        plane, ff_path, sro_path = self.plane, self.ff_model.text().strip(), self.sro_model.text().strip()
        passes = self.passes.value()
        symmetry, max_index = self.symmetry.currentText(), self.max_index.value()
        device = self.window_.device()

        def job(progress=None, cancel=None):
            if ff_path or sro_path:
                gf, gs = load_generator(ff_path), load_generator(sro_path)
            else:
                gf, gs = default_generators()
            return factorise_plane(plane, gf, gs, passes=passes, dropout=passes > 1, symmetry=symmetry,
                                   max_index=max_index, device=device, progress=progress, cancel=cancel)

        self.run("factorise", job, label="Factorising", on_result=self._factorised)

    def _factorised(self, res) -> None:
        self.result = res
        ro = self._readout(res.plane.geometry, res.plane.q_max, res.ff.shape[0])
        for n, arr in (("I_FF", res.ff), ("I_SRO", res.sro), ("product I_FF·I_SRO", res.product),
                       ("residual", res.residual), ("σ(I_FF)", res.ff_std), ("σ(I_SRO)", res.sro_std)):
            self.images[n].set_image(arr, ro)
        self._show_alpha(res.wc)
        for b in (self.refine_button, self.export_button):
            b.setEnabled(True)
        log.info("factorised %s in %.2f s; product residual R %.3f", res.plane.label, res.seconds["total"], res.product_r)

    def refine(self) -> None:
        from ...diffuse.warren_cowley import refine_warren_cowley

        if self.result is None:
            return
        res = self.result
        try:
            res.wc = refine_warren_cowley(res.sro, res.plane.geometry, res.plane.q_max, max_index=self.max_index.value(),
                                          symmetry=self.symmetry.currentText())
        except Exception as exc:  # noqa: BLE001
            self.error("Refinement failed", str(exc))
            return
        self._show_alpha(res.wc)

    def _show_alpha(self, wc) -> None:
        rows = wc.table() if wc is not None else []
        self.alpha_table.setRowCount(len(rows))
        for r, (name, a, s) in enumerate(rows):
            for c, v in enumerate((name, f"{a:+.4f}", f"{s:.4f}")):
                self.alpha_table.setItem(r, c, QtWidgets.QTableWidgetItem(v))

    # ------------------------------------------------------------------ export
    def export_actions(self) -> list:
        return [("Factorisation (arrays, PNGs, α table)…", self._ask_export)]

    def _ask_export(self) -> None:
        if self.result is None:
            self.error("Nothing to export", "factorise a plane first")
            return
        d = QtWidgets.QFileDialog.getExistingDirectory(self, "Export into folder", self.window_.last_dir("diffuse"))
        if d:
            self.export(d)

    def export(self, folder: str) -> dict:
        from ...diffuse.factorise import export_factorisation

        paths = export_factorisation(self.result, folder)
        self.window_.settings.setValue("dirs/diffuse", folder)
        log.info("factorisation written to %s", folder)
        return paths
