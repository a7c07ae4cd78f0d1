"""Custom actions written for rasa_sdk, served to the remote-runner tests (test_remote.py).

The same module runs on a real action server (``python -m rasa_sdk --actions rasa_actions``,
where rasa_sdk is installed) and on the fake one in ``tests/fakes/action_server.py``, which
offers the same small API when rasa_sdk is not importable.
"""

from __future__ import annotations

import asyncio
from typing import Any

try:
    from rasa_sdk import Action, Tracker
    from rasa_sdk.events import AllSlotsReset, FollowupAction, SlotSet
    from rasa_sdk.executor import CollectingDispatcher
    from rasa_sdk.interfaces import ActionExecutionRejection
except ImportError:  # the fake action server's copy of the API
    from fakes.action_server import (  # type: ignore[assignment]
        Action,
        ActionExecutionRejection,
        AllSlotsReset,
        CollectingDispatcher,
        FollowupAction,
        SlotSet,
        Tracker,
    )

CALLS: dict[str, int] = {}
"""How many times ``action_flaky`` was called, per conversation."""

BUTTONS = [{"title": "Yes", "payload": "/affirm"}, {"title": "No", "payload": "/deny"}]


class ActionSetAccount(Action):
    """Sets slots, utters a named response with a template variable and a text with buttons."""

    def name(self) -> str:
        return "action_set_account"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list[Any]:
        customer = tracker.get_slot("customer_id")
        dispatcher.utter_message(response="utter_account_found", name="Ada")
        dispatcher.utter_message(text=f"Found {customer}. Anything else?", buttons=BUTTONS)
        return [SlotSet("account_found", True), SlotSet("account_name", "Ada Lovelace")]


class ActionEchoTracker(Action):
    """Answers with what it read from the tracker and the domain, as slots."""

    def name(self) -> str:
        return "action_echo_tracker"

    def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list[Any]:
        latest = tracker.latest_message or {}
        return [
            SlotSet("sender", tracker.sender_id),
            SlotSet("intent", tracker.get_intent_of_latest_message()),
            SlotSet("text", latest.get("text")),
            SlotSet("entities", [e.get("value") for e in latest.get("entities", [])]),
            SlotSet("customer", tracker.get_slot("customer_id")),
            SlotSet("event_kinds", [e.get("event") for e in tracker.events]),
            SlotSet("latest_action", tracker.latest_action_name),
            SlotSet("paused", tracker.is_paused()),
            SlotSet("flow", tracker.stack[-1].get("flow_id") if tracker.stack else None),
            SlotSet("domain_slots", sorted((domain or {}).get("slots", {}))),
            SlotSet("domain_actions", list((domain or {}).get("actions", []))),
        ]


class ActionReject(Action):
    def name(self) -> str:
        return "action_reject"

    def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list[Any]:
        raise ActionExecutionRejection(self.name(), "cannot run before the customer is verified")


class ActionSlow(Action):
    """Sleeps for the ``delay`` slot (seconds, default 1)."""

    def name(self) -> str:
        return "action_slow"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list[Any]:
        await asyncio.sleep(float(tracker.get_slot("delay") or 1.0))
        return [SlotSet("slow_done", True)]


class ActionCrash(Action):
    def name(self) -> str:
        return "action_crash"

    def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list[Any]:
        raise RuntimeError("the CRM database is on fire")


class ActionFlaky(Action):
    """Raises (HTTP 500) on the first ``failures`` calls of a conversation, then answers ``calls``."""

    def name(self) -> str:
        return "action_flaky"

    def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list[Any]:
        CALLS[tracker.sender_id] = CALLS.get(tracker.sender_id, 0) + 1
        if CALLS[tracker.sender_id] <= int(tracker.get_slot("failures") or 0):
            raise RuntimeError(f"flaky failure {CALLS[tracker.sender_id]}")
        return [SlotSet("calls", CALLS[tracker.sender_id])]


class ActionCalls(Action):
    """How many times ``action_flaky`` ran for this conversation."""

    def name(self) -> str:
        return "action_calls"

    def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list[Any]:
        return [SlotSet("calls", CALLS.get(tracker.sender_id, 0))]


class ActionFollowup(Action):
    """Returns a Rasa event taiwa does not support next to one it does."""

    def name(self) -> str:
        return "action_followup"

    def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list[Any]:
        return [FollowupAction("action_listen"), SlotSet("followed", True)]


class ActionResetSlots(Action):
    def name(self) -> str:
        return "action_reset_slots"

    def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list[Any]:
        return [AllSlotsReset()]


ACTIONS = [
    ActionSetAccount,
    ActionEchoTracker,
    ActionReject,
    ActionSlow,
    ActionCrash,
    ActionFlaky,
    ActionCalls,
    ActionFollowup,
    ActionResetSlots,
]
