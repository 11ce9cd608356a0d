# SPDX-License-Identifier: GPL-3.0-or-later
"""vmatte: alpha mattes from videos, on a CPU or a GPU, without PyTorch.

Files in, files out, with the command line's options as keyword arguments::

    import vmatte
    reports = vmatte.matte(["clip.mp4"], "out/", downsample_ratio=0.25, outputs=["alpha", "fgr"])

Frames in, mattes out (numpy or PyTorch), the model's state kept between calls::

    m = vmatte.Matter(model="rvm-mobilenetv3", downsample_ratio=0.375)
    alpha, fgr = m.step(frames)      # (T, H, W, 3) uint8 or float32
    m.reset()                        # at a cut

Models: ``vmatte.models.install("rvm-mobilenetv3")``, ``vmatte.models.list()``.
The ``vmatte`` command installed with this package is the Rust command.
"""
import os as _os
import sys as _sys

from . import _native, models
from ._errors import (
    FrameError,
    InputError,
    InternalError,
    ModelError,
    OptionError,
    RunError,
    VmatteError,
)
from ._matter import Matter
from ._run import argv as _argv
from ._run import run as _run

__version__ = _native.__version__

__all__ = [
    "matte",
    "batch",
    "finish",
    "options",
    "Matter",
    "models",
    "VmatteError",
    "OptionError",
    "ModelError",
    "InputError",
    "RunError",
    "FrameError",
    "InternalError",
]

# pip fetches models with this interpreter unless told otherwise.
_os.environ.setdefault("VMATTE_PYTHON", _sys.executable)


def _inputs(inputs):
    if isinstance(inputs, (str, bytes, _os.PathLike)):
        return [inputs]
    return list(inputs)


def _checked(results, check):
    failures = [r for r in results if isinstance(r, dict) and r.get("error")]
    if failures and check:
        first = failures[0]
        more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
        raise InputError(f"{first['error']}{more}", results, failures)
    return results


def matte(inputs, output_dir, *, check=True, **options):
    """Mattes videos (or folders of numbered images) into ``output_dir``, as
    ``vmatte matte`` does.

    ``options`` are the command's (``vmatte matte --help``; ``vmatte.options("matte")``)
    with ``_`` for ``-``: ``downsample_ratio=0.25``, ``outputs=["alpha", "fgr"]``,
    ``format="png"``, ``model="rvm-resnet50"``, ``device="cuda"``... A switch
    takes True; a list takes a list.

    Returns one dict per input, what ``vmatte matte --json`` prints: its
    outputs, frames, seconds, settings and warnings. An input that fails does
    not stop the others; with ``check=True`` (the default) the call then raises
    :class:`InputError` (its ``results`` hold every input's dict), else its dict
    has an ``error``. Raises :class:`OptionError` for a refused option (the
    command line's message) and :class:`ModelError` when the model cannot be
    loaded. Ctrl-C stops the run cleanly (nothing left under a final name) and
    raises KeyboardInterrupt.
    """
    args = _argv("matte", [*_inputs(inputs), "-o", output_dir, "--json"], options)
    _, results = _run(args)
    return _checked(results, check)


def batch(inputs, output_dir, *, check=True, **options):
    """Mattes many videos into ``output_dir`` through the job store, as
    ``vmatte batch`` does: resumable (run it again after a crash and it goes on
    where it stopped), several at once, a manifest and logs in ``output_dir``.

    ``inputs`` are files, folders or glob patterns; ``options`` are the
    command's (``vmatte.options("batch")``: ``jobs``, ``devices``,
    ``retry_failed``... and every ``matte`` option).

    Returns what ``vmatte batch --json`` prints: ``jobs`` (one dict per input),
    counts of ``done``, ``failed``, ``skipped``... With ``check=True`` a failed
    job raises :class:`InputError`, its ``results`` the jobs.
    """
    args = _argv("batch", [*_inputs(inputs), "-o", output_dir, "--json"], options)
    _, results = _run(args)
    report = results[-1] if results else {}
    if report.get("error") and check:
        raise RunError(report["error"])
    jobs = report.get("jobs", [])
    failed = [j for j in jobs if j.get("status") == "failed"]
    if failed and check:
        first = failed[0]
        raise InputError(
            f"{first.get('input')}: {first.get('error', 'failed')}"
            + (f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""),
            jobs,
            failed,
        )
    return report


def finish(video, matte, output_dir, *, check=True, **options):
    """Finishes ``video`` with a matte made elsewhere (``matte``: a video or an
    image folder, gray), as ``vmatte finish`` does: foreground estimation,
    edge controls, composites, EXR. Returns the report dict."""
    args = _argv("finish", [video, "--matte", matte, "-o", output_dir, "--json"], options)
    _, results = _run(args)
    return _checked(results, check)[0] if results else {}


def options(command="matte"):
    """The options ``command`` takes as keyword arguments: dicts with ``name``,
    ``flag``, ``takes`` (switch, value, list, repeated) and ``help``."""
    return _native.options(command)
