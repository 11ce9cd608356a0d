# SPDX-License-Identifier: GPL-3.0-or-later
"""The wheel's fixtures (model folder, frames): the same as its own tests'."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "crates" / "vmatte-python" / "tests"))

from vmatte_testing import frames_dir, models, sample  # noqa: E402,F401
