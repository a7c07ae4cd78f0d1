"""The pure conversions between taiwa's values and the Rasa SDK action-server JSON."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.actions.rasa_protocol import (
    RASA_VERSION,
    domain_payload,
    event_to_rasa,
    events_from_rasa,
    parse_responses,
    request_payload,
    responses_from_rasa,
    tracker_payload,
)
from engine.actions.registry import ActionContext
from engine.conditions import parse_condition
from engine.diagnostics import Location
from engine.domain import (
    Button,
    Domain,
    Entity,
    Intent,
    Response,
    ResponseVariation,
    SessionConfig,
    Slot,
    SlotMapping,
)
from engine.events import (
    ActionExecuted,
    BotUttered,
    Event,
    FallbackTriggered,
    FlowCompleted,
    FlowStarted,
    FlowStepped,
    HandoffReleased,
    HandoffRequested,
    LlmCalled,
    PolicyDecided,
    Restarted,
    SessionStarted,
    SlotRejected,
    SlotSet,
    ToolCalled,
    UserUttered,
)

LOC = Location("domain/test.yml")


def variation(text: str | None = None, **kwargs: Any) -> ResponseVariation:
    values: dict[str, Any] = {
        "text": text,
        "condition": None,
        "channel": None,
        "buttons": (),
        "quick_replies": (),
        "image": None,
        "custom": None,
        "loc": LOC,
    }
    values.update(kwargs)
    return ResponseVariation(**values)


def small_domain() -> Domain:
    return Domain(
        intents={
            "greet": Intent("greet", None, True, LOC),
            "inform": Intent("inform", "gives details", ("customer_id",), LOC),
            "chitchat": Intent("chitchat", None, False, LOC),
        },
        entities={
            "customer_id": Entity("customer_id", (), (), None, LOC),
            "city": Entity("city", ("departure", "destination"), ("trip",), None, LOC),
        },
        slots={
            "customer_id": Slot(
                "customer_id",
                "text",
                (
                    SlotMapping(
                        "from_entity",
                        entity="customer_id",
                        role="owner",
                        intents=("inform",),
                        not_intents=("chitchat",),
                        active_flow="account_lookup",
                    ),
                ),
            ),
            "priority": Slot(
                "priority",
                "categorical",
                (SlotMapping("from_intent", intents=("urgent",), value="high"),),
                initial_value="low",
                values=("low", "medium", "high"),
                influence_conversation=True,
            ),
            "amount": Slot("amount", "float", (SlotMapping("from_text"),), min_value=0.0, max_value=500.0),
            "account_found": Slot("account_found", "bool", (SlotMapping("controlled"),)),
        },
        responses={
            "utter_greet": Response(
                "utter_greet",
                (
                    variation(
                        "Hi {account_name}!",
                        condition=parse_condition("account_found == true and priority is not set"),
                    ),
                    variation("Hello!", buttons=(Button("Help", "/help"),), channel="slack"),
                    variation(None, image="https://img/x.png", custom={"kind": "card"}),
                    variation("Big spender", condition=parse_condition("amount > 100")),
                ),
                LOC,
            )
        },
        actions={"kb_search": LOC, "action_x": LOC},
        session_config=SessionConfig(expiration_minutes=30.0, carry_over_slots=False),
    )


# -- our events -> Rasa's ----------------------------------------------------------------------


def test_events_with_a_rasa_equivalent_are_converted() -> None:
    user = UserUttered(
        "my id is C12345",
        intent="inform",
        confidence=0.9,
        entities=({"entity": "customer_id", "value": "C12345", "start": 9, "end": 15},),
        ranking=({"name": "inform", "confidence": 0.9}, {"name": "greet", "confidence": 0.1}),
        channel="rest",
        message_id="m1",
        timestamp=100.0,
    )
    assert event_to_rasa(user, 100.0) == {
        "event": "user",
        "timestamp": 100.0,
        "metadata": {},
        "text": "my id is C12345",
        "parse_data": {
            "intent": {"name": "inform", "confidence": 0.9},
            "entities": [{"entity": "customer_id", "value": "C12345", "start": 9, "end": 15}],
            "text": "my id is C12345",
            "message_id": "m1",
            "metadata": {},
            "intent_ranking": [{"name": "inform", "confidence": 0.9}, {"name": "greet", "confidence": 0.1}],
        },
        "input_channel": "rest",
        "message_id": "m1",
    }
    bot = BotUttered("Pick one", "utter_pick", ({"title": "A", "payload": "/a"},), {"image": "https://i/x.png"})
    assert event_to_rasa(bot, 5.0) == {
        "event": "bot",
        "timestamp": 5.0,
        "metadata": {"utter_action": "utter_pick"},
        "text": "Pick one",
        "data": {
            "elements": None,
            "quick_replies": None,
            "buttons": [{"title": "A", "payload": "/a"}],
            "attachment": None,
            "image": "https://i/x.png",
            "custom": None,
        },
    }
    assert event_to_rasa(SlotSet("a", [1, 2]), 1.0) == {"event": "slot", "timestamp": 1.0, "name": "a", "value": [1, 2]}
    assert event_to_rasa(ActionExecuted("kb_search", "flow_policy"), 2.0) == {
        "event": "action",
        "timestamp": 2.0,
        "metadata": {},
        "name": "kb_search",
        "policy": "flow_policy",
        "confidence": None,
        "action_text": None,
        "hide_rule_turn": False,
    }
    assert event_to_rasa(SessionStarted({"k": 1}, 3.0), 3.0) == {
        "event": "session_started",
        "timestamp": 3.0,
        "metadata": {"k": 1},
    }
    assert event_to_rasa(Restarted(), 4.0) == {"event": "restart", "timestamp": 4.0}
    assert event_to_rasa(HandoffRequested("user_request"))["event"] == "pause"  # type: ignore[index]
    assert event_to_rasa(HandoffReleased())["event"] == "resume"  # type: ignore[index]
    assert event_to_rasa(FlowStarted("faq")) == {
        "event": "flow_started",
        "flow_id": "faq",
        "timestamp": None,
        "metadata": {},
    }


@pytest.mark.parametrize(
    "event",
    [
        PolicyDecided("flow_policy", "step"),
        ToolCalled("kb_search", "ok"),
        SlotRejected("priority", "x", "not allowed"),
        LlmCalled(None, None, "error"),
        FlowStepped("faq", "ask"),
        FallbackTriggered("low_confidence"),
    ],
)
def test_internal_events_are_not_sent(event: Event) -> None:
    assert event_to_rasa(event) is None


def test_tracker_payload() -> None:
    domain = small_domain()
    events: tuple[Event, ...] = (
        SessionStarted(timestamp=10.0),
        PolicyDecided("rule", "x"),
        UserUttered("hi", intent="greet", confidence=0.8, channel="web", timestamp=11.0),
        ActionExecuted("utter_greet"),
        BotUttered("Hello!", "utter_greet"),
        FlowStarted("account_lookup"),
        FlowCompleted("account_lookup"),
        HandoffRequested("user_request"),
        HandoffReleased(),
        UserUttered("my id is C1", intent="inform", confidence=0.7, timestamp=20.0),
        SlotSet("customer_id", "C1"),
    )
    ctx = ActionContext("conv-1", {"customer_id": "C1", "extra": 3}, active_flow="account_lookup", domain=domain)
    tracker = tracker_payload(ctx, events)
    assert set(tracker) == {
        "sender_id",
        "slots",
        "latest_message",
        "latest_event_time",
        "followup_action",
        "paused",
        "events",
        "latest_input_channel",
        "active_loop",
        "latest_action",
        "latest_action_name",
        "stack",
    }
    assert tracker["sender_id"] == "conv-1"
    assert tracker["slots"] == {
        "customer_id": "C1",
        "priority": "low",
        "amount": None,
        "account_found": None,
        "extra": 3,
    }
    kinds = [e["event"] for e in tracker["events"]]
    assert kinds == [
        "session_started",
        "user",
        "action",
        "bot",
        "flow_started",
        "flow_completed",
        "pause",
        "resume",
        "user",
        "slot",
    ]
    # events without a time of their own get the last one before them
    assert [e["timestamp"] for e in tracker["events"]] == [10.0, 11.0, 11.0, 11.0, 11.0, 11.0, 11.0, 11.0, 20.0, 20.0]
    assert tracker["latest_event_time"] == 20.0
    assert tracker["paused"] is False
    assert tracker["latest_input_channel"] is None  # the last user message came without one
    assert (tracker["latest_action_name"], tracker["latest_action"]) == (
        "action_listen",
        {"action_name": "action_listen"},
    )
    assert tracker["latest_message"]["text"] == "my id is C1"
    assert tracker["latest_message"]["intent"] == {"name": "inform", "confidence": 0.7}
    assert tracker["latest_message"]["intent_ranking"] == [{"name": "inform", "confidence": 0.7}]
    assert tracker["stack"] == [{"type": "flow", "frame_type": "regular", "flow_id": "account_lookup"}]
    assert tracker["active_loop"] == {} and tracker["followup_action"] is None
    json.dumps(tracker)


def test_tracker_of_an_empty_conversation() -> None:
    tracker = tracker_payload(ActionContext("c", {}), ())
    assert tracker["events"] == [] and tracker["latest_event_time"] is None
    assert tracker["latest_action_name"] is None and tracker["latest_action"] == {}
    assert tracker["latest_message"]["intent"] == {} and tracker["latest_message"]["text"] is None
    assert tracker["paused"] is False and tracker["stack"] == []


def test_paused_while_a_handoff_is_open() -> None:
    tracker = tracker_payload(ActionContext("c", {}), (HandoffRequested("policy"), ActionExecuted("x")))
    assert tracker["paused"] is True
    assert tracker["latest_action_name"] == "x"
    assert tracker_payload(ActionContext("c", {}), (HandoffRequested("policy"), Restarted()))["paused"] is False


def test_latest_message_from_the_context() -> None:
    user = UserUttered(
        "hello there",
        intent="greet",
        confidence=0.6,
        ranking=({"name": "chitchat", "confidence": 0.7}, {"name": "greet", "confidence": 0.6}),
    )
    # the context's message is the same as the last user event: its ranking is kept, the top intent first
    ctx = ActionContext("c", {}, latest_message={"text": "hello there", "intent": "greet"})
    latest = tracker_payload(ctx, (user,))["latest_message"]
    assert latest["intent"] == {"name": "greet", "confidence": 0.6}
    assert [r["name"] for r in latest["intent_ranking"]] == ["greet", "chitchat"]
    # another message: nothing from the old event leaks into it
    ctx = ActionContext(
        "c",
        {},
        latest_message={"text": "book a flight", "intent": {"name": "book", "confidence": 0.95}, "entities": []},
    )
    latest = tracker_payload(ctx, (user,))["latest_message"]
    assert latest["text"] == "book a flight"
    assert latest["intent"] == {"name": "book", "confidence": 0.95}
    assert latest["intent_ranking"] == [{"name": "book", "confidence": 0.95}]
    # a bare intent name without a confidence
    latest = tracker_payload(ActionContext("c", {}, latest_message={"text": "x", "intent": "deny"}), ())[
        "latest_message"
    ]
    assert latest["intent"] == {"name": "deny", "confidence": 1.0}


def test_domain_payload() -> None:
    payload = domain_payload(small_domain())
    assert payload["version"] == "3.1"
    assert payload["session_config"] == {"session_expiration_time": 30.0, "carry_over_slots_to_new_session": False}
    assert payload["intents"] == [
        {"greet": {"use_entities": True}},
        {"inform": {"use_entities": ["customer_id"]}},
        {"chitchat": {"use_entities": []}},
    ]
    assert payload["entities"] == ["customer_id", {"city": {"roles": ["departure", "destination"], "groups": ["trip"]}}]
    assert payload["slots"] == {
        "customer_id": {
            "type": "text",
            "initial_value": None,
            "influence_conversation": False,
            "mappings": [
                {
                    "type": "from_entity",
                    "entity": "customer_id",
                    "role": "owner",
                    "intent": ["inform"],
                    "not_intent": ["chitchat"],
                    "conditions": [{"active_loop": "account_lookup"}],
                }
            ],
        },
        "priority": {
            "type": "categorical",
            "initial_value": "low",
            "influence_conversation": True,
            "mappings": [{"type": "from_intent", "value": "high", "intent": ["urgent"]}],
            "values": ["low", "medium", "high"],
        },
        "amount": {
            "type": "float",
            "initial_value": None,
            "influence_conversation": False,
            "mappings": [{"type": "from_text"}],
            "min_value": 0.0,
            "max_value": 500.0,
        },
        "account_found": {
            "type": "bool",
            "initial_value": None,
            "influence_conversation": False,
            "mappings": [{"type": "custom"}],
        },
    }
    assert payload["responses"] == {
        "utter_greet": [
            {
                "text": "Hi {account_name}!",
                "condition": [
                    {"type": "slot", "name": "account_found", "value": True},
                    {"type": "slot", "name": "priority", "value": None},
                ],
            },
            {"text": "Hello!", "buttons": [{"title": "Help", "payload": "/help"}], "channel": "slack"},
            {"image": "https://img/x.png", "custom": {"kind": "card"}},
            {"text": "Big spender", "metadata": {"condition": "amount > 100"}},
        ]
    }
    assert payload["actions"] == ["kb_search", "action_x"]
    assert (payload["forms"], payload["e2e_actions"]) == ({}, [])
    json.dumps(payload)


def test_request_payload() -> None:
    domain = small_domain()
    ctx = ActionContext("conv-9", {"a": 1}, domain=domain)
    payload = request_payload("action_x", ctx, (SlotSet("a", 1),), domain)
    assert set(payload) == {"next_action", "sender_id", "tracker", "domain", "version"}
    assert (payload["next_action"], payload["sender_id"], payload["version"]) == ("action_x", "conv-9", RASA_VERSION)
    assert payload["tracker"]["events"] == [{"event": "slot", "timestamp": None, "name": "a", "value": 1}]
    assert payload["domain"] == domain_payload(domain)
    without = request_payload("action_x", ctx, (), None, version="3.21.0")
    assert "domain" not in without and without["version"] == "3.21.0"


# -- Rasa's events -> ours ---------------------------------------------------------------------


def test_supported_rasa_events() -> None:
    items = [
        {"event": "slot", "timestamp": None, "name": "account_found", "value": True},
        {"event": "slot", "name": "cleared", "value": None},
        {"event": "slot", "name": "no_value"},
        {
            "event": "bot",
            "timestamp": None,
            "text": "Hello",
            "data": {"buttons": [{"title": "Yes", "payload": "/affirm"}], "image": None, "custom": {"a": 1}},
            "metadata": {"utter_action": "utter_hello"},
        },
        {"event": "restart", "timestamp": None},
        {"event": "session_started", "timestamp": 12.5, "metadata": {"source": "x"}},
        {"event": "pause"},
        {"event": "resume"},
    ]
    events, warnings = events_from_rasa(items)
    assert warnings == []
    assert events == [
        SlotSet("account_found", True),
        SlotSet("cleared", None),
        SlotSet("no_value", None),
        BotUttered("Hello", "utter_hello", ({"title": "Yes", "payload": "/affirm"},), {"custom": {"a": 1}}),
        Restarted(),
        SessionStarted({"source": "x"}, 12.5),
        HandoffRequested("policy"),
        HandoffReleased(),
    ]


def test_reset_slots_needs_the_domain() -> None:
    events, warnings = events_from_rasa([{"event": "reset_slots"}])
    assert events == [] and warnings == ["events[0]: 'reset_slots' needs the domain to know the slots; ignored"]
    events, warnings = events_from_rasa([{"event": "reset_slots"}], domain=small_domain())
    assert warnings == []
    assert events == [
        SlotSet("customer_id", None),
        SlotSet("priority", "low"),
        SlotSet("amount", None),
        SlotSet("account_found", None),
    ]


@pytest.mark.parametrize(
    "item",
    [
        {"event": "followup", "name": "action_listen"},
        {"event": "active_loop", "name": "some_form"},
        {"event": "rewind"},
        {"event": "user", "text": "hi"},
        {"event": "action", "name": "action_listen"},
        {"event": "reminder", "intent": "x"},
    ],
)
def test_unsupported_rasa_events_are_warned_about(item: dict[str, Any]) -> None:
    events, warnings = events_from_rasa([item, {"event": "slot", "name": "kept", "value": 1}])
    assert events == [SlotSet("kept", 1)]
    assert warnings == [f"events[0]: the Rasa event {item['event']!r} is not supported by taiwa; ignored"]


@pytest.mark.parametrize(
    ("items", "fragment"),
    [
        ({"event": "slot"}, "events: expected a list"),
        ("events", "events: expected a list"),
        (["slot"], "events[0]: an event must be an object"),
        ([None], "events[0]: an event must be an object"),
        ([{"name": "x", "value": 1}], "events[0]: an event needs an 'event' name"),
        ([{"event": 3}], "events[0]: an event needs an 'event' name"),
        ([{"event": "slot", "value": 1}], "events[0]: a slot event needs a 'name'"),
        ([{"event": "slot", "name": ["x"], "value": 1}], "events[0]: a slot event needs a 'name'"),
        ([{"event": "bot", "text": None, "data": None}], "events[0]: a bot event without text"),
        ([{"event": "bot", "text": "x", "data": "oops"}], "events[0]: 'data' must be an object"),
        ([{"event": "bot", "text": "x", "data": {"buttons": "yes"}}], "events[0]: buttons must be a list"),
        ([{"event": "bot", "text": {"t": 1}}], "events[0]: text must be a string"),
    ],
)
def test_malformed_events_are_warnings(items: Any, fragment: str) -> None:
    _, warnings = events_from_rasa(items)
    assert any(w.startswith(fragment) for w in warnings), warnings


def test_none_is_no_events() -> None:
    assert events_from_rasa(None) == ([], [])
    assert parse_responses(None) == ([], [])


@pytest.mark.parametrize(
    "event",
    [
        SlotSet("a", {"nested": [1, "x", None]}),
        BotUttered("Pick", "utter_pick", ({"title": "A", "payload": "/a"},), {"image": "https://x/y.png"}),
        BotUttered(None, "utter_named"),
        Restarted(),
        SessionStarted({"m": 1}, 5.0),
        HandoffReleased(),
    ],
)
def test_round_trip_through_rasa_json(event: Event) -> None:
    wire = json.loads(json.dumps(event_to_rasa(event, 5.0)))
    assert events_from_rasa([wire]) == ([event], [])


# -- responses ---------------------------------------------------------------------------------


def sdk_message(**overrides: Any) -> dict[str, Any]:
    """A message exactly as rasa_sdk's CollectingDispatcher.utter_message() collects it."""
    message: dict[str, Any] = {
        "text": None,
        "buttons": [],
        "elements": [],
        "custom": {},
        "template": None,
        "response": None,
        "image": None,
        "attachment": None,
    }
    message.update(overrides)
    return message


def test_a_named_response_is_rendered_later_and_keeps_its_variables() -> None:
    items = [sdk_message(response="utter_greet", template="utter_greet", name="Ada", count=0)]
    assert responses_from_rasa(items) == [
        BotUttered(text=None, response="utter_greet", data={"name": "Ada", "count": 0})
    ]


def test_the_older_template_key_names_the_response() -> None:
    assert responses_from_rasa([{"template": "utter_bye"}]) == [BotUttered(response="utter_bye")]


def test_text_buttons_image_custom_attachment_elements() -> None:
    items = [
        sdk_message(text="Pick one", buttons=[{"title": "A", "payload": "/a"}, {"title": "B", "payload": 2}]),
        sdk_message(image="https://img/cat.png"),
        sdk_message(custom={"type": "card", "id": 7}),
        sdk_message(attachment="https://files/x.pdf", elements=[{"title": "e"}]),
        sdk_message(text=42),
    ]
    assert responses_from_rasa(items) == [
        BotUttered(text="Pick one", buttons=({"title": "A", "payload": "/a"}, {"title": "B", "payload": "2"})),
        BotUttered(data={"image": "https://img/cat.png"}),
        BotUttered(data={"custom": {"type": "card", "id": 7}}),
        BotUttered(data={"attachment": "https://files/x.pdf", "elements": [{"title": "e"}]}),
        BotUttered(text="42"),
    ]


def test_text_with_a_response_name_keeps_both() -> None:
    items = [sdk_message(text="Custom hello", response="utter_greet")]
    assert responses_from_rasa(items) == [BotUttered(text="Custom hello", response="utter_greet")]


def test_malformed_responses_are_skipped_with_warnings() -> None:
    items = [
        "hello",
        sdk_message(),
        {"response": 3},
        sdk_message(text="ok", buttons=["not a button", {"url": None}, {"title": "T"}]),
    ]
    messages, warnings = parse_responses(items)
    assert messages == [BotUttered(text="ok", buttons=({"title": "T"},))]
    assert warnings == [
        "responses[0]: a response must be an object, got 'hello'; ignored",
        "responses[1]: an empty response (no text, response, buttons or data); ignored",
        "responses[2]: 'response' must be a response name, got 3; ignored",
        "responses[2]: an empty response (no text, response, buttons or data); ignored",
        "responses[3].buttons[0]: a button must be an object, got 'not a button'; ignored",
        "responses[3].buttons[1]: a button needs a title or a payload, got {'url': None}; ignored",
    ]
    assert parse_responses({"text": "x"}) == ([], ["responses: expected a list, got {'text': 'x'}; ignored"])


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
_event_like = st.fixed_dictionaries(
    {"event": st.sampled_from(["slot", "bot", "restart", "session_started", "reset_slots", "followup", "x"])},
    optional={
        "name": _json,
        "value": _json,
        "text": _json,
        "data": _json,
        "metadata": _json,
        "timestamp": _json,
        "buttons": _json,
    },
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_event_like | _json, max_size=6) | _json)
def test_conversions_never_raise_on_garbage(items: Any) -> None:
    events, warnings = events_from_rasa(items, domain=small_domain())
    messages, response_warnings = parse_responses(items)
    assert all(isinstance(w, str) for w in warnings + response_warnings)
    for event in [*events, *messages]:
        wire = event_to_rasa(event)
        assert wire is not None
        json.dumps(wire)  # what we accepted can be sent back
