# SPDX-License-Identifier: GPL-3.0-or-later
"""The exceptions vmatte raises. Each message is the line the `vmatte`
command prints for the same mistake (without its ``vmatte: ``)."""


class VmatteError(Exception):
    """Anything vmatte refuses or fails at."""


class OptionError(VmatteError, ValueError):
    """An option, its value or a combination of options was refused."""


class ModelError(VmatteError):
    """The model could not be found, opened or loaded (``vmatte.models.install``
    installs the known ones)."""


class InputError(VmatteError):
    """One or more inputs failed; the others were matted.

    ``results`` holds what every input gave (a failed one as
    ``{"input": ..., "error": ...}``), ``failures`` only the failed ones.
    """

    def __init__(self, message, results=(), failures=()):
        super().__init__(message)
        self.results = list(results)
        self.failures = list(failures)


class RunError(VmatteError):
    """A run failed as a whole (the output folder, the job store, a device)."""


class FrameError(VmatteError, ValueError):
    """Frames given to ``Matter.step`` that it cannot take (shape, type, size)."""


class InternalError(VmatteError):
    """A bug in vmatte; please report it with the message."""
