"""The shared image view (gui/views/image_view.py) in each of its modes, with a screenshot per mode, and the
detector-frame facts it draws (io/images.py: mask codes, geometry from the mini-CBF header, warnings)."""

import math
import time

import numpy as np
import pytest
from PySide6 import QtCore, QtWidgets

from crystalstudio.io.images import MASK_BAD, MASK_GAP, DetectorImage, read_image
from tests.realdata import needs_data

PILATUS = ("images", "fabio2011_run2_1_00148.cbf.bz2")


# ---------------------------------------------------------------------- Qt-free facts about frames
def test_pilatus_header_geometry_mask_and_resolution(data_dir):
    fr = read_image(needs_data(*PILATUS))
    assert fr.data.shape == (2527, 2463) and "PILATUS 6M" in fr.detector and fr.warnings == []
    g = fr.geometry
    # "# Beam_xy (1230.10, 1310.50) pixels", "# Detector_distance 0.30000 m", "# Wavelength 1.0332 A", 172 µm pixels
    assert (g.beam_x, g.beam_y, g.distance, g.wavelength) == pytest.approx((1230.10, 1310.50, 300.0, 1.0332))
    assert g.pixel_x == pytest.approx(0.172) and g.pixel_y == pytest.approx(0.172)
    # corner (0, 0): r = 0.172·hypot(1230.1, 1310.5) mm; d = λ / (2 sin(atan(r/D)/2)) = 1.32594 Å
    assert float(g.d_spacing(0, 0)) == pytest.approx(1.32594, abs=1e-4)
    for d in g.ring_resolutions(fr.data.shape):  # every ring drawn lies where its d is
        r_px = g.ring_radius_mm(d) / g.pixel_x
        assert float(g.d_spacing(g.beam_x + r_px, g.beam_y)) == pytest.approx(d, rel=1e-9)
    codes = fr.pixel_mask()
    assert int((codes == MASK_GAP).sum()) == int((fr.data == -1).sum()) == 526101
    assert int((codes == MASK_BAD).sum()) == 949  # "# N_excluded_pixels = 949" in the header
    assert "N_excluded_pixels = 949" in fr.header["_array_data.header_contents"]


def test_frame_warnings_and_ccd_negatives(data_dir, tmp_path):
    hdr = read_image(needs_data("images", "fabio2011_F2K_Seb_Lyso0675_header_only.edf"))
    assert hdr.geometry is None and any("header-only" in w for w in hdr.warnings)
    ccd = read_image(needs_data("images", "fabio2011_b191_1_9_1.img.bz2"))  # offset-corrected CCD: negatives are data
    assert (ccd.data < -2).any() and not ccd.pixel_mask().any() and ccd.geometry is None
    np.save(tmp_path / "zeros.npy", np.zeros((8, 8)))
    assert any("empty frame" in w for w in read_image(tmp_path / "zeros.npy").warnings)


# ---------------------------------------------------------------------- the view
@pytest.fixture
def host(qtbot):
    from crystalstudio.gui.app import make_application

    make_application()
    w = QtWidgets.QWidget()
    QtWidgets.QHBoxLayout(w)
    qtbot.addWidget(w)
    return w


def _show(qtbot, w, size=(1400, 640)):
    w.resize(*size)
    w.show()
    qtbot.waitExposed(w)
    qtbot.wait(50)


def test_plain_image_scale_levels_mask_readout(host, qtbot, screenshot_dir):
    from crystalstudio.gui.views.image_view import ImageView, ImagePanel

    big = ImageView("Gaussian, log scale", quantity="I", unit="arb. units", x_axis=("Q_x", "Å⁻¹"),
                    y_axis=("Q_y", "Å⁻¹"))
    small = ImagePanel("residual", diverging=True, quantity="ΔI", unit="arb. units", x_axis=("h", ""), y_axis=("k", ""))
    host.layout().addWidget(big, 2)
    host.layout().addWidget(small, 1)
    q = np.linspace(-5, 5, 200)
    X, Y = np.meshgrid(q, q)  # data[row, column]: rows along y, columns along x
    Z = 1000 * np.exp(-((X - 1) ** 2 + Y**2) / 2) + 1.0
    Z[:30, :50] = np.nan  # bottom-left corner unmeasured
    rect = (-5.025, -5.025, 10.05, 10.05)
    big.set_image(Z, rect=rect, mask=(X > 3.5) & (Y > 3.5), mask_legend={1: ("beam stop", (60, 160, 255, 220))})
    big.set_scale("log")
    small.set_image(np.sin(X) * np.cos(Y), rect=rect)
    _show(qtbot, host)
    # colour bar: the quantity, its unit and the scale; axes: names and units
    assert big.histogram.axis.labelText == "I (arb. units), log scale"
    assert big.plot.getAxis("bottom").labelText == "Q_x (Å⁻¹)" and small.plot.getAxis("left").labelText == "k"
    # percentile contrast in data units; ticks labelled with data values on the log bar
    lo, hi = big.data_levels()
    finite = Z[np.isfinite(Z) & ~((X > 3.5) & (Y > 3.5))]
    assert lo == pytest.approx(np.percentile(finite, 0.5), rel=0.05) and hi == pytest.approx(np.percentile(finite, 99.8), rel=0.05)
    ticks = big.bar_axis.tickValues(*big.levels(), 400)[0][1]
    labels = big.bar_axis.tickStrings(ticks, 1, 1)
    assert "10" in labels and "100" in labels
    # diverging: symmetric levels about zero
    slo, shi = small.data_levels()
    assert slo == pytest.approx(-shi)
    # mask and no-data pixels are listed in the legend and named under the cursor
    counts = big.masked_counts()
    assert counts == {"beam stop": int(((X > 3.5) & (Y > 3.5)).sum()), "no data": 1500}
    assert "no data" in big.describe(0, 0) and "beam stop" in big.describe(199, 199)
    text = big.describe(100, 150, 2.5, 0.0)
    assert text.startswith("Q_x = 2.500 Å⁻¹, Q_y = 0.000 Å⁻¹") and f"I = {Z[100, 150]:.3g} arb. units" in text
    # the cursor read-out follows the mouse: the scene position of data[100, 150] maps back to (100, 150)
    centre = big.image_item.mapToScene(QtCore.QPointF(150.5, 100.5))
    assert big.pixel_at(centre) == (100, 150)
    # zoom to data after a pan
    big.plot.vb.setRange(xRange=(20, 30), yRange=(20, 30))
    big.zoom_to_data()
    (x0, x1), (y0, y1) = big.plot.vb.viewRange()
    assert x0 <= -5.0 and x1 >= 5.0 and y0 <= -5.0 and y1 >= 5.0 and min(x1 - x0, y1 - y0) < 14
    qtbot.wait(50)
    host.grab().save(str(screenshot_dir / "image_view_plain.png"))
    big.readout.setText(big.describe(100, 150, 2.5, 0.0))
    big.set_image(Z[::2, ::2], rect=rect)  # new data: the old read-out goes
    assert big.readout.text() == ""
    big.clear()
    assert big.data is None and big.readout.text() == "" and not big.mask_legend.isVisible()


def test_detector_mode(host, qtbot, screenshot_dir, data_dir):
    from crystalstudio.gui.views.image_view import ImageView

    frame = read_image(needs_data(*PILATUS))
    view = ImageView("PILATUS 6M frame")
    empty = ImageView("header-only EDF")
    ccd = ImageView("Bruker CCD frame")
    for v, stretch in ((view, 3), (empty, 2), (ccd, 2)):
        host.layout().addWidget(v, stretch)
    _show(qtbot, host, (1500, 700))
    t0 = time.perf_counter()
    view.set_detector_frame(frame, scale="log")
    ms = 1e3 * (time.perf_counter() - t0)
    print(f"set_detector_frame on a 2527×2463 frame: {ms:.0f} ms in the GUI thread (shared machine)")
    empty.set_detector_frame(read_image(needs_data("images", "fabio2011_F2K_Seb_Lyso0675_header_only.edf")))
    ccd.set_detector_frame(read_image(needs_data("images", "fabio2011_Cr8F8140k103.0026.bz2")))
    qtbot.wait(100)
    # row 0 on top (ALBULA/adxv), pixel axes, counts on the colour bar
    assert view.plot.vb.yInverted()
    top = view.image_item.mapToScene(QtCore.QPointF(10.5, 0.5))
    bottom = view.image_item.mapToScene(QtCore.QPointF(10.5, 2526.5))
    assert top.y() < bottom.y()
    assert view.histogram.axis.labelText == "I (counts), log scale"
    assert view.plot.getAxis("left").labelText == "y (pixel)"
    for v in (view, empty, ccd):  # tick labels in pixels, as they are (a stale SI scale showed 2463 px as 2.5e+06)
        for side in ("left", "bottom"):
            axis = v.plot.getAxis(side)
            assert axis.autoSIPrefixScale == 1.0 and not axis.labelUnitPrefix
            assert axis.tickStrings([1000.0, 2000.0], axis.autoSIPrefixScale * axis.scale, 1000.0) == ["1000", "2000"]
    # gaps and bad pixels masked (not drawn as data) and counted in the legend
    assert view.masked_counts() == {"module gap (−1)": 526101, "bad pixel (−2)": 949}
    assert np.isnan(view.display[frame.data < 0]).all()
    assert view.data_levels()[0] >= 0
    i, j = np.argwhere(frame.data == -2)[0]
    assert "bad pixel" in view.describe(i, j)
    # resolution rings and d under the cursor
    assert view.ring_resolutions and min(view.ring_resolutions) >= 1.3
    text = view.describe(1310, 1800)
    d = float(text.split("d = ")[1].split()[0])
    assert d == pytest.approx(float(frame.geometry.d_spacing(1800, 1310)), abs=1e-3)
    assert f"I = {frame.data[1310, 1800]:.3g} counts" in text
    # a header-only file says so, on the image and under it
    assert empty.warnings and "header-only" in empty.readout.text()
    # a frame without a usable geometry says why there are no rings
    assert ccd.ring_resolutions == [] and "no resolution rings" in ccd.no_rings_reason
    host.grab().save(str(screenshot_dir / "image_view_detector.png"))
    # leaving detector mode: an ordinary image is drawn upright again
    view.set_image(np.ones((4, 4)))
    assert not view.plot.vb.yInverted() and view.ring_resolutions == []


def test_density_and_reciprocal_views_on_the_shared_view(host, qtbot, screenshot_dir):
    from crystalstudio.crystal.generator import GeneratorSettings
    from crystalstudio.crystal.generator.preview import preview_structure
    from crystalstudio.gui.views.density_view import DensitySlabView
    from crystalstudio.gui.views.reciprocal_view import ReciprocalPlaneView

    s = GeneratorSettings()
    s.space_group = "C 1 2/c 1"  # oblique cell: the slab is drawn sheared
    data, _ = preview_structure(s, 3, 0.8)
    slab, recip = DensitySlabView(title="ρ slab"), ReciprocalPlaneView(title="reciprocal plane")
    host.layout().addWidget(slab)
    host.layout().addWidget(recip)
    _show(qtbot, host, (1300, 620))
    slab.set_map(data.dmap, data.structure)
    slab.set_slab(1, 0.0, 1.0)  # projection along b: a and c in the plane, β between them
    st = data.structure
    recip.set_reflections(st.cell, st.space_group, data.hkl, np.abs(data.F))
    recip.plane_box.setCurrentIndex(1)  # h0l
    qtbot.wait(50)
    assert slab.view.histogram.axis.labelText == "ρ (σ, projection)"
    assert slab.plot.getAxis("bottom").labelText == "x ∥ a (Å)"
    assert slab.view.data.shape == (data.dmap.shape[0], data.dmap.shape[2])
    # the cell outline is inside the zoomed view
    (x0, x1), (y0, y1) = slab.plot.vb.viewRange()
    ox, oy = slab.outline.getData()
    assert x0 <= ox.min() and ox.max() <= x1 and y0 <= oy.min() and oy.max() <= y1
    # grid point (i, j) of the projection reads as fractional x = i/n_a, z = j/n_c
    assert slab.view.describe(3, 5).startswith(f"x = {3 / data.dmap.shape[0]:.3f}")
    # reciprocal plane: |F| on the colour bar, Å⁻¹ axes, the disc colours follow the levels
    assert recip.view.colorbar.getAxis("left").labelText == "|F| (e), sqrt scale"
    assert recip.plot.getAxis("bottom").labelText == "x ∥ a* (Å⁻¹)"
    h, v, xy = recip._shown
    assert (h[:, 1] == 0).all() and len(h) > 10
    strongest = int(np.argmax(v))
    before = recip.scatter.points()[strongest].brush().color().name()
    recip.view.set_levels(*(2 * np.array(recip.view.levels())))
    after = recip.scatter.points()[strongest].brush().color().name()
    assert before != after
    recip.quantity.setCurrentIndex(1)
    assert recip.view.colorbar.getAxis("left").labelText == "I (e²), sqrt scale"
    host.grab().save(str(screenshot_dir / "image_view_density_reciprocal.png"))
    # a new map with another shape refits; clearing empties the view
    slab.set_map(None)
    assert slab.view.data is None
