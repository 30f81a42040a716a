"""The Diffuse panel driven end to end: volume → plane → factorisation → α → export; refusals; one job at a time;
stale state cleared; closing the window during a factorisation (in a subprocess, so a crash at exit is seen)."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PySide6 import QtCore

from crystalstudio.crystal.cell import UnitCell
from crystalstudio.io.meerkat import write_yell10
from tests.conftest import save_screenshot
from tests.realdata import ROOT, needs_data


def diffuse(window):
    p = next(p for p in window.panels if p.title == "Diffuse")
    window.tabs.setCurrentWidget(p)
    return p


def test_volume_factorise_refine_export(window, qtbot, tmp_path, screenshot_dir):
    dp = diffuse(window)
    window.open_path(str(needs_data("diffuse", "meerkat2avg_visual-test.h5")))
    qtbot.waitUntil(lambda: dp.plane is not None, timeout=30000)
    assert "Yell 1.0" in dp.info.text() and dp.plane.label == "hk1"
    # Q max follows the data: the grid just holds the volume's extent in the plane
    assert dp.qmax_auto.isChecked() and dp.plane.q_max == pytest.approx(7.687, abs=0.01)
    assert dp.factorise_button.isEnabled() and "pixels measured" in dp.factorise_status.text()
    ro = dp.images["measured plane"].readout_fn(128, 128)
    assert "h k l" in ro and ro.split("=")[1].split()[2].startswith("1.000")
    dp.passes.setValue(3)
    qtbot.mouseClick(dp.factorise_button, QtCore.Qt.LeftButton)
    assert not dp.factorise_button.isEnabled()  # one job at a time: a second click cannot start another
    qtbot.mouseClick(dp.factorise_button, QtCore.Qt.LeftButton)
    assert sum(t.name == "factorise" for t in window.tasks.running) == 1
    qtbot.waitUntil(lambda: dp.result is not None, timeout=90000)
    qtbot.waitUntil(lambda: dp.factorise_button.isEnabled(), timeout=5000)
    assert dp.result.ff_spread is not None and dp.alpha_table.rowCount() == 24
    assert "over 3 passes" in dp.images["I_SRO spread"].plot.titleLabel.text
    # every image: a colour bar naming quantity and unit, axes in Å⁻¹, the h and k axes drawn, the mask's legend
    for name in dp.view_names:
        v = dp.images[name]
        assert v.isVisible() and v.colorbar is not None and v.unit == "rel." and v.x_axis == ("Q_x", "Å⁻¹"), name
        assert len(dp._axis_items[name]) == 6, name  # two index axes: line, ticks, label each
    counts = dp.images["measured plane"].masked_counts()
    assert counts["not measured"] > 1000 and counts["Bragg peak punched (filled, not fitted)"] > 100
    head = dp.alpha_table.horizontalHeaderItem(1)
    assert "plane fit" in head.text() and "measured plane" in head.toolTip()
    dp.symmetry.setCurrentText("mm (square/rect.)")
    qtbot.mouseClick(dp.refine_button, QtCore.Qt.LeftButton)
    qtbot.waitUntil(lambda: 0 < dp.alpha_table.rowCount() < 24, timeout=30000)
    dp.alpha_from.setCurrentText("network")
    assert "networks" in dp.alpha_table.horizontalHeaderItem(1).text()
    save_screenshot(window, screenshot_dir, "diffuse_factorised")
    task = dp.export(str(tmp_path / "fac"))
    qtbot.waitUntil(lambda: task.is_done, timeout=60000)
    for f in ("alpha.csv", "sro.png", "measured_mask.npy", "sro_spread_over_passes.npy", "factorisation.json"):
        assert (tmp_path / "fac" / f).exists(), f
    # a new plane clears the α table and every derived view
    dp.plane_edit.setText("hk0")
    qtbot.mouseClick(dp.cut_button, QtCore.Qt.LeftButton)
    assert dp.result is None and dp.alpha_table.rowCount() == 0 and dp.images["I_SRO"].data is None
    qtbot.waitUntil(lambda: dp.plane is not None and dp.plane.label == "hk0", timeout=30000)
    assert dp.images["I_FF"].data is None and not dp.refine_button.isEnabled()
    # a detector image: only the view that applies is shown
    window.open_path(str(needs_data("images", "fabio2011_run2_1_00148.cbf.bz2")))
    qtbot.waitUntil(lambda: "detector image" in dp.info.text(), timeout=30000)
    assert dp.images["measured plane"].isVisible() and not dp.images["I_SRO"].isVisible()
    assert not dp.factorise_button.isEnabled() and dp.plane is None
    save_screenshot(window, screenshot_dir, "diffuse_detector_image")


def test_plane_without_measured_pixels_keeps_factorise_disabled(window, qtbot, tmp_path):
    data = np.full((21, 21, 5), np.nan)
    data[:, :, 0] = 1.0  # only l = −2 measured; hk1 has no measured pixel
    write_yell10(tmp_path / "empty.h5", data, [-1, -1, -2], [0.1, 0.1, 1.0], UnitCell(5, 5, 5))
    dp = diffuse(window)
    window.open_path(str(tmp_path / "empty.h5"))
    qtbot.waitUntil(lambda: dp.plane is not None, timeout=30000)
    assert dp.plane.n_measured == 0
    assert not dp.factorise_button.isEnabled()
    assert "Factorise disabled" in dp.factorise_status.text() and "0 of 65,536" in dp.factorise_status.text()
    dp.factorise()  # the shortcut path refuses too
    assert not window.tasks.running


CLOSE_SCRIPT = textwrap.dedent("""
    import sys
    from PySide6 import QtCore, QtWidgets
    from crystalstudio.gui.app import make_application, run_gui

    moment = sys.argv[2]
    app = make_application()
    state = {"clicked": False, "closed": False}

    def drive():
        wins = [w for w in QtWidgets.QApplication.topLevelWidgets() if type(w).__name__ == "MainWindow"]
        if not wins or state["closed"]:
            return
        win = wins[0]
        dp = next(p for p in win.panels if p.title == "Diffuse")
        if moment == "cut" and win.tasks.running:
            state["closed"] = True
            win.close()
        elif dp.plane is not None and not state["clicked"]:
            state["clicked"] = True
            dp.passes.setValue(4)
            dp.factorise()
            task = dp._factorise_task
            def seen(f, msg):
                # progress reaches the GUI throttled (~20 Hz): match any message of the stage, not one pass's
                want = {"networks": "network, pass", "alpha": "α"}[moment]
                if want in msg and not state["closed"]:
                    state["closed"] = True
                    print("closing at", repr(msg), flush=True)
                    win.close()
            def ended():
                if not state["closed"]:  # the moment never came: fail fast with a reason instead of hanging
                    print("the factorisation ended before the moment", repr(moment), flush=True)
                    win.close()
            task.progress.connect(seen)
            task.done.connect(ended)

    timer = QtCore.QTimer()
    timer.timeout.connect(drive)
    timer.start(5)
    rc = run_gui(sys.argv[1], fresh_preferences=True)
    print("exit", rc, "closed", state["closed"], flush=True)
    sys.exit(rc)
""")


@pytest.mark.parametrize("moment", ["cut", "networks", "alpha"])
def test_closing_during_a_factorisation_exits_cleanly(tmp_path, moment):
    vol = needs_data("diffuse", "meerkat2avg_visual-test.h5")
    script = tmp_path / "close.py"
    script.write_text(CLOSE_SCRIPT)
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", HOME=str(tmp_path), XDG_CONFIG_HOME=str(tmp_path),
               PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, str(script), str(vol), moment], capture_output=True, text=True,
                         timeout=240, env=env, cwd=str(ROOT))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "closed True" in out.stdout, out.stdout + out.stderr
    assert "QThread: Destroyed" not in out.stderr and "Traceback" not in out.stderr, out.stderr


def test_every_control_has_a_tooltip_and_the_shortcuts_work(window, qtbot):
    from PySide6 import QtWidgets

    dp = diffuse(window)
    kinds = (QtWidgets.QAbstractButton, QtWidgets.QComboBox, QtWidgets.QAbstractSpinBox, QtWidgets.QLineEdit,
             QtWidgets.QTableWidget)
    missing = [f"{type(w).__name__} {getattr(w, 'text', lambda: '')()!r}" for w in dp.findChildren(QtWidgets.QWidget)
               if isinstance(w, kinds) and not w.toolTip() and w.parent() is not None
               and not isinstance(w.parent(), (QtWidgets.QAbstractSpinBox, QtWidgets.QAbstractItemView))]
    assert not missing, missing
    window.open_path(str(needs_data("diffuse", "meerkat2avg_visual-test.h5")))
    qtbot.waitUntil(lambda: dp.plane is not None, timeout=30000)
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow, timeout=5000)
    dp.plane_edit.setText("hk0")
    dp.plane_edit.setFocus()
    first = dp.plane
    qtbot.keyClick(dp.plane_edit, QtCore.Qt.Key_K, QtCore.Qt.ControlModifier)  # Cut plane
    qtbot.waitUntil(lambda: dp.plane is not None and dp.plane is not first, timeout=30000)
    assert dp.plane.label == "hk0"
    dp.passes.setValue(2)
    qtbot.keyClick(dp.plane_edit, QtCore.Qt.Key_R, QtCore.Qt.ControlModifier)  # Factorise
    qtbot.waitUntil(lambda: dp.result is not None, timeout=60000)
