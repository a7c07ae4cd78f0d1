"""``taiwa validate``: run the whole load pipeline and report every problem."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from cli._common import add_project_option, check_project_dir
from engine.loading.project import LoadResult, load_project, project_files
from engine.loading.schema_check import SCHEMA_KINDS


def add_parser(sub: Any) -> None:
    parser = sub.add_parser(
        "validate",
        help="check the assistant's YAML files and report every problem",
        description="Check every file of the project (schemas, references, flows, training data). "
        "Exit 0 when there are no errors, 1 when there are, 2 on a usage error.",
        epilog="example: taiwa validate --project my-bot --json",
    )
    add_project_option(parser)
    parser.add_argument("--json", action="store_true", help="print a JSON report on stdout")
    parser.add_argument(
        "--no-actions", action="store_true", help="do not import actions/ to check that declared actions exist"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    bad = check_project_dir(args.project)
    if bad is not None:
        return bad
    result = load_project(args.project, import_actions=not args.no_actions)
    counts = {kind: len(project_files(args.project, kind)) for kind in SCHEMA_KINDS}
    if args.json:
        sys.stdout.write(json.dumps(report(result, counts), indent=2) + "\n")
    else:
        sys.stdout.write(render(result, counts))
    return 1 if result.errors else 0


def report(result: LoadResult, counts: dict[str, int]) -> dict[str, Any]:
    summary: dict[str, Any] = {"files": counts}
    if result.project is not None:
        p = result.project
        summary.update(
            intents=len(p.domain.intents),
            entities=len(p.domain.entities),
            slots=len(p.domain.slots),
            responses=len(p.domain.responses),
            actions=len(p.domain.actions),
            flows=len(p.flows),
            rules=len(p.policies.rules),
            examples=len(p.nlu.examples),
            language=p.nlu.language,
            revisions=dict(p.revisions),
        )
    return {
        "valid": not result.errors,
        "errors": [d.to_dict() for d in result.errors],
        "warnings": [d.to_dict() for d in result.warnings],
        "summary": summary,
    }


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def render(result: LoadResult, counts: dict[str, int]) -> str:
    lines = [d.format() for d in result.diagnostics]
    files = sum(counts.values())
    n_err, n_warn = len(result.errors), len(result.warnings)
    warn_text = f", {n_warn} warning(s)" if n_warn else ""
    if result.project is None:
        lines.append("")
        lines.append(f"✗ {n_err} error(s){warn_text} in {files} file(s). Fix them and run `taiwa validate` again.")
    else:
        p = result.project
        if lines:
            lines.append("")
        counts_text = ", ".join(
            _count(n, word)
            for n, word in (
                (len(p.domain.intents), "intent"),
                (len(p.domain.slots), "slot"),
                (len(p.domain.responses), "response"),
                (len(p.flows), "flow"),
                (len(p.policies.rules), "rule"),
                (len(p.nlu.examples), "example"),
            )
        )
        lines.append(f"✓ valid: {counts_text} ({p.nlu.language}) in {files} file(s){warn_text}.")
    return "\n".join(lines) + "\n"
