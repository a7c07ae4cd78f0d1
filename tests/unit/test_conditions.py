"""The condition language: every operator, precedence, type rules and error positions."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.conditions import (
    MAX_DEPTH,
    BoolOp,
    Compare,
    ConditionSyntaxError,
    In,
    IsSet,
    Not,
    SlotRef,
    parse_condition,
    slot_equals_condition,
)
from engine.diagnostics import EngineError, Location


def holds(text: str, **slots: Any) -> bool:
    return parse_condition(text).evaluate(slots)


def syntax_error(text: str) -> ConditionSyntaxError:
    with pytest.raises(ConditionSyntaxError) as info:
        parse_condition(text)
    return info.value


@pytest.mark.parametrize(
    ("text", "slots", "expected"),
    [
        ("p == 'high'", {"p": "high"}, True),
        ("p == 'high'", {"p": "low"}, False),
        ('p == "high"', {"p": "high"}, True),
        ("p != 'high'", {"p": "low"}, True),
        ("p != 'high'", {"p": "high"}, False),
        ("n < 3", {"n": 2}, True),
        ("n < 3", {"n": 3}, False),
        ("n <= 3", {"n": 3}, True),
        ("n > 3", {"n": 3.5}, True),
        ("n >= 3", {"n": 3}, True),
        ("n >= 3", {"n": 2.99}, False),
        ("n == 1", {"n": 1.0}, True),
        ("n > -1", {"n": 0}, True),
        ("n == 1e3", {"n": 1000}, True),
        ("n == 2.5", {"n": 2.5}, True),
        ("s < 'b'", {"s": "a"}, True),
        ("flag == true", {"flag": True}, True),
        ("flag == True", {"flag": True}, True),
        ("flag == false", {"flag": False}, True),
        ("x == null", {}, True),
        ("x == None", {"x": None}, True),
        ("x != null", {"x": "a"}, True),
        ("flag", {"flag": True}, True),
        ("flag", {"flag": ""}, False),
        ("flag", {"flag": 0}, False),
        ("flag", {}, False),
        ("not flag", {}, True),
        ("not not flag", {"flag": 1}, True),
        ("x is set", {"x": ""}, True),
        ("x is set", {"x": False}, True),
        ("x is set", {"x": None}, False),
        ("x is set", {}, False),
        ("x is not set", {}, True),
        ("x is not set", {"x": 0}, False),
        ("null is set", {}, False),
        ("p in ['a', 'b']", {"p": "b"}, True),
        ("p in ['a', 'b']", {"p": "c"}, False),
        ("p not in ['a', 'b']", {"p": "c"}, True),
        ("p not in ['a', 'b']", {"p": "a"}, False),
        ("p in []", {"p": "a"}, False),
        ("p in [1, 2.5, true]", {"p": 2.5}, True),
        ("'ab' in s", {"s": "xaby"}, True),
        ("p in tags", {"p": "x", "tags": ["x", "y"]}, True),
        ("p in m", {"p": "k", "m": {"k": 1}}, True),
        ("slots.p == 'a'", {"p": "a"}, True),
        ("slots.p is set and p == 'a'", {"p": "a"}, True),
        ("it == 'it\\'s'", {"it": "it's"}, True),
        ("a-b == 1", {"a-b": 1}, True),
    ],
)
def test_operators(text: str, slots: dict[str, Any], expected: bool) -> None:
    assert parse_condition(text).evaluate(slots) is expected


@pytest.mark.parametrize(
    ("text", "slots"),
    [
        ("n == '1'", {"n": 1}),
        ("n < 'b'", {"n": 1}),
        ("s > 3", {"s": "x"}),
        ("x < 3", {}),
        ("x >= null", {"x": None}),
        ("flag == 1", {"flag": True}),
        ("flag > 0", {"flag": True}),
        ("l < [1]", {"l": [0]}),
        ("1 in s", {"s": "a1"}),
        ("p in n", {"p": "a", "n": 5}),
        ("p in m", {"p": ["unhashable"], "m": {"k": 1}}),
        ("p in ['a']", {"p": ["a"]}),
    ],
)
def test_type_mismatches_are_false_not_errors(text: str, slots: dict[str, Any]) -> None:
    assert holds(text, **slots) is False


def test_not_equal_across_types_is_true() -> None:
    assert holds("n != '1'", n=1)
    assert holds("flag != 1", flag=True)


def test_precedence_and_binds_tighter_than_or() -> None:
    tree = parse_condition("a or b and c").tree
    assert isinstance(tree, BoolOp) and tree.op == "or"
    assert isinstance(tree.operands[1], BoolOp) and tree.operands[1].op == "and"
    assert holds("a or b and c", a=True, b=False, c=False)
    assert not holds("(a or b) and c", a=True, b=False, c=False)


def test_precedence_not_binds_tighter_than_and() -> None:
    tree = parse_condition("not a and b").tree
    assert isinstance(tree, BoolOp) and isinstance(tree.operands[0], Not)
    assert holds("not a and b", a=False, b=True)
    assert not holds("not (a and b)", a=True, b=True)


def test_not_applies_to_a_whole_comparison() -> None:
    tree = parse_condition("not x == 1").tree
    assert isinstance(tree, Not) and isinstance(tree.operand, Compare)
    assert holds("not x == 1", x=2)


def test_chains_are_flattened() -> None:
    tree = parse_condition("a and b and c or d or e").tree
    assert isinstance(tree, BoolOp) and tree.op == "or" and len(tree.operands) == 3


def test_node_kinds() -> None:
    assert isinstance(parse_condition("x is not set").tree, IsSet)
    tree = parse_condition("x not in [1]").tree
    assert isinstance(tree, In) and tree.negated


def test_slots_prefix_is_stripped() -> None:
    refs = parse_condition("slots.priority == 'high'").slot_refs()
    assert [(r.name, r.offset) for r in refs] == [("priority", 0)]


def test_slot_refs_in_order_with_offsets() -> None:
    cond = parse_condition("a == 1 and (b is set or not c) and d in [e]")
    assert [(r.name, r.offset) for r in cond.slot_refs()] == [("a", 0), ("b", 12), ("c", 28), ("d", 35), ("e", 41)]


def test_compared_literals() -> None:
    cond = parse_condition("p == 'high' or 'low' != q or r in ['a', 2] or n > 3 or s in t")
    pairs = [(ref.name, lit.value) for ref, lit in cond.compared_literals()]
    assert pairs == [("p", "high"), ("q", "low"), ("r", "a"), ("r", 2)]


def test_condition_at_maps_offsets_to_file_positions() -> None:
    cond = parse_condition("a and b", Location("flows/x.yml", 4, 11))
    assert cond.at(6) == Location("flows/x.yml", 4, 17)
    multiline = parse_condition("a and\nb", Location("flows/x.yml", 4, 11))
    assert multiline.at(6) == Location("flows/x.yml", 4, 11)
    assert parse_condition("a").at(0) is None


@pytest.mark.parametrize(
    ("text", "offset", "fragment"),
    [
        ("", 0, "empty"),
        ("   ", 0, "empty"),
        ("priority = 'high'", 9, "use == to compare"),
        ("x == 1 @", 7, "unexpected character '@'"),
        ("x ==", 4, "the end of the condition"),
        ("x == ==", 5, "expected a slot name or a value"),
        ("(x", 2, "expected ')'"),
        ("x y", 2, "unexpected 'y'"),
        ("x is", 4, "'set' after 'is'"),
        ("x is sett", 5, "'set' after 'is'"),
        ("x in [1, 2", 10, "',' or ']'"),
        ("x in [1 2]", 8, "',' or ']'"),
        ("a.b.c == 1", 0, "not a slot reference"),
        ("x == 1 and", 10, "the end of the condition"),
        ("x == 'open", 5, "unexpected character"),
        ("x == " + "9" * 5000, 5, "too long"),
    ],
)
def test_syntax_errors_carry_the_offset(text: str, offset: int, fragment: str) -> None:
    exc = syntax_error(text)
    assert exc.offset == offset, exc
    assert fragment in exc.message
    assert exc.text == text
    assert isinstance(exc, ValueError) and isinstance(exc, EngineError)
    assert f"at character {offset + 1}" in str(exc)


@pytest.mark.parametrize(
    ("prefix", "opener", "inner", "closer"), [("", "(", "x", ")"), ("", "not ", "x", ""), ("x in ", "[", "1", "]")]
)
def test_nesting_is_limited(prefix: str, opener: str, inner: str, closer: str) -> None:
    parse_condition(prefix + opener * MAX_DEPTH + inner + closer * MAX_DEPTH).evaluate({})
    exc = syntax_error(prefix + opener * 1000 + inner + closer * 1000)
    assert "nests more than" in exc.message
    assert exc.offset == len(prefix) + len(opener) * MAX_DEPTH


def test_slot_equals_condition_round_trips() -> None:
    text = slot_equals_condition([("a", None), ("b", "x'y\\z"), ("c", True), ("d", 2), ("e", 1.5), ("f", 1e20)])
    assert text == "a is not set and b == 'x\\'y\\\\z' and c == true and d == 2 and e == 1.5 and f == 1e+20"
    assert holds(text, b="x'y\\z", c=True, d=2, e=1.5, f=1e20)
    assert not holds(text, a=1, b="x'y\\z", c=True, d=2, e=1.5, f=1e20)


def test_slot_ref_dataclass() -> None:
    assert parse_condition("x").tree == SlotRef("x", 0)


CONDITION_BITS = ["x", "slots.y", "==", "!=", "<", ">=", "'a'", '"b"', "1", "-2.5", "1e3", "true", "null", "and"]
CONDITION_BITS += ["or", "not", "is", "set", "in", "[", "]", "(", ")", ",", "=", "a.b", "'", "@", "\n"]
slot_value = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=3),
    lambda inner: st.lists(inner, max_size=2) | st.dictionaries(st.text(max_size=2), inner, max_size=2),
    max_leaves=4,
)


@settings(max_examples=150, deadline=None)
@given(
    text=st.text(max_size=40) | st.lists(st.sampled_from(CONDITION_BITS), max_size=12).map(" ".join),
    slots=st.dictionaries(st.sampled_from(["x", "y", "a"]), slot_value, max_size=3),
)
def test_parse_and_evaluate_never_crash(text: str, slots: dict[str, Any]) -> None:
    try:
        cond = parse_condition(text)
    except ConditionSyntaxError as exc:
        assert 0 <= exc.offset <= len(text)
        return
    assert isinstance(cond.evaluate(slots), bool)
    for ref in cond.slot_refs():
        assert text[ref.offset :].startswith(ref.name) or text[ref.offset :].startswith("slots." + ref.name)
