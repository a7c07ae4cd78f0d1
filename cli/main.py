"""``taiwa``: the command line. One module per command; each exposes ``add_parser`` and
``run``. Exit codes: 0 ok, 1 failure (e.g. the project has errors), 2 usage error.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from cli import errors_cmd, eval, golden, init, run, schema, shell, train, validate, visualize
from engine import __version__

COMMANDS = (validate, train, shell, run, init, visualize, schema, errors_cmd, eval, golden)

EPILOG = """examples:
  taiwa init my-bot                 scaffold a new assistant
  taiwa validate --project my-bot   check every file, report all problems
  taiwa train --project my-bot      train the NLU (skipped when nothing changed)
  taiwa shell --project my-bot      chat with it in the terminal (--debug shows each decision)
  taiwa visualize create_ticket     draw a flow (Mermaid)
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        sys.stderr.write(f"{self.prog}: error: {message}\nRun `{self.prog} --help` for the options.\n")
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="taiwa",
        description="taiwa: task-oriented assistants declared in YAML.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"taiwa {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    code: int = args.run(args)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
