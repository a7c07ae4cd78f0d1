"""Events survive JSON with their wire names; unknown types are refused with the list of known ones."""

from __future__ import annotations

import json
from dataclasses import FrozenInstanceError

import pytest

from engine import events as ev

SAMPLES: list[ev.Event] = [
    ev.SessionStarted({"channel": "rest"}),
    ev.Restarted(),
    ev.UserUttered(
        "my id is C12345",
        "check_account",
        0.93,
        ({"entity": "customer_id", "value": "C12345", "start": 9, "end": 15},),
        ({"name": "check_account", "confidence": 0.93}, {"name": "greet", "confidence": 0.02}),
        source="nlu",
        channel="rest",
        message_id="m1",
        turn_id="t1",
    ),
    ev.BotUttered("Hi 👋", "utter_greet", ({"title": "Yes", "payload": "/affirm"},), {"image": "x.png"}),
    ev.SlotSet("customer_id", "C12345"),
    ev.SlotSet("amount", None),
    ev.SlotRejected("priority", "purple", "not one of low, medium, high", "utter_invalid_priority"),
    ev.PolicyDecided("flow_policy", "flow create_ticket is active", ("utter_ask_priority",)),
    ev.ActionExecuted("crm_lookup", "flow_policy"),
    ev.ToolCalled("crm_lookup", "error", "tool_timeout", 2003.5, 2, "timed out after 2.0 s"),
    ev.LlmCalled("local_openai", "gpt-4o-mini", "accepted", 120, 14, 0.0000264),
    ev.FlowStarted("create_ticket", "trigger"),
    ev.FlowStepped("create_ticket", "ask_priority"),
    ev.FlowInterrupted("create_ticket", by="faq"),
    ev.FlowResumed("create_ticket"),
    ev.FlowCompleted("create_ticket"),
    ev.FlowCancelled("create_ticket", "user_cancelled"),
    ev.FallbackTriggered("low_confidence", ("faq", "greet")),
    ev.HandoffRequested("repeated_fallback"),
    ev.HandoffReleased(),
]


def test_every_event_type_has_a_sample() -> None:
    assert {e.type for e in SAMPLES} == set(ev.EVENT_TYPES)


@pytest.mark.parametrize("event", SAMPLES, ids=lambda e: e.type)
def test_event_round_trips_through_json(event: ev.Event) -> None:
    wire = json.loads(json.dumps(ev.event_to_dict(event)))
    assert wire["event"] == event.type
    assert ev.event_from_dict(wire) == event


@pytest.mark.parametrize("event", SAMPLES, ids=lambda e: e.type)
def test_the_stores_json_is_the_json_of_event_to_dict(event: ev.Event) -> None:
    expected = json.dumps(ev.event_to_dict(event), ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    assert ev.event_json(event) == expected
    assert ev.event_from_dict(json.loads(ev.event_json(event))) == event


def test_events_are_immutable() -> None:
    with pytest.raises(FrozenInstanceError):
        ev.SlotSet("a", 1).value = 2  # type: ignore[misc]


def test_unknown_event_type_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown event type 'slot_changed'.*slot_set"):
        ev.event_from_dict({"event": "slot_changed", "name": "a"})


def test_extra_keys_from_newer_writers_are_ignored() -> None:
    assert ev.event_from_dict({"event": "slot_set", "name": "a", "value": 1, "added_later": True}) == ev.SlotSet("a", 1)
