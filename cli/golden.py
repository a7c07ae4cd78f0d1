"""``taiwa golden generate``: expand golden-case templates x values into many golden cases.

The templates format is in :mod:`engine.evaluation.templates`; an example for the reference
assistant is ``benchmarks/golden_templates.yml``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from cli._common import usage_error
from engine.evaluation.generate import GenerateError, generate_cases, write_golden
from engine.evaluation.templates import TemplateSetError, load_templates

EXAMPLES = """examples:
  taiwa golden generate benchmarks/golden_templates.yml --out /tmp/golden --count 20000 --seed 1
  taiwa golden generate my_templates.yml --out tests/golden/generated      every combination
  taiwa eval --golden /tmp/golden --workers 2                               then run them

exit codes: 0 written, 1 the templates file has errors, 2 usage error
"""


def add_parser(sub: Any) -> None:
    parser = sub.add_parser(
        "golden",
        help="golden-set tools: generate many golden cases from templates",
        description="Tools for golden sets (the conversations `taiwa eval` runs).",
    )
    commands = parser.add_subparsers(dest="golden_command", metavar="{generate}", parser_class=type(parser))
    gen = commands.add_parser(
        "generate",
        help="expand templates x values into golden cases",
        description="Expand golden-case templates (golden cases with {placeholders} and a `values:` table) into "
        "golden YAML files: every combination, or --count of them sampled deterministically with --seed.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    gen.add_argument("templates", type=Path, metavar="TEMPLATES", help="the templates YAML file")
    gen.add_argument(
        "--out", type=Path, required=True, metavar="DIR", help="folder to write golden-NNNN.yml files into"
    )
    gen.add_argument("--count", type=int, metavar="N", help="sample N cases (default: every combination)")
    gen.add_argument("--seed", type=int, default=0, metavar="S", help="the sample's seed (default 0)")
    gen.add_argument("--per-file", type=int, default=1000, metavar="N", help="cases per file (default 1000)")
    gen.add_argument("--force", action="store_true", help="replace files an earlier run wrote into DIR")
    gen.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    parser.set_defaults(run=run, golden_command=None)


def run(args: argparse.Namespace) -> int:
    if args.golden_command != "generate":
        return usage_error("say what to do: `taiwa golden generate TEMPLATES --out DIR`", "see `taiwa golden --help`")
    if not args.templates.is_file():
        return usage_error(
            f"the templates file {str(args.templates)!r} does not exist",
            "pass a YAML file of templates (e.g. benchmarks/golden_templates.yml)",
        )
    if args.count is not None and args.count < 1:
        return usage_error(f"--count must be 1 or more, got {args.count}")
    if args.per_file < 1:
        return usage_error(f"--per-file must be 1 or more, got {args.per_file}")
    try:
        templates = load_templates(args.templates)
    except TemplateSetError as exc:
        for diag in exc.diagnostics:
            sys.stderr.write(diag.format() + "\n")
        errors = sum(1 for d in exc.diagnostics if d.severity == "error")
        sys.stderr.write(f"\n✗ {errors} error(s) in the templates. Fix them and run `taiwa golden generate` again.\n")
        return 1
    try:
        cases = generate_cases(templates, args.count, args.seed)
        sample = f"{args.count} sampled with seed {args.seed}" if args.count is not None else "every combination"
        files = write_golden(
            cases,
            args.out,
            per_file=args.per_file,
            stubs=templates.stubs,
            note=f" from {args.templates.as_posix()} ({sample})",
            force=args.force,
        )
    except GenerateError as exc:
        message, _, fix = str(exc).partition(" Fix: ")
        return usage_error(message, fix or None)
    summary = {
        "cases": len(cases),
        "turns": sum(len(c["turns"]) for c in cases),
        "templates": len(templates.templates),
        "possible": templates.size,
        "seed": args.seed if args.count is not None else None,
        "files": [p.as_posix() for p in files],
    }
    if args.json:
        sys.stdout.write(json.dumps(summary, indent=2) + "\n")
    else:
        sys.stdout.write(
            f"✓ {summary['cases']:,} cases ({summary['turns']:,} turns) from {summary['templates']} templates "
            f"({summary['possible']:,} possible) in {len(files)} file(s) under {args.out.as_posix()}\n"
            f"  next: taiwa eval --golden {args.out.as_posix()}\n"
        )
    return 0
