"""Entry point of the `flip` console script, kept light: Ctrl-C is caught from the first
import of the command line on, so even a half-imported command ends with one line."""

from __future__ import annotations

import os
import sys

from flip.cli.interrupt import reported
from flip.private_files import UMASK


def main() -> None:
    """Run `flip`: nothing it creates is open to other users; Ctrl-C ends it with one line,
    `interrupted`, and exit status 130."""
    os.umask(UMASK)
    with reported():
        from flip.cli.app import for_arguments

        for_arguments(sys.argv[1:])()
