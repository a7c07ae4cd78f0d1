"""Golden cases as typed values: what a conversation sends and what each turn must show.

A golden set is YAML (``tests/golden/*.yml``, see :mod:`engine.evaluation.golden_load`);
once it is checked, every case travels as a plain dict (the case's YAML data with the file's
default stubs merged in), so that a chunk of cases can be shipped to another process and
rebuilt there with :func:`case_from_dict`. Nothing here reads files or runs anything.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any, Generic, Literal, TypeVar

from engine.events import (
    BotUttered,
    Event,
    HandoffRequested,
    JsonValue,
    SlotSet,
)

T = TypeVar("T")

StubKind = Literal["result", "timeout", "4xx", "5xx", "raise"]
Priority = Literal["P0", "P1"]

PRIORITIES: tuple[Priority, ...] = ("P0", "P1")


@dataclass(frozen=True, slots=True)
class Expected(Generic[T]):
    """An expectation whose value may itself be None (``active_flow: null``, ``action: null``)."""

    value: T


@dataclass(frozen=True, slots=True)
class StubAnswer:
    """What a stubbed tool does when it is called."""

    kind: StubKind
    events: tuple[Event, ...] = ()
    """For ``result``: the events the tool returns (slot values, messages, a handoff)."""


@dataclass(frozen=True, slots=True)
class BotExpectation:
    responses: tuple[str, ...] | None = None
    """The response names, in order (``()``: the bot says nothing); None: not checked by name."""
    contains: tuple[str, ...] = ()
    """Keywords the bot's texts must all contain (case-insensitive)."""
    not_contains: tuple[str, ...] = ()
    """Keywords none of the bot's texts may contain (case-insensitive)."""


@dataclass(frozen=True, slots=True)
class ActionExpectation:
    name: str | None
    """The tool; None: no tool is called."""
    args: Mapping[str, JsonValue] = field(default_factory=dict)
    """Slot values the tool must be called with (a subset of what it sees)."""


@dataclass(frozen=True)
class TurnExpectation:
    """What one turn must show; an expectation left out is not checked."""

    intent: str | None = None
    entities: Mapping[str, JsonValue] | None = None
    slots: Mapping[str, JsonValue] | None = None
    active_flow: Expected[str | None] | None = None
    policy: str | None = None
    bot: BotExpectation | None = None
    action: ActionExpectation | None = None
    handoff: bool | None = None
    fallback: bool | None = None


@dataclass(frozen=True)
class GoldenTurn:
    message: str
    """The text sent: what the user types, or the ``/intent{...}`` shortcut of ``intent:``."""
    expect: TurnExpectation


@dataclass(frozen=True)
class CaseExpectation:
    """Whether the task succeeded, judged at the end of the case."""

    flow_completed: str | None = None
    slots: Mapping[str, JsonValue] | None = None
    action: ActionExpectation | None = None
    handoff: bool | None = None


@dataclass(frozen=True)
class GoldenCase:
    case_id: str
    use_case: str
    priority: Priority
    turns: tuple[GoldenTurn, ...]
    channel: str | None = None
    labels: tuple[str, ...] = ()
    description: str = ""
    slots: Mapping[str, JsonValue] = field(default_factory=dict)
    """Slot values set before the first message."""
    metadata: Mapping[str, JsonValue] = field(default_factory=dict)
    stubs: Mapping[str, tuple[StubAnswer, ...]] = field(default_factory=dict)
    """Tool -> its answers, one per call (the last repeats); the file's defaults merged in."""
    expect: CaseExpectation | None = None
    source: str = ""
    """``file:line:col`` of the case."""

    @property
    def tags(self) -> dict[str, JsonValue]:
        """The tags as the report shows them."""
        return {
            "use_case": self.use_case,
            "priority": self.priority,
            "channel": self.channel,
            "labels": list(self.labels),
        }

    def matches(self, selector: str) -> bool:
        """Whether ``--filter selector`` keeps the case: its id (``*`` wildcards) or any tag value."""
        if fnmatchcase(self.case_id, selector):
            return True
        return selector in {self.use_case, self.priority, self.channel, *self.labels}


# -- building from plain (schema-checked) data ---------------------------------------------


def shortcut_text(intent: str, entities: Mapping[str, JsonValue] | None) -> str:
    """The ``/intent{...}`` message for an ``intent:`` turn."""
    if not entities:
        return f"/{intent}"
    return f"/{intent}{json.dumps(dict(entities), ensure_ascii=False, sort_keys=True)}"


def _mapping(value: object) -> dict[str, JsonValue]:
    return {str(k): v for k, v in value.items()} if isinstance(value, Mapping) else {}


def _strings(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    return tuple(str(v) for v in value) if isinstance(value, list | tuple) else ()


def _action(value: object) -> ActionExpectation:
    if value is None:
        return ActionExpectation(None)
    if isinstance(value, str):
        return ActionExpectation(value)
    data = _mapping(value)
    return ActionExpectation(str(data["name"]), _mapping(data.get("args")))


def _bot(value: object) -> BotExpectation:
    if isinstance(value, Mapping):
        return BotExpectation(None, _strings(value.get("contains")), _strings(value.get("not_contains")))
    return BotExpectation(_strings(value))


def stub_event(data: Mapping[str, Any]) -> Event:
    """One event of a stub's ``result`` list (``event: slot_set | bot_uttered | handoff_requested``)."""
    kind = data.get("event")
    if kind == "slot_set":
        return SlotSet(str(data["name"]), data.get("value"))
    if kind == "bot_uttered":
        text, response = data.get("text"), data.get("response")
        return BotUttered(None if text is None else str(text), None if response is None else str(response))
    if kind == "handoff_requested":
        return HandoffRequested(str(data.get("reason") or "tool"))
    raise ValueError(f"a stub cannot return a {kind!r} event; use slot_set, bot_uttered or handoff_requested")


def stub_answer(data: Mapping[str, Any]) -> StubAnswer:
    if data.get("timeout"):
        return StubAnswer("timeout")
    error = data.get("error")
    if error in ("4xx", "5xx", "raise"):
        return StubAnswer(error)
    result = data.get("result")
    if isinstance(result, list):
        return StubAnswer("result", tuple(stub_event(_mapping(e)) for e in result))
    return StubAnswer("result", tuple(SlotSet(name, value) for name, value in _mapping(result).items()))


def stub_answers(value: object) -> tuple[StubAnswer, ...]:
    items = value if isinstance(value, list) else [value]
    return tuple(stub_answer(_mapping(item)) for item in items)


def turn_expectation(data: Mapping[str, Any]) -> TurnExpectation:
    return TurnExpectation(
        intent=str(data["intent"]) if "intent" in data else None,
        entities=_mapping(data["entities"]) if "entities" in data else None,
        slots=_mapping(data["slots"]) if "slots" in data else None,
        active_flow=Expected(data["active_flow"]) if "active_flow" in data else None,
        policy=str(data["policy"]) if "policy" in data else None,
        bot=_bot(data["bot"]) if "bot" in data else None,
        action=_action(data["action"]) if "action" in data else None,
        handoff=bool(data["handoff"]) if "handoff" in data else None,
        fallback=bool(data["fallback"]) if "fallback" in data else None,
    )


def turn_from_dict(data: Mapping[str, Any]) -> GoldenTurn:
    if "intent" in data:
        message = shortcut_text(str(data["intent"]), _mapping(data.get("entities")))
    else:
        message = str(data["user"])
    return GoldenTurn(message, turn_expectation(_mapping(data.get("expect"))))


def case_expectation(data: Mapping[str, Any]) -> CaseExpectation:
    return CaseExpectation(
        flow_completed=str(data["flow_completed"]) if "flow_completed" in data else None,
        slots=_mapping(data["slots"]) if "slots" in data else None,
        action=_action(data["action"]) if "action" in data else None,
        handoff=bool(data["handoff"]) if "handoff" in data else None,
    )


def case_from_dict(data: Mapping[str, Any]) -> GoldenCase:
    """Rebuild a case from its plain form (as :func:`engine.evaluation.golden_load.load_golden` gives it)."""
    tags = _mapping(data.get("tags"))
    priority = str(tags.get("priority"))
    if priority not in PRIORITIES:
        raise ValueError(f"case {data.get('case_id')!r}: priority must be P0 or P1, got {priority!r}")
    return GoldenCase(
        case_id=str(data["case_id"]),
        use_case=str(tags["use_case"]),
        priority="P0" if priority == "P0" else "P1",
        turns=tuple(turn_from_dict(_mapping(t)) for t in _turns(data)),
        channel=str(tags["channel"]) if tags.get("channel") is not None else None,
        labels=_strings(tags.get("labels")),
        description=str(data.get("description") or ""),
        slots=_mapping(data.get("slots")),
        metadata=_mapping(data.get("metadata")),
        stubs={str(name): stub_answers(value) for name, value in _mapping(data.get("stubs")).items()},
        expect=case_expectation(_mapping(data["expect"])) if "expect" in data else None,
        source=str(data.get("source") or ""),
    )


def _turns(data: Mapping[str, Any]) -> Sequence[object]:
    turns = data.get("turns")
    return turns if isinstance(turns, list) else []
