"""``run_golden``: load a project's golden set, run it, and build the JSON report.

The report (``schema_version`` 1) is the baseline format that later runs are compared with,
and what the JUnit / HTML writers and the quality gates read. Its top-level keys::

    schema_version, task_success_rate, response_accuracy, intent_accuracy,
    intent_accuracy_by_group {in_scope, oos, smalltalk}, slot_precision, slot_recall, slot_f1,
    fallback_rate, handoff_rate, latency_ms {p50, p95, mean}, n_cases, n_turns, n_passed,
    failed_cases [...], cause_counts {IR, mode, slot, exec, policy, NLG}, cases [...],
    confusion {labels, matrix}, versions {engine_version, model_id, revisions, git_sha},
    run {workers, ray, seconds, cases_per_second, [startup_seconds], [note]}

(metric definitions: :mod:`engine.evaluation.golden_metrics`). Where the cases run is a
:class:`CaseExecutor`: :class:`SerialExecutor` in this process by default,
:class:`~engine.evaluation.parallel.RayExecutor` on Ray; a parallel one only has to return
the same per-case results in the same order.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from engine import __version__
from engine.diagnostics import EngineError
from engine.evaluation.golden import case_from_dict
from engine.evaluation.golden_load import GoldenSet, load_golden_or_raise
from engine.evaluation.golden_metrics import compute_metrics
from engine.evaluation.golden_run import CHUNK_SIZE, GoldenContext, evaluate_in_chunks, golden_context

SCHEMA_VERSION = 1

OnResult = Callable[[dict[str, Any]], None]
"""Called with each case's result as soon as it is known (e.g. to advance a progress bar)."""


class NoCasesSelectedError(EngineError, ValueError):
    """``--filter`` kept no case of the golden set."""


class CaseExecutor(Protocol):
    """Runs golden cases somewhere and returns their results in the cases' order.

    After :meth:`run`, the attributes say how the cases ran (the report's ``run``).
    """

    workers: int
    """Processes that ran cases."""
    uses_ray: bool
    startup_seconds: float | None
    """Time spent starting workers (included in the run's seconds), None when none were started."""
    note: str | None
    """A line for the user about how the cases ran (e.g. why a small set ran serially)."""

    def run(
        self, context: GoldenContext, cases: Sequence[dict[str, Any]], on_result: OnResult | None
    ) -> list[dict[str, Any]]: ...


class SerialExecutor:
    """Every case in this process (``--workers 1``), in lockstep chunks of ``chunk_size``."""

    workers = 1
    uses_ray = False
    startup_seconds: float | None = None
    note: str | None = None

    def __init__(self, chunk_size: int = CHUNK_SIZE) -> None:
        self.chunk_size = chunk_size

    def run(
        self, context: GoldenContext, cases: Sequence[dict[str, Any]], on_result: OnResult | None
    ) -> list[dict[str, Any]]:
        return asyncio.run(evaluate_in_chunks(context, cases, on_result, chunk_size=self.chunk_size))


def select_cases(cases: Sequence[dict[str, Any]], filters: Sequence[str]) -> list[dict[str, Any]]:
    """The cases that match any of ``filters`` (a case id, with ``*`` wildcards, or a tag value)."""
    if not filters:
        return list(cases)
    kept = [c for c in cases if any(case_from_dict(c).matches(f) for f in filters)]
    if not kept:
        raise NoCasesSelectedError(
            f"no golden case matches --filter {', '.join(filters)}. "
            "Fix: give a case_id (wildcards allowed: 'faq-*'), a use case, P0/P1, a channel or a label."
        )
    return kept


def git_sha(directory: Path) -> str | None:
    """``git rev-parse HEAD`` in ``directory``, or None outside a git checkout (or without git)."""
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=directory, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    sha = done.stdout.strip()
    return sha if done.returncode == 0 and sha else None


def versions(context: GoldenContext, golden: GoldenSet) -> dict[str, Any]:
    """What the run ran against: engine, model, content hashes of the assistant and the golden set."""
    revisions = dict(context.project.revisions)
    revisions["golden"] = golden.revision
    return {
        "engine_version": __version__,
        "model_id": context.nlu.model_id,
        "revisions": revisions,
        "git_sha": git_sha(context.project.root),
    }


def build_report(
    results: Sequence[Mapping[str, Any]],
    *,
    versions: Mapping[str, Any],
    seconds: float,
    workers: int = 1,
    ray: bool = False,
    startup_seconds: float | None = None,
    note: str | None = None,
) -> dict[str, Any]:
    """The JSON report of a run, from its case results."""
    metrics = compute_metrics(results)
    return {
        "schema_version": SCHEMA_VERSION,
        "task_success_rate": metrics["task_success_rate"],
        "response_accuracy": metrics["response_accuracy"],
        "intent_accuracy": metrics["intent_accuracy"],
        "intent_accuracy_by_group": metrics["intent_accuracy_by_group"],
        "slot_precision": metrics["slot_precision"],
        "slot_recall": metrics["slot_recall"],
        "slot_f1": metrics["slot_f1"],
        "fallback_rate": metrics["fallback_rate"],
        "handoff_rate": metrics["handoff_rate"],
        "latency_ms": metrics["latency_ms"],
        "n_cases": metrics["n_cases"],
        "n_turns": metrics["n_turns"],
        "n_passed": metrics["n_passed"],
        "failed_cases": metrics["failed_cases"],
        "cause_counts": metrics["cause_counts"],
        "cases": [dict(r) for r in results],
        "confusion": metrics["confusion"],
        "versions": dict(versions),
        "run": {
            "workers": workers,
            "ray": ray,
            "seconds": round(seconds, 3),
            "cases_per_second": round(len(results) / seconds, 1) if seconds > 0 else None,
            **({"startup_seconds": round(startup_seconds, 3)} if startup_seconds is not None else {}),
            **({"note": note} if note else {}),
        },
    }


def run_golden(
    project_dir: Path | str,
    *,
    model: Path | str | None = None,
    golden: Path | str | None = None,
    filters: Sequence[str] = (),
    executor: CaseExecutor | None = None,
    on_start: Callable[[int], None] | None = None,
    on_result: OnResult | None = None,
) -> dict[str, Any]:
    """Run the project's golden set and return the report.

    Raises ProjectError (the assistant has errors), GoldenSetError (the golden set has
    errors), ModelNotFoundError (not trained) and NoCasesSelectedError; ``on_start`` gets
    the number of cases about to run.
    """
    context = golden_context(project_dir, model)
    golden_set = load_golden_or_raise(context.project, Path(golden) if golden is not None else None)
    cases = select_cases(golden_set.cases, filters)
    chosen = executor or SerialExecutor()
    if on_start is not None:
        on_start(len(cases))
    started = time.perf_counter()
    results = chosen.run(context, cases, on_result)
    seconds = time.perf_counter() - started
    return build_report(
        results,
        versions=versions(context, golden_set),
        seconds=seconds,
        workers=chosen.workers,
        ray=chosen.uses_ray,
        startup_seconds=chosen.startup_seconds,
        note=chosen.note,
    )


def write_report(report: Mapping[str, Any], path: Path) -> None:
    """Write the report as JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def comparable(report: Mapping[str, Any]) -> dict[str, Any]:
    """The report without what changes from run to run of the same cases: latencies and ``run``."""
    out = {k: v for k, v in report.items() if k not in ("run", "latency_ms")}
    out["cases"] = [
        {
            **{k: v for k, v in case.items() if k not in ("latencies_ms", "turns")},
            "turns": [{k: v for k, v in t.items() if k != "latency_ms"} for t in case["turns"]],
        }
        for case in report["cases"]
    ]
    return out
