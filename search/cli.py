"""What every ``python -m search.*`` command shares: exit codes, the usage error, logging."""

from __future__ import annotations

import logging
import sys

EXIT_OK, EXIT_FATAL, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def usage_error(message: str) -> int:
    """Print one ``error:`` line and return the usage exit code (2)."""
    print(f"error: {message}", file=sys.stderr)
    return EXIT_USAGE


def setup_logging(*, quiet: bool = False, verbose: bool = False) -> None:
    """Plain messages on stderr: INFO by default, DEBUG with -v, WARNING with -q."""
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    logging.basicConfig(level=level, format="%(message)s", stream=sys.stderr)


class UsageError(Exception):
    """Bad input from the command line: printed as one line, exit code 2."""
