"""Source locations, diagnostics and the project error type.

A :class:`Diagnostic` is one problem found in a project, with where it is, what was
expected, the valid choices and the fix. Loading collects every diagnostic before
reporting, so a designer sees all problems at once.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

Severity = Literal["error", "warning"]


@dataclass(frozen=True, slots=True, order=True)
class Location:
    """A place in a project file; line and column are 1-based."""

    path: str
    """File path relative to the project directory."""
    line: int = 1
    col: int = 1

    def __str__(self) -> str:
        if self.path.endswith("/"):
            return self.path  # a whole folder: no line to point at
        return f"{self.path}:{self.line}:{self.col}"


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """One problem found while loading a project."""

    code: str
    """Stable code from :mod:`engine.errors` (``E...`` errors, ``W...`` warnings)."""
    severity: Severity
    message: str
    location: Location | None
    expected: str | None = None
    """What would have been accepted here."""
    valid: tuple[str, ...] = ()
    """The valid names, when the problem is an unknown name."""
    suggestion: str | None = None
    """The closest valid name ("did you mean")."""
    fix: str | None = None
    related: tuple[Location, ...] = field(default=())
    """Other places involved (e.g. the first definition of a duplicate)."""

    def format(self) -> str:
        """Render as ``path:line:col: error[E123] message`` plus detail lines."""
        where = f"{self.location}: " if self.location else ""
        lines = [f"{where}{self.severity}[{self.code}] {self.message}"]
        for loc in self.related:
            lines.append(f"  see also: {loc}")
        if self.expected:
            lines.append(f"  expected: {self.expected}")
        if self.valid:
            shown = ", ".join(self.valid[:20])
            more = f" (and {len(self.valid) - 20} more)" if len(self.valid) > 20 else ""
            lines.append(f"  valid: {shown}{more}")
        if self.suggestion:
            lines.append(f"  did you mean: {self.suggestion!r}?")
        if self.fix:
            lines.append(f"  Fix: {self.fix}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready form (``taiwa validate --json``)."""
        loc = self.location
        return {
            "code": self.code,
            "severity": self.severity,
            "message": self.message,
            "path": loc.path if loc else None,
            "line": loc.line if loc else None,
            "col": loc.col if loc else None,
            "expected": self.expected,
            "valid": list(self.valid),
            "suggestion": self.suggestion,
            "fix": self.fix,
            "related": [str(r) for r in self.related],
        }


class EngineError(Exception):
    """Base class of every error the engine raises on purpose."""


class ProjectError(EngineError, ValueError):
    """A project could not be loaded; carries every diagnostic found."""

    def __init__(self, diagnostics: Sequence[Diagnostic]) -> None:
        self.diagnostics: tuple[Diagnostic, ...] = tuple(diagnostics)
        super().__init__(self.__str__())

    @property
    def errors(self) -> tuple[Diagnostic, ...]:
        return tuple(d for d in self.diagnostics if d.severity == "error")

    def __str__(self) -> str:
        errors = [d for d in self.diagnostics if d.severity == "error"]
        head = f"{len(errors)} error(s) in the project"
        return head + ("\n" + "\n".join(d.format() for d in errors) if errors else "")


def closest(name: str, options: Iterable[str]) -> str | None:
    """The option most like ``name``, if any is close enough to be a likely typo."""
    matches = difflib.get_close_matches(name, list(options), n=1, cutoff=0.6)
    return matches[0] if matches else None


def sort_key(d: Diagnostic) -> tuple[int, str, int, int, str]:
    """Errors before warnings, then by file position."""
    loc = d.location or Location("", 0, 0)
    return (0 if d.severity == "error" else 1, loc.path, loc.line, loc.col, d.code)
