"""Responses render with slot values, conditions, channel variants, buttons and random variation."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from dialogue.project import project_from_yaml
from engine.dialogue.nlg import fill, render
from engine.loading.project import Project

RESPONSES = """
responses:
  utter_greet:
    - text: "Hi! Would you like a pizza?"
  utter_goodbye:
    - text: "Bye!"
    - text: "See you!"
  utter_ask_pizza_size:
    - text: "Small, medium or large?"
      buttons:
        - title: "Small"
          payload: '/inform{"size": "small"}'
        - title: "Large"
          payload: '/inform{"size": "large"}'
    - text: "Tap a size"
      channel: slack
  utter_ask_pizza_note:
    - text: "Anything we should know about your order?"
  utter_large_warning:
    - text: "A large pizza feeds three people."
    - text: "Are you sure? A large feeds three."
      condition: confirmed == false
  utter_order_placed:
    - text: "Your {pizza_size} pizza is on its way. Note: {pizza_note}"
      image: "https://example.com/{pizza_size}.png"
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    return project_from_yaml(tmp_path_factory.mktemp("nlg"), {"domain/responses.yml": RESPONSES})


def test_slot_values_fill_placeholders_and_unset_slots_render_empty(project: Project) -> None:
    msg = render(project.domain, "utter_order_placed", {"pizza_size": "large", "pizza_note": None})
    assert msg is not None
    assert msg.text == "Your large pizza is on its way. Note: "
    assert msg.response == "utter_order_placed"
    assert msg.data["image"] == "https://example.com/large.png"


def test_button_payload_json_is_not_mistaken_for_placeholders(project: Project) -> None:
    msg = render(project.domain, "utter_ask_pizza_size", {})
    assert msg is not None
    assert msg.buttons == (
        {"title": "Small", "payload": '/inform{"size": "small"}'},
        {"title": "Large", "payload": '/inform{"size": "large"}'},
    )


def test_channel_variant_wins_on_its_channel_only(project: Project) -> None:
    slack = render(project.domain, "utter_ask_pizza_size", {}, channel="slack")
    rest = render(project.domain, "utter_ask_pizza_size", {}, channel="rest")
    assert slack is not None and slack.text == "Tap a size"
    assert rest is not None and rest.text == "Small, medium or large?"


def test_a_conditional_variation_wins_when_its_condition_holds(project: Project) -> None:
    held = render(project.domain, "utter_large_warning", {"confirmed": False})
    other = render(project.domain, "utter_large_warning", {"confirmed": True})
    assert held is not None and held.text == "Are you sure? A large feeds three."
    assert other is not None and other.text == "A large pizza feeds three people."


def test_variations_are_chosen_at_random(project: Project) -> None:
    rng = random.Random(7)
    seen = {m.text for m in (render(project.domain, "utter_goodbye", {}, rng=rng) for _ in range(40)) if m}
    assert seen == {"Bye!", "See you!"}


def test_unknown_response_renders_nothing(project: Project) -> None:
    assert render(project.domain, "utter_nope", {}) is None


@pytest.mark.parametrize(
    ("template", "slots", "out"),
    [
        ("{amount:.2f} EUR", {"amount": 3.14159}, "3.14 EUR"),
        ("{amount:.2f} EUR", {"amount": "n/a"}, "n/a EUR"),
        ("ok: {flag}", {"flag": True}, "ok: yes"),
        ("items: {items}", {"items": ["a", "b"]}, "items: a, b"),
        ("{unknown} stays", {}, "{unknown} stays"),
        ("no placeholders", {"x": 1}, "no placeholders"),
    ],
)
def test_fill(template: str, slots: dict[str, object], out: str) -> None:
    assert fill(template, slots) == out


def test_project_from_yaml_overrides_only_the_given_files(tmp_path: Path) -> None:
    p = project_from_yaml(tmp_path)
    assert "utter_goodbye" in p.domain.responses
