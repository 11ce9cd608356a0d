# SPDX-License-Identifier: GPL-3.0-or-later
"""What the wheel's tests (and the ComfyUI node's) share: the Rust binary to compare with, the sample
clip, a model folder and frames on disk. scripts/test-wheel.sh sets the
environment; a missing piece is an error, never a skip."""
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def _env_path(name):
    value = os.environ.get(name)
    if not value or not Path(value).exists():
        raise RuntimeError(f"{name} is not set to an existing path; run scripts/test-wheel.sh")
    return Path(value)


@pytest.fixture(scope="session")
def rust_bin():
    """The `vmatte` binary cargo built from the same tree."""
    return _env_path("VMATTE_BIN")


@pytest.fixture(scope="session")
def sample():
    return _env_path("VMATTE_SAMPLE_CLIP")


@pytest.fixture(scope="session")
def fixtures():
    return _env_path("VMATTE_FIXTURES")


@pytest.fixture(scope="session")
def models(tmp_path_factory):
    """A model folder with RVM MobileNetV3 imported from the authors' ONNX."""
    import vmatte

    d = tmp_path_factory.mktemp("models")
    vmatte.models.import_(_env_path("VMATTE_RVM_ONNX"), model_dir=d)
    return d


def run_rust(rust_bin, *args, env=None):
    return subprocess.run(
        [str(rust_bin), *map(str, args)],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
    )


def read_pngs(folder, mode=None):
    """Every PNG in `folder`, in name order, stacked as one array."""
    paths = sorted(Path(folder).glob("*.png"))
    assert paths, f"no PNG in {folder}"
    return np.stack([np.asarray(Image.open(p).convert(mode) if mode else Image.open(p)) for p in paths])


@pytest.fixture(scope="session")
def frames_dir(sample, tmp_path_factory):
    """The sample clip's first 16 frames at 320x180 as RGB PNGs: the same
    pixels for the command (an image folder) and for `Matter` (read here)."""
    d = tmp_path_factory.mktemp("frames") / "frames"
    d.mkdir()
    subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(sample), "-frames:v", "16", "-vf", "scale=320:180",
         "-pix_fmt", "rgb24", str(d / "%04d.png")],
        check=True,
    )
    return d
