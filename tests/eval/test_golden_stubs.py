"""Stubbed tools: every way a stub can fail takes the assistant's tool-failure path, and a
golden run never reaches a real system."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.evaluation.golden_run import GoldenContext, evaluate_cases, evaluate_chunk, golden_context

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.usefixtures("isolated_actions_module")

FAULTS = {"timeout": ("tool_timeout", 2), "4xx": ("tool_4xx", 1), "5xx": ("tool_5xx", 2), "raise": ("tool_error", 1)}
"""Stub -> (error type, attempts): kb_search is idempotent with one retry, for transient errors only."""


@pytest.fixture(scope="module")
def context(reference_models: Path, isolated_actions_module: None) -> Iterator[GoldenContext]:
    yield golden_context(REPO, reference_models)


def faq_case(stub: Any) -> dict[str, Any]:
    return {
        "case_id": "faq",
        "tags": {"use_case": "faq", "priority": "P0"},
        "stubs": {"kb_search": stub},
        "turns": [{"user": "how do I reset my password?", "expect": {"action": "kb_search", "handoff": False}}],
    }


def run(context: GoldenContext, *cases: dict[str, Any]) -> list[dict[str, Any]]:
    return asyncio.run(evaluate_cases(context, list(cases)))


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_a_failing_stub_takes_the_flows_failure_branch(context: GoldenContext, fault: str) -> None:
    stub: dict[str, Any] = {"timeout": True} if fault == "timeout" else {"error": fault}
    (result,) = run(context, faq_case(stub))
    (turn,) = result["turns"]
    error_type, attempts = FAULTS[fault]
    assert turn["tools"] == [
        {"name": "kb_search", "args": {"question": "how do I reset my password?"}, "status": "error",
         "error_type": error_type, "attempts": attempts},
    ]  # fmt: skip
    assert [b["response"] for b in turn["bot"]] == ["utter_kb_unavailable"]
    assert turn["active_flow"] is None and result["passed"]


def test_a_result_stub_returns_slots_in_the_tools_own_shape(context: GoldenContext) -> None:
    events = [
        {"event": "slot_set", "name": "kb_answer", "value": "Use the reset link."},
        {"event": "slot_set", "name": "kb_article_id", "value": "KB-001"},
    ]
    (as_events,) = run(context, faq_case({"result": events}))
    (as_mapping,) = run(context, faq_case({"result": {"kb_answer": "Use the reset link.", "kb_article_id": "KB-001"}}))
    for result in (as_events, as_mapping):
        (turn,) = result["turns"]
        assert turn["bot"] == [
            {"response": "utter_kb_answer", "text": "Use the reset link. (help center article KB-001)"}
        ]
    assert as_events["turns"][0]["slots"] == as_mapping["turns"][0]["slots"]


def test_answers_are_played_per_call_and_the_last_one_repeats(context: GoldenContext) -> None:
    case = faq_case([{"timeout": True}, {"result": {"kb_answer": "Second try.", "kb_article_id": "KB-001"}}])
    case["turns"].append({"user": "how do I export my data?"})
    (result,) = run(context, case)
    first, second = result["turns"]
    assert (first["tools"][0]["status"], first["tools"][0]["attempts"]) == ("ok", 2)  # the retry got answer 2
    assert "Second try." in first["bot"][0]["text"] and "Second try." in second["bot"][0]["text"]


def test_a_tool_without_a_stub_fails_the_case_with_cause_exec(context: GoldenContext) -> None:
    (result,) = run(context, {**faq_case({"error": "raise"}), "stubs": {}})
    assert (result["passed"], result["cause"], result["turn"]) == (False, "exec", 1)
    assert result["message"] == "turn 1: tool 'kb_search' called without a stub"
    assert result["turns"][0]["missing_stubs"] == ["kb_search"]


def test_golden_runs_never_call_the_real_tools(
    reference_models: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    crm = tmp_path / "crm.sqlite3"
    monkeypatch.setenv("TAIWA_CRM_DB", str(crm))
    case = {
        "case_id": "account",
        "tags": {"use_case": "account_lookup", "priority": "P0"},
        "stubs": {"crm_lookup": {"result": {"account_found": True, "account_name": "Stub Person"}}},
        "turns": [{"user": "check my account"}, {"user": "C12345"}, {"user": "12/04/1990"}],
        "expect": {"action": {"name": "crm_lookup", "args": {"customer_id": "C12345"}}},
    }
    (result,) = evaluate_chunk(reference_models, REPO, [case])
    assert result["passed"]
    assert "Stub Person" in result["turns"][-1]["bot"][0]["text"]
    assert not crm.exists()  # the real crm_lookup would have created and seeded it
