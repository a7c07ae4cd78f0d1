"""The reference assistant end to end, in process: its trained NLU, its real tools, its
YAML. Every use case, and every tool made to time out, answer 403 / 500, raise or be
switched off: each turn still answers, records the right error_type and takes the branch
the flow declares.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from engine import events as ev
from engine.actions.registry import discover_actions
from engine.actions.runner import LocalActionRunner, ToolHttpError
from engine.dialogue.executor import Switches
from engine.dialogue.processor import MessageProcessor
from engine.loading.project import load_project_or_raise
from engine.nlu.artifact import load_model
from engine.stores.memory import InMemoryTrackerStore

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.usefixtures("isolated_actions_module")

TOOL_TIMEOUT = 0.2
"""The tools' timeouts are shortened so that a timeout test takes a fraction of a second."""


class Harness:
    def __init__(self, models: Path, crm_db: Path) -> None:
        self.project = load_project_or_raise(REPO)
        specs = {n: replace(s, timeout=TOOL_TIMEOUT) for n, s in discover_actions(REPO).items()}
        self.store = InMemoryTrackerStore()
        self.tools_off: set[str] = set()
        self.processor = MessageProcessor(
            self.project,
            load_model(models),
            self.store,
            LocalActionRunner(specs, {"TAIWA_CRM_DB": str(crm_db)}),
            switches=lambda: Switches(frozenset(self.tools_off)),
            rng=random.Random(3),
        )

    async def chat(self, *texts: str, cid: str = "user-1") -> list[Any]:
        results = [await self.processor.handle(cid, t) for t in texts]
        return results


@pytest.fixture
def bot(reference_models: Path, tmp_path: Path) -> Iterator[Harness]:
    yield Harness(reference_models, tmp_path / "crm.sqlite3")


def texts(result: Any) -> list[str]:
    return [m.text for m in result.messages]


# --------------------------------------------------------------------------- use cases


async def test_faq_answers_from_the_knowledge_base(bot: Harness) -> None:
    (r,) = await bot.chat("how do I reset my password?")
    assert "Forgot password?" in texts(r)[0]
    assert r.state.stack == () and r.state.slot("question") is None


async def test_faq_without_an_answer_links_to_ticket_creation(bot: Harness) -> None:
    (r,) = await bot.chat("what is your office dog's name?")
    assert texts(r)[0].startswith("I couldn't find an answer")
    assert r.state.active_flow == "create_ticket"


async def test_account_lookup_verifies_identity_in_a_sub_flow(bot: Harness) -> None:
    *_, r = await bot.chat("check my account", "C12345", "12/04/1990")
    assert texts(r) == ["Thanks Jane Doe! Your account C12345 is on the Business plan and its status is active."]


async def test_account_lookup_with_a_wrong_birth_date(bot: Harness) -> None:
    *_, r = await bot.chat("check my account", "C12345", "1 January 1970")
    assert texts(r)[0].startswith("Sorry, I couldn't find an account")


async def test_ticket_creation_with_confirmation(bot: Harness) -> None:
    a, b, c, d = await bot.chat(
        "I want to open a ticket", "my invoice is wrong, I was charged twice", '/inform{"priority": "high"}', "/affirm"
    )
    assert [m.response for m in a.messages] == ["utter_ask_ticket_summary"]
    assert texts(b) == ["How urgent is it?"]
    assert texts(c) == ['Shall I open a high priority ticket about "my invoice is wrong, I was charged twice"?']
    assert "T-0000" in texts(d)[0] and "high priority" in texts(d)[0]


async def test_an_faq_question_in_the_middle_of_a_ticket_interrupts_and_resumes(bot: Harness) -> None:
    *_, r = await bot.chat("I want to open a ticket", "the dashboard is slow", "how do I export my data?")
    said = texts(r)
    assert "Export" in said[0]
    assert said[1] == "Now, back to where we were (Open a support ticket)."
    assert said[2] == "How urgent is it?"


async def test_cancel_and_handoff(bot: Harness) -> None:
    _, b = await bot.chat("check my account", "never mind")
    assert texts(b)[0] in {
        "Okay, I've stopped that. What else can I do for you?",
        "No problem, consider it cancelled. Anything else?",
    }
    (c,) = await bot.chat("I want to talk to a human")
    assert c.state.handoff == "user_request"
    (d,) = await bot.chat("hello?")
    assert d.messages == ()


# --------------------------------------------------------------------------- faults

FAULTS = {
    "timeout": "tool_timeout",
    "403": "tool_4xx",
    "500": "tool_5xx",
    "raise": "tool_error",
}


def failing(fault: str) -> Any:
    def broken(*args: Any, **kwargs: Any) -> Any:
        if fault == "timeout":
            time.sleep(TOOL_TIMEOUT * 3)
            raise AssertionError("should have been abandoned")
        if fault == "403":
            raise ToolHttpError(403, "CRM API: forbidden")
        if fault == "500":
            raise ToolHttpError(500, "CRM API: internal error")
        raise RuntimeError("database file is corrupt")

    return broken


SCENARIOS = {
    # tool: (what to patch, the messages that reach the tool, the declared failure response)
    "kb_search": ("actions.kb_search._index", ["how do I reset my password?"], "utter_kb_unavailable"),
    "crm_lookup": ("actions.crm.connection", ["check my account", "C12345", "12/04/1990"], "utter_crm_unavailable"),
    "create_ticket": (
        "actions.tickets.writing",
        ["open a ticket", "the dashboard is slow", '/inform{"priority": "low"}', "/affirm"],
        "utter_ticket_failed",
    ),
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
@pytest.mark.parametrize("tool", sorted(SCENARIOS))
async def test_a_failing_tool_still_answers_with_its_declared_fallback(
    bot: Harness, monkeypatch: pytest.MonkeyPatch, tool: str, fault: str
) -> None:
    target, messages, response = SCENARIOS[tool]
    monkeypatch.setattr(target, failing(fault))
    *_, last = await bot.chat(*messages)
    calls = [e for e in last.events if isinstance(e, ev.ToolCalled)]
    assert [(c.name, c.status, c.error_type) for c in calls] == [(tool, "error", FAULTS[fault])]
    assert [m.response for m in last.messages] == [response]
    assert last.messages[0].text
    assert last.state.stack == ()
    assert last.state.handoff is None
    spec_retries = 1  # every reference tool is idempotent with one retry: transient errors are retried
    assert calls[0].attempts == (1 + spec_retries if FAULTS[fault] in ("tool_timeout", "tool_5xx") else 1)


@pytest.mark.parametrize("tool", sorted(SCENARIOS))
async def test_a_tool_switched_off_answers_unavailable(bot: Harness, tool: str) -> None:
    _, messages, _ = SCENARIOS[tool]
    bot.tools_off.add(tool)
    *_, last = await bot.chat(*messages)
    assert [m.response for m in last.messages] == ["utter_tool_unavailable"]
    assert [(e.name, e.status) for e in last.events if isinstance(e, ev.ToolCalled)] == [(tool, "disabled")]
