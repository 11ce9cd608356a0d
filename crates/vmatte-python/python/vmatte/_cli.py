# SPDX-License-Identifier: GPL-3.0-or-later
"""The ``vmatte`` script: the same command line as the Rust binary."""
import sys

from . import _native


def main():
    """Runs ``vmatte`` with this process's arguments and exits with its status."""
    # (The package's __init__, imported first, points VMATTE_PYTHON at this
    # interpreter for `models install`.)
    argv = ["vmatte", *sys.argv[1:]]
    sys.stdout.flush()
    sys.exit(_native.cli_main(argv))


if __name__ == "__main__":
    main()
