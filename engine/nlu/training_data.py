"""NLU training data from ``nlu_data/*.yml`` (Rasa's format), with inline entity
annotations parsed into spans.

``[C12345](customer_id)`` and ``[urgent]{"entity": "priority", "value": "high"}`` become
:class:`EntityAnnotation` spans over the plain text ``C12345`` / ``urgent``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from engine.diagnostics import EngineError, Location

_ANNOTATION = re.compile(r"\[(?P<text>[^\]\[]+?)\](?:\((?P<plain>[^)]*)\)|\{(?P<json>[^}]*)\})")


class AnnotationError(EngineError, ValueError):
    """A malformed inline entity annotation; ``offset`` is the position in the example."""

    def __init__(self, message: str, offset: int) -> None:
        self.message = message
        self.offset = offset
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class EntityAnnotation:
    start: int
    end: int
    text: str
    entity: str
    value: str
    """The canonical value (the text itself unless the annotation gives one)."""
    role: str | None = None
    group: str | None = None


@dataclass(frozen=True, slots=True)
class Example:
    text: str
    intent: str
    entities: tuple[EntityAnnotation, ...]
    loc: Location


@dataclass(frozen=True, slots=True)
class RegexFeature:
    name: str
    patterns: tuple[str, ...]
    loc: Location


@dataclass(frozen=True, slots=True)
class LookupTable:
    name: str
    elements: tuple[str, ...]
    loc: Location


@dataclass(frozen=True)
class TrainingData:
    language: str
    examples: tuple[Example, ...]
    synonyms: Mapping[str, str]
    """Surface form (lower-cased) -> canonical value."""
    regexes: tuple[RegexFeature, ...]
    lookups: tuple[LookupTable, ...]

    def intents(self) -> set[str]:
        return {ex.intent for ex in self.examples}

    def examples_for(self, intent: str) -> list[Example]:
        return [ex for ex in self.examples if ex.intent == intent]


def compile_any(patterns: Sequence[str]) -> re.Pattern[str]:
    """One regex matching any of ``patterns`` (each kept as its own group-free alternative)."""
    return re.compile("|".join(f"(?:{p})" for p in patterns))


def parse_annotated(raw: str) -> tuple[str, tuple[EntityAnnotation, ...]]:
    """Strip inline annotations from ``raw``; return the plain text and the spans."""
    out: list[str] = []
    spans: list[EntityAnnotation] = []
    pos = 0
    length = 0
    taken: list[tuple[int, int]] = []
    for m in _ANNOTATION.finditer(raw):
        taken.append((m.start(), m.end()))
        out.append(raw[pos : m.start()])
        length += m.start() - pos
        text = m.group("text")
        entity, value, role, group = _annotation_fields(m, text)
        spans.append(EntityAnnotation(length, length + len(text), text, entity, value, role, group))
        out.append(text)
        length += len(text)
        pos = m.end()
    out.append(raw[pos:])
    plain = "".join(out)
    for stray in re.finditer(r"\]\(|\]\{", raw):
        at = stray.start()
        if any(start <= at < end for start, end in taken):
            continue
        if at > 0 and raw[at - 1] == "[":
            raise AnnotationError("the annotation has an empty text: write [text](entity)", at - 1)
        opener = raw[at + 1]
        closer = ")" if opener == "(" else "}"
        raise AnnotationError(f"the annotation's {opener!r} is not closed with {closer!r}", at + 1)
    return plain, tuple(spans)


def _annotation_fields(m: re.Match[str], text: str) -> tuple[str, str, str | None, str | None]:
    if m.group("plain") is not None:
        body = m.group("plain").strip()
        entity, _, value = body.partition(":")
        entity = entity.strip()
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_\-]*", entity):
            raise AnnotationError(f"({body}) is not an entity name", m.start("plain"))
        return entity, (value.strip() or text), None, None
    body = "{" + m.group("json") + "}"
    try:
        data = json.loads(body)
    except json.JSONDecodeError as exc:
        raise AnnotationError(f"{body} is not valid JSON ({exc.msg})", m.start("json") - 1) from exc
    except (ValueError, RecursionError) as exc:  # a number too long to convert, or nesting too deep
        raise AnnotationError(f"{body[:80]} cannot be read ({exc})", m.start("json") - 1) from None
    if not isinstance(data, dict) or not isinstance(data.get("entity"), str):
        raise AnnotationError(f'{body} needs an "entity" name', m.start("json") - 1)
    unknown = set(data) - {"entity", "value", "role", "group"}
    if unknown:
        raise AnnotationError(
            f"{body} has unknown keys: {', '.join(sorted(unknown))} (allowed: entity, value, role, group)",
            m.start("json") - 1,
        )
    value = data.get("value", text)
    role = data.get("role")
    group = data.get("group")
    return (
        data["entity"],
        str(value),
        (str(role) if role is not None else None),
        (str(group) if group is not None else None),
    )


def split_block_examples(block: str) -> list[tuple[int, str]]:
    """Rasa's ``examples: |`` block: ``- text`` lines -> (line offset, text)."""
    items: list[tuple[int, str]] = []
    for offset, line in enumerate(block.splitlines()):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.startswith("- "):
            stripped = stripped[2:].strip()
        elif stripped == "-":
            continue
        items.append((offset, stripped))
    return items
