"""Conversation events: immutable values, the only source of conversation state.

Every event has a stable wire name (``type``) that is never renamed. Events are
serialised through one explicit table, :data:`EVENT_TYPES`; event classes are never
discovered by scanning subclasses. The tracker's state (slots, flow stack, handoff,
fallbacks in a row, ...) is a replay of these events and nothing else.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar, TypeAlias

JsonValue: TypeAlias = Any
"""A value that survives ``json.dumps``: None, bool, number, str, list or dict of those."""


# -- the conversation's boundaries ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SessionStarted:
    """A new session began (first message, or the previous one expired)."""

    type: ClassVar[str] = "session_started"
    metadata: dict[str, JsonValue] = field(default_factory=dict)
    timestamp: float = 0.0
    """Unix time; session expiry is measured from the last user message."""


@dataclass(frozen=True, slots=True)
class Restarted:
    """The user restarted the conversation: everything before is forgotten."""

    type: ClassVar[str] = "restarted"


# -- messages ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UserUttered:
    """The user said something, with what the NLU (or the LLM fallback) understood."""

    type: ClassVar[str] = "user_uttered"
    text: str
    intent: str | None = None
    confidence: float = 0.0
    entities: tuple[dict[str, JsonValue], ...] = ()
    ranking: tuple[dict[str, JsonValue], ...] = ()
    """The top intents with confidences."""
    source: str = "nlu"
    """``nlu``, ``llm``, ``cache`` (an LLM answer remembered) or ``shortcut`` (``/intent{...}``)."""
    channel: str | None = None
    message_id: str | None = None
    turn_id: str | None = None
    timestamp: float = 0.0
    """Unix time the message arrived (session expiry is measured from it)."""


@dataclass(frozen=True, slots=True)
class BotUttered:
    """The assistant said something."""

    type: ClassVar[str] = "bot_uttered"
    text: str | None = None
    """The rendered text."""
    response: str | None = None
    """Name of the domain response it was rendered from, if any."""
    buttons: tuple[dict[str, str], ...] = ()
    """Buttons / quick replies offered with the message."""
    data: dict[str, JsonValue] = field(default_factory=dict)
    """Image, custom payload and other channel data."""


# -- state -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SlotSet:
    """A slot got a new value (``None`` clears it)."""

    type: ClassVar[str] = "slot_set"
    name: str
    """The slot's name, as declared in ``domain/``."""
    value: JsonValue


@dataclass(frozen=True, slots=True)
class SlotRejected:
    """A value for a slot failed validation (type, categorical values, a rejection rule)."""

    type: ClassVar[str] = "slot_rejected"
    name: str
    value: JsonValue
    reason: str
    response: str | None = None


# -- decisions and actions --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PolicyDecided:
    """Which policy chose this turn's next actions, and why."""

    type: ClassVar[str] = "policy_decided"
    policy: str
    reason: str
    actions: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ActionExecuted:
    """An action or tool ran."""

    type: ClassVar[str] = "action_executed"
    name: str
    policy: str | None = None


@dataclass(frozen=True, slots=True)
class ToolCalled:
    """A custom action / tool call with its outcome."""

    type: ClassVar[str] = "tool_called"
    name: str
    status: str
    """``ok``, ``error``, or ``disabled`` (switched off by an operator)."""
    error_type: str | None = None
    """``tool_timeout``, ``tool_4xx``, ``tool_5xx``, ``tool_error`` or ``tool_disabled``."""
    latency_ms: float = 0.0
    attempts: int = 1
    message: str | None = None


@dataclass(frozen=True, slots=True)
class LlmCalled:
    """The LLM fallback was asked (or answered from its cache)."""

    type: ClassVar[str] = "llm_called"
    provider: str | None
    model: str | None
    outcome: str
    """``accepted``, ``rejected`` (unknown intent / bad answer), ``cached`` or ``error``."""
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    error: str | None = None


# -- flows ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FlowStarted:
    """A flow was pushed on the stack (``call`` and interruptions push above the caller)."""

    type: ClassVar[str] = "flow_started"
    flow: str
    how: str = "trigger"
    """``trigger`` (NLU / rule), ``call``, ``link`` or ``interrupt``."""


@dataclass(frozen=True, slots=True)
class FlowStepped:
    """The top flow moved to a step (its position, for replay)."""

    type: ClassVar[str] = "flow_stepped"
    flow: str
    step: str


@dataclass(frozen=True, slots=True)
class FlowInterrupted:
    type: ClassVar[str] = "flow_interrupted"
    flow: str
    by: str


@dataclass(frozen=True, slots=True)
class FlowResumed:
    type: ClassVar[str] = "flow_resumed"
    flow: str


@dataclass(frozen=True, slots=True)
class FlowCompleted:
    type: ClassVar[str] = "flow_completed"
    flow: str


@dataclass(frozen=True, slots=True)
class FlowCancelled:
    type: ClassVar[str] = "flow_cancelled"
    flow: str
    reason: str = "user_cancelled"


# -- fallback and handoff ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FallbackTriggered:
    """The assistant did not understand (low confidence, ambiguity, no applicable policy)."""

    type: ClassVar[str] = "fallback_triggered"
    reason: str
    """``low_confidence``, ``ambiguous``, ``no_policy`` or ``out_of_scope``."""
    top_intents: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class HandoffRequested:
    """The conversation goes to a human; the bot stays silent until released."""

    type: ClassVar[str] = "handoff_requested"
    reason: str
    """``user_request``, ``repeated_fallback``, ``tool_failure`` or ``policy``."""


@dataclass(frozen=True, slots=True)
class HandoffReleased:
    """A human gave the conversation back to the bot."""

    type: ClassVar[str] = "handoff_released"


Event: TypeAlias = (
    SessionStarted
    | Restarted
    | UserUttered
    | BotUttered
    | SlotSet
    | SlotRejected
    | PolicyDecided
    | ActionExecuted
    | ToolCalled
    | LlmCalled
    | FlowStarted
    | FlowStepped
    | FlowInterrupted
    | FlowResumed
    | FlowCompleted
    | FlowCancelled
    | FallbackTriggered
    | HandoffRequested
    | HandoffReleased
)

EVENT_TYPES: dict[str, type[Event]] = {
    cls.type: cls
    for cls in (
        SessionStarted,
        Restarted,
        UserUttered,
        BotUttered,
        SlotSet,
        SlotRejected,
        PolicyDecided,
        ActionExecuted,
        ToolCalled,
        LlmCalled,
        FlowStarted,
        FlowStepped,
        FlowInterrupted,
        FlowResumed,
        FlowCompleted,
        FlowCancelled,
        FallbackTriggered,
        HandoffRequested,
        HandoffReleased,
    )
}

_TUPLE_FIELDS = {
    name: frozenset(f.name for f in fields(cls) if str(f.type).startswith("tuple")) for name, cls in EVENT_TYPES.items()
}


def event_to_dict(event: Event) -> dict[str, JsonValue]:
    """Serialise an event with its wire name under ``"event"`` (tuples become lists)."""
    data = asdict(event)
    for name in _TUPLE_FIELDS[event.type]:
        data[name] = list(data[name])
    return {"event": event.type, **data}


_FIELD_NAMES = {name: tuple(f.name for f in fields(cls)) for name, cls in EVENT_TYPES.items()}
_FIELD_SETS = {name: frozenset(names) for name, names in _FIELD_NAMES.items()}
_COMPACT = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))
"""One encoder for every event (``json.dumps`` with options builds a new one per call)."""
_C_ENCODE: Any = (
    json.encoder.c_make_encoder(  # type: ignore[attr-defined]
        None, _COMPACT.default, json.encoder.encode_basestring, None, ":", ",", False, False, False
    )
    if getattr(json.encoder, "c_make_encoder", None) is not None
    else None
)
"""CPython's C encoder with ``_COMPACT``'s settings, made once: ``JSONEncoder.encode`` builds it
again on every call, most of the cost of encoding a small event. ``None`` elsewhere (PyPy)."""


def event_json(event: Event) -> str:
    """The event as compact JSON: the same text as ``json.dumps(event_to_dict(event))``, without
    :func:`event_to_dict`'s deep copy (a store writes every event of every turn).

    Raises ``TypeError``/``ValueError`` for a value that is not JSON (NaN and infinities included).
    """
    view: dict[str, object] = {"event": event.type}
    for name in _FIELD_NAMES[event.type]:
        view[name] = getattr(event, name)
    if _C_ENCODE is None:
        return _COMPACT.encode(view)
    return "".join(_C_ENCODE(view, 0))


def event_from_dict(data: dict[str, JsonValue]) -> Event:
    """Rebuild an event from :func:`event_to_dict` output (unknown keys are ignored)."""
    kind = data.get("event")
    cls = EVENT_TYPES.get(str(kind))
    if cls is None:
        known = ", ".join(sorted(EVENT_TYPES))
        raise ValueError(f"unknown event type {kind!r}; known types: {known}")
    names = _FIELD_SETS[cls.type]
    kwargs = {k: v for k, v in data.items() if k in names}
    for name in _TUPLE_FIELDS[cls.type]:
        if name in kwargs:
            kwargs[name] = tuple(kwargs[name])
    return cls(**kwargs)
