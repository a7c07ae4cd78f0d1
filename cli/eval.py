"""``taiwa eval``: run the project's golden set and print the metrics and the failed cases.

``taiwa eval nlu ...`` is a sub-command of its own (:mod:`cli.eval_nlu`), imported only when
it is asked for, so that ``taiwa eval`` and every other command start without it.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cli._common import add_project_option, check_project_dir, usage_error
from cli.eval_outputs import OUTPUTS_EPILOG, add_output_arguments, apply_outputs, load_baseline
from engine.diagnostics import Diagnostic, ProjectError
from engine.evaluation.golden_load import GoldenSetError
from engine.evaluation.golden_report import (
    CaseExecutor,
    NoCasesSelectedError,
    SerialExecutor,
    run_golden,
    write_report,
)
from engine.evaluation.golden_run import golden_context
from engine.evaluation.parallel import MIN_CASES, MIN_CASES_ENV, RayExecutor, RayRunError, min_cases_from_env
from engine.nlu.artifact import ModelNotFoundError

EXAMPLES = """examples:
  taiwa eval                                   run tests/golden/ of the current project
  taiwa eval --project my-bot --report golden.json
  taiwa eval --filter P0 --filter 'faq-*'      only the P0 cases and the cases whose id starts with faq-
  taiwa eval --golden /tmp/golden --workers 2  a large (generated) set on two Ray workers
  taiwa eval nlu --project my-bot --folds 5    score the NLU alone (see `taiwa eval nlu --help`)

exit codes: 0 the golden set ran (and passed its gates with --gate), 1 the project or the golden set
has errors, or a gate failed, 2 usage error
"""

RAY_ADDRESS_ENV = "RAY_ADDRESS"
"""Ray's own variable for the cluster to use (``--address`` wins)."""

NLU_MODULE = "cli.eval_nlu"
"""The ``taiwa eval nlu`` sub-command (``add_parser(sub)`` / ``run(args)``)."""


def add_parser(sub: Any) -> None:
    parser = sub.add_parser(
        "eval",
        help="run the golden set: task success, response / intent accuracy, slot F1, failure causes",
        description="Run every golden conversation of the project (tests/golden/*.yml) through the assistant "
        "with its trained model and every tool stubbed, then report the metrics and, for each failed case, "
        "the first failing turn and its cause (IR, slot, mode, policy, exec, NLG).",
        epilog=EXAMPLES + "\n" + OUTPUTS_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_project_option(parser)
    parser.add_argument("--model", type=Path, metavar="DIR", help="model folder (default: PROJECT/models, the latest)")
    parser.add_argument(
        "--golden", type=Path, metavar="DIR_OR_FILE", help="golden set folder or file (default: PROJECT/tests/golden)"
    )
    parser.add_argument("--report", type=Path, metavar="FILE", help="write the JSON report (the baseline format)")
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="processes running cases (default 1: serially, here); N > 1: N Ray workers, on a local cluster "
        f"started for the run unless --address is given (there, sets under {MIN_CASES:,} cases run serially: "
        f"{MIN_CASES_ENV} changes that)",
    )
    parser.add_argument(
        "--address",
        metavar="ADDRESS",
        help="run the workers on an existing Ray cluster: ray://HOST:PORT (Ray Client) or HOST:PORT "
        "(default: $RAY_ADDRESS when set, else a local cluster)",
    )
    parser.add_argument(
        "--filter",
        action="append",
        default=[],
        metavar="TAG_OR_ID",
        help="only cases with this case_id ('*' wildcards) or tag value (use case, P0/P1, channel, label); repeatable",
    )
    add_output_arguments(parser)
    parser.set_defaults(run=run, eval_command=None)
    commands = parser.add_subparsers(dest="eval_command", metavar="{nlu}", parser_class=_lazy_class(type(parser)))
    commands.add_parser(
        "nlu", help="score the NLU alone on held-out data (see `taiwa eval nlu --help`)", add_help=False
    )


def _lazy_class(base: type[argparse.ArgumentParser]) -> type[argparse.ArgumentParser]:
    """A parser class that builds the real ``taiwa eval nlu`` parser only when that command is given."""

    class LazyNluParser(base):  # type: ignore[valid-type,misc]
        def parse_known_args(
            self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
        ) -> tuple[argparse.Namespace, list[str]]:
            holder = base(prog=self.prog.rsplit(" ", 1)[0], add_help=False)
            module = importlib.import_module(NLU_MODULE)
            commands = holder.add_subparsers(parser_class=base)
            module.add_parser(commands)
            parsed, rest = commands.choices["nlu"].parse_known_args(args, namespace)
            parsed.eval_command = "nlu"
            if not hasattr(parsed, "run"):
                parsed.run = module.run
            return parsed, rest

    return LazyNluParser


def run(args: argparse.Namespace) -> int:
    if getattr(args, "eval_command", None) == "nlu":
        module = importlib.import_module(NLU_MODULE)
        code: int = module.run(args)
        return code
    bad = check_project_dir(args.project)
    if bad is not None:
        return bad
    baseline = load_baseline(args)  # a mistyped --baseline fails now, not after the run
    if isinstance(baseline, int):
        return baseline
    executor = executor_for(args)
    if isinstance(executor, int):
        return executor
    console = Console(highlight=False, soft_wrap=True)
    try:
        with _quiet_engine_logs(), _progress() as (on_start, on_result):
            report = run_golden(
                args.project,
                model=args.model,
                golden=args.golden,
                filters=args.filter,
                executor=executor,
                on_start=on_start,
                on_result=on_result,
            )
    except GoldenSetError as exc:
        return _print_diagnostics(exc.diagnostics, "the golden set", "taiwa eval")
    except ProjectError as exc:
        return _print_diagnostics(exc.diagnostics, "the project", "taiwa validate")
    except ModelNotFoundError as exc:
        return usage_error(str(exc).split(" Fix: ")[0], "run `taiwa train` first (or pass --model DIR)")
    except NoCasesSelectedError as exc:
        message, _, fix = str(exc).partition(" Fix: ")
        return usage_error(message, fix or None)
    except RayRunError as exc:
        message, _, fix = str(exc).partition(" Fix: ")
        sys.stderr.write(f"taiwa: error: {message}\n" + (f"  Fix: {fix}\n" if fix else ""))
        return 1
    if args.report is not None:
        write_report(report, args.report)
    print_summary(console, report, args.report)
    # The run loaded the project once; golden_context hands back that same one (for its gates).
    project = golden_context(args.project, args.model).project
    return apply_outputs(args, report, console, project, loaded_baseline=baseline)


def executor_for(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> CaseExecutor | int:
    """Where the cases run, from ``--workers`` and ``--address`` / ``RAY_ADDRESS``; an exit code
    for a usage error.

    ``--workers 1`` runs serially in this process; ``--workers N`` > 1 on N Ray workers
    (:class:`engine.evaluation.parallel.RayExecutor`), which return the same results.
    """
    environ = env if env is not None else os.environ
    if args.workers < 1:
        return usage_error(f"--workers must be 1 or more, got {args.workers}", "run serially with --workers 1")
    address = args.address if args.address is not None else (environ.get(RAY_ADDRESS_ENV) or None)
    if address is not None and not is_ray_address(address):
        where = "--address" if args.address is not None else RAY_ADDRESS_ENV
        return usage_error(
            f"{where} {address!r} is not a Ray cluster address",
            "give ray://HOST:PORT (Ray Client) or HOST:PORT of the cluster's head node, or leave it out for a local cluster",
        )
    if args.workers == 1:
        if args.address is not None:
            return usage_error(
                "--address runs the cases on a Ray cluster, but --workers is 1 (serially, here)",
                "give --workers N (2 or more workers on the cluster), or leave out --address",
            )
        return SerialExecutor()
    try:
        min_cases = min_cases_from_env(environ)
    except ValueError as exc:
        return usage_error(str(exc), f"set {MIN_CASES_ENV} to a whole number, or unset it")
    return RayExecutor(args.workers, address=address, min_cases=min_cases)


def is_ray_address(address: str) -> bool:
    """``ray://HOST:PORT``, ``HOST:PORT`` or ``auto`` (a Ray node on this machine)."""
    return address == "auto" or _RAY_ADDRESS.fullmatch(address) is not None


_RAY_ADDRESS = re.compile(r"(ray://)?(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9][A-Za-z0-9.\-]*):(\d{1,5})")


@contextmanager
def _quiet_engine_logs() -> Iterator[None]:
    """Stubbed tool failures are the point of many cases: their warnings are noise here."""
    logger = logging.getLogger("taiwa")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


@contextmanager
def _progress() -> Iterator[tuple[Any, Any]]:
    """A progress bar over the cases, on stderr (hidden when it is not a terminal)."""
    bar = Progress(
        TextColumn("golden cases"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[failed]} failed"),
        console=Console(stderr=True),
        transient=True,
    )
    task = bar.add_task("cases", total=None, failed=0)
    failed = [0]

    def on_start(total: int) -> None:
        bar.update(task, total=total)

    def on_result(result: dict[str, Any]) -> None:
        failed[0] += 0 if result["passed"] else 1
        bar.update(task, advance=1, failed=failed[0])

    with bar:
        yield on_start, on_result


def _print_diagnostics(diagnostics: Sequence[Diagnostic], what: str, command: str) -> int:
    errors = [d for d in diagnostics if d.severity == "error"]
    for d in diagnostics:
        sys.stderr.write(d.format() + "\n")
    sys.stderr.write(f"\n✗ {len(errors)} error(s) in {what}. Fix them and run `{command}` again.\n")
    return 1


# -- the summary ---------------------------------------------------------------------------


def _pct(value: object) -> str:
    return f"{value:.1%}" if isinstance(value, int | float) else "—"


def _ms(value: object) -> str:
    return f"{value:.2f} ms" if isinstance(value, int | float) else "—"


def metrics_table(report: dict[str, Any]) -> Table:
    groups = report["intent_accuracy_by_group"]
    lat = report["latency_ms"]
    run = report["run"]
    table = Table(title="golden set", show_header=True, header_style="bold")
    table.add_column("metric")
    table.add_column("value", justify="right")
    rows = (
        ("cases passed", f"{report['n_passed']}/{report['n_cases']} ({report['n_turns']} turns)"),
        ("task success rate", _pct(report["task_success_rate"])),
        ("response accuracy", _pct(report["response_accuracy"])),
        ("intent accuracy", _pct(report["intent_accuracy"])),
        ("  in scope / OOS / small talk", " / ".join(_pct(groups[g]) for g in ("in_scope", "oos", "smalltalk"))),
        (
            "slot precision / recall / F1",
            " / ".join(_pct(report[k]) for k in ("slot_precision", "slot_recall", "slot_f1")),
        ),
        ("fallback rate (turns)", _pct(report["fallback_rate"])),
        ("handoff rate (cases)", _pct(report["handoff_rate"])),
        ("turn latency p50 / p95", f"{_ms(lat['p50'])} / {_ms(lat['p95'])}"),
        ("run", _run_line(run)),
    )
    for name, value in rows:
        table.add_row(name, value)
    return table


def _run_line(run: dict[str, Any]) -> str:
    where = f"{run['workers']} Ray worker(s)" if run.get("ray") else f"{run['workers']} worker(s)"
    return f"{run['seconds']:.2f} s, {run['cases_per_second'] or 0:.0f} cases/s, {where}"


def failures_table(report: dict[str, Any]) -> Table:
    table = Table(title="failed cases", show_header=True, header_style="bold", show_lines=True)
    for column in ("case", "prio", "cause", "turn", "expected", "got"):
        table.add_column(column, overflow="fold")
    for case in report["failed_cases"]:
        style = "bold red" if case["priority"] == "P0" else "red"
        turn = "case" if case["turn"] is None else str(case["turn"])
        table.add_row(
            escape(case["case_id"]),
            case["priority"],
            case["cause"],
            turn,
            escape(_short(case["expected"])),
            escape(_short(case["got"])),
            style=style,
        )
    return table


def _short(value: object, limit: int = 80) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def print_summary(console: Console, report: dict[str, Any], written: Path | None) -> None:
    console.print(metrics_table(report))
    note = report["run"].get("note")
    if note:
        console.print(f"note: {escape(note)}")
    causes = ", ".join(f"{k} {v}" for k, v in report["cause_counts"].items() if v)
    if report["failed_cases"]:
        console.print(failures_table(report))
        console.print(f"[red]✗ {len(report['failed_cases'])} case(s) failed[/] ({causes})")
    else:
        console.print(f"[green]✓ all {report['n_cases']} cases passed[/]")
    if written is not None:
        console.print(f"report: {escape(str(written))}")
