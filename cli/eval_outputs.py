"""What ``taiwa eval`` does with a finished report: compare, gate, write JUnit and HTML.

``cli/eval.py`` adds the options with :func:`add_output_arguments` and, once the golden
set has run, hands the report to :func:`apply_outputs`, whose return value is the exit
code: 0, 1 when a gate is violated, 2 when an option is unusable (a ``--baseline`` that is
missing, not JSON or of another schema version; ``--gate`` without gates; a report path
that cannot be written).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from cli._common import usage_error
from engine.evaluation.baseline import Comparison, Report, ReportError, compare, load_report, render_comparison
from engine.evaluation.gates import GateResult, check_gates, violated
from engine.evaluation.html_report import write_html
from engine.evaluation.junit import write_junit
from engine.policies.config import Gate

if TYPE_CHECKING:
    from engine.loading.project import Project

OUTPUTS_EPILOG = """release check:
  taiwa eval --report new.json --baseline last-release.json --gate --junit junit.xml --html report.html
"""


def add_output_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--baseline``, ``--gate``, ``--junit`` and ``--html`` to the ``eval`` parser."""
    group = parser.add_argument_group("baseline, gates and reports")
    group.add_argument(
        "--baseline",
        type=Path,
        metavar="REPORT.json",
        help="compare with an earlier run's JSON report: metric deltas, newly failing/passing cases",
    )
    group.add_argument(
        "--gate",
        action="store_true",
        help="check the quality gates of policies/gates.yml; exit 1 when one is violated",
    )
    group.add_argument("--junit", type=Path, metavar="FILE", help="write a JUnit XML report (one testcase per case)")
    group.add_argument(
        "--html", type=Path, metavar="FILE", help="write a self-contained HTML report (images need matplotlib)"
    )


def check_output_arguments(args: argparse.Namespace) -> int | None:
    """Exit code 2 (with the message printed) when ``--baseline`` is unusable, else None."""
    baseline = load_baseline(args)
    return baseline if isinstance(baseline, int) else None


def load_baseline(args: argparse.Namespace) -> Report | int | None:
    """The ``--baseline`` report, None without the option, or exit code 2 (message printed).

    Call it before running the golden set, so a typo in the path fails at once, and hand the
    report to :func:`apply_outputs` (``loaded_baseline``) so it is not read twice.
    """
    path: Path | None = getattr(args, "baseline", None)
    if path is None:
        return None
    try:
        return load_report(path)
    except ReportError as exc:
        return usage_error(f"--baseline {exc.path}: {exc.problem}", exc.fix)


def apply_outputs(
    args: argparse.Namespace,
    report: Report,
    console: Console,
    project: Project | Path,
    *,
    loaded_baseline: Report | None = None,
) -> int:
    """Compare with ``--baseline``, write ``--junit``/``--html``, check gates (``--gate``); the exit code.

    ``project`` is the loaded project, or its folder (then loaded here, for its gates);
    ``loaded_baseline``: the ``--baseline`` report when :func:`load_baseline` already read it.
    """
    gate: bool = bool(getattr(args, "gate", False))
    baseline = loaded_baseline if loaded_baseline is not None else load_baseline(args)
    if isinstance(baseline, int):
        return baseline
    gates = _gates_of(project) if gate else ()
    if isinstance(gates, int):
        return gates
    if gate and not gates:
        return usage_error(
            "--gate: the project declares no quality gates",
            "add policies/gates.yml with a `gates:` list (see docs/format.md), or leave out --gate",
        )

    comparison: Comparison | None = None
    if baseline is not None:
        comparison = compare(report, baseline)
        render_comparison(console, comparison)
    results = check_gates(gates, report, baseline) if gate else None

    writers: list[tuple[str, Path | None, Callable[[Path], None]]] = [
        ("--junit", getattr(args, "junit", None), lambda path: write_junit(report, path)),
        ("--html", getattr(args, "html", None), lambda path: write_html(report, path, comparison, results)),
    ]
    for option, path, write in writers:
        if path is None:
            continue
        try:
            write(path)
        except OSError as exc:
            return usage_error(f"{option} {path}: cannot write: {exc.strerror or exc}", "pass a writable file path")
        console.print(f"{option.lstrip('-')} report written to {escape(str(path))}")

    if results is None:
        return 0
    return render_gate_results(console, results)


def _gates_of(project: Project | Path) -> tuple[Gate, ...] | int:
    if not isinstance(project, Path):
        return project.policies.gates
    from engine.loading.project import load_project

    loaded = load_project(project, import_actions=False).project
    if loaded is None:
        return usage_error(f"the project in {str(project)!r} has errors", "run `taiwa validate` and fix them")
    return loaded.policies.gates


def render_gate_results(console: Console, results: list[GateResult]) -> int:
    """Print the gates as a table and a verdict; 1 when one is violated, else 0."""
    table = Table(title="Quality gates", title_justify="left")
    for name in ("result", "gate", "measured", "declared at"):
        table.add_column(name)
    for r in results:
        status = "[yellow]skipped[/]" if r.skipped else ("[green]✓ pass[/]" if r.passed else "[bold red]✗ FAIL[/]")
        table.add_row(
            status, escape(r.gate.label), escape(r.message), str(r.gate.loc), style=None if r.passed else "red"
        )
    console.print(table)
    failed = violated(results)
    skipped = [r for r in results if r.skipped]
    if skipped:
        console.print(
            f"[yellow]warning:[/] {len(skipped)} gate(s) skipped: no --baseline given (when_baseline: optional)"
        )
    if failed:
        names = ", ".join(escape(r.gate.label) for r in failed)
        console.print(f"[bold red]✗ {len(failed)} of {len(results)} gate(s) violated:[/] {names}")
        return 1
    console.print(f"[green]✓ all {len(results) - len(skipped)} checked gate(s) pass[/]")
    return 0
