"""A golden case's result as plain data: what each turn did, its checks, and the case's verdict.

The records are JSON-serialisable dicts (the report's ``cases``), built from a turn's
:class:`~engine.dialogue.processor.TurnResult` and the stub calls it made; nothing here runs
the assistant (:mod:`engine.evaluation.golden_run` does).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from engine import events as ev
from engine.dialogue.processor import TurnResult
from engine.dialogue.tracker import DialogueState
from engine.evaluation.golden import GoldenCase, TurnExpectation
from engine.evaluation.golden_checks import (
    Check,
    TurnOutcome,
    check_rank,
    coerce_slots,
    first_failure,
    turn_checks,
)
from engine.evaluation.golden_stubs import ToolCall
from engine.events import JsonValue

if TYPE_CHECKING:
    from engine.evaluation.golden_run import GoldenContext


def filled_slots(state: DialogueState) -> dict[str, JsonValue]:
    """Every slot with a value, by name."""
    return {name: state.slots[name] for name in sorted(state.slots) if state.slots[name] is not None}


def turn_outcome(
    result: TurnResult, before: DialogueState, calls: Sequence[ToolCall], controlled: frozenset[str] = frozenset()
) -> TurnOutcome:
    """What the turn did, from its events and the stub calls it made (``controlled``: slots
    the user's message cannot fill, left out of ``filled``)."""
    user = next((e for e in result.events if isinstance(e, ev.UserUttered)), None)
    after = filled_slots(result.state)
    filled = {k: v for k, v in after.items() if before.slots.get(k) != v and k not in controlled}
    return TurnOutcome(
        intent=user.intent if user is not None else None,
        confidence=round(float(user.confidence), 4) if user is not None else 0.0,
        entities=tuple({"entity": e.get("entity"), "value": e.get("value")} for e in (user.entities if user else ())),
        policy=result.decision.policy if result.decision is not None else None,
        active_flow=result.state.active_flow,
        slots=after,
        filled=filled,
        bot=tuple({"response": m.response, "text": m.text} for m in result.messages),
        tools=_tool_calls(result.events, calls),
        handoff=any(isinstance(e, ev.HandoffRequested) for e in result.events),
        fallback=any(isinstance(e, ev.FallbackTriggered) for e in result.events),
        flows_completed=tuple(e.flow for e in result.events if isinstance(e, ev.FlowCompleted)),
        missing_stubs=tuple(dict.fromkeys(c.name for c in calls if c.answer == "missing")),
        errors=tuple(result.errors),
    )


def _tool_calls(events: Sequence[ev.Event], calls: Sequence[ToolCall]) -> tuple[dict[str, JsonValue], ...]:
    """Each ``ToolCalled`` event with the slots its (first) attempt was called with."""
    pending = list(calls)
    out: list[dict[str, JsonValue]] = []
    for event in events:
        if not isinstance(event, ev.ToolCalled):
            continue
        attempts = [c for c in pending if c.name == event.name][: max(event.attempts, 0)]
        for used in attempts:
            pending.remove(used)
        out.append(
            {
                "name": event.name,
                "args": dict(attempts[0].args) if attempts else {},
                "status": event.status,
                "error_type": event.error_type,
                "attempts": event.attempts,
            }
        )
    return tuple(out)


def turn_record(
    context: GoldenContext, number: int, message: str, expect: TurnExpectation, got: TurnOutcome, latency_ms: float
) -> dict[str, Any]:
    """The record of one turn: what it did, what was expected, each check and the first failure's node."""
    domain = context.project.domain
    group = context.intent_group(expect.intent) if expect.intent is not None else None
    checks = turn_checks(expect, got, domain, group)
    failed = first_failure(checks)
    return {
        "turn": number,
        "user": message,
        **got.to_dict(),
        "latency_ms": round(latency_ms, 3),
        "expected": expectation_dict(expect, context),
        "checks": [c.to_dict() for c in checks],
        "passed": failed is None,
        "cause": failed.node if failed is not None else None,
    }


def crashed_turn(number: int, message: str, exc: Exception) -> dict[str, Any]:
    """The record of a turn that raised instead of answering (an engine bug: cause ``exec``)."""
    crash = Check(
        "crash", "exec", False, "an answer", type(exc).__name__, f"the turn raised {type(exc).__name__}: {exc}"
    )
    empty = TurnOutcome(None, 0.0, (), None, None, {}, {}, (), (), False, False)
    return {
        "turn": number,
        "user": message,
        **empty.to_dict(),
        "latency_ms": 0.0,
        "expected": {},
        "checks": [crash.to_dict()],
        "passed": False,
        "cause": "exec",
    }


def expectation_dict(expect: TurnExpectation, context: GoldenContext) -> dict[str, JsonValue]:
    """The turn's expectations as plain values (slot values as the slots store them)."""
    out: dict[str, JsonValue] = {}
    if expect.intent is not None:
        out["intent"] = expect.intent
    if expect.entities is not None:
        out["entities"] = dict(expect.entities)
    if expect.slots is not None:
        out["slots"] = coerce_slots(context.project.domain, expect.slots)
    if expect.active_flow is not None:
        out["active_flow"] = expect.active_flow.value
    if expect.policy is not None:
        out["policy"] = expect.policy
    if expect.bot is not None:
        bot = expect.bot
        out["bot"] = (
            list(bot.responses)
            if bot.responses is not None
            else {"contains": list(bot.contains), "not_contains": list(bot.not_contains)}
        )
    if expect.action is not None:
        out["action"] = {"name": expect.action.name, "args": dict(expect.action.args)}
    for key, flag in (("handoff", expect.handoff), ("fallback", expect.fallback)):
        if flag is not None:
            out[key] = flag
    return out


def case_record(case: GoldenCase, turns: list[dict[str, Any]], finals: list[Check], *, handoff: bool) -> dict[str, Any]:
    """The case's result: passed, task success, and the cause, turn, expected and got of its first failure."""
    turn_ok = all(t["passed"] for t in turns)
    case_ok = all(c.passed for c in finals)
    failing_turn = next((t for t in turns if not t["passed"]), None)
    cause: str | None = None
    turn_number: int | None = None
    expected: JsonValue = None
    got: JsonValue = None
    message: str | None = None
    if failing_turn is not None:
        check = next(c for c in _ordered(failing_turn["checks"]) if not c["passed"])
        cause, turn_number = check["node"], failing_turn["turn"]
        expected, got = check["expected"], check["got"]
        message = f"turn {turn_number}: {check['message']}"
    elif not case_ok:
        final = first_failure(finals)
        assert final is not None
        cause, expected, got = final.node, final.expected, final.got
        message = f"case expect: {final.message}"
    return {
        "case_id": case.case_id,
        "passed": turn_ok and case_ok,
        "task_success": case_ok if case.expect is not None else turn_ok,
        "priority": case.priority,
        "tags": case.tags,
        "description": case.description,
        "source": case.source,
        "cause": cause,
        "turn": turn_number,
        "expected": expected,
        "got": got,
        "message": message,
        "handoff": handoff,
        "latencies_ms": [t["latency_ms"] for t in turns],
        "turns": turns,
        "checks": [c.to_dict() for c in finals],
    }


def _ordered(checks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(checks, key=lambda c: check_rank(c["check"], c["node"]))
