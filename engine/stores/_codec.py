"""Events to and from the JSON a store keeps: the one place stores touch event values."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from engine.events import Event, event_from_dict, event_json


@dataclass(frozen=True, slots=True)
class EncodedEvent:
    type: str
    """The event's wire name (``SlotSet`` -> ``slot_set``)."""
    data: str
    """``event_to_dict(event)`` as JSON, wire name included."""


def encode_events(events: Sequence[Event]) -> list[EncodedEvent]:
    """Serialise every event before anything is written, so a bad one writes nothing.

    ``allow_nan=False``: NaN and infinities are not JSON, and PostgreSQL's JSONB rejects them;
    every store refuses them the same way (``ValueError``).
    """
    encoded = []
    for event in events:
        try:
            text = event_json(event)
        except (TypeError, ValueError, RecursionError) as exc:  # RecursionError: a value contains itself
            raise ValueError(f"event {event!r} does not serialise to JSON: {exc}") from exc
        encoded.append(EncodedEvent(type=event.type, data=text))
    return encoded


def decode_event(data: str | bytes) -> Event:
    """Rebuild an event from its stored JSON."""
    return event_from_dict(json.loads(data))
