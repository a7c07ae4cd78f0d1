"""Validate plain YAML data against the JSON Schemas and explain each error.

jsonschema's messages speak of instances and subschemas; designers need "unknown key
`entiti` in slots.customer_id.mappings[0]; did you mean `entity`?" at the right line.
This module turns each :class:`jsonschema.ValidationError` into such a diagnostic.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterator, Sequence
from functools import cache
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match

from engine.diagnostics import Diagnostic
from engine.errors import Errors
from engine.loading.yaml_reader import PathPart, SourceFile, yaml_type_name

SCHEMA_KINDS = ("domain", "flows", "policies", "nlu_data")

_KIND_KEYS: dict[frozenset[str], tuple[str, str]] = {
    frozenset({"collect", "action", "utter", "set_slots", "noop", "link", "call"}): (
        "step",
        "collect, action, utter, set_slots, noop, link or call",
    ),
    frozenset({"intent", "synonym", "regex", "lookup"}): ("nlu entry", "intent, synonym, regex or lookup"),
    frozenset({"text", "image", "custom", "buttons"}): ("response variation", "text, image, custom or buttons"),
}

_NOT_ALLOWED_HINTS = {
    "values": "only a categorical slot takes `values`",
    "min_value": "only a float slot takes `min_value`",
    "max_value": "only a float slot takes `max_value`",
    "entity": "only a `from_entity` mapping takes `entity`",
    "role": "only a `from_entity` mapping takes `role`",
    "group": "only a `from_entity` mapping takes `group`",
    "value": "only a `from_intent` mapping takes `value`",
    "intent": "a `controlled` slot is set only by flows and actions, so it takes no `intent`",
    "not_intent": "a `controlled` slot is set only by flows and actions, so it takes no `not_intent`",
    "next": "a `link` step ends the flow, so it takes no `next`",
    "collect": "an utter step cannot also collect; use `utter:` inside the collect step to set its question",
}

_TYPE_WORDS = {
    "string": "a string",
    "object": "a mapping",
    "array": "a list",
    "integer": "an integer",
    "number": "a number",
    "boolean": "a boolean (true/false)",
    "null": "null",
}


@cache
def load_schema(kind: str) -> dict[str, Any]:
    """The JSON Schema for one file kind, from ``engine/schemas/``."""
    text = resources.files("engine.schemas").joinpath(f"{kind}.schema.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


@cache
def _validator(kind: str) -> Draft202012Validator:
    # The schemas ship with the package and are checked against the metaschema by the tests
    # (test_schema_export), not on every start: that check costs ~0.2 s.
    return Draft202012Validator(load_schema(kind))


_ANNOTATIONS = frozenset({"description", "title", "default", "examples", "markdownDescription", "$comment"})


def inline_refs(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema with every local ``{"$ref": "#/$defs/NAME"}`` replaced by a copy of its
    target (a recursive one stays a reference): it accepts exactly the same documents, and
    jsonschema checks a large file in half the time (resolving references was the other half).
    A reference beside other validation keywords becomes ``allOf: [target]``, which is what
    ``$ref`` means in draft 2020-12."""
    defs: dict[str, Any] = schema.get("$defs", {})

    def walk(node: Any, inside: tuple[str, ...]) -> Any:
        if isinstance(node, list):
            return [walk(v, inside) for v in node]
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/") and ref[8:] in defs and ref[8:] not in inside:
            name = ref[8:]
            target = walk(defs[name], (*inside, name))
            rest = {k: walk(v, inside) for k, v in node.items() if k != "$ref"}
            if set(rest) <= _ANNOTATIONS:
                return {**rest, **target}
            return {**rest, "allOf": [target, *rest.get("allOf", [])]}
        return {k: v if k == "$defs" else walk(v, inside) for k, v in node.items()}

    inlined: dict[str, Any] = walk(schema, ())
    return inlined


@cache
def _fast_validator(kind: str) -> Draft202012Validator:
    """Says whether a document is valid, quickly (:func:`inline_refs`); the errors of an
    invalid one come from :func:`_validator`, whose paths and messages the diagnostics read."""
    return Draft202012Validator(inline_refs(load_schema(kind)))


def check_source(source: SourceFile) -> list[Diagnostic]:
    """Every schema problem of one file, as located diagnostics."""
    if _fast_validator(source.kind).is_valid(source.data):
        return []
    validator = _validator(source.kind)
    out: list[Diagnostic] = []
    seen: set[tuple[str, int, int, str]] = set()
    errors = sorted(validator.iter_errors(source.data), key=lambda e: [str(p) for p in e.absolute_path])
    # A value of the wrong type (a step that is a number, say) also fails every other rule
    # about it (which kind of step, which keys go together): say only that the type is wrong.
    mistyped = {tuple(e.absolute_path) for e in errors if e.validator == "type"}
    for error in errors:
        if error.validator != "type" and tuple(error.absolute_path) in mistyped:
            continue
        for diag in _explain(error, source, validator):
            assert diag.location is not None
            key = (diag.code, diag.location.line, diag.location.col, diag.message)
            if key not in seen:
                seen.add(key)
                out.append(diag)
    return out


def render_path(path: Sequence[PathPart]) -> str:
    """``slots.customer_id.mappings[0]`` for a path of keys and indices."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += ("." if text else "") + str(part)
    return text or "the top level"


def _where(path: Sequence[PathPart]) -> str:
    return f"in `{render_path(path)}`" if path else "at the top level"


def _explain(error: ValidationError, source: SourceFile, validator: Draft202012Validator) -> Iterator[Diagnostic]:
    path: list[PathPart] = list(error.absolute_path)
    kind = error.validator
    instance = error.instance
    schema = _schema_of(error)
    bound: Any = error.validator_value
    if kind in ("additionalProperties", "unevaluatedProperties") and isinstance(instance, dict):
        allowed = sorted(_known_properties(schema, instance, validator))
        if _kind_keys(schema) and not any(k in instance for k in _kind_keys(schema)):
            return  # a kind-less item: E108 names it, with the unknown keys
        for key in _unexpected_keys(error, allowed):
            key_path = [*path, key]
            hint = _NOT_ALLOWED_HINTS.get(key) if kind == "unevaluatedProperties" else None
            yield Errors.E101.at(
                source.loc(key_path, key=True),
                f"unknown key `{key}` {_where(path)}" + (f" ({hint})" if hint else ""),
                expected=f"one of the keys {', '.join(allowed)}" if allowed else "no keys here",
                valid=allowed,
                name=key,
            )
    elif kind == "required" and isinstance(instance, dict):
        for key in bound:
            if key not in instance:
                yield Errors.E102.at(
                    source.loc(path, key=True),
                    f"missing required key `{key}` {_where(path)}",
                    expected=_describe(schema.get("properties", {}).get(key), key),
                    fix=f"Add `{key}:` {_where(path)}.",
                )
    elif kind == "type":
        expected = _type_words(bound)
        yield Errors.E103.at(
            source.loc(path),
            f"{_where(path)}: expected {expected}, got {yaml_type_name(instance)}",
            expected=expected,
        )
    elif kind in ("enum", "const"):
        options = bound if kind == "enum" else [bound]
        shown = [json.dumps(o) if not isinstance(o, str) else o for o in options]
        yield Errors.E104.at(
            source.loc(path),
            f"{_where(path)}: {json.dumps(instance)[:80]} is not allowed",
            expected="one of " + ", ".join(shown),
            valid=shown,
            name=str(instance),
        )
    elif kind == "pattern":
        description = str(schema.get("description") or f"a string matching {bound}")
        what = "a valid name" if description.startswith("A name") else "of the expected form"
        # A bad key (propertyNames) is reported on its parent mapping: point at the key itself.
        at = source.loc(path)
        if "propertyNames" in error.absolute_schema_path and isinstance(instance, str):
            at = source.loc([*path, instance], key=True)
        yield Errors.E105.at(
            at,
            f"{_where(path)}: {json.dumps(instance)[:80]} is not {what}",
            expected=description,
            fix=None if what == "a valid name" else f"Write a value of the form: {description}",
        )
    elif kind in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        words = {"minimum": ">=", "maximum": "<=", "exclusiveMinimum": ">", "exclusiveMaximum": "<"}[kind]
        yield Errors.E106.at(
            source.loc(path),
            f"{_where(path)}: {instance} is out of range",
            expected=f"a number {words} {bound}",
        )
    elif kind in ("minItems", "maxItems", "minLength", "minProperties", "maxProperties"):
        yield Errors.E107.at(
            source.loc(path),
            f"{_where(path)}: {_size_problem(kind, instance)}",
            expected=_size_message(kind, bound),
        )
    elif kind == "uniqueItems":
        repeated = _repeated(instance) if isinstance(instance, list) else []
        listing = f": {', '.join(repeated)}" if repeated else ""
        yield Errors.E110.at(source.loc(path), f"{_where(path)}: the list has repeated items{listing}")
    elif kind == "propertyNames":
        yield from _explain_property_name(error, source, validator)
    elif kind == "not":
        yield from _explain_not(error, source, path)
    elif kind in ("oneOf", "anyOf"):
        yield from _explain_alternatives(error, source, validator, path)
    else:
        yield Errors.E109.at(source.loc(path), f"{_where(path)}: {error.message[:200]}")


def _range_words(schema: dict[str, Any]) -> str:
    low, high = schema.get("minimum"), schema.get("maximum")
    if low is not None and high is not None:
        return f"a number from {low} to {high}"
    return "a number"


def _repeated(items: list[Any]) -> list[str]:
    """The items that appear more than once, each shown once, in order."""
    seen: list[str] = []
    out: list[str] = []
    for item in items:
        shown = json.dumps(item, sort_keys=True)[:80]
        if shown in seen and shown not in out:
            out.append(shown)
        seen.append(shown)
    return out


def _schema_of(error: ValidationError) -> dict[str, Any]:
    return dict(error.schema) if isinstance(error.schema, dict) else {}


def _unexpected_keys(error: ValidationError, allowed: Sequence[str]) -> list[str]:
    match = re.search(r"\((.*) (?:was|were) unexpected\)", error.message)
    if match:
        try:
            parsed = ast.literal_eval("(" + match.group(1) + ",)")
            # A failing if/then branch leaves its own keys "unevaluated": not unknown.
            return [str(k) for k in parsed if str(k) not in allowed]
        except (ValueError, SyntaxError):
            pass
    instance: Any = error.instance
    return [k for k in instance if k not in allowed]


def _kind_keys(schema: dict[str, Any]) -> frozenset[str]:
    """The keys that say what kind an item is, when the schema discriminates by them."""
    for combinator in ("oneOf", "anyOf"):
        alternatives = schema.get(combinator, [])
        sets = [frozenset(a.get("required", [])) for a in alternatives if isinstance(a, dict)]
        keys = frozenset().union(*sets) if sets else frozenset()
        if keys in _KIND_KEYS:
            return keys
    return frozenset()


def _known_properties(schema: dict[str, Any], instance: dict[str, Any], validator: Draft202012Validator) -> set[str]:
    """Keys this schema accepts for ``instance`` (following active if/then branches)."""
    keys = set(schema.get("properties", {}))
    for sub in schema.get("allOf", []):
        cond = sub.get("if")
        if cond is not None and validator.evolve(schema=cond).is_valid(instance):
            keys |= set(sub.get("then", {}).get("properties", {}))
    return keys


def _type_words(value: str | list[str]) -> str:
    types = [value] if isinstance(value, str) else list(value)
    return " or ".join(_TYPE_WORDS.get(t, t) for t in types)


def _describe(schema: Any, key: str) -> str:
    if isinstance(schema, dict):
        if "description" in schema:
            return f"`{key}`: {schema['description']}"
        if "type" in schema:
            return f"`{key}`: {_type_words(schema['type'])}"
    return f"the key `{key}`"


def _size_message(kind: str, bound: int) -> str:
    return {
        "minItems": f"at least {bound} item(s)",
        "maxItems": f"at most {bound} item(s)",
        "minLength": f"a string of at least {bound} character(s)",
        "minProperties": f"at least {bound} key(s)",
        "maxProperties": f"at most {bound} key(s)",
    }[kind]


def _size_problem(kind: str, instance: Any) -> str:
    size = len(instance) if isinstance(instance, str | list | dict) else 0
    if size == 0:
        return "it is empty"
    unit = {"minItems": "item", "maxItems": "item", "minLength": "character"}.get(kind, "key")
    return f"it has {size} {unit}(s)"


def _explain_property_name(
    error: ValidationError, source: SourceFile, validator: Draft202012Validator
) -> Iterator[Diagnostic]:
    path = list(error.absolute_path)
    instance = error.instance
    if not isinstance(instance, dict):
        return
    names_schema = _schema_of(error).get("propertyNames", {})
    names_validator = validator.evolve(schema=names_schema)
    for key in instance:
        if not names_validator.is_valid(key):
            yield Errors.E105.at(
                source.loc([*path, key], key=True),
                f"{_where(path)}: {json.dumps(key)[:80]} is not a valid name",
                expected="letters, digits, '_' or '-', not starting with a digit",
            )


def _explain_not(error: ValidationError, source: SourceFile, path: list[PathPart]) -> Iterator[Diagnostic]:
    bound: Any = error.validator_value
    forbidden = bound.get("required", []) if isinstance(bound, dict) else []
    if not forbidden:
        yield Errors.E109.at(source.loc(path), f"{_where(path)}: this combination of keys is not allowed")
        return
    for key in forbidden:
        hint = _NOT_ALLOWED_HINTS.get(key, "it does not apply here")
        yield Errors.E109.at(
            source.loc([*path, key], key=True),
            f"`{key}` is not allowed {_where(path)}: {hint}",
            fix=f"Remove `{key}`, or change the item so that `{key}` applies.",
        )


def _explain_alternatives(
    error: ValidationError, source: SourceFile, validator: Draft202012Validator, path: list[PathPart]
) -> Iterator[Diagnostic]:
    instance = error.instance
    bound: Any = error.validator_value
    alternatives: list[Any] = list(bound) if isinstance(bound, list) else []
    required_sets = [frozenset(a.get("required", [])) for a in alternatives if isinstance(a, dict)]
    kind_keys = frozenset().union(*required_sets) if required_sets else frozenset()
    if isinstance(instance, dict) and kind_keys in _KIND_KEYS:
        what, listing = _KIND_KEYS[kind_keys]
        present = [k for k in instance if k in kind_keys]
        if len(present) != 1 or error.validator == "oneOf":
            # Either no kind key, or several: say which.
            if not present:
                others = ", ".join(f"`{k}`" for k in instance)
                yield Errors.E108.at(
                    source.loc(path),
                    f"{_where(path)}: this {what} has none of the keys that say what it is"
                    + (f" (it has {others})" if others else ""),
                    expected=f"exactly one of {listing}",
                    valid=sorted(kind_keys),
                    name=next(iter(instance), ""),
                )
                return
            if len(present) > 1:
                yield Errors.E108.at(
                    source.loc(path),
                    f"{_where(path)}: this {what} has several kind keys ({', '.join(present)})",
                    expected=f"exactly one of {listing}",
                    fix=f"Split it into one {what} per kind.",
                )
                return
    if not isinstance(instance, dict | list):
        words = [a["const"] for a in alternatives if isinstance(a, dict) and isinstance(a.get("const"), str)]
        ranges = [_range_words(a) for a in alternatives if isinstance(a, dict) and a.get("type") == "number"]
        if words and ranges and isinstance(instance, str):
            # A number or a keyword (`nlu_threshold: 0.4` or `auto`): name both.
            expected = f"{' or '.join(ranges)}, or {' or '.join(words)}"
            yield Errors.E104.at(
                source.loc(path),
                f"{_where(path)}: {json.dumps(instance)[:80]} is not allowed",
                expected=expected,
                fix=f"Write a number, or {' or '.join(words)}.",
            )
            return
        # e.g. a name where a string or a list of strings is accepted: say the types.
        types = [a.get("type") for a in alternatives if isinstance(a, dict) and "type" in a]
        types += [_ref_type(a, validator) for a in alternatives if isinstance(a, dict) and "$ref" in a]
        expected = " or ".join(_type_words(t) for t in types if t) or "another form"
        specific = [e for e in error.context if e.validator != "type"]
        # A number that misses its branch's range: say the range, not the other branches' keywords.
        ranged = [e for e in specific if e.validator in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")]
        sub = best_match(ranged or specific) if specific else None
        if sub is not None:
            yield from _explain(sub, source, validator)
            return
        yield Errors.E103.at(
            source.loc(path), f"{_where(path)}: expected {expected}, got {yaml_type_name(instance)}", expected=expected
        )
        return
    if error.context:
        # Pick the branch the author most likely meant: the one of the right type with
        # the fewest problems.
        branches: dict[int, list[ValidationError]] = {}
        for sub in error.context:
            idx = sub.relative_schema_path[0] if sub.relative_schema_path else 0
            branches.setdefault(int(idx), []).append(sub)
        typed = {
            i: errs
            for i, errs in branches.items()
            if not any(e.validator == "type" and not e.relative_path for e in errs)
        }
        chosen = min((typed or branches).items(), key=lambda kv: len(kv[1]))[1]
        for sub in chosen:
            yield from _explain(sub, source, validator)
        return
    yield Errors.E109.at(source.loc(path), f"{_where(path)}: {error.message[:200]}")


def _ref_type(alternative: dict[str, Any], validator: Draft202012Validator) -> str | None:
    """The ``type`` of a local ``$ref`` target (``#/$defs/name``), if it has one."""
    ref = str(alternative["$ref"])
    if not ref.startswith("#/"):
        return None
    node: Any = validator.schema
    for part in ref[2:].split("/"):
        node = node.get(part) if isinstance(node, dict) else None
    t = node.get("type") if isinstance(node, dict) else None
    return t if isinstance(t, str) else None
