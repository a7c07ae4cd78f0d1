"""``taiwa init DIR``: scaffold a new, valid, trainable assistant."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from engine.scaffold import ScaffoldError, scaffold


def add_parser(sub: Any) -> None:
    parser = sub.add_parser(
        "init",
        help="scaffold a new assistant (a copy of the reference customer-support bot)",
        epilog="example: taiwa init my-bot && taiwa validate --project my-bot",
    )
    parser.add_argument("dir", type=Path, metavar="DIR", help="folder to create (must be new or empty)")
    parser.add_argument("--force", action="store_true", help="write into a folder that is not empty")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        written = scaffold(args.dir, force=args.force)
    except ScaffoldError as exc:
        sys.stderr.write(f"taiwa: error: {exc}\n")
        return 2
    folders = sorted({p.relative_to(args.dir).parts[0] for p in written})
    sys.stdout.write(
        f"Created a new assistant in {args.dir} ({len(written)} files: {', '.join(folders)}).\n\n"
        "Next steps:\n"
        f"  taiwa validate --project {args.dir}     check every file\n"
        f"  taiwa visualize --project {args.dir}    draw the flows (Mermaid)\n"
        "  edit domain/, flows/, nlu_data/ and policies/; your editor validates them through the\n"
        "  `# yaml-language-server: $schema=` line at the top of each file.\n"
    )
    return 0
