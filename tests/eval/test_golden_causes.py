"""Failure causes: one golden case, the assistant broken on purpose at one node at a time.

The bank assistant of ``tests/dialogue/engine_kit.py`` with a scripted NLU: the golden case
stays the same, what the NLU understands or what the YAML says changes, and the report must
blame the node that was broken (and the first turn where it shows), not what followed from it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from dialogue.engine_kit import DOMAIN, FLOWS, POLICIES, ScriptedNlu, bank_project

from engine.evaluation.golden_run import GoldenContext, evaluate_cases
from engine.loading.project import Project
from engine.nlu.model import ParseResult

BALANCE_CASE: dict[str, Any] = {
    "case_id": "balance",
    "tags": {"use_case": "balance", "priority": "P0"},
    "stubs": {"get_balance": {"result": {"balance": 120}}},
    "turns": [
        {
            "user": "what is my balance",
            "expect": {"intent": "check_balance", "active_flow": "verify", "bot": ["utter_ask_account"]},
        },
        {
            "user": "savings please",
            "expect": {"entities": {"account": "savings"}, "slots": {"account": "savings"}, "bot": ["utter_ask_pin"]},
        },
        {
            "user": "1234",
            "expect": {
                "action": {"name": "get_balance", "args": {"account": "savings"}},
                "handoff": False,
                "active_flow": None,
                "bot": {"contains": ["savings balance is 120"]},
            },
        },
    ],
    "expect": {"flow_completed": "check_balance", "slots": {"balance": 120}},
}

GREET_CASE: dict[str, Any] = {
    "case_id": "greet",
    "tags": {"use_case": "smalltalk", "priority": "P1"},
    "turns": [{"user": "hi", "expect": {"intent": "greet", "fallback": False, "bot": ["utter_greet"]}}],
}


def scripted() -> ScriptedNlu:
    nlu = ScriptedNlu()
    nlu.understands("what is my balance", ("check_balance", 0.95), ("greet", 0.01))
    nlu.understands("savings please", ("inform", 0.9), entities=[{"entity": "account", "value": "savings"}])
    nlu.understands("1234", ("inform", 0.9), entities=[{"entity": "pin", "value": "1234"}])
    nlu.understands("hi", ("greet", 0.95), ("goodbye", 0.01))
    return nlu


Run = Callable[..., dict[str, Any]]


@pytest.fixture
def run(tmp_path: Path, isolated_actions: None) -> Iterator[Run]:
    def run_case(
        case: dict[str, Any], *, nlu: ScriptedNlu | None = None, files: dict[str, str] | None = None
    ) -> dict[str, Any]:
        project: Project = bank_project(tmp_path / str(len(list(tmp_path.iterdir()))), files)
        context = GoldenContext.for_project(project, nlu or scripted())  # type: ignore[arg-type]
        (result,) = asyncio.run(evaluate_cases(context, [case]))
        return result

    yield run_case


def blamed(result: dict[str, Any]) -> tuple[bool, str | None, int | None]:
    return result["passed"], result["cause"], result["turn"]


def test_the_unbroken_assistant_passes(run: Run) -> None:
    assert blamed(run(BALANCE_CASE)) == (True, None, None)
    assert blamed(run(GREET_CASE)) == (True, None, None)


def test_ir_a_misunderstood_intent_is_blamed_not_the_wrong_flow_it_starts(run: Run) -> None:
    nlu = scripted()
    nlu.understands("what is my balance", ("give_feedback", 0.95), ("check_balance", 0.02))
    result = run(BALANCE_CASE, nlu=nlu)
    assert blamed(result) == (False, "IR", 1)
    assert (result["expected"], result["got"]) == ("check_balance", "give_feedback")
    failing = {c["check"] for c in result["turns"][0]["checks"] if not c["passed"]}
    assert failing == {"intent", "active_flow", "bot"}  # all wrong, the first node is blamed


def test_slot_a_wrong_entity_value(run: Run) -> None:
    nlu = scripted()
    nlu.understands("savings please", ("inform", 0.9), entities=[{"entity": "account", "value": "checking"}])
    result = run(BALANCE_CASE, nlu=nlu)
    assert blamed(result) == (False, "slot", 2)
    assert (result["expected"], result["got"]) == ({"account": "savings"}, {"account": "checking"})


def test_mode_the_right_intent_starts_the_wrong_flow(run: Run) -> None:
    swapped = (
        FLOWS.replace("- intent: check_balance", "- intent: TMP")
        .replace("- intent: give_feedback", "- intent: check_balance")
        .replace("- intent: TMP", "- intent: give_feedback")
    )
    result = run(BALANCE_CASE, files={"flows/flows.yml": swapped})
    assert blamed(result) == (False, "mode", 1)
    assert (result["expected"], result["got"]) == ("verify", "feedback")


def test_policy_a_confident_intent_falls_back(run: Run) -> None:
    strict = POLICIES.replace("nlu_threshold: 0.5", "nlu_threshold: 0.99")
    result = run(GREET_CASE, files={"policies/policies.yml": strict})
    assert blamed(result) == (False, "policy", 1)
    assert result["message"] == "turn 1: expected no fallback, got a fallback"


def test_exec_the_flow_sets_the_value_instead_of_calling_the_tool(run: Run) -> None:
    broken = FLOWS.replace("      - action: get_balance\n", "      - set_slots:\n          - balance: 120\n")
    result = run(BALANCE_CASE, files={"flows/flows.yml": broken})
    assert blamed(result) == (False, "exec", 3)
    assert result["got"] == [] and "balance is 120" in result["turns"][2]["bot"][0]["text"]


def test_exec_a_tool_called_without_a_stub_is_blamed_before_the_handoff_it_causes(run: Run) -> None:
    result = run({**BALANCE_CASE, "stubs": {}})
    assert blamed(result) == (False, "exec", 3)
    assert result["message"] == "turn 3: tool 'get_balance' called without a stub"
    last = result["turns"][2]
    assert last["handoff"] is True  # get_balance has no on_failure: the tool failure hands over
    assert last["tools"] == [
        {"name": "get_balance", "args": {"account": "savings", "counter": 0, "pin": "1234"}, "status": "error",
         "error_type": "tool_error", "attempts": 1},
    ]  # fmt: skip


def test_nlg_the_response_text_changed(run: Run) -> None:
    reworded = DOMAIN.replace('"Your {account} balance is {balance}."', '"You have {balance} in {account}."')
    result = run(BALANCE_CASE, files={"domain/domain.yml": reworded})
    assert blamed(result) == (False, "NLG", 3)
    assert result["got"] == ["You have 120.0 in savings."]


def test_a_case_level_expectation_alone_is_blamed_on_its_node(run: Run) -> None:
    result = run({**BALANCE_CASE, "expect": {"flow_completed": "transfer_money"}})
    assert all(t["passed"] for t in result["turns"])
    assert blamed(result) == (False, "mode", None)
    assert result["task_success"] is False
    assert result["message"].startswith("case expect: expected flow transfer_money to complete")


def test_a_wrong_controlled_slot_is_an_exec_problem(run: Run) -> None:
    result = run(
        {**BALANCE_CASE, "stubs": {"get_balance": {"result": {"balance": 99}}}, "expect": {"slots": {"balance": 120}}}
    )
    failing = [c for c in result["turns"][2]["checks"] if not c["passed"]]
    assert [c["check"] for c in failing] == ["bot"]  # the words are wrong, as a consequence
    assert (result["cause"], result["turn"]) == ("NLG", 3)
    (case_check,) = result["checks"]
    assert (case_check["check"], case_check["node"], case_check["passed"]) == ("slots", "exec", False)


def test_a_turn_that_raises_fails_its_case_and_the_run_goes_on(run: Run) -> None:
    class Crashing(ScriptedNlu):
        def parse(self, text: str) -> ParseResult:
            if text == "boom":
                raise RuntimeError("the model file is corrupt")
            return super().parse(text)

    nlu = Crashing()
    nlu.table.update(scripted().table)
    crashing = {**GREET_CASE, "turns": [{"user": "boom"}, {"user": "hi"}]}
    result = run(crashing, nlu=nlu)
    assert blamed(result) == (False, "exec", 1)
    assert result["message"] == "turn 1: the turn raised RuntimeError: the model file is corrupt"
    assert len(result["turns"]) == 1  # the case stops at the crash
