"""Request bodies: the compiled check (fastjsonschema) and jsonschema agree on every endpoint's schema."""

from __future__ import annotations

from typing import Any

import fastjsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from engine.server import body
from engine.server.channels import line, rest, slack, teams, telegram

SCHEMAS = {
    "rest": rest.SCHEMA,
    "parse": body.PARSE_BODY,
    "message": body.MESSAGE_BODY,
    "trigger": body.TRIGGER_BODY,
    "id": body.ID,
    "line": line.SCHEMA,
    "slack": slack.EVENTS_SCHEMA,
    "teams": teams.SCHEMA,
    "telegram": telegram.SCHEMA,
}

text = st.one_of(
    st.text(max_size=20),
    st.sampled_from(["", "hi", "line:U1", "lines:x", "slack:T", "api:", "a\x00b", "tab\there", "é" * 5, "x" * 4001]),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=8,
)
keys = st.sampled_from(["sender", "message", "metadata", "message_id", "text", "name", "entities", "type", "extra"])
bodies = st.one_of(json_values, st.dictionaries(keys, json_values, max_size=5))


def _verdicts(schema: dict[str, Any], value: Any) -> tuple[bool, bool]:
    full = Draft202012Validator(schema).is_valid(value)
    try:
        body._validators(schema)[1](value)
        fast = True
    except fastjsonschema.JsonSchemaException:
        fast = False
    return full, fast


@pytest.mark.parametrize("name", sorted(SCHEMAS))
@settings(max_examples=300, deadline=None)
@given(value=bodies)
def test_compiled_check_agrees_with_jsonschema(name: str, value: Any) -> None:
    full, fast = _verdicts(SCHEMAS[name], value)
    assert full == fast, (name, value)


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ({"sender": "u1", "message": "hi"}, True),
        ({"sender": "line:U1", "message": "hi"}, False),
        ({"sender": "u1", "message": "x" * 4001}, False),
        ({"sender": "u\x01", "message": "hi"}, False),
        ({"sender": "u1", "message": "hi", "extra": 1}, False),
        ({"sender": "u1"}, False),
    ],
)
def test_rest_bodies(value: dict[str, Any], valid: bool) -> None:
    assert _verdicts(rest.SCHEMA, value) == (valid, valid)
    assert (body._error(rest.SCHEMA, value) is None) == valid


def test_the_cache_stays_bounded_when_schemas_are_built_per_call() -> None:
    for i in range(3 * body.MAX_CACHED_SCHEMAS):
        assert body._error(body.obj({"text": body.TEXT}, ("text",)), {"text": f"t{i}"}) is None
    assert len(body._VALIDATORS) <= body.MAX_CACHED_SCHEMAS
