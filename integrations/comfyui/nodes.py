# SPDX-License-Identifier: GPL-3.0-or-later
"""The nodes. ComfyUI hands IMAGE batches as (B, H, W, 3) float32 tensors in
[0, 1] and takes MASK as (B, H, W): exactly what ``vmatte.Matter.step`` takes
and gives, so a batch goes through as the frames of one video, in order,
the recurrent state carried from frame to frame, in chunks that bound the
memory. A loaded model is kept between runs (per model, device, precision
and model folder); its state is reset at the start of every run."""
import functools

import vmatte

MODELS = ["rvm-mobilenetv3", "rvm-resnet50", "gvm"]


@functools.lru_cache(maxsize=2)
def _matter(model, device, dtype, downsample_ratio, model_dir):
    return vmatte.Matter(model, device=device, downsample_ratio=downsample_ratio, dtype=dtype,
                         model_dir=model_dir or None)


def _cat(parts):
    """Concatenates numpy arrays or PyTorch tensors, whichever they are."""
    if len(parts) == 1:
        return parts[0]
    if type(parts[0]).__module__.startswith("torch"):
        import torch

        return torch.cat(parts)
    import numpy as np

    return np.concatenate(parts)


class VideoMatting:
    """Video matting (vmatte): frames in, mask and foreground out."""

    @classmethod
    def INPUT_TYPES(cls):  # noqa: N802 - ComfyUI's name
        return {
            "required": {
                "images": ("IMAGE",),
                "model": (MODELS, {"default": "rvm-mobilenetv3"}),
                "downsample_ratio": ("FLOAT", {"default": 0.375, "min": 0.05, "max": 1.0, "step": 0.005}),
            },
            "optional": {
                "device": (["cpu", "cuda"], {"default": "cpu"}),
                "dtype": (["f32", "f16", "bf16"], {"default": "f32"}),
                "chunk": ("INT", {"default": 8, "min": 1, "max": 256}),
                "model_dir": ("STRING", {"default": ""}),
            },
        }

    RETURN_TYPES = ("MASK", "IMAGE")
    RETURN_NAMES = ("mask", "foreground")
    FUNCTION = "matte"
    CATEGORY = "mask/vmatte"

    def matte(self, images, model, downsample_ratio, device="cpu", dtype="f32", chunk=8, model_dir=""):
        m = _matter(model, device, dtype, float(downsample_ratio), model_dir)
        m.reset()
        masks, fgrs = [], []
        for i in range(0, len(images), chunk):
            alpha, fgr = m.step(images[i:i + chunk])
            if len(alpha):
                masks.append(alpha)
                fgrs.append(fgr)
        if m.kind == "gvm":
            alpha, _ = m.flush()
            if len(alpha):
                masks.append(alpha)
            # GVM gives alpha only: the foreground is the picture itself.
            fgrs = [images]
        return (_cat(masks), _cat(fgrs))


NODE_CLASS_MAPPINGS = {"VmatteVideoMatting": VideoMatting}
NODE_DISPLAY_NAME_MAPPINGS = {"VmatteVideoMatting": "Video Matting (vmatte)"}
