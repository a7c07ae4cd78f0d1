"""Request bodies: JSON only, bounded, checked against a JSON Schema before anything reads it.

A body that is not UTF-8 JSON, nests deeper than :data:`MAX_DEPTH`, or does not fit the
endpoint's schema (wrong types, unknown fields, a text over the limit) is a 400 whose
message says where and what was expected, never a 5xx.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

import fastjsonschema
from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match
from sanic import Request

from engine.server.errors import ApiError

MAX_DEPTH = 32
MAX_TEXT = 4_000
"""Characters in one user message."""


def _depth(value: Any) -> int:
    deepest, todo = 0, [(value, 1)]
    while todo:
        item, depth = todo.pop()
        deepest = max(deepest, depth)
        if depth > MAX_DEPTH:
            return depth
        if isinstance(item, dict):
            todo.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            todo.extend((v, depth + 1) for v in item)
    return deepest


MAX_CACHED_SCHEMAS = 64
"""Schemas whose validators are kept (endpoints use module constants; see _validators)."""
_VALIDATORS: dict[int, tuple[Mapping[str, Any], Draft202012Validator, Callable[[Any], Any]]] = {}


def _validators(schema: Mapping[str, Any]) -> tuple[Draft202012Validator, Callable[[Any], Any]]:
    """jsonschema's validator and fastjsonschema's compiled check of ``schema``, made once per
    schema (the endpoints' schemas are module constants). The compiled check accepts a valid
    body in a few microseconds; a body it rejects goes through jsonschema, whose best_match
    words the error (and has the last word, should the two ever disagree)."""
    cached = _VALIDATORS.get(id(schema))
    if cached is None or cached[0] is not schema:
        if len(_VALIDATORS) >= MAX_CACHED_SCHEMAS:  # a schema built per request: stay bounded
            _VALIDATORS.clear()
        compiled = fastjsonschema.compile({"$schema": "http://json-schema.org/draft-07/schema#", **schema})
        cached = _VALIDATORS[id(schema)] = (schema, Draft202012Validator(schema), compiled)
    return cached[1], cached[2]


def _error(schema: Mapping[str, Any], value: Any) -> Any:
    """The most relevant schema violation of ``value`` (a jsonschema ValidationError), or None."""
    full, fast = _validators(schema)
    try:
        fast(value)
        return None
    except fastjsonschema.JsonSchemaException:
        return best_match(full.iter_errors(value))


def json_body(request: Request, schema: Mapping[str, Any]) -> dict[str, Any]:
    raw = request.body or b""
    if not raw.strip():
        raise ApiError(400, "empty_body", "The request has no body; send a JSON object.")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(400, "invalid_json", f"The body is not UTF-8 text (byte {exc.start}).") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ApiError(
            400, "invalid_json", f"The body is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}."
        ) from None
    except RecursionError:
        raise ApiError(400, "invalid_json", f"The JSON nests deeper than {MAX_DEPTH} levels.") from None
    if _depth(data) > MAX_DEPTH:
        raise ApiError(400, "invalid_json", f"The JSON nests deeper than {MAX_DEPTH} levels.")
    error = _error(schema, data)
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(the body)"
        raise ApiError(400, "invalid_request", f"{where}: {_short(error.message)}")
    if not isinstance(data, dict):
        raise ApiError(400, "invalid_request", "The body must be a JSON object.")
    return data


def _short(message: str, limit: int = 200) -> str:
    return message if len(message) <= limit else message[: limit - 1] + "…"


def obj(properties: Mapping[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    """A closed JSON Schema object (unknown fields are errors)."""
    return {"type": "object", "properties": dict(properties), "required": list(required), "additionalProperties": False}


TEXT = {"type": "string", "minLength": 1, "maxLength": MAX_TEXT}
ID = {"type": "string", "minLength": 1, "maxLength": 256, "pattern": "^[^\\x00-\\x1f]+$"}
METADATA = {"type": "object", "maxProperties": 50}


def path_id(value: str, name: str) -> str:
    """A conversation or user id from the URL path (already unquoted), checked like a body id."""
    error = _error(ID, value)
    if error is not None:
        raise ApiError(400, "invalid_request", f"{name} in the path: {_short(error.message, 120)}")
    return value


PARSE_BODY = obj({"text": TEXT}, ("text",))
"""``POST /model/parse``."""
MESSAGE_BODY = obj({"text": TEXT, "message_id": ID, "metadata": METADATA}, ("text",))
"""``POST /conversations/{cid}/messages``."""
TRIGGER_BODY = obj(
    {"name": {"type": "string", "pattern": "^[A-Za-z_][\\w\\-.]*$", "maxLength": 128}, "entities": METADATA},
    ("name",),
)
"""``POST /conversations/{cid}/trigger_intent`` (the name must also be one of the domain's intents)."""
