"""Read the LLM's JSON answer and check it against the domain.

Two steps, both pure. :func:`parse_answer` checks the *shape* (a JSON object with ``intent``,
``entities`` and a numeric ``confidence``); a wrong shape raises
:class:`InvalidAnswerError`, a :class:`BadResponseError`, so the chain asks the next provider.
:func:`validate_answer` checks the *content* against the domain: an unknown intent means the
local NLU's answer stands, and entities of unknown types, roles or groups are dropped. Nothing
the LLM says can name an intent or entity the assistant does not declare.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Literal

from engine.domain import Domain
from engine.llm.pii import MaskedText
from engine.llm.providers import BadResponseError
from engine.nlu.entities import ExtractedEntity

EXTRACTOR = "llm"
"""The ``extractor`` of entities found by the LLM."""
_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL | re.IGNORECASE)
_NO_INTENT = frozenset({"", "null", "none"})


class InvalidAnswerError(BadResponseError):
    """The completion is not a JSON object of the expected shape."""

    kind = "invalid_answer"


@dataclass(frozen=True, slots=True)
class AnswerEntity:
    entity: str
    value: str
    """As the LLM wrote it: may contain placeholders such as ``<EMAIL>``."""
    role: str | None = None
    group: str | None = None


@dataclass(frozen=True, slots=True)
class LlmAnswer:
    """A well-formed answer, not yet checked against the domain."""

    intent: str | None
    confidence: float
    """Clamped to [0, 1]."""
    entities: tuple[AnswerEntity, ...] = ()
    dropped: tuple[str, ...] = ()
    """Entity items that were not well formed, and why."""


@dataclass(frozen=True, slots=True)
class ValidatedAnswer:
    """What is left of an answer once checked against the domain."""

    intent: str | None
    """None when the answer names no intent or one the domain does not declare."""
    confidence: float
    entities: tuple[ExtractedEntity, ...]
    reason: Literal["no_intent", "unknown_intent"] | None
    """Why ``intent`` is None."""
    dropped: tuple[str, ...]
    """Entities dropped, and why (shape problems included)."""


def parse_answer(text: str) -> LlmAnswer:
    """The answer in a completion's text.

    Tolerates a Markdown code fence or a sentence around the object (common without a JSON
    mode), nothing else.

    Raises:
        InvalidAnswerError: not a JSON object, ``intent`` not a string or null, ``entities``
            not a list, ``confidence`` missing or not a finite number.
    """
    data = _load_object(text)
    intent = data.get("intent")
    if intent is not None and not isinstance(intent, str):
        raise InvalidAnswerError(f"'intent' is {_json_type(intent)}, expected a string or null")
    confidence = data.get("confidence")
    if isinstance(confidence, bool) or not isinstance(confidence, int | float) or not math.isfinite(confidence):
        raise InvalidAnswerError(f"'confidence' is {json.dumps(confidence)}, expected a number from 0 to 1")
    raw_entities = data.get("entities", [])
    if raw_entities is None:
        raw_entities = []
    if not isinstance(raw_entities, list):
        raise InvalidAnswerError(f"'entities' is {_json_type(raw_entities)}, expected a list")
    entities: list[AnswerEntity] = []
    dropped: list[str] = []
    for i, item in enumerate(raw_entities):
        entity, problem = _entity(item)
        if entity is None:
            dropped.append(f"entities[{i}]: {problem}")
        else:
            entities.append(entity)
    return LlmAnswer(intent, min(1.0, max(0.0, float(confidence))), tuple(entities), tuple(dropped))


def validate_answer(answer: LlmAnswer, domain: Domain, masked: MaskedText) -> ValidatedAnswer:
    """Keep only what the domain declares; put masked personal data back into entity values.

    Entities get their position in the original text when the value is written there
    (case-insensitively); otherwise (a value the LLM normalised) ``start == end == -1``.
    """
    intent = answer.intent
    reason: Literal["no_intent", "unknown_intent"] | None = None
    if intent is None or (intent not in domain.intents and intent.strip().lower() in _NO_INTENT):
        intent, reason = None, "no_intent"
    elif intent not in domain.intents:
        intent, reason = None, "unknown_intent"
    dropped = list(answer.dropped)
    entities: list[ExtractedEntity] = []
    seen: set[tuple[str, str, str | None, str | None]] = set()
    original = masked.original
    for item in answer.entities:
        declared = domain.entities.get(item.entity)
        if declared is None:
            dropped.append(f"{item.entity}: unknown entity type")
            continue
        if item.role is not None and item.role not in declared.roles:
            dropped.append(f"{item.entity}: unknown role {item.role!r}")
            continue
        if item.group is not None and item.group not in declared.groups:
            dropped.append(f"{item.entity}: unknown group {item.group!r}")
            continue
        value = masked.unmask(item.value)
        if value is None:
            dropped.append(f"{item.entity}: the value refers to masked data that cannot be restored")
            continue
        key = (item.entity, value, item.role, item.group)
        if key in seen:
            continue
        seen.add(key)
        start = original.lower().find(value.lower()) if value else -1
        end = start + len(value) if start >= 0 else -1
        entities.append(
            ExtractedEntity(
                entity=item.entity,
                value=value,
                start=start,
                end=end,
                text=original[start:end] if start >= 0 else value,
                extractor=EXTRACTOR,
                role=item.role,
                group=item.group,
                confidence=answer.confidence,
            )
        )
    return ValidatedAnswer(intent, answer.confidence, tuple(entities), reason, tuple(dropped))


def _load_object(text: str) -> dict[str, object]:
    stripped = text.strip()
    fenced = _FENCE.match(stripped)
    if fenced:
        stripped = fenced.group(1)
    try:
        data = json.loads(stripped)
    except ValueError:
        first, last = stripped.find("{"), stripped.rfind("}")
        if first < 0 or last <= first:
            raise InvalidAnswerError("the answer is not JSON") from None
        try:
            data = json.loads(stripped[first : last + 1])
        except ValueError:
            raise InvalidAnswerError("the answer is not JSON") from None
    if not isinstance(data, dict):
        raise InvalidAnswerError(f"the answer is {_json_type(data)}, expected an object")
    return data


def _entity(item: object) -> tuple[AnswerEntity | None, str]:
    if not isinstance(item, dict):
        return None, f"{_json_type(item)}, expected an object"
    entity, value = item.get("entity"), item.get("value")
    if not isinstance(entity, str) or not entity:
        return None, "no 'entity' name"
    if isinstance(value, bool) or not isinstance(value, str | int | float) or value == "":
        return None, f"{entity}: no usable 'value'"
    role, group = item.get("role"), item.get("group")
    if not isinstance(role, str | None) or not isinstance(group, str | None):
        return None, f"{entity}: 'role' and 'group' must be strings"
    return AnswerEntity(entity, str(value), role or None, group or None), ""


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "a list" if isinstance(value, list) else "an object"
