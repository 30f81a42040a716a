"""Entry script for frozen builds (PyInstaller): resources live next to the executable."""

import os
import sys

if getattr(sys, "frozen", False):
    os.environ.setdefault("CRYSTALSTUDIO_RESOURCES", os.path.join(getattr(sys, "_MEIPASS", os.path.dirname(sys.executable)), "resources"))

from crystalstudio.cli import main  # noqa: E402

sys.exit(main())
