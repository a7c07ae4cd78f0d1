"""Slot mappings turn a parsed message into slot values; values are coerced and checked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dialogue.project import project_from_yaml
from engine.dialogue.slots import candidates, check, slot_sets
from engine.events import UserUttered
from engine.loading.project import Project

SLOTS = """
slots:
  pizza_size:
    type: categorical
    values: [small, medium, large]
    mappings:
      - type: from_entity
        entity: size
        role: main
      - type: from_entity
        entity: size
        not_intent: [goodbye]
  extra_size:
    type: categorical
    values: [small, medium, large]
    mappings:
      - type: from_entity
        entity: size
        role: extra
  pizza_note:
    type: text
    mappings:
      - type: from_text
        active_flow: order_pizza
  confirmed:
    type: bool
    mappings:
      - type: from_intent
        intent: affirm
        value: true
  amount:
    type: float
    min_value: 1
    max_value: 10
    mappings:
      - type: controlled
  toppings:
    type: list
    mappings:
      - type: from_entity
        entity: size

actions:
  - place_order
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    return project_from_yaml(tmp_path_factory.mktemp("slots"), {"domain/slots.yml": SLOTS})


def msg(intent: str, *entities: dict[str, Any], text: str = "x") -> UserUttered:
    return UserUttered(text, intent, 0.9, tuple(entities))


def offered(
    project: Project, m: UserUttered, active: str | None = None, collecting: str | None = None
) -> dict[str, Any]:
    return {c.slot: c.value for c in candidates(project.domain, m, active_flow=active, collecting=collecting)}


def test_from_entity_with_roles(project: Project) -> None:
    got = offered(
        project,
        msg(
            "inform",
            {"entity": "size", "value": "large", "role": "main"},
            {"entity": "size", "value": "small", "role": "extra"},
        ),
    )
    assert got["pizza_size"] == "large"
    assert got["extra_size"] == "small"
    assert got["toppings"] == ["large", "small"]  # a list slot takes every value


def test_second_mapping_applies_when_the_first_does_not(project: Project) -> None:
    assert offered(project, msg("inform", {"entity": "size", "value": "medium"}))["pizza_size"] == "medium"


def test_not_intent_blocks_the_mapping(project: Project) -> None:
    assert "pizza_size" not in offered(project, msg("goodbye", {"entity": "size", "value": "medium"}))


def test_from_intent_sets_the_fixed_value(project: Project) -> None:
    assert offered(project, msg("affirm"))["confirmed"] is True
    assert "confirmed" not in offered(project, msg("greet"))


def test_from_text_only_while_the_slot_is_collected_in_its_flow(project: Project) -> None:
    m = msg("inform", text="extra cheese please")
    assert offered(project, m, active="order_pizza", collecting="pizza_note")["pizza_note"] == "extra cheese please"
    assert "pizza_note" not in offered(project, m, active="order_pizza", collecting="pizza_size")
    assert "pizza_note" not in offered(project, m, active=None, collecting="pizza_note")


def test_controlled_slots_are_never_filled_from_messages(project: Project) -> None:
    assert "amount" not in offered(project, msg("inform", {"entity": "amount", "value": "3"}))


@pytest.mark.parametrize(
    ("slot", "value", "ok", "out"),
    [
        ("pizza_size", "LARGE", True, "large"),
        ("pizza_size", "huge", False, "huge"),
        ("confirmed", "yes", True, True),
        ("confirmed", "nope", True, False),
        ("confirmed", "maybe", False, "maybe"),
        ("amount", "7", True, 7.0),
        ("amount", "1,000", False, 1000.0),
        ("amount", "0.5", False, 0.5),
        ("amount", "seven", False, "seven"),
        ("pizza_note", 42, True, "42"),
        ("toppings", "ham", True, ["ham"]),
        ("pizza_size", None, True, None),
    ],
)
def test_check_coerces_and_validates(project: Project, slot: str, value: Any, ok: bool, out: Any) -> None:
    result = check(project.domain.slots[slot], value)
    assert result.ok is ok
    assert result.value == out
    if not ok:
        assert result.reason


def test_reasons_say_what_was_expected(project: Project) -> None:
    assert check(project.domain.slots["pizza_size"], "huge").reason == "expected one of small, medium, large"
    assert check(project.domain.slots["amount"], "11").reason == "must be at most 10"


def test_slot_sets_skip_unchanged_values_and_report_rejections(project: Project) -> None:
    m = msg(
        "inform",
        {"entity": "size", "value": "huge", "role": "main"},
        {"entity": "size", "value": "small", "role": "extra"},
    )
    accepted, rejected = slot_sets(
        project.domain, candidates(project.domain, m, active_flow=None, collecting=None), {"extra_size": "small"}
    )
    assert ("extra_size", "small") not in accepted
    assert [(c.slot, reason) for c, reason in rejected] == [("pizza_size", "expected one of small, medium, large")]


def test_from_text_with_an_intent_filter_fills_from_the_message_that_has_that_intent(tmp_path: Path) -> None:
    project = project_from_yaml(
        tmp_path,
        {
            "domain/request.yml": """
slots:
  request:
    type: text
    mappings:
      - type: from_text
        intent: order_pizza
""",
        },
    )
    assert offered(project, msg("order_pizza", text="a pizza for four"))["request"] == "a pizza for four"
    assert "request" not in offered(project, msg("greet", text="hello"))
