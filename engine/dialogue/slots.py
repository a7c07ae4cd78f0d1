"""Slot mappings and value checks: from a parsed user message to ``SlotSet`` candidates.

Mappings follow Rasa's semantics: ``from_entity`` (optionally a role / group, intent
filters, only while a given flow is active), ``from_intent`` (a fixed value),
``from_text`` (the whole message: while the slot is being collected, or on any message
whose intent the mapping names, e.g. the question that starts an FAQ flow) and
``controlled`` (set by actions and ``set_slots`` only). Every candidate value is coerced to
the slot's type and checked (categorical values, numeric range) before it may be set.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from engine.domain import Domain, Slot, SlotMapping
from engine.events import JsonValue, UserUttered

_TRUE = {"true", "yes", "y", "yeah", "yep", "sure", "ok", "okay", "1", "on", "correct", "right"}
_FALSE = {"false", "no", "n", "nope", "nah", "0", "off", "wrong", "incorrect"}


@dataclass(frozen=True, slots=True)
class Candidate:
    """A value a message offers for a slot (before validation)."""

    slot: str
    value: JsonValue
    mapping: str
    """The mapping type that produced it."""


@dataclass(frozen=True, slots=True)
class Checked:
    ok: bool
    value: JsonValue
    reason: str = ""


def candidates(
    domain: Domain,
    message: UserUttered,
    *,
    active_flow: str | None,
    collecting: str | None,
) -> list[Candidate]:
    """The slot values ``message`` offers, in slot declaration order (one per slot)."""
    out: list[Candidate] = []
    intent = message.intent
    known = domain.intents.get(intent) if intent is not None else None
    use = known.use_entities if known is not None else True
    for slot in domain.slots.values():
        for mapping in slot.mappings:
            value = _mapped(slot, mapping, message, intent, use, active_flow, collecting)
            if value is not _NOTHING:
                out.append(Candidate(slot.name, value, mapping.type))
                break
    return out


class _Nothing:
    pass


_NOTHING = _Nothing()


def _mapped(
    slot: Slot,
    m: SlotMapping,
    message: UserUttered,
    intent: str | None,
    use_entities: bool | tuple[str, ...],
    active_flow: str | None,
    collecting: str | None,
) -> JsonValue | _Nothing:
    if m.active_flow is not None and m.active_flow != active_flow:
        return _NOTHING
    if m.intents and intent not in m.intents:
        return _NOTHING
    if intent is not None and intent in m.not_intents:
        return _NOTHING
    if m.type == "from_entity":
        if m.entity is None or not _entity_allowed(m.entity, use_entities):
            return _NOTHING
        values = [
            e.get("value")
            for e in message.entities
            if e.get("entity") == m.entity
            and (m.role is None or e.get("role") == m.role)
            and (m.group is None or e.get("group") == m.group)
        ]
        if not values:
            return _NOTHING
        return list(values) if slot.type == "list" else values[0]
    if m.type == "from_intent":
        return m.value if intent is not None and intent in m.intents else _NOTHING
    if m.type == "from_text":
        if message.source == "shortcut" or (collecting != slot.name and not m.intents):
            return _NOTHING
        return message.text
    return _NOTHING


def _entity_allowed(entity: str, use: bool | tuple[str, ...]) -> bool:
    return use if isinstance(use, bool) else entity in use


def check(slot: Slot, value: JsonValue) -> Checked:
    """Coerce ``value`` to the slot's type and check it (None always passes: it clears)."""
    if value is None:
        return Checked(True, None)
    match slot.type:
        case "text":
            return Checked(True, value if isinstance(value, str) else str(value))
        case "bool":
            if isinstance(value, bool):
                return Checked(True, value)
            word = str(value).strip().lower()
            if word in _TRUE:
                return Checked(True, True)
            if word in _FALSE:
                return Checked(True, False)
            return Checked(False, value, "expected yes or no")
        case "float":
            try:
                number = float(str(value).replace(",", "")) if not isinstance(value, int | float) else float(value)
            except ValueError:
                return Checked(False, value, "expected a number")
            if slot.min_value is not None and number < slot.min_value:
                return Checked(False, number, f"must be at least {_num(slot.min_value)}")
            if slot.max_value is not None and number > slot.max_value:
                return Checked(False, number, f"must be at most {_num(slot.max_value)}")
            return Checked(True, number)
        case "categorical":
            for allowed in slot.values:
                if str(allowed).lower() == str(value).strip().lower():
                    return Checked(True, allowed)
            choices = ", ".join(str(v) for v in slot.values)
            return Checked(False, value, f"expected one of {choices}")
        case "list":
            return Checked(True, list(value) if isinstance(value, list | tuple) else [value])
        case _:
            return Checked(True, value)


def typed(slot: Slot | None, value: JsonValue) -> JsonValue:
    """``value`` as the slot's type (``3`` in a float slot is ``3.0``; a categorical value in
    the slot's own spelling), for values the project's files declare (``initial_value``,
    ``set_slots``), which loading has already checked; a value that does not fit is kept."""
    if slot is None or value is None:
        return value
    result = check(slot, value)
    return result.value if result.ok else value


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def slot_sets(
    domain: Domain, offered: Sequence[Candidate], current: Mapping[str, JsonValue]
) -> tuple[list[tuple[str, JsonValue]], list[tuple[Candidate, str]]]:
    """Checked values that change a slot, and the rejected candidates with the reason."""
    accepted: list[tuple[str, JsonValue]] = []
    rejected: list[tuple[Candidate, str]] = []
    for c in offered:
        result = check(domain.slots[c.slot], c.value)
        if not result.ok:
            rejected.append((c, result.reason))
        elif current.get(c.slot) != result.value:
            accepted.append((c.slot, result.value))
    return accepted, rejected
