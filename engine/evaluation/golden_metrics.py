"""The golden set's metrics, computed from the plain case results of :mod:`engine.evaluation.golden_run`.

Definitions (fractions in 0..1; ``None`` when nothing was there to measure):

- **task_success_rate**: cases whose case-level ``expect`` holds; a case without ``expect``
  succeeds when all its turns pass. (A case can succeed at its task and still fail a turn:
  ``n_passed`` counts cases with every turn *and* the case-level ``expect`` right.)
- **response_accuracy**: turns with a ``bot`` expectation whose output matches it.
- **intent_accuracy**: turns with an ``intent`` expectation whose intent is right;
  ``intent_accuracy_by_group`` splits them by the expected intent: ``oos`` (out_of_scope,
  oos, nlu_fallback), ``smalltalk`` (intents only rules answer: greetings, thanks...) and
  ``in_scope`` (the rest).
- **slot_precision / recall / F1**, over the turns with a ``slots`` expectation: a true
  positive is an expected slot holding the expected value after the turn; a false negative
  an expected slot missing or wrong; a false positive a slot the user's message can fill
  that got a new value during the turn that was not expected, or not the expected one
  (``controlled`` slots, which only tools and flows set, count only when they are expected).
- **fallback_rate**: turns that fell back (``fallback_triggered``), over all turns.
- **handoff_rate**: cases handed to a person at some turn, over all cases (per turn: the
  ``handoff`` flag of each turn record).
- **latency_ms**: p50 / p95 (linear interpolation) and mean of every turn's latency.
- **cause_counts**: failed cases per cause; **confusion**: expected vs predicted intents of
  the turns with an ``intent`` expectation.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from engine.evaluation.golden_checks import CAUSES, same_value

Result = Mapping[str, Any]
"""One case's result, as :func:`engine.evaluation.golden_run.evaluate_chunk` returns it."""

GROUPS = ("in_scope", "oos", "smalltalk")
NO_INTENT = "(none)"
DIGITS = 6


def fraction(hits: int, total: int) -> float | None:
    """``hits / total``, or None when there was nothing to count."""
    return round(hits / total, DIGITS) if total else None


def _turns(results: Sequence[Result]) -> Iterator[Mapping[str, Any]]:
    for case in results:
        yield from case["turns"]


def _checks(results: Sequence[Result], name: str) -> list[Mapping[str, Any]]:
    return [c for t in _turns(results) for c in t["checks"] if c["check"] == name]


def slot_counts(turn: Mapping[str, Any]) -> tuple[int, int, int]:
    """(true positives, false positives, false negatives) of one turn's ``slots`` expectation."""
    expected: Mapping[str, Any] | None = turn["expected"].get("slots")
    if expected is None:
        return 0, 0, 0
    after: Mapping[str, Any] = turn["slots"]
    filled: Mapping[str, Any] = turn["filled"]
    tp = sum(1 for name, value in expected.items() if same_value(value, after.get(name)))
    fp = sum(1 for name, value in filled.items() if name not in expected or not same_value(expected[name], value))
    return tp, fp, len(expected) - tp


def slot_scores(results: Sequence[Result]) -> tuple[float | None, float | None, float | None]:
    """Micro-averaged slot precision, recall and F1 over every turn with a ``slots`` expectation."""
    tp = fp = fn = 0
    seen = False
    for turn in _turns(results):
        if "slots" in turn["expected"]:
            seen = True
            a, b, c = slot_counts(turn)
            tp, fp, fn = tp + a, fp + b, fn + c
    if not seen:
        return None, None, None
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return round(precision, DIGITS), round(recall, DIGITS), round(f1, DIGITS)


def intent_accuracy(results: Sequence[Result]) -> tuple[float | None, dict[str, float | None]]:
    checks = _checks(results, "intent")
    overall = fraction(sum(1 for c in checks if c["passed"]), len(checks))
    by_group: dict[str, float | None] = {}
    for group in GROUPS:
        mine = [c for c in checks if c.get("group", "in_scope") == group]
        by_group[group] = fraction(sum(1 for c in mine if c["passed"]), len(mine))
    return overall, by_group


def latency(results: Sequence[Result]) -> dict[str, float | None]:
    values = [float(t["latency_ms"]) for t in _turns(results)]
    if not values:
        return {"p50": None, "p95": None, "mean": None}
    p50, p95 = np.percentile(np.asarray(values), [50, 95])
    return {"p50": round(float(p50), 3), "p95": round(float(p95), 3), "mean": round(float(np.mean(values)), 3)}


def confusion(results: Sequence[Result]) -> dict[str, Any]:
    """Labels and matrix (rows: expected intent, columns: predicted) of the intent checks."""
    from sklearn.metrics import confusion_matrix

    checks = _checks(results, "intent")
    truth = [str(c["expected"]) for c in checks]
    predicted = [str(c["got"]) if c["got"] is not None else NO_INTENT for c in checks]
    labels = sorted(set(truth) | set(predicted))
    if not labels:
        return {"labels": [], "matrix": []}
    with warnings.catch_warnings():
        # With one label sklearn warns that `labels` should be passed: it is.
        warnings.filterwarnings("ignore", message="A single label was found", category=UserWarning)
        matrix = confusion_matrix(truth, predicted, labels=labels)
    return {"labels": labels, "matrix": [[int(x) for x in row] for row in matrix]}


def failed_case(case: Result) -> dict[str, Any]:
    return {
        "case_id": case["case_id"],
        "cause": case["cause"],
        "turn": case["turn"],
        "expected": case["expected"],
        "got": case["got"],
        "message": case["message"],
        "priority": case["priority"],
        "tags": case["tags"],
    }


def compute_metrics(results: Sequence[Result]) -> dict[str, Any]:
    """Every metric of the report (see the module docstring), from the case results."""
    turns = list(_turns(results))
    bots = _checks(results, "bot")
    overall, by_group = intent_accuracy(results)
    precision, recall, f1 = slot_scores(results)
    failed = [c for c in results if not c["passed"]]
    causes = {cause: 0 for cause in CAUSES}
    for case in failed:
        if case["cause"] in causes:
            causes[case["cause"]] += 1
    return {
        "task_success_rate": fraction(sum(1 for c in results if c["task_success"]), len(results)),
        "response_accuracy": fraction(sum(1 for c in bots if c["passed"]), len(bots)),
        "intent_accuracy": overall,
        "intent_accuracy_by_group": by_group,
        "slot_precision": precision,
        "slot_recall": recall,
        "slot_f1": f1,
        "fallback_rate": fraction(sum(1 for t in turns if t["fallback"]), len(turns)),
        "handoff_rate": fraction(sum(1 for c in results if c["handoff"]), len(results)),
        "latency_ms": latency(results),
        "n_cases": len(results),
        "n_turns": len(turns),
        "n_passed": len(results) - len(failed),
        "failed_cases": [failed_case(c) for c in failed],
        "cause_counts": causes,
        "confusion": confusion(results),
    }
