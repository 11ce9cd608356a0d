#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""Writes crates/vmatte-python/python/vmatte/__init__.pyi: the package's type
stub, with every option of `matte`, `batch` and `finish` as a typed keyword
and its help from the CLI. Run it with a Python that has the wheel installed
after options change (the wheel's test_the_stub_lists_every_option says
when):

    target/wheel-venv/bin/python scripts/gen-python-stub.py
"""
import textwrap
from pathlib import Path

import vmatte

OUT = Path(__file__).resolve().parent.parent / "crates/vmatte-python/python/vmatte/__init__.pyi"

TYPES = {
    "switch": "bool",
    "value": "_Value | None",
    "list": "_Value | Sequence[_Value] | None",
    "repeated": "_Value | Sequence[_Value] | None",
}


def keywords(command):
    lines, docs = [], []
    for o in vmatte.options(command):
        default = "False" if o["takes"] == "switch" else "None"
        lines.append(f"    {o['name']}: {TYPES[o['takes']]} = {default},")
        help_text = " ".join(o["help"].split()) or "(see the command's help)"
        docs.append(textwrap.fill(f"{o['name']}: {help_text}", 84, initial_indent="        ",
                                  subsequent_indent="            "))
    return "\n".join(lines), "\n".join(docs)


def function(name, positional, returns, summary, command):
    kw, docs = keywords(command)
    return f'''def {name}(
{positional}
    *,
    check: bool = True,
{kw}
) -> {returns}:
    """{summary}

    Options (``vmatte {command} --help``):

{docs}
    """
'''


HEAD = '''# SPDX-License-Identifier: GPL-3.0-or-later
# Written by scripts/gen-python-stub.py from the CLI's options: do not edit
# the option lists by hand.
"""vmatte: alpha mattes from videos, on a CPU or a GPU, without PyTorch."""
import os
from typing import Any, Sequence, Union

import numpy as np
import numpy.typing as npt

from . import models as models

_Path = Union[str, "os.PathLike[str]"]
_Value = Union[str, int, float, "os.PathLike[str]"]
_Inputs = Union[_Path, Sequence[_Path]]

__version__: str

class VmatteError(Exception):
    """Anything vmatte refuses or fails at."""

class OptionError(VmatteError, ValueError):
    """An option, its value or a combination was refused (the command line's message)."""

class ModelError(VmatteError):
    """The model could not be found, opened or loaded."""

class InputError(VmatteError):
    """Inputs failed; the others were done. ``results``: every input's dict; ``failures``: the failed."""

    results: list[dict[str, Any]]
    failures: list[dict[str, Any]]

class RunError(VmatteError):
    """A run failed as a whole."""

class FrameError(VmatteError, ValueError):
    """Frames ``Matter.step`` cannot take (shape, type, size)."""

class InternalError(VmatteError):
    """A bug in vmatte; please report it."""

'''

MATTER = '''
def options(command: str = "matte") -> list[dict[str, str]]:
    """The options ``command`` takes as keywords: ``name``, ``flag``, ``takes``, ``help``."""

class Matter:
    """Frames in, mattes out, the model's state kept between calls.

    ``step(frames)``: ``(T, H, W, 3)`` or ``(H, W, 3)`` uint8 or float32 in [0, 1]
    (numpy, or PyTorch tensors) to ``(alpha, fgr)``, ``(T, H, W)`` and
    ``(T, H, W, 3)`` float32 (PyTorch in, PyTorch out). GVM answers the frames
    whose windows settled (``fgr`` None) and ``flush()`` the rest.
    """

    model: str

    def __init__(
        self,
        model: str = "rvm-mobilenetv3",
        device: str = "cpu",
        downsample_ratio: float | str = "auto",
        dtype: str = "f32",
        *,
        model_dir: _Path | None = None,
        seq_chunk: int | None = None,
        frames_per_batch: int = ...,
        overlap_frames: int = ...,
        interp_frames: int = ...,
        denoise_steps: int = ...,
        decode_chunk: int = ...,
        size: int = ...,
        max_resolution: int = ...,
        ensemble: int = ...,
        lora: str = ...,
    ) -> None: ...
    @property
    def kind(self) -> str:
        """``"rvm"`` or ``"gvm"``."""
    def step(self, frames: Any) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32] | None]:
        """Mattes the next frames: ``(alpha, fgr)``."""
    def __call__(self, frames: Any) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32] | None]: ...
    def flush(self) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32] | None]:
        """The video ended: the frames still waiting (GVM); the state reset."""
    def reset(self) -> None:
        """Forgets the frames so far (a cut, another video)."""
'''


def main():
    text = HEAD
    text += function("matte", "    inputs: _Inputs,\n    output_dir: _Path,", "list[dict[str, Any]]",
                     "Mattes videos (or image folders) into ``output_dir``; one report per input.", "matte")
    text += "\n" + function("batch", "    inputs: _Inputs,\n    output_dir: _Path,", "dict[str, Any]",
                            "Mattes many videos through the resumable job store; the batch report.", "batch")
    text += "\n" + function("finish", "    video: _Path,\n    matte: _Path,\n    output_dir: _Path,",
                            "dict[str, Any]", "Finishes ``video`` with a matte made elsewhere; the report.",
                            "finish")
    text += MATTER
    OUT.write_text(text)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
