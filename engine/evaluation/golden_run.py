"""Run golden cases through the real turn pipeline, with every tool stubbed.

:func:`evaluate_chunk` is the unit of work: a top-level function of plain arguments (the
model folder or a loaded model, the project folder, cases as plain dicts) returning plain,
JSON-serialisable results, so that it runs the same in this process or in a worker of a
cluster. Within one process the project and the model are loaded once and reused.

Each case is its own conversation (id = ``case_id``) on an in-memory store, with a clock and
a random generator of its own (seeded from the case id), so response variations, timestamps
and therefore results do not depend on which other cases ran before it or where. Only the
latencies are measured; they stay out of any comparison of results. The LLM fallback is
never called (golden runs touch no real system) and no tool is switched off.
"""

from __future__ import annotations

import asyncio
import os
import random
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine import events as ev
from engine.actions.registry import ActionSpec
from engine.dialogue.processor import MessageProcessor, TurnResult
from engine.dialogue.tracker import DialogueState
from engine.evaluation.golden import GoldenCase, TurnExpectation, case_from_dict
from engine.evaluation.golden_checks import (
    Check,
    TurnOutcome,
    case_checks,
    check_rank,
    coerce_slots,
    first_failure,
    turn_checks,
)
from engine.evaluation.golden_load import project_actions, project_tools
from engine.evaluation.golden_stubs import StubBook, ToolCall, stub_runner
from engine.events import JsonValue
from engine.loading.project import Project, load_project_or_raise
from engine.nlu.artifact import load_model, resolve_model_dir
from engine.nlu.model import NluModel
from engine.stores.memory import InMemoryTrackerStore

ModelRef = str | os.PathLike[str] | NluModel
"""A model folder (or ``models/`` with ``latest``), or a model already loaded."""

OOS_INTENTS = frozenset({"out_of_scope", "oos", "nlu_fallback"})
"""Intents that mean "out of scope": their accuracy is reported on its own."""

START_TIME = 1_700_000_000.0
"""The clock of every golden conversation starts here; each turn is one second later."""

_CONTEXTS_KEPT = 4


@dataclass(frozen=True)
class GoldenContext:
    """What every case of one project needs; built once per process."""

    project: Project
    nlu: NluModel
    tools: frozenset[str]
    specs: Mapping[str, ActionSpec]
    """The real tools' contracts (timeouts, retries), copied when the project was loaded."""
    smalltalk: frozenset[str]
    controlled: frozenset[str] = frozenset()
    """Slots only flows and tools set (not counted as false positives of the message)."""

    @classmethod
    def for_project(cls, project: Project, nlu: NluModel) -> GoldenContext:
        """The context of ``project`` with ``nlu`` (any object with ``parse`` and ``model_id``)."""
        specs = dict(project_actions(project.root))
        controlled = frozenset(name for name, slot in project.domain.slots.items() if slot.controlled)
        return cls(project, nlu, project_tools(project), specs, smalltalk_intents(project), controlled)

    def intent_group(self, intent: str) -> str:
        if intent in OOS_INTENTS:
            return "oos"
        return "smalltalk" if intent in self.smalltalk else "in_scope"


_contexts: dict[tuple[str, str], GoldenContext] = {}


def smalltalk_intents(project: Project) -> frozenset[str]:
    """Intents only rules answer (greetings, thanks...): no flow starts on them, no handoff."""
    starts = {t.intent for f in project.flows.values() for t in f.nlu_triggers} | set(project.policies.handoff.intents)
    ruled = {r.intent for r in project.policies.rules}
    return frozenset(ruled - starts - OOS_INTENTS)


def golden_context(project_dir: str | os.PathLike[str], model: ModelRef | None = None) -> GoldenContext:
    """The project and model of a golden run, loaded on first use in this process."""
    root = Path(project_dir).resolve()
    if isinstance(model, NluModel):
        model_key = f"loaded:{model.model_id}"
    else:
        model_key = str(resolve_model_dir(Path(model) if model is not None else root / "models").resolve())
    key = (str(root), model_key)
    found = _contexts.get(key)
    if found is not None:
        return found
    project = load_project_or_raise(root)
    context = GoldenContext.for_project(project, model if isinstance(model, NluModel) else load_model(model_key))
    while len(_contexts) >= _CONTEXTS_KEPT:
        _contexts.pop(next(iter(_contexts)))
    _contexts[key] = context
    return context


def forget_contexts() -> None:
    """Drop the loaded projects and models (tests that change a project in place)."""
    _contexts.clear()


def evaluate_chunk(
    model: ModelRef | None, project_dir: str | os.PathLike[str], cases: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """Run ``cases`` (plain dicts) and return one plain result per case, in order.

    The unit a parallel runner farms out; the same cases give the same results wherever
    they run, latencies apart.
    """
    return asyncio.run(evaluate_cases(golden_context(project_dir, model), cases))


async def evaluate_cases(
    context: GoldenContext,
    cases: Sequence[Mapping[str, Any]],
    on_result: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Run ``cases`` one after the other in this event loop; ``on_result`` sees each result."""
    book = StubBook()
    runner = stub_runner(context.tools, context.specs, book)
    store = InMemoryTrackerStore()
    processor = MessageProcessor(context.project, context.nlu, store, runner)
    results: list[dict[str, Any]] = []
    try:
        for data in cases:
            result = await _run_case(context, processor, book, case_from_dict(data))
            results.append(result)
            if on_result is not None:
                on_result(result)
    finally:
        await runner.close()
        await store.close()
    return results


def case_seed(case_id: str) -> int:
    """The case's own random seed: response variations never depend on other cases."""
    return zlib.crc32(case_id.encode("utf-8"))


async def _run_case(
    context: GoldenContext, processor: MessageProcessor, book: StubBook, case: GoldenCase
) -> dict[str, Any]:
    cid = case.case_id
    domain = context.project.domain
    clock = [START_TIME]
    processor.clock = lambda: clock[0]
    processor.executor.rng = random.Random(case_seed(cid))
    book.open(cid, case.stubs)
    start: list[ev.Event] = [ev.SessionStarted(dict(case.metadata), START_TIME)]
    start.extend(ev.SlotSet(name, value) for name, value in coerce_slots(domain, case.slots).items())
    await processor.store.append(cid, start, expected_length=0)
    state = processor.replay(start)
    turns: list[dict[str, Any]] = []
    all_tools: list[dict[str, JsonValue]] = []
    completed: list[str] = []
    try:
        for number, turn in enumerate(case.turns, start=1):
            clock[0] += 1.0
            try:
                result = await processor.handle(cid, turn.message, channel=case.channel)
            except Exception as exc:  # noqa: BLE001 - one case's crash is reported as its failure, the run goes on
                turns.append(_crashed_turn(number, turn.message, exc))
                break
            outcome = turn_outcome(result, state, book.take_calls(cid), context.controlled)
            record = _turn_record(context, number, turn.message, turn.expect, outcome, result.latency_ms)
            turns.append(record)
            all_tools.extend(outcome.tools)
            completed.extend(outcome.flows_completed)
            state = result.state
    finally:
        book.close(cid)
        processor.forget(cid)
        await processor.store.delete(cid)
    finals = (
        case_checks(
            case.expect,
            domain,
            slots=_filled_slots(state),
            tools=all_tools,
            flows_completed=completed,
            handoff=state.handoff is not None,
        )
        if case.expect is not None
        else []
    )
    return _case_record(case, turns, finals, handoff=any(t["handoff"] for t in turns))


def _filled_slots(state: DialogueState) -> dict[str, JsonValue]:
    return {name: state.slots[name] for name in sorted(state.slots) if state.slots[name] is not None}


def turn_outcome(
    result: TurnResult, before: DialogueState, calls: Sequence[ToolCall], controlled: frozenset[str] = frozenset()
) -> TurnOutcome:
    """What the turn did, from its events and the stub calls it made (``controlled``: slots
    the user's message cannot fill, left out of ``filled``)."""
    user = next((e for e in result.events if isinstance(e, ev.UserUttered)), None)
    after = _filled_slots(result.state)
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


def _turn_record(
    context: GoldenContext, number: int, message: str, expect: TurnExpectation, got: TurnOutcome, latency_ms: float
) -> dict[str, Any]:
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


def _crashed_turn(number: int, message: str, exc: Exception) -> dict[str, Any]:
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


def _case_record(
    case: GoldenCase, turns: list[dict[str, Any]], finals: list[Check], *, handoff: bool
) -> dict[str, Any]:
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
