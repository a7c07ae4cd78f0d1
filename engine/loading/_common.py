"""Helpers shared by the model builders."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from engine.conditions import Condition, ConditionSyntaxError, parse_condition
from engine.conditions import Literal as LiteralExpr
from engine.diagnostics import Diagnostic, Location
from engine.errors import Errors
from engine.loading.yaml_reader import PathPart, SourceFile

T = TypeVar("T")


@dataclass
class Merged(Generic[T]):
    """Named definitions merged from several files; duplicates become E201."""

    what: str
    """e.g. "intent", "slot" (for messages)."""
    items: dict[str, T] = field(default_factory=dict)
    where: dict[str, Location] = field(default_factory=dict)
    diagnostics: list[Diagnostic] = field(default_factory=list)

    def add(self, name: str, item: T, loc: Location) -> None:
        first = self.where.get(name)
        if first is not None:
            self.diagnostics.append(
                Errors.E201.at(
                    loc,
                    f"the {self.what} {name!r} is defined twice; first defined at {first}",
                    related=[first],
                    fix=f"Keep one definition of {self.what} {name!r} and remove or rename the other.",
                )
            )
            return
        self.items[name] = item
        self.where[name] = loc


def condition_at(source: SourceFile, path: Sequence[PathPart], text: str) -> tuple[Condition | None, Diagnostic | None]:
    """Parse a condition found at ``path``; a syntax error points at its exact column."""
    start = source.loc(path)
    start = Location(start.path, start.line, start.col + source.value_column_offset(path))
    try:
        return parse_condition(text, start), None
    except ConditionSyntaxError as exc:
        loc = start
        if "\n" not in text[: exc.offset]:
            loc = Location(loc.path, loc.line, loc.col + exc.offset)
        return None, Errors.E315.at(
            loc,
            f"the condition {text!r} does not parse: {exc.message}",
            expected="e.g. \"priority == 'high'\", \"customer_id is set and not vip\", \"priority in ['high', 'medium']\"",
        )


def never(text: str) -> Condition:
    """Stands in for a condition that did not parse (already reported): never true, reads no slot."""
    return Condition(text, LiteralExpr(False))


def names(value: str | list[str] | None) -> tuple[str, ...]:
    """A name or a list of names as a tuple."""
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)
