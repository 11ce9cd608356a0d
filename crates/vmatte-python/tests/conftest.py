# SPDX-License-Identifier: GPL-3.0-or-later
"""The suite's fixtures, from vmatte_testing (shared with the ComfyUI node's tests)."""
from vmatte_testing import fixtures, frames_dir, models, rust_bin, sample  # noqa: F401
