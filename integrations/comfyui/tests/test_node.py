# SPDX-License-Identifier: GPL-3.0-or-later
"""The ComfyUI node's function on a small batch, without ComfyUI: the
outputs ComfyUI expects, and the same mattes as vmatte.Matter over the
whole batch (the node's chunks carry the state)."""
import importlib.util
import sys
from pathlib import Path

import numpy as np

import vmatte
from vmatte_testing import read_pngs

HERE = Path(__file__).resolve().parent.parent


def load_pack():
    """Imports the folder as ComfyUI does: a package from custom_nodes/."""
    spec = importlib.util.spec_from_file_location("vmatte_comfyui", HERE / "__init__.py",
                                                  submodule_search_locations=[str(HERE)])
    pack = importlib.util.module_from_spec(spec)
    sys.modules["vmatte_comfyui"] = pack
    spec.loader.exec_module(pack)
    return pack


def test_node_mattes_a_batch(frames_dir, models):
    pack = load_pack()
    cls = pack.NODE_CLASS_MAPPINGS["VmatteVideoMatting"]
    assert pack.NODE_DISPLAY_NAME_MAPPINGS["VmatteVideoMatting"]
    inputs = cls.INPUT_TYPES()
    assert inputs["required"]["images"] == ("IMAGE",)
    assert cls.RETURN_TYPES == ("MASK", "IMAGE")

    images = read_pngs(frames_dir, "RGB")[:10].astype(np.float32) / 255  # ComfyUI's IMAGE
    node = cls()
    mask, fgr = getattr(node, cls.FUNCTION)(images, "rvm-mobilenetv3", 0.375, chunk=3, model_dir=str(models))
    assert mask.shape == (10, 180, 320) and fgr.shape == (10, 180, 320, 3)
    assert mask.dtype == fgr.dtype == np.float32
    assert 0 <= mask.min() and mask.max() <= 1 and mask.max() > 0.5

    whole, _ = vmatte.Matter(downsample_ratio=0.375, model_dir=models, seq_chunk=10).step(images)
    assert np.abs(mask - whole).max() < 1e-4

    # A second run starts from a fresh state: the same answer.
    again, _ = getattr(node, cls.FUNCTION)(images, "rvm-mobilenetv3", 0.375, chunk=4, model_dir=str(models))
    assert np.abs(again - mask).max() < 1e-4
