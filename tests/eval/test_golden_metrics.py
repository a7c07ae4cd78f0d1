"""The golden metrics on small results built by hand: every number below is worked out in the comments."""

from __future__ import annotations

from typing import Any

import pytest

from engine.evaluation.golden_checks import same_value
from engine.evaluation.golden_metrics import compute_metrics, slot_counts
from engine.evaluation.golden_report import build_report, comparable

REPORT_KEYS = [
    "schema_version",
    "task_success_rate",
    "response_accuracy",
    "intent_accuracy",
    "intent_accuracy_by_group",
    "slot_precision",
    "slot_recall",
    "slot_f1",
    "fallback_rate",
    "handoff_rate",
    "latency_ms",
    "n_cases",
    "n_turns",
    "n_passed",
    "failed_cases",
    "cause_counts",
    "cases",
    "confusion",
    "versions",
    "run",
]


def check(name: str, passed: bool, expected: Any = None, got: Any = None, **extra: Any) -> dict[str, Any]:
    node = {"intent": "IR", "bot": "NLG"}[name]
    return {"check": name, "node": node, "passed": passed, "expected": expected, "got": got, "message": "", **extra}


def turn(
    latency: float,
    *,
    checks: tuple[dict[str, Any], ...] = (),
    fallback: bool = False,
    expected_slots: dict[str, Any] | None = None,
    slots: dict[str, Any] | None = None,
    filled: dict[str, Any] | None = None,
) -> dict[str, Any]:
    expected = {"slots": expected_slots} if expected_slots is not None else {}
    return {
        "latency_ms": latency,
        "fallback": fallback,
        "checks": list(checks),
        "expected": expected,
        "slots": slots or {},
        "filled": filled or {},
    }


def case(
    case_id: str,
    turns: list[dict[str, Any]],
    *,
    passed: bool,
    task: bool,
    handoff: bool = False,
    cause: str | None = None,
) -> dict[str, Any]:
    return {
        "case_id": case_id,
        "passed": passed,
        "task_success": task,
        "priority": "P0",
        "tags": {"use_case": "x", "priority": "P0", "channel": None, "labels": []},
        "cause": cause,
        "turn": None if passed else 1,
        "expected": None if passed else "e",
        "got": None if passed else "g",
        "message": None if passed else f"turn 1: {cause}",
        "handoff": handoff,
        "latencies_ms": [t["latency_ms"] for t in turns],
        "turns": turns,
        "checks": [],
    }


RESULTS = [
    # A: passes. Turn 2 expects customer_id (right: TP) and birth_date (wrong: FN, and its new
    # value is an FP), and fills ticket_summary unasked (FP): TP 1, FP 2, FN 1.
    case(
        "A",
        [
            turn(1.0, checks=(check("intent", True, "greet", "greet", group="smalltalk"), check("bot", True))),
            turn(
                3.0,
                checks=(check("intent", True, "check_account", "check_account", group="in_scope"),),
                expected_slots={"customer_id": "C1", "birth_date": "1990"},
                slots={"customer_id": "C1", "birth_date": "1991"},
                filled={"customer_id": "C1", "birth_date": "1991", "ticket_summary": "z"},
            ),
        ],
        passed=True,
        task=True,
    ),
    # B: fails at the IR node, falls back, hands over; its one slot is right (TP 1).
    case(
        "B",
        [
            turn(
                2.0,
                checks=(check("intent", False, "out_of_scope", "greet", group="oos"), check("bot", False)),
                fallback=True,
                expected_slots={"priority": "high"},
                slots={"priority": "high"},
                filled={"priority": "high"},
            ),
            turn(10.0),
        ],
        passed=False,
        task=False,
        handoff=True,
        cause="IR",
    ),
    # C: the task succeeds (its case-level expect holds) but a response is wrong (NLG).
    case("C", [turn(4.0, checks=(check("bot", False),), fallback=True)], passed=False, task=True, cause="NLG"),
]


def test_rates_and_counts() -> None:
    m = compute_metrics(RESULTS)
    assert (m["n_cases"], m["n_turns"], m["n_passed"]) == (3, 5, 1)
    assert m["task_success_rate"] == pytest.approx(2 / 3, abs=1e-6)  # A and C
    assert m["response_accuracy"] == pytest.approx(1 / 3, abs=1e-6)  # 3 bot checks, 1 passed
    assert m["intent_accuracy"] == pytest.approx(2 / 3, abs=1e-6)  # 3 intent checks, 2 passed
    assert m["intent_accuracy_by_group"] == {"in_scope": 1.0, "oos": 0.0, "smalltalk": 1.0}
    assert m["fallback_rate"] == 0.4  # 2 of 5 turns
    assert m["handoff_rate"] == pytest.approx(1 / 3, abs=1e-6)  # B of 3 cases
    assert m["cause_counts"] == {"IR": 1, "mode": 0, "slot": 0, "exec": 0, "policy": 0, "NLG": 1}
    assert [f["case_id"] for f in m["failed_cases"]] == ["B", "C"]
    assert m["failed_cases"][0] == {
        "case_id": "B",
        "cause": "IR",
        "turn": 1,
        "expected": "e",
        "got": "g",
        "message": "turn 1: IR",
        "priority": "P0",
        "tags": {"use_case": "x", "priority": "P0", "channel": None, "labels": []},
    }


def test_slot_precision_recall_and_f1() -> None:
    assert slot_counts(RESULTS[0]["turns"][1]) == (1, 2, 1)
    assert slot_counts(RESULTS[1]["turns"][0]) == (1, 0, 0)
    m = compute_metrics(RESULTS)
    precision, recall = 2 / 4, 2 / 3  # TP 2, FP 2, FN 1
    assert m["slot_precision"] == 0.5
    assert m["slot_recall"] == pytest.approx(recall, abs=1e-6)
    assert m["slot_f1"] == pytest.approx(2 * precision * recall / (precision + recall), abs=1e-6)  # 4/7


def test_latency_percentiles() -> None:
    # sorted: 1 2 3 4 10 -> p50 = 3; p95 at rank 0.95 * 4 = 3.8: 4 + 0.8 * (10 - 4) = 8.8
    assert compute_metrics(RESULTS)["latency_ms"] == {"p50": 3.0, "p95": 8.8, "mean": 4.0}


def test_confusion_rows_are_expected_columns_predicted() -> None:
    assert compute_metrics(RESULTS)["confusion"] == {
        "labels": ["check_account", "greet", "out_of_scope"],
        "matrix": [[1, 0, 0], [0, 1, 0], [0, 1, 0]],
    }


def test_nothing_to_measure_is_none_not_zero() -> None:
    m = compute_metrics([case("D", [turn(1.0)], passed=True, task=True)])
    assert m["response_accuracy"] is None and m["intent_accuracy"] is None
    assert m["intent_accuracy_by_group"] == {"in_scope": None, "oos": None, "smalltalk": None}
    assert (m["slot_precision"], m["slot_recall"], m["slot_f1"]) == (None, None, None)
    assert m["confusion"] == {"labels": [], "matrix": []}


def test_all_slots_wrong_gives_zero_not_a_division_error() -> None:
    wrong = turn(1.0, expected_slots={"a": 1}, slots={"a": 2})
    m = compute_metrics([case("E", [wrong], passed=False, task=False, cause="slot")])
    assert (m["slot_precision"], m["slot_recall"], m["slot_f1"]) == (0.0, 0.0, 0.0)


def test_values_compare_as_the_slots_store_them() -> None:
    assert same_value(50, 50.0) and same_value(50, "50") and same_value("C1", "C1")
    assert not same_value(True, "True") and not same_value(None, "None") and not same_value("a", "b")


def test_the_report_has_exactly_the_documented_keys() -> None:
    report = build_report(RESULTS, versions={"model_id": "m"}, seconds=2.0, workers=1)
    assert list(report) == REPORT_KEYS
    assert report["run"] == {"workers": 1, "ray": False, "seconds": 2.0, "cases_per_second": 1.5}
    again = build_report(RESULTS, versions={"model_id": "m"}, seconds=9.0, workers=1)
    assert comparable(report) == comparable(again)
