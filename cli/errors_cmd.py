"""``taiwa errors``: list the diagnostic catalogue (the codes `validate` prints)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from engine.errors import catalogue, catalogue_markdown


def add_parser(sub: Any) -> None:
    parser = sub.add_parser(
        "errors",
        help="list every diagnostic code with what it catches and the fix",
        epilog="example: taiwa errors --markdown > docs/errors.md",
    )
    parser.add_argument("code", nargs="?", help="show one code, e.g. E307")
    parser.add_argument("--markdown", action="store_true", help="print the catalogue as Markdown (docs/errors.md)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.markdown:
        sys.stdout.write(catalogue_markdown())
        return 0
    specs = catalogue()
    if args.code:
        specs = [s for s in specs if s.code == args.code.upper()]
        if not specs:
            sys.stderr.write(
                f"taiwa: error: no diagnostic {args.code!r}\n  Fix: run `taiwa errors` to list the codes\n"
            )
            return 2
    for spec in specs:
        sys.stdout.write(f"{spec.code}  {spec.severity:<7}  {spec.title}\n         Fix: {spec.fix}\n")
    return 0
