# SPDX-License-Identifier: GPL-3.0-or-later
"""The ``vmatte`` script: the same command line as the Rust binary."""
import os
import sys

from . import _native


def main():
    """Runs ``vmatte`` with this process's arguments and exits with its status."""
    argv = ["vmatte", *sys.argv[1:]]
    # pip fetches models with this interpreter unless told otherwise.
    os.environ.setdefault("VMATTE_PYTHON", sys.executable)
    sys.stdout.flush()
    sys.exit(_native.cli_main(argv))


if __name__ == "__main__":
    main()
