# SPDX-License-Identifier: GPL-3.0-or-later
"""Keyword arguments to the command line, and the command's answer back.

The options are the CLI's own (``_native.options`` reads them from its
parser), so a keyword is a flag with ``_`` for ``-`` and every value is
checked by the same code, with the same message, as on the command line.
"""
import difflib
import json
import os

from . import _native
from ._errors import OptionError


def _text(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return str(value)


def _items(value):
    if isinstance(value, (str, bytes, os.PathLike, int, float)):
        return [value]
    return list(value)


def argv(command, positional, options):
    """``["vmatte", *command, *positional, flags...]`` for ``options``."""
    spec = {o["name"]: o for o in _native.options(command)}
    out = ["vmatte", *command.split(), *(_text(p) for p in positional)]
    for key, value in options.items():
        o = spec.get(key)
        if o is None:
            near = difflib.get_close_matches(key, spec, n=1)
            hint = f"; did you mean {near[0]}?" if near else ""
            raise OptionError(f"{command} has no option '{key}'{hint}")
        if value is None:
            continue
        flag, takes = o["flag"], o["takes"]
        if takes == "switch":
            if not isinstance(value, bool):
                raise OptionError(f"{key} is a switch: True or False, not {value!r}")
            if value:
                out.append(flag)
        elif takes == "list":
            out.append(f"{flag}={','.join(_text(v) for v in _items(value))}")
        elif takes == "repeated":
            out += [f"{flag}={_text(v)}" for v in _items(value)]
        else:
            out.append(f"{flag}={_text(value)}")
    return out


def run(args):
    """Runs ``args`` in this process; ``(success, [json values])``."""
    answer = json.loads(_native.run(args))
    return answer["success"], answer["json"]
