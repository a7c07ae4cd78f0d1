"""The conversation state is a replay of events: slots, flow stack, handoff, fallbacks, sessions."""

from __future__ import annotations

from pathlib import Path

import pytest

from dialogue.project import project_from_yaml
from engine import events as ev
from engine.dialogue.tracker import DialogueState, replay
from engine.loading.project import Project


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    return project_from_yaml(tmp_path_factory.mktemp("tiny"))


def state(project: Project, *events: ev.Event) -> DialogueState:
    return replay(project.domain, events)


def test_no_events_means_initial_slots_and_an_empty_stack(project: Project) -> None:
    s = state(project)
    assert s.slots == {"pizza_size": None, "pizza_note": None, "confirmed": None}
    assert s.stack == ()
    assert s.active_flow is None
    assert s.length == 0


def test_slots_follow_slot_set_events_in_order(project: Project) -> None:
    s = state(project, ev.SlotSet("pizza_size", "small"), ev.SlotSet("pizza_size", "large"))
    assert s.slot("pizza_size") == "large"
    assert state(project, ev.SlotSet("pizza_size", "small"), ev.SlotSet("pizza_size", None)).slot("pizza_size") is None


def test_flow_stack_push_step_interrupt_resume_complete(project: Project) -> None:
    s = state(
        project,
        ev.FlowStarted("order_pizza"),
        ev.FlowStepped("order_pizza", "0_collect_pizza_size"),
        ev.FlowInterrupted("order_pizza", by="say_thanks"),
        ev.FlowStarted("say_thanks", "interrupt"),
    )
    assert [f.flow for f in s.stack] == ["order_pizza", "say_thanks"]
    assert s.stack[0].interrupted_by == "say_thanks"
    assert s.stack[0].step == "0_collect_pizza_size"
    s = s.apply([ev.FlowCompleted("say_thanks"), ev.FlowResumed("order_pizza")])
    assert s.active_flow == "order_pizza"
    assert s.top is not None and s.top.interrupted_by is None
    assert s.apply([ev.FlowCancelled("order_pizza")]).stack == ()


def test_rejections_count_per_step_and_reset_on_the_next_step(project: Project) -> None:
    s = state(
        project,
        ev.FlowStarted("order_pizza"),
        ev.FlowStepped("order_pizza", "a"),
        ev.SlotRejected("pizza_size", "huge", "not a size"),
        ev.SlotRejected("pizza_size", "giant", "not a size"),
    )
    assert s.top is not None and s.top.retries == 2
    moved = s.apply([ev.FlowStepped("order_pizza", "b")])
    assert moved.top is not None and moved.top.retries == 0


def test_fallbacks_in_a_row_reset_when_a_turn_is_understood(project: Project) -> None:
    two = state(project, ev.FallbackTriggered("low_confidence"), ev.FallbackTriggered("low_confidence"))
    assert two.fallbacks_in_row == 2
    assert two.apply([ev.PolicyDecided("fallback_policy", "low confidence")]).fallbacks_in_row == 2
    assert two.apply([ev.PolicyDecided("rule_policy", "rule greet")]).fallbacks_in_row == 0


def test_handoff_holds_until_released(project: Project) -> None:
    s = state(project, ev.HandoffRequested("user_request"), ev.UserUttered("hello?"))
    assert s.handoff == "user_request"
    assert s.apply([ev.HandoffReleased()]).handoff is None


def test_restart_forgets_everything(project: Project) -> None:
    s = state(
        project,
        ev.UserUttered("hi", timestamp=100.0),
        ev.SlotSet("pizza_size", "small"),
        ev.FlowStarted("order_pizza"),
        ev.HandoffRequested("policy"),
        ev.Restarted(),
    )
    assert s.slot("pizza_size") is None
    assert s.stack == ()
    assert s.handoff is None
    assert s.latest_message is None
    assert s.turns == 1  # history is kept; only the state is reset


def test_new_session_clears_the_stack_and_carries_slots_over_by_default(project: Project) -> None:
    s = state(
        project,
        ev.SessionStarted(),
        ev.SlotSet("pizza_size", "small"),
        ev.FlowStarted("order_pizza"),
        ev.SessionStarted(),
    )
    assert s.stack == ()
    assert s.slot("pizza_size") == "small"


def test_new_session_resets_slots_when_not_carried_over(tmp_path: Path) -> None:
    p = project_from_yaml(
        tmp_path, {"domain/session.yml": "session_config:\n  carry_over_slots_to_new_session: false\n"}
    )
    s = replay(p.domain, [ev.SlotSet("pizza_size", "small"), ev.SessionStarted()])
    assert s.slot("pizza_size") is None


def test_latest_message_and_last_user_time(project: Project) -> None:
    s = state(project, ev.UserUttered("hi", "greet", 0.9, timestamp=50.0), ev.BotUttered("Hi!"))
    assert s.latest_message is not None and s.latest_message.intent == "greet"
    assert s.last_user_time == 50.0
    assert s.turns == 1
    assert s.length == 2


def test_apply_is_the_same_as_replaying_everything(project: Project) -> None:
    events: list[ev.Event] = [
        ev.UserUttered("pizza", "order_pizza", 0.9),
        ev.FlowStarted("order_pizza"),
        ev.FlowStepped("order_pizza", "x"),
        ev.SlotSet("pizza_size", "small"),
        ev.FallbackTriggered("ambiguous"),
    ]
    assert state(project, *events[:2]).apply(events[2:]) == state(project, *events)
