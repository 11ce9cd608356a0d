# SPDX-License-Identifier: GPL-3.0-or-later
"""``Matter``: frames in, mattes out, the model's state kept between calls."""
import numpy as np

from . import _native
from ._errors import FrameError

_GVM_OPTIONS = (
    "frames_per_batch",
    "overlap_frames",
    "interp_frames",
    "denoise_steps",
    "decode_chunk",
    "size",
    "max_resolution",
    "ensemble",
    "lora",
)


def _as_numpy(frames):
    """``frames`` as a C-contiguous numpy array and whether they came as a
    PyTorch tensor. A tensor on the CPU is read in place (DLPack); one on a
    GPU is brought over once."""
    torch_in = type(frames).__module__.startswith("torch")
    if torch_in:
        t = frames.detach()
        if t.device.type != "cpu":
            t = t.cpu()
        frames = np.from_dlpack(t.contiguous()) if hasattr(np, "from_dlpack") else t.numpy()
    arr = np.asarray(frames)
    if arr.dtype not in (np.uint8, np.float32):
        if arr.dtype.kind == "f":
            arr = arr.astype(np.float32)
        else:
            raise FrameError(f"frames must be uint8 or float32, not {arr.dtype}")
    return np.ascontiguousarray(arr), torch_in


class Matter:
    """Mattes frames as they come, keeping the model's state between calls.

    ``model``: an installed model's name (``rvm-mobilenetv3``, ``rvm-resnet50``,
    ``gvm``) or a weights path. ``device``: ``cpu``, ``cuda`` or ``cuda:N``.
    ``downsample_ratio``: RVM's, a number in (0, 1] or ``"auto"`` (long side to
    512 px). ``dtype``: ``f32``, ``f16`` or ``bf16`` (GPU). ``seq_chunk``:
    frames per model call (2 on the CPU, 4 on a GPU). GVM takes its window
    options as keywords: ``frames_per_batch``, ``overlap_frames``,
    ``interp_frames``, ``denoise_steps``, ``decode_chunk``, ``size``,
    ``max_resolution``, ``ensemble``, ``lora``.

    ``step(frames)`` takes ``(T, H, W, 3)`` (or one ``(H, W, 3)`` frame) uint8
    or float32 in [0, 1], as numpy arrays or PyTorch tensors, and returns
    ``(alpha, fgr)``: ``(T, H, W)`` and ``(T, H, W, 3)`` float32, as the input
    came (numpy, or PyTorch tensors on the CPU). RVM answers every frame at
    once; GVM answers the frames whose windows have settled (possibly none
    yet, ``fgr`` None) and ``flush()`` the rest at the end. ``reset()`` at a
    cut or before another video.
    """

    def __init__(
        self,
        model="rvm-mobilenetv3",
        device="cpu",
        downsample_ratio="auto",
        dtype="f32",
        *,
        model_dir=None,
        seq_chunk=None,
        **gvm,
    ):
        unknown = sorted(set(gvm) - set(_GVM_OPTIONS))
        if unknown:
            raise TypeError(f"Matter() got unexpected keyword argument(s): {', '.join(unknown)}")
        self._native = _native.Matter(
            str(model),
            str(device),
            str(downsample_ratio),
            str(dtype),
            None if model_dir is None else str(model_dir),
            seq_chunk,
            gvm,
        )
        self.model = str(model)

    @property
    def kind(self):
        """``"rvm"`` or ``"gvm"``."""
        return self._native.kind

    def step(self, frames):
        """Mattes the next frames; ``(alpha, fgr)``."""
        arr, torch_in = _as_numpy(frames)
        one = arr.ndim == 3
        if one:
            arr = arr[None]
        return self._answer(self._native.step(arr), torch_in, one)

    def flush(self):
        """The video ended: the frames still waiting (GVM), and the state reset."""
        return self._answer(self._native.flush(), False, False)

    def reset(self):
        """Forgets the frames so far (a cut, another video)."""
        self._native.reset()

    __call__ = step

    @staticmethod
    def _answer(raw, torch_in, one):
        alpha_out, fgr_out, n, h, w = raw
        # The model's own output memory, read in place (no copy).
        alpha = np.empty((0, h, w), np.float32) if alpha_out is None else np.asarray(alpha_out)
        fgr = None if fgr_out is None else np.asarray(fgr_out)
        if one and n == 1:
            alpha, fgr = alpha[0], None if fgr is None else fgr[0]
        if torch_in:
            import torch

            alpha = torch.from_numpy(alpha)
            fgr = None if fgr is None else torch.from_numpy(fgr)
        return alpha, fgr
