"""Start-up on a machine without the GUI's system libraries or a display, and the README's set-up and test
commands kept in step with the code and .ci/run."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from crystalstudio.gui.app import GUI_PACKAGES, XCB_LIBRARIES, apt_line, qt_platform_problem

ROOT = Path(__file__).resolve().parents[1]


def test_missing_xcb_libraries_are_named_with_the_apt_line():
    missing = {"libxcb-icccm.so.4", "libxcb-keysyms.so.1"}  # the pair Qt's own message did not name

    def load(name):
        if name in missing:
            raise OSError(f"{name}: cannot open shared object file")

    msg = qt_platform_problem({"DISPLAY": ":0"}, load)
    assert "libxcb-icccm.so.4, libxcb-keysyms.so.1" in msg and apt_line() in msg
    assert "(missing now: libxcb-icccm4 libxcb-keysyms1)" in msg
    assert set(XCB_LIBRARIES.values()) <= set(GUI_PACKAGES)
    assert qt_platform_problem({"DISPLAY": ":0"}, lambda n: None) is None
    assert qt_platform_problem({"QT_QPA_PLATFORM": "offscreen"}, load) is None  # chosen on purpose: not checked
    assert "DISPLAY is not set" in qt_platform_problem({}, lambda n: None)


def test_gui_without_a_display_exits_with_our_message_not_an_abort():
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    out = subprocess.run([sys.executable, "-m", "crystalstudio.cli"], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 1 and out.stderr.startswith("crystalstudio: cannot open the window:"), out.stderr
    assert "Aborted" not in out.stderr and "qt.qpa" not in out.stderr


def test_readme_and_ci_agree_with_the_code():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert apt_line() in readme  # the system-package line beside the two set-up commands
    ci_packages = set(re.search(r'GUI_PACKAGES="([^"]+)"', ci).group(1).replace("\\\n", " ").split())
    assert ci_packages == set(GUI_PACKAGES)
    setup = 'python3 -m venv .venv && .venv/bin/pip install torch==2.13.0 -e ".[test]"'
    assert setup in readme and '.venv/bin/pip install -q torch==2.13.0 -e ".[test]"' in ci
    test_cmd = re.search(r"## Run the tests.*?```bash\n(.+?)\n```", readme, re.S).group(1).strip()
    assert test_cmd in ci.splitlines()  # the README's test command is the one CI runs
