"""Check the release gates of ``policies/gates.yml`` against a report (and a baseline).

A gate that compares with the baseline (``max_drop``, ``max_rise``, ``no_new_failures``)
*fails* when no baseline is given: a release must not pass because a comparison was left
out. ``when_baseline: optional`` on the gate turns that into a skip, for pipelines that
have no baseline yet (the first release).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from engine.evaluation.baseline import CaseOutcome, Report, case_outcomes, format_number, metric_value
from engine.policies.config import FailureGate, Gate, MetricGate

BASELINE_NEEDED = "needs a baseline: run with --baseline REPORT.json (or give the gate `when_baseline: optional`)"
TOLERANCE = 1e-9
"""Float slack at the boundary: 0.95 - 0.94 is 0.01000000000000001, which is not a drop above 0.01."""


@dataclass(frozen=True, slots=True)
class GateResult:
    """One gate checked against one run."""

    gate: Gate
    measured: float | None
    """The metric's value (or its change vs the baseline); for a failure gate, the failing cases counted."""
    threshold: float | None
    """The bound the value was held to (0 for a failure gate)."""
    passed: bool
    message: str
    """e.g. ``task_success_rate 0.93 < 0.95 (min)``."""
    skipped: bool = False
    """Not checked: it needs a baseline, none was given and the gate says ``when_baseline: optional``."""
    cases: tuple[CaseOutcome, ...] = ()
    """For a failure gate: the cases that broke it."""


def check_gates(gates: Sequence[Gate], report: Report, baseline: Report | None) -> list[GateResult]:
    """Check every gate, in order; each gives one result (passed, failed or skipped)."""
    return [_check(gate, report, baseline) for gate in gates]


def violated(results: Sequence[GateResult]) -> list[GateResult]:
    """The gates that failed (skipped ones do not count)."""
    return [r for r in results if not r.passed]


def _check(gate: Gate, report: Report, baseline: Report | None) -> GateResult:
    if gate.needs_baseline and baseline is None:
        if gate.baseline_optional:
            return GateResult(gate, None, _threshold(gate), True, "skipped: no baseline given", skipped=True)
        return GateResult(gate, None, _threshold(gate), False, f"{gate.label} {BASELINE_NEEDED}")
    if isinstance(gate, MetricGate):
        return _check_metric(gate, report, baseline)
    return _check_failures(gate, report, baseline)


def _threshold(gate: Gate) -> float:
    return gate.threshold if isinstance(gate, MetricGate) else 0.0


def _check_metric(gate: MetricGate, report: Report, baseline: Report | None) -> GateResult:
    name, bound, limit = gate.metric, gate.bound, gate.threshold
    value = metric_value(report, name)
    if value is None:
        return GateResult(gate, None, limit, False, f"{name} is not in the report (not measured), so {bound} fails")
    if bound in ("min", "max"):
        ok = value >= limit - TOLERANCE if bound == "min" else value <= limit + TOLERANCE
        sign = (">=" if ok else "<") if bound == "min" else ("<=" if ok else ">")
        return GateResult(gate, value, limit, ok, f"{name} {_n(value)} {sign} {_n(limit)} ({bound})")
    assert baseline is not None  # _check returned early otherwise
    before = metric_value(baseline, name)
    if before is None:
        return GateResult(gate, None, limit, False, f"{name} is not in the baseline report, so {bound} fails")
    # How far the metric moved in the direction the bound limits (negative: the other way).
    change = before - value if bound == "max_drop" else value - before
    ok = change <= limit + TOLERANCE
    moved = "unchanged" if value == before else f"{'dropped' if value < before else 'rose'} {_n(abs(value - before))}"
    verdict = f"within {_n(limit)}" if ok else f"> {_n(limit)}"
    return GateResult(gate, change, limit, ok, f"{name} {moved} ({_n(before)} → {_n(value)}), {verdict} ({bound})")


def _check_failures(gate: FailureGate, report: Report, baseline: Report | None) -> GateResult:
    now = case_outcomes(report)
    failing = [c for c in now.values() if not c.passed and _in_scope(gate, c)]
    what = f"{'/'.join(gate.priorities)} " if gate.priorities else ""
    if gate.kind == "no_new_failures":
        assert baseline is not None  # _check returned early otherwise
        before = case_outcomes(baseline)
        # A case the baseline did not have counts: a new failing P0 case must not slip through.
        failing = [c for c in failing if c.case_id not in before or before[c.case_id].passed]
        adjective = "newly failing"
    else:
        adjective = "failing"
    failing.sort(key=lambda c: c.case_id)
    if not failing:
        return GateResult(gate, 0.0, 0.0, True, f"no {what}case {adjective}")
    known = set(case_outcomes(baseline)) if baseline is not None else None
    listing = ", ".join(_case_text(c, known) for c in failing[:10])
    more = f" and {len(failing) - 10} more" if len(failing) > 10 else ""
    message = f"{len(failing)} {what}case(s) {adjective}: {listing}{more}"
    return GateResult(gate, float(len(failing)), 0.0, False, message, cases=tuple(failing))


def _in_scope(gate: FailureGate, case: CaseOutcome) -> bool:
    return not gate.priorities or case.priority in gate.priorities


def _case_text(case: CaseOutcome, baseline_ids: set[str] | None) -> str:
    where = f"{case.cause or '?'} at turn {case.turn}" if case.turn is not None else (case.cause or "?")
    new = " (new case)" if baseline_ids is not None and case.case_id not in baseline_ids else ""
    return f"{case.case_id} [{where}]{new}"


def _n(value: float) -> str:
    return format_number(value)


__all__ = ["BASELINE_NEEDED", "GateResult", "check_gates", "violated"]
