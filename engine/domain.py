"""The domain: intents, entities, slots, responses, actions and session settings.

Built from ``domain/*.yml`` by :mod:`engine.loading.build_domain`; immutable after that.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from engine.conditions import Condition
from engine.diagnostics import Location
from engine.events import JsonValue

ENGINE_PLACEHOLDERS: Mapping[str, frozenset[str]] = {
    "utter_flow_resumed": frozenset({"flow_name"}),
    "utter_invalid_value": frozenset({"slot", "reason"}),
}
"""Placeholders the engine fills in these responses, besides slot values."""

SlotType = Literal["text", "bool", "categorical", "float", "list", "any"]
MappingType = Literal["from_entity", "from_intent", "from_text", "controlled"]


@dataclass(frozen=True, slots=True)
class Intent:
    name: str
    description: str | None
    use_entities: bool | tuple[str, ...]
    """True: every entity may fill slots; False: none; a tuple: only these."""
    loc: Location


@dataclass(frozen=True, slots=True)
class Entity:
    name: str
    roles: tuple[str, ...]
    groups: tuple[str, ...]
    description: str | None
    loc: Location


@dataclass(frozen=True, slots=True)
class SlotMapping:
    type: MappingType
    entity: str | None = None
    role: str | None = None
    group: str | None = None
    intents: tuple[str, ...] = ()
    """Only fill from messages with one of these intents (empty: any)."""
    not_intents: tuple[str, ...] = ()
    value: JsonValue = None
    """The value a ``from_intent`` mapping sets."""
    active_flow: str | None = None
    loc: Location = field(default_factory=lambda: Location(""))
    key_locs: tuple[tuple[str, Location], ...] = ()
    """Where each key's value is written (``entity``, ``role``...), for precise diagnostics."""

    def at(self, key: str) -> Location:
        """Where the value of ``key`` is written; the mapping's own place if unknown."""
        return next((loc for k, loc in self.key_locs if k == key), self.loc)


@dataclass(frozen=True, slots=True)
class Slot:
    name: str
    type: SlotType
    mappings: tuple[SlotMapping, ...]
    initial_value: JsonValue = None
    values: tuple[JsonValue, ...] = ()
    """Allowed values of a categorical slot."""
    min_value: float | None = None
    max_value: float | None = None
    influence_conversation: bool = False
    description: str | None = None
    loc: Location = field(default_factory=lambda: Location(""))

    @property
    def controlled(self) -> bool:
        """Set only by flows and actions, never from the user's message."""
        return all(m.type == "controlled" for m in self.mappings) if self.mappings else False


@dataclass(frozen=True, slots=True)
class Button:
    title: str
    payload: str


@dataclass(frozen=True, slots=True)
class ResponseVariation:
    text: str | None
    condition: Condition | None
    channel: str | None
    buttons: tuple[Button, ...]
    quick_replies: tuple[Button, ...]
    image: str | None
    custom: Mapping[str, JsonValue] | None
    loc: Location


@dataclass(frozen=True, slots=True)
class Response:
    name: str
    variations: tuple[ResponseVariation, ...]
    loc: Location


@dataclass(frozen=True, slots=True)
class SessionConfig:
    expiration_minutes: float = 60.0
    """Minutes of inactivity that start a new session; 0 means never."""
    carry_over_slots: bool = True


@dataclass(frozen=True)
class Domain:
    intents: Mapping[str, Intent]
    entities: Mapping[str, Entity]
    slots: Mapping[str, Slot]
    responses: Mapping[str, Response]
    actions: Mapping[str, Location]
    """Custom action / tool names and where they are declared."""
    session_config: SessionConfig
