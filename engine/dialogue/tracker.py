"""The conversation state as a replay of its events (and nothing else).

:func:`replay` folds events into a :class:`DialogueState`; :meth:`DialogueState.apply`
adds more. The state is immutable: policies read it and return events, the processor
stores the events, and the next state is the replay of the longer list.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from engine import events as ev
from engine.dialogue.slots import typed
from engine.domain import Domain
from engine.events import JsonValue


@dataclass(frozen=True, slots=True)
class Frame:
    """One flow on the stack."""

    flow: str
    step: str | None = None
    """The step the flow is at (None: started, no step run yet)."""
    how: str = "trigger"
    """How it was started: ``trigger``, ``call``, ``link`` or ``interrupt``."""
    retries: int = 0
    """Rejected answers to the current collect step."""
    interrupted_by: str | None = None
    """Set while another flow runs on top of this one after an interruption."""


@dataclass(frozen=True)
class DialogueState:
    initial_slots: Mapping[str, JsonValue]
    slots: Mapping[str, JsonValue]
    stack: tuple[Frame, ...] = ()
    latest_message: ev.UserUttered | None = None
    handoff: str | None = None
    """The handoff reason while a human has the conversation."""
    fallbacks_in_row: int = 0
    turns: int = 0
    """User messages in this conversation (all sessions)."""
    last_user_time: float | None = None
    session_started: bool = False
    length: int = 0
    """How many events were replayed."""
    carry_over_slots: bool = True

    @property
    def active_flow(self) -> str | None:
        return self.stack[-1].flow if self.stack else None

    @property
    def top(self) -> Frame | None:
        return self.stack[-1] if self.stack else None

    def slot(self, name: str) -> JsonValue:
        return self.slots.get(name)

    def apply(self, events: Iterable[ev.Event]) -> DialogueState:
        """The state after ``events``."""
        if not isinstance(events, list | tuple):
            events = list(events)
        if all(type(event) in _LENGTH_ONLY for event in events):
            return self._evolve(length=self.length + len(events))
        slots = dict(self.slots)
        stack = list(self.stack)
        s = self
        latest, handoff, fallbacks, turns = s.latest_message, s.handoff, s.fallbacks_in_row, s.turns
        last_time, started, length = s.last_user_time, s.session_started, s.length
        for event in events:
            length += 1
            match event:
                case ev.SessionStarted():
                    started = True
                    stack.clear()
                    fallbacks = 0
                    if not self.carry_over_slots:
                        slots = dict(self.initial_slots)
                case ev.Restarted():
                    slots = dict(self.initial_slots)
                    stack.clear()
                    latest, handoff, fallbacks, started = None, None, 0, False
                case ev.UserUttered():
                    latest = event
                    turns += 1
                    last_time = event.timestamp or last_time
                case ev.SlotSet():
                    slots[event.name] = event.value
                case ev.SlotRejected():
                    if stack:
                        f = stack[-1]
                        stack[-1] = Frame(f.flow, f.step, f.how, f.retries + 1, f.interrupted_by)
                case ev.PolicyDecided():
                    if event.policy != "fallback_policy":
                        fallbacks = 0
                case ev.FallbackTriggered():
                    fallbacks += 1
                case ev.HandoffRequested():
                    handoff = event.reason
                case ev.HandoffReleased():
                    handoff, fallbacks = None, 0
                case ev.FlowStarted():
                    stack.append(Frame(event.flow, None, event.how))
                case ev.FlowStepped():
                    at = _find(stack, event.flow)
                    if at is not None:
                        f = stack[at]
                        stack[at] = Frame(f.flow, event.step, f.how, 0, f.interrupted_by)
                case ev.FlowInterrupted():
                    at = _find(stack, event.flow)
                    if at is not None:
                        f = stack[at]
                        stack[at] = Frame(f.flow, f.step, f.how, f.retries, event.by)
                case ev.FlowResumed():
                    at = _find(stack, event.flow)
                    if at is not None:
                        f = stack[at]
                        stack[at] = Frame(f.flow, f.step, f.how, f.retries, None)
                case ev.FlowCompleted() | ev.FlowCancelled():
                    at = _find(stack, event.flow)
                    if at is not None:
                        del stack[at]
                case _:
                    pass
        return self._evolve(
            slots=MappingProxyType(slots),
            stack=tuple(stack),
            latest_message=latest,
            handoff=handoff,
            fallbacks_in_row=fallbacks,
            turns=turns,
            last_user_time=last_time,
            session_started=started,
            length=length,
        )

    def _evolve(self, **changes: object) -> DialogueState:
        """A copy with ``changes``: ``dataclasses.replace`` without its per-field checks and
        frozen ``__setattr__`` calls (every event a turn emits makes a new state)."""
        new = object.__new__(DialogueState)
        new.__dict__.update(self.__dict__, **changes)
        return new


_LENGTH_ONLY = frozenset({ev.BotUttered, ev.ActionExecuted, ev.ToolCalled, ev.LlmCalled})
"""Events that change nothing in the state but its length (see the match in ``apply``)."""


def _find(stack: list[Frame], flow: str) -> int | None:
    """Index of the topmost frame of ``flow``."""
    for i in range(len(stack) - 1, -1, -1):
        if stack[i].flow == flow:
            return i
    return None


def initial_state(domain: Domain) -> DialogueState:
    """The state of a conversation with no events: every slot at its initial value."""
    initial = MappingProxyType({name: typed(slot, slot.initial_value) for name, slot in domain.slots.items()})
    return DialogueState(initial_slots=initial, slots=initial, carry_over_slots=domain.session_config.carry_over_slots)


def replay(domain: Domain, events: Iterable[ev.Event]) -> DialogueState:
    """The state after all ``events`` of a conversation."""
    return initial_state(domain).apply(events)
