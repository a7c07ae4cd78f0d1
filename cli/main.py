"""``taiwa``: the command line. One module per command; each exposes ``add_parser`` and
``run``. Exit codes: 0 ok, 1 failure (e.g. the project has errors), 2 usage error.

Only the module of the command given is imported (``taiwa run`` does not load the evaluation
code, and the processes ``taiwa run --workers N`` spawns, which import this module, stay
small); ``taiwa --help`` and a mistyped command import them all to list them.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from types import ModuleType

from engine import __version__

COMMANDS = {
    "validate": "cli.validate",
    "train": "cli.train",
    "shell": "cli.shell",
    "run": "cli.run",
    "init": "cli.init",
    "visualize": "cli.visualize",
    "schema": "cli.schema",
    "errors": "cli.errors_cmd",
    "eval": "cli.eval",
    "golden": "cli.golden",
}
"""Command name -> the module that implements it, in the order ``--help`` lists them."""

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


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser; with ``argv`` naming a command, only that command's module is imported."""
    parser = _Parser(
        prog="taiwa",
        description="taiwa: task-oriented assistants declared in YAML.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"taiwa {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for module in _modules(argv):
        module.add_parser(sub)
    return parser


def _modules(argv: Sequence[str] | None) -> list[ModuleType]:
    first = next((a for a in argv or () if not a.startswith("-")), None)
    names = [COMMANDS[first]] if first in COMMANDS else list(COMMANDS.values())
    return [importlib.import_module(name) for name in names]


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    code: int = args.run(args)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
