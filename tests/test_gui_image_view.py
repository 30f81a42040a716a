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
    # a 6-Mpx frame in a ~0.4-Mpx view is drawn as block maxima; a block all of whose pixels are gaps is masked
    b = view.block
    assert b > 1 and view.display.shape == (-(-2527 // b), -(-2463 // b))
    full = np.zeros((view.display.shape[0] * b, view.display.shape[1] * b), bool)
    full[:2527, :2463] = frame.data < 0
    assert np.isnan(view.display[full.reshape(view.display.shape[0], b, -1, b).all(axis=(1, 3))]).all()
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


@pytest.mark.parametrize("colorbar", ["histogram", "bar"])
def test_large_frame_block_maxima_keep_spots_and_exact_readout(host, qtbot, screenshot_dir, colorbar):
    """A frame far larger than its view is drawn as b×b block maxima prepared off the GUI thread: a one-pixel
    spot keeps its value, the read-out names the frame's own pixel and value, the legend counts every masked
    pixel, and zooming in draws the frame's full-resolution pixels."""
    from crystalstudio.gui.views.image_view import ImageView, prepare_frame

    rng = np.random.default_rng(3)
    data = rng.poisson(5.0, (1203, 1501)).astype(np.float64)
    data[:, 700:707] = -1  # a module gap, 7 columns
    data[400, 300] = -2  # a bad pixel
    data[1000, 1200] = 5000  # a one-pixel spot
    data[601, 1499] = 777  # a spot in the last, partial block
    frame = DetectorImage(data=data, path="synthetic.cbf", format="CBF")
    view = ImageView("synthetic frame", colorbar=colorbar)
    host.layout().addWidget(view)
    _show(qtbot, host, (700, 600))
    prepared = prepare_frame(data, frame.pixel_mask(), scale="log", screen_px=320 * 320)
    b = prepared.block
    assert b == 3 and prepared.shown.shape == (401, 501)  # ≤ 2 × 320² shown pixels
    view.set_detector_frame(frame, scale="log", prepared=prepared)
    assert view.block == 3 and view.display is prepared.display
    # spots keep their values in the shown image (the maxima of their blocks)
    assert prepared.shown[1000 // 3, 1200 // 3] == 5000 and prepared.shown[601 // 3, 1499 // 3] == 777
    assert view.display[1000 // 3, 1200 // 3] == pytest.approx(math.log10(5000))
    # gap columns 700…706: block column 234 (702…704) is all gap and masked; 233 and 235 keep their valid pixels
    assert np.isnan(prepared.shown[:, 234]).all() and (prepared.shown_codes[:, 234] == MASK_GAP).all()
    assert not np.isnan(prepared.shown[:, [233, 235]]).any() and not prepared.shown_codes[:, [233, 235]].any()
    assert np.isfinite(prepared.shown[400 // 3, 300 // 3])  # a bad pixel among valid ones keeps its block's data
    # exact legend counts: every masked frame pixel, not blocks
    assert view.masked_counts() == {"module gap (−1)": 7 * 1203, "bad pixel (−2)": 1}
    # the read-out under the cursor names the frame pixel and its raw value
    for (i, j) in ((1000, 1200), (1000, 1201), (400, 300), (601, 1499), (0, 0), (1202, 1500)):
        scene = view.image_item.mapToScene(QtCore.QPointF((j + 0.5) / b, (i + 0.5) / b))
        assert view.pixel_at(scene) == (i, j)
        view._mouse_moved(scene)
        text = view.readout.text()
        assert text.startswith(f"x {j}, y {i}")
        assert ("bad pixel" in text) if data[i, j] == -2 else f"I = {data[i, j]:.3g} counts" in text
    # the legend and read-out of the blocks' own values never leak: a pixel next to the spot reads its own count
    assert f"I = {data[1000, 1201]:.3g}" in view.describe(1000, 1201)
    host.grab().save(str(screenshot_dir / f"image_view_block_maxima_{colorbar}.png"))
    # zoomed in: the frame's own pixels drawn over the blocks, with the same colours
    qtbot.wait(300)
    assert not view.detail_shown
    view.plot.vb.setRange(xRange=(1150, 1250), yRange=(950, 1050), padding=0)
    qtbot.waitUntil(lambda: view.detail_shown, timeout=3000)
    r = view.detail_item.mapRectToParent(view.detail_item.boundingRect())
    assert r.left() <= 1150 and r.right() >= 1250 and r.top() <= 950 and r.bottom() >= 1050
    img = view.detail_item.image
    x0, y0 = int(r.left()), int(r.top())
    assert img[1000 - y0, 1200 - x0] == pytest.approx(math.log10(5000))
    assert img[1000 - y0, 1201 - x0] == pytest.approx(math.log10(max(data[1000, 1201], view._scale_p)))
    assert tuple(view.detail_item.levels) == tuple(view.image_item.levels)
    # levels dragged on the colour bar reach the detail too
    (view.histogram.setLevels(0.2, 1.5) if colorbar == "histogram" else view.colorbar.setLevels((0.2, 1.5)))
    assert tuple(view.detail_item.levels) == tuple(view.image_item.levels) == (0.2, 1.5)
    host.grab().save(str(screenshot_dir / f"image_view_block_maxima_zoomed_{colorbar}.png"))
    view.zoom_to_data()
    qtbot.waitUntil(lambda: not view.detail_shown, timeout=3000)
    # an ordinary image afterwards: full resolution, no blocks
    view.set_image(np.ones((4, 4)))
    assert view.block == 1 and not view.detail_shown
