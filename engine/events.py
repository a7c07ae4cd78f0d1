"""Conversation events: immutable values, the only source of conversation state.

Every event has a stable wire name (``type``) that is never renamed. Events are
serialised through one explicit table, :data:`EVENT_TYPES`; event classes are never
discovered by scanning subclasses.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar, TypeAlias

JsonValue: TypeAlias = Any
"""A value that survives ``json.dumps``: None, bool, number, str, list or dict of those."""


@dataclass(frozen=True, slots=True)
class SlotSet:
    """A slot got a new value (``None`` clears it)."""

    type: ClassVar[str] = "slot_set"
    name: str
    """The slot's name, as declared in ``domain/``."""
    value: JsonValue


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


@dataclass(frozen=True, slots=True)
class ActionExecuted:
    """An action or tool ran."""

    type: ClassVar[str] = "action_executed"
    name: str


Event: TypeAlias = SlotSet | BotUttered | ActionExecuted

EVENT_TYPES: dict[str, type[Event]] = {cls.type: cls for cls in (SlotSet, BotUttered, ActionExecuted)}


def event_to_dict(event: Event) -> dict[str, JsonValue]:
    """Serialise an event with its wire name under ``"event"``."""
    data = asdict(event)
    if isinstance(event, BotUttered):
        data["buttons"] = list(event.buttons)
    return {"event": event.type, **data}


def event_from_dict(data: dict[str, JsonValue]) -> Event:
    """Rebuild an event from :func:`event_to_dict` output."""
    kind = data.get("event")
    cls = EVENT_TYPES.get(str(kind))
    if cls is None:
        known = ", ".join(sorted(EVENT_TYPES))
        raise ValueError(f"unknown event type {kind!r}; known types: {known}")
    names = {f.name for f in fields(cls)}
    kwargs = {k: v for k, v in data.items() if k in names}
    if cls is BotUttered and "buttons" in kwargs:
        kwargs["buttons"] = tuple(kwargs["buttons"])
    return cls(**kwargs)
