"""Golden-case templates (``taiwa golden generate``): the file format, read and checked.

A templates file is YAML. Each template is a golden case (see ``golden.schema.json``) whose
strings may hold ``{placeholders}``, plus a ``values:`` mapping that says what each
placeholder takes::

    stubs: {crm_lookup: {result: {account_found: true}}}   # optional: every generated file's defaults
    templates:
      - case_id: account-lookup        # generated ids: account-lookup-0000, account-lookup-0001, ...
        weight: 2                      # optional: its share of --count (default 1)
        values:
          opener: [check my account, I want to check my account]    # a list: one placeholder
          customer:                                                 # a table: each row binds
            - {customer_id: C12345, name: Jane Doe}                 #   several placeholders
            - {customer_id: C48213, name: Omar Haddad}              #   that belong together
        tags: {use_case: account_lookup, priority: P1}
        stubs: {crm_lookup: {result: {account_name: "{name}"}}}
        turns:
          - user: "{opener}"
          - user: "my customer id is {customer_id}"
            expect: {slots: {customer_id: "{customer_id}"}}

A template makes one case per combination of its lists and table rows (their product).
A string that is exactly one placeholder takes the value as it is (a number, true, null);
inside a longer string the value is written as text; ``{{name}}`` is a literal ``{name}``.
Placeholders are filled in values, never in keys.

Reading collects every problem with its ``file:line:col`` and a fix, as the project loader
does: the YAML itself, the file's shape, each ``values:`` entry, placeholders used but not
given (or given but never used), and the golden schema, checked on each template's first
case (at the template's own lines).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ruamel.yaml.comments import CommentedMap

from engine.diagnostics import Diagnostic, Location, ProjectError, sort_key
from engine.errors import Errors
from engine.loading.schema_check import check_source
from engine.loading.yaml_reader import PathPart, SourceFile, parse_text, yaml_type_name

Scalar = str | int | float | bool | None

PLACEHOLDER = re.compile(r"\{\{([A-Za-z_][A-Za-z0-9_]*)\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}")
"""``{name}`` (group 2), or the escaped literal ``{{name}}`` (group 1)."""


class TemplateSetError(ProjectError):
    """The templates file has errors; carries every diagnostic."""

    def __str__(self) -> str:
        errors = [d for d in self.diagnostics if d.severity == "error"]
        return f"{len(errors)} error(s) in the templates\n" + "\n".join(d.format() for d in errors)


@dataclass(frozen=True)
class Dimension:
    """One independent choice of a template: a list (one name) or a table (several names per row)."""

    names: tuple[str, ...]
    rows: tuple[tuple[Scalar, ...], ...]


@dataclass(frozen=True)
class Template:
    prefix: str
    """The template's ``case_id``: generated ids are ``<prefix>-<combination index>``."""
    body: Mapping[str, Any]
    """The golden case with its placeholders (without ``case_id``, ``values`` and ``weight``)."""
    dimensions: tuple[Dimension, ...] = ()
    weight: int = 1

    @property
    def size(self) -> int:
        """How many cases the template makes (the product of its dimensions)."""
        return math.prod(len(d.rows) for d in self.dimensions)

    def bindings(self, index: int) -> dict[str, Scalar]:
        """The values of combination ``index`` (the last dimension varies fastest)."""
        out: dict[str, Scalar] = {}
        for dim in reversed(self.dimensions):
            index, row = divmod(index, len(dim.rows))
            out.update(zip(dim.names, dim.rows[row], strict=True))
        return out

    def case(self, index: int) -> dict[str, Any]:
        """Combination ``index`` as a plain golden case."""
        width = len(str(max(self.size - 1, 0)))
        filled = fill(self.body, self.bindings(index))
        return {"case_id": f"{self.prefix}-{index:0{width}d}", **filled}


@dataclass(frozen=True)
class TemplateSet:
    path: str
    templates: tuple[Template, ...]
    stubs: Mapping[str, Any] | None = None
    """The file's default stubs, written into every generated file."""

    @property
    def size(self) -> int:
        return sum(t.size for t in self.templates)


def fill(value: Any, bindings: Mapping[str, Scalar]) -> Any:
    """``value`` with its placeholders replaced (in strings, inside lists and mapping values)."""
    if isinstance(value, str):
        whole = PLACEHOLDER.fullmatch(value)
        if whole is not None and whole.group(2) is not None:
            return bindings[whole.group(2)]
        return PLACEHOLDER.sub(lambda m: "{" + m.group(1) + "}" if m.group(1) else as_text(bindings[m.group(2)]), value)
    if isinstance(value, Mapping):
        return {k: fill(v, bindings) for k, v in value.items()}
    if isinstance(value, list):
        return [fill(v, bindings) for v in value]
    return value


def as_text(value: Scalar) -> str:
    """A value as it reads inside a longer string (``true``, ``null`` as YAML writes them)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return "null" if value is None else str(value)


def placeholders(value: Any, path: tuple[str | int, ...] = ()) -> Iterator[tuple[str, tuple[str | int, ...]]]:
    """Every ``{name}`` used in ``value`` (not the escaped ones), with the path of its string."""
    if isinstance(value, str):
        for m in PLACEHOLDER.finditer(value):
            if m.group(2) is not None:
                yield m.group(2), path
    elif isinstance(value, Mapping):
        for k, v in value.items():
            yield from placeholders(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from placeholders(v, (*path, i))


TOP_KEYS = ("templates", "stubs", "version")
TEMPLATE_KEYS = ("values", "weight")
"""The keys a template adds to a golden case."""

NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

Path_ = tuple[PathPart, ...]


def load_templates(path: Path, shown: str | None = None) -> TemplateSet:
    """Read and check a templates file; :class:`TemplateSetError` lists every problem."""
    rel = shown or path.as_posix()
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise TemplateSetError(
            [Errors.E003.at(Location(rel), f"cannot read the file: {exc.strerror or exc}")]
        ) from None
    except UnicodeDecodeError as exc:
        raise TemplateSetError(
            [Errors.E003.at(Location(rel), f"byte at offset {exc.start} is not valid UTF-8")]
        ) from None
    source, diags = parse_text(text, rel, "golden templates")
    if source is None:
        if not any(d.severity == "error" for d in diags):
            diags = [_no_templates(Location(rel), "the file is empty")]
        raise TemplateSetError(diags)
    checker = _Checker(source)
    templates = checker.check()
    errors = sorted(checker.diagnostics, key=sort_key)
    if templates is None or errors:
        raise TemplateSetError(errors)
    return templates


def _no_templates(location: Location, message: str) -> Diagnostic:
    return Errors.E102.at(
        location,
        message,
        expected="a mapping with a `templates:` list (and optional default `stubs:`)",
        fix="Start the file with `templates:` and put each template under it as a list item (`- case_id: ...`).",
    )


def _is_scalar(value: object) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


class _Checker:
    """Checks one templates file, collecting every diagnostic."""

    def __init__(self, source: SourceFile) -> None:
        self.source = source
        self.diagnostics: list[Diagnostic] = []

    def loc(self, path: Path_, *, key: bool = False) -> Location:
        return self.source.loc(path, key=key)

    def check(self) -> TemplateSet | None:
        data = self.source.data
        for key in data:
            if key not in TOP_KEYS:
                self.diagnostics.append(
                    Errors.E101.at(
                        self.loc((key,), key=True), f"unknown top-level key `{key}`", valid=TOP_KEYS, name=key
                    )
                )
        raw = data.get("templates")
        if not isinstance(raw, list) or not raw:
            problem = "has no `templates:` list" if raw is None else "`templates` must be a non-empty list"
            where = self.loc(("templates",), key=True) if raw is not None else self.loc(())
            self.diagnostics.append(_no_templates(where, f"the templates file {problem}"))
            return None
        templates = [self.template(i, t) for i, t in enumerate(raw)]
        self.duplicates(raw)
        self.schema(raw, templates)
        if any(t is None for t in templates):
            return None
        stubs = data.get("stubs")
        return TemplateSet(self.source.path, tuple(t for t in templates if t is not None), stubs)

    def template(self, i: int, raw: object) -> Template | None:
        path: Path_ = ("templates", i)
        if not isinstance(raw, dict):
            self.diagnostics.append(
                Errors.E103.at(
                    self.loc(path),
                    f"template {i + 1} must be a mapping (a golden case with `values:`), got {yaml_type_name(raw)}",
                )
            )
            return None
        before = len(self.diagnostics)
        weight = raw.get("weight", 1)
        if isinstance(weight, bool) or not isinstance(weight, int) or weight < 1:
            self.diagnostics.append(
                Errors.E103.at(
                    self.loc((*path, "weight")), f"`weight` must be a whole number of 1 or more, got {weight!r}"
                )
            )
        dimensions, where = self.values(path, raw.get("values"))
        body = {k: v for k, v in raw.items() if k not in ("case_id", *TEMPLATE_KEYS)}
        prefix = str(raw.get("case_id", f"template-{i + 1}"))
        used: set[str] = set()
        for name, at in placeholders(body):
            used.add(name)
            if name not in where:
                self.diagnostics.append(
                    Errors.E102.at(
                        self.loc((*path, *at)),
                        f"template '{prefix}' uses {{{name}}} but its `values:` do not give `{name}`",
                        valid=where,
                        name=name,
                        fix=f"Add `{name}: [...]` under the template's `values:`, correct the placeholder, "
                        f"or write {{{{{name}}}}} for a literal {{{name}}}.",
                    )
                )
        for name in sorted(set(where) - used):
            self.diagnostics.append(
                Errors.E101.at(
                    self.loc(where[name], key=True),
                    f"template '{prefix}' gives values for `{name}` but never uses {{{name}}}",
                    fix=f"Use {{{name}}} in a message or an expectation, or remove it: "
                    "values nothing uses would only repeat the same case.",
                )
            )
        if len(self.diagnostics) > before:
            return None
        return Template(prefix, body, tuple(dimensions), int(weight))

    def values(self, path: Path_, raw: object) -> tuple[list[Dimension], dict[str, Path_]]:
        """The template's dimensions, and where each placeholder name is given."""
        where: dict[str, Path_] = {}
        dimensions: list[Dimension] = []
        if raw is None:
            return dimensions, where
        vpath: Path_ = (*path, "values")
        if not isinstance(raw, dict):
            self.diagnostics.append(
                Errors.E103.at(
                    self.loc(vpath),
                    f"`values` must be a mapping of placeholder -> list of values, got {yaml_type_name(raw)}",
                )
            )
            return dimensions, where
        for key, items in raw.items():
            dim = self.dimension((*vpath, key), key, items)
            if dim is None:
                continue
            for name in dim.names:
                at: Path_ = (*vpath, key) if len(dim.names) == 1 and name == key else (*vpath, key, 0, name)
                if not NAME.fullmatch(name):
                    self.diagnostics.append(
                        Errors.E105.at(self.loc(at, key=True), f"placeholder name `{name}` has characters not allowed")
                    )
                if name in where:
                    self.diagnostics.append(
                        Errors.E201.at(
                            self.loc(at, key=True),
                            f"`{name}` is given twice in `values`",
                            related=[self.loc(where[name], key=True)],
                            fix="Give each placeholder once: in one list, or as a column of one table.",
                        )
                    )
                where[name] = at
            dimensions.append(dim)
        return dimensions, where

    def dimension(self, path: Path_, key: str, items: object) -> Dimension | None:
        if not isinstance(items, list) or not items:
            self.diagnostics.append(
                Errors.E107.at(
                    self.loc(path),
                    f"`values.{key}` must be a non-empty list (of values, or of table rows)",
                    fix=f"Give `{key}` a list, e.g. `{key}: [first, second]`.",
                )
            )
            return None
        tables = [isinstance(x, dict) for x in items]
        if any(tables) and not all(tables):
            self.diagnostics.append(
                Errors.E103.at(self.loc(path), f"`values.{key}` mixes single values and table rows (mappings)")
            )
            return None
        if not all(tables):
            bad = [j for j, x in enumerate(items) if not _is_scalar(x)]
            for j in bad:
                self.diagnostics.append(
                    Errors.E103.at(
                        self.loc((*path, j)), f"a value of `{key}` must be text, a number, true/false or null"
                    )
                )
            return None if bad else Dimension((key,), tuple((x,) for x in items))
        names = tuple(items[0])
        ok = True
        for r, row in enumerate(items):
            missing = [n for n in names if n not in row]
            extra = [n for n in row if n not in names]
            if missing:
                ok = False
                self.diagnostics.append(
                    Errors.E102.at(
                        self.loc((*path, r)),
                        f"row {r + 1} of table `{key}` lacks {', '.join(f'`{n}`' for n in missing)}",
                        fix="Give every row of a table the same keys as its first row.",
                    )
                )
            for n in extra:
                ok = False
                self.diagnostics.append(
                    Errors.E101.at(
                        self.loc((*path, r, n), key=True),
                        f"row {r + 1} of table `{key}` has `{n}`, which its first row does not have",
                        valid=names,
                        name=n,
                        fix="Give every row of a table the same keys as its first row.",
                    )
                )
            for n, value in row.items():
                if not _is_scalar(value):
                    ok = False
                    self.diagnostics.append(
                        Errors.E103.at(
                            self.loc((*path, r, n)),
                            f"`{n}` in table `{key}` must be text, a number, true/false or null",
                        )
                    )
        return Dimension(names, tuple(tuple(row.get(n) for n in names) for row in items)) if ok else None

    def duplicates(self, raw: Sequence[object]) -> None:
        first: dict[str, int] = {}
        for i, item in enumerate(raw):
            prefix = item.get("case_id") if isinstance(item, dict) else None
            if not isinstance(prefix, str):
                continue
            if prefix in first:
                self.diagnostics.append(
                    Errors.E201.at(
                        self.loc(("templates", i, "case_id")),
                        f"two templates have the case_id '{prefix}': their cases would get the same ids",
                        related=[self.loc(("templates", first[prefix], "case_id"))],
                        fix="Give every template its own `case_id`.",
                    )
                )
            else:
                first[prefix] = i

    def schema(self, raw: Sequence[object], templates: Sequence[Template | None]) -> None:
        """The golden schema on each template's first case, located at the template's lines."""
        cases: list[object] = []
        for item, template in zip(raw, templates, strict=True):
            if template is not None:
                cases.append(template.case(0))
            else:
                cases.append(
                    {k: v for k, v in item.items() if k not in TEMPLATE_KEYS} if isinstance(item, dict) else item
                )
        data: dict[str, Any] = {"cases": cases}
        tree = CommentedMap()
        for ours, theirs in (("cases", "templates"), ("stubs", "stubs"), ("version", "version")):
            if theirs in self.source.data:
                tree[ours] = self.source.tree[theirs]
                tree.lc.add_kv_line_col(ours, self.source.tree.lc.data[theirs])
                data[ours] = cases if ours == "cases" else self.source.data[theirs]
        golden = SourceFile(self.source.path, "golden", data, tree, self.source.text)
        for diag in check_source(golden):
            message = diag.message.replace("`cases[", "`templates[").replace(" cases[", " templates[")
            self.diagnostics.append(replace(diag, message=message))
