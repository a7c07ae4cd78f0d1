"""Helpers shared by the commands."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_project_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--project",
        type=Path,
        default=Path(),
        metavar="DIR",
        help="the assistant's folder (default: the current directory)",
    )


def usage_error(message: str, fix: str | None = None) -> int:
    """Print a usage problem to stderr; return exit code 2."""
    sys.stderr.write(f"taiwa: error: {message}\n")
    if fix:
        sys.stderr.write(f"  Fix: {fix}\n")
    return 2


def check_project_dir(path: Path) -> int | None:
    """Exit code 2 with a message if ``path`` is not a directory, else None."""
    if not path.exists():
        return usage_error(
            f"the project folder {str(path)!r} does not exist",
            "pass an existing folder with --project, or create one with `taiwa init DIR`",
        )
    if not path.is_dir():
        return usage_error(
            f"{str(path)!r} is not a folder", "pass the folder that holds domain/, flows/, policies/ and nlu_data/"
        )
    return None
