"""Carrying out a decision (the EXEC and NLG nodes): run flow steps, rules and tools.

The executor never changes state directly: it emits events into a :class:`Turn`, whose
state is always the replay of what came before plus what was emitted. Tools run through an
:class:`~engine.actions.runner.ActionRunner`, so a failing, slow or switched-off tool
becomes a ``ToolCalled`` event and a declared branch, never an exception out of the turn.

Flow semantics:

- a step that is entered emits ``FlowStepped``; a flow only ever waits at a ``collect``
  step whose slot is empty (or that has ``ask_before_filling``);
- ``call`` pushes the sub-flow and continues after the call step when it completes;
  ``link`` completes the flow and starts the target in its place;
- a triggered flow on top of an active one interrupts it; when the top flow ends, the
  interrupted one resumes and asks its pending question again;
- when a root flow ends (completed or cancelled), the slots of its collect steps with
  ``reset_after_flow_ends`` (and those of the flows it called) are reset, except its
  ``persisted_slots``;
- more than ``max_steps_per_turn`` steps in one turn stops the flow with an error (in the
  logs and the turn's ``errors``) that names it and the fix, and the failure response.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from engine import events as ev
from engine.actions.registry import ActionContext
from engine.actions.runner import ActionRunner
from engine.dialogue import nlg
from engine.dialogue.policy import Decision
from engine.dialogue.slots import check, typed
from engine.dialogue.tracker import DialogueState
from engine.dialogue.understand import Understanding, collect_steps, collecting_step
from engine.domain import Domain
from engine.events import BotUttered, Event, JsonValue
from engine.flows.model import (
    END,
    ActionStep,
    CallStep,
    CollectStep,
    Flow,
    LinkStep,
    NoopStep,
    SetSlotsStep,
    Step,
    UtterStep,
)
from engine.policies.config import EmergencyConfig, PolicyConfig

log = logging.getLogger("taiwa.dialogue")

BUILTIN_RESPONSES: dict[str, str] = {
    "utter_flow_cancelled": "Okay, I've stopped that.",
    "utter_flow_resumed": "Let's get back to {flow_name}.",
    "utter_correction_acknowledged": "Got it, I've updated that.",
    "utter_invalid_value": "Sorry, that doesn't look right: {reason}.",
    "utter_ask_rephrase": "Sorry, I didn't quite get that. Could you rephrase it?",
    "utter_default": "Sorry, I can't help with that.",
    "utter_handoff": "I'm handing you over to a member of our team.",
    "utter_tool_failure": "Sorry, something went wrong on our side.",
    "utter_tool_unavailable": "Sorry, that service is temporarily unavailable.",
}
"""Texts used when the domain does not define these responses (the domain's always win)."""

FALLBACK_INTENTS_HIDDEN = frozenset({"out_of_scope", "oos", "nlu_fallback", "cancel"})
"""Intents never offered as "did you mean" buttons."""


async def _no_history() -> Sequence[Event]:
    return ()


@dataclass
class Turn:
    """What one turn has done so far: the state and the events it emitted."""

    state: DialogueState
    sender_id: str = ""
    channel: str | None = None
    history: Callable[[], Awaitable[Sequence[Event]]] = field(default_factory=lambda: _no_history)
    """The conversation's events before this turn (sent to remote actions), read on demand."""
    events: list[Event] = field(default_factory=list)
    steps: int = 0
    errors: list[str] = field(default_factory=list)

    def emit(self, *events: Event) -> None:
        self.events.extend(events)
        self.state = self.state.apply(events)

    @property
    def said(self) -> list[BotUttered]:
        return [e for e in self.events if isinstance(e, BotUttered)]


@dataclass(frozen=True)
class Switches:
    """Run-time switches read at the start of every turn (emergency modes)."""

    tools_off: frozenset[str] = frozenset()
    """Tools switched off: they answer with their "unavailable" response."""
    strict_policy: bool = False
    """STRICT_POLICY: a disallowed topic also hands the conversation to a person."""
    emergency: EmergencyConfig | None = None
    """The ``emergency`` block in force, when it may differ from the one the project was
    loaded with (:class:`~engine.dialogue.emergency.EmergencyWatch`); None: the project's."""


class Executor:
    def __init__(
        self,
        domain: Domain,
        flows: Mapping[str, Flow],
        config: PolicyConfig,
        runner: ActionRunner,
        *,
        rng: random.Random | None = None,
        action_config: Mapping[str, Any] | None = None,
    ) -> None:
        self.domain = domain
        self.flows = flows
        self.config = config
        self.runner = runner
        self.rng = rng or random.Random()
        self.action_config = dict(action_config or {})
        self._switches = Switches()
        self._resets = {fid: self._reset_slots(fid, set()) for fid in flows}
        self._actionable = frozenset(
            [t.intent for f in flows.values() for t in f.nlu_triggers] + list(config.handoff.intents)
        )
        """Intents that start a task (a flow or a handoff): the ones worth offering as buttons."""

    # ------------------------------------------------------------------ decisions

    async def carry_out(
        self, turn: Turn, decision: Decision, understood: Understanding, switches: Switches = Switches()
    ) -> None:
        """Emit the events that carry out ``decision`` (the decision event is already emitted)."""
        self._switches = switches
        if understood.global_sets:
            turn.emit(*(ev.SlotSet(name, value) for name, value in understood.global_sets))
        match decision.kind:
            case "rule":
                ok = await self._run_names(turn, decision.actions, policy=decision.policy)
                if ok:
                    self._ask_again(turn)
            case "answer":
                await self._answer(turn, understood)
            case "correction":
                await self._correct(turn, understood)
            case "trigger":
                assert decision.flow is not None
                self._start(turn, decision.flow)
                await self._advance(turn)
            case "resume":
                await self._enter_top(turn)
            case "cancel":
                self._cancel_top(turn, "user_cancelled")
                self.say(turn, "utter_flow_cancelled")
                await self._resume_after_pop(turn)
            case "no_answer":
                waiting = collecting_step(self.flows, turn.state)
                assert waiting is not None
                turn.emit(ev.SlotRejected(waiting.slot, None, "the message gives no value"))
                await self._retry_or_give_up(turn, waiting)
            case "handoff":
                await self._handoff(turn, decision.handoff_reason or "user_request", decision.flow)
            case "fallback":
                self._fallback(turn, decision.fallback_reason or "unhandled")
            case "guardrail":
                for name in decision.actions:
                    self.say(turn, name)
                if decision.handoff_reason is not None:
                    self._cancel_stack(turn, "handoff")
                    turn.emit(ev.HandoffRequested(decision.handoff_reason))
                else:
                    self._ask_again(turn)

    async def _answer(self, turn: Turn, understood: Understanding) -> None:
        waiting = collecting_step(self.flows, turn.state)
        turn.emit(*(ev.SlotSet(name, value) for name, value in understood.answers))
        for c in understood.corrections:
            turn.emit(ev.SlotSet(c.slot, c.value))
        if understood.rejected:
            for r in understood.rejected:
                turn.emit(ev.SlotRejected(r.slot, r.value, r.reason, r.response))
                if r.response is not None:
                    self.say(turn, r.response)
                else:
                    self.say(turn, "utter_invalid_value", {"reason": r.reason, "slot": r.slot})
            if waiting is not None and turn.state.slots.get(waiting.slot) is None:
                await self._retry_or_give_up(turn, waiting)
                return
        await self._advance(turn, answered=True)

    async def _correct(self, turn: Turn, understood: Understanding) -> None:
        for c in understood.corrections:
            turn.emit(ev.SlotSet(c.slot, c.value))
        self.say(turn, "utter_correction_acknowledged")
        first = understood.corrections[0]
        flow = self.flows[first.flow]
        frame = next((f for f in turn.state.stack if f.flow == first.flow), None)
        collect = flow.step(first.step)
        current = flow.step(frame.step) if frame and frame.step else None
        if collect is not None and current is not None and current.index > collect.index:
            # Re-run what depends on the corrected value: go back to the step after its collect.
            target = self._next_target(flow, collect, turn.state.slots)
            if target != END:
                turn.emit(ev.FlowStepped(flow.id, target))
        await self._enter_top(turn)

    async def _retry_or_give_up(self, turn: Turn, step: CollectStep) -> None:
        top = turn.state.top
        if top is not None and top.retries > step.max_retries:
            flow = top.flow
            turn.errors.append(f"{flow}: no valid {step.slot} after {step.max_retries} re-asks")
            self._cancel_top(turn, "max_retries")
            self._fallback(turn, "max_retries")
            return
        self._ask(turn, step)

    # ------------------------------------------------------------------ flows

    def _start(self, turn: Turn, flow_id: str, how: str | None = None) -> None:
        top = turn.state.top
        if how is None:
            how = "interrupt" if top is not None else "trigger"
        if how == "interrupt" and top is not None:
            turn.emit(ev.FlowInterrupted(top.flow, flow_id))
        turn.emit(ev.FlowStarted(flow_id, how))

    async def _enter_top(self, turn: Turn) -> None:
        """Enter the top flow's current step again (ask its pending question)."""
        await self._advance(turn, reenter=True)

    async def _advance(self, turn: Turn, *, answered: bool = False, reenter: bool = False) -> None:
        """Run the stack until a flow waits for the user or the stack is empty."""
        entering = not answered
        limit = self.config.max_steps_per_turn
        while turn.state.stack:
            frame = turn.state.stack[-1]
            flow = self.flows.get(frame.flow)
            if flow is None:
                turn.errors.append(f"flow {frame.flow} is not in this version of the assistant")
                turn.emit(ev.FlowCancelled(frame.flow, "unknown_flow"))
                continue
            if frame.step is None:
                step: Step | None = flow.steps[0]
                turn.emit(ev.FlowStepped(flow.id, flow.steps[0].id))
                entering = True
            else:
                step = flow.step(frame.step)
            if step is None:
                turn.errors.append(f"flow {flow.id} has no step {frame.step} any more")
                turn.emit(ev.FlowCancelled(flow.id, "unknown_step"))
                continue
            turn.steps += 1
            if turn.steps > limit:
                msg = (
                    f"flow {flow.id} ran more than {limit} steps in one turn (now at step {step.id}). "
                    "Fix: make every loop in the flow pass a collect step, or raise session.max_steps_per_turn."
                )
                log.error(msg, extra={"error_type": "loop_limit", "flow": flow.id})
                turn.errors.append(msg)
                self._cancel_stack(turn, "loop_limit")
                self.say(turn, self.config.handoff.failure_response)
                return
            target = await self._run_step(turn, flow, step, entering=entering or reenter)
            reenter = False
            if target is None:
                return  # waiting for the user, or the turn ended (failure, handoff)
            if target == "":
                entering = True  # a call pushed a sub-flow, or a link replaced the flow
                continue
            if target == END:
                await self._complete(turn, flow)
                goes_on = await self._after_pop(turn)
                if goes_on is None:
                    return
                entering = goes_on
                continue
            turn.emit(ev.FlowStepped(flow.id, target))
            entering = True

    async def _run_step(self, turn: Turn, flow: Flow, step: Step, *, entering: bool) -> str | None:
        """Run one step; the next step id, END, "" (the stack changed) or None (stop here)."""
        slots = turn.state.slots
        match step:
            case CollectStep():
                filled = slots.get(step.slot) is not None
                if entering and (not filled or step.ask_before_filling):
                    self._ask(turn, step)
                    return None
                if not entering and not filled:
                    self._ask(turn, step)
                    return None
                return self._next_target(flow, step, slots)
            case UtterStep():
                self.say(turn, step.response)
            case SetSlotsStep():
                slots = self.domain.slots
                turn.emit(*(ev.SlotSet(name, typed(slots.get(name), value)) for name, value, _ in step.values))
            case NoopStep():
                pass
            case ActionStep():
                return await self._action_step(turn, flow, step)
            case CallStep():
                if entering:
                    self._start(turn, step.flow, "call")
                    return ""
            case LinkStep():
                await self._complete(turn, flow)
                self._start(turn, step.flow, "link")
                return ""
        return self._next_target(flow, step, turn.state.slots)

    async def _action_step(self, turn: Turn, flow: Flow, step: ActionStep) -> str | None:
        ok = await self.run_action(turn, step.action)
        if ok:
            return self._next_target(flow, step, turn.state.slots)
        if ok is None:  # switched off: said so, the flow stops
            self._cancel_stack(turn, "tool_disabled", only_chain=True)
            await self._resume_after_pop(turn)
            return None
        if step.on_failure is not None:
            return step.on_failure
        await self._tool_failure(turn)
        return None

    def _next_target(self, flow: Flow, step: Step, slots: Mapping[str, JsonValue]) -> str:
        if step.next is None:
            following = step.index + 1
            return flow.steps[following].id if following < len(flow.steps) else END
        for branch in step.next:
            if branch.condition is None or branch.condition.evaluate(slots):
                return branch.target
        return END

    async def _complete(self, turn: Turn, flow: Flow) -> None:
        frame = turn.state.stack[-1]
        turn.emit(ev.FlowCompleted(flow.id))
        if frame.how != "call":
            self._reset(turn, flow.id)

    async def _after_pop(self, turn: Turn) -> bool | None:
        """After the top flow ended: None when the stack is empty, else whether the flow
        below enters a new step (True) or goes back to its pending one (False)."""
        top = turn.state.top
        if top is None:
            return None
        flow = self.flows.get(top.flow)
        step = flow.step(top.step) if flow is not None and top.step is not None else None
        if isinstance(step, CallStep):
            # Back from a sub-flow: continue after the call step.
            assert flow is not None
            target = self._next_target(flow, step, turn.state.slots)
            if target == END:
                await self._complete(turn, flow)
                return await self._after_pop(turn)
            turn.emit(ev.FlowStepped(flow.id, target))
            return True
        if top.interrupted_by is not None:
            self._resume(turn)
        return False

    def _resume(self, turn: Turn) -> None:
        top = turn.state.top
        assert top is not None
        flow = self.flows.get(top.flow)
        turn.emit(ev.FlowResumed(top.flow))
        self.say(turn, "utter_flow_resumed", {"flow_name": (flow.name if flow else top.flow) or top.flow})

    async def _resume_after_pop(self, turn: Turn) -> None:
        top = turn.state.top
        if top is not None and top.interrupted_by is not None:
            self._resume(turn)
            await self._enter_top(turn)

    def _cancel_top(self, turn: Turn, reason: str) -> None:
        """Cancel the active flow and the flows that called it."""
        self._cancel_stack(turn, reason, only_chain=True)

    def _cancel_stack(self, turn: Turn, reason: str, *, only_chain: bool = False) -> None:
        while turn.state.stack:
            frame = turn.state.stack[-1]
            turn.emit(ev.FlowCancelled(frame.flow, reason))
            if frame.how != "call":
                self._reset(turn, frame.flow)
                if only_chain:
                    return

    def _reset(self, turn: Turn, flow_id: str) -> None:
        sets = []
        for name in self._resets.get(flow_id, ()):
            slot = self.domain.slots.get(name)
            initial = typed(slot, slot.initial_value) if slot is not None else None
            if turn.state.slots.get(name) != initial:
                sets.append(ev.SlotSet(name, initial))
        turn.emit(*sets)

    def _reset_slots(self, flow_id: str, seen: set[str]) -> tuple[str, ...]:
        """Slots reset when ``flow_id`` ends: its own and its called flows', minus persisted ones."""
        flow = self.flows.get(flow_id)
        if flow is None or flow_id in seen:
            return ()
        seen.add(flow_id)
        names: list[str] = [s.slot for s in collect_steps(flow).values() if s.reset_after_flow_ends]
        for step in flow.steps:
            if isinstance(step, CallStep):
                names.extend(self._reset_slots(step.flow, seen))
        return tuple(dict.fromkeys(n for n in names if n not in flow.persisted_slots))

    def _ask(self, turn: Turn, step: CollectStep) -> None:
        self.say(turn, step.utter)

    def _ask_again(self, turn: Turn) -> None:
        """After a rule ran in the middle of a flow: repeat the pending question."""
        waiting = collecting_step(self.flows, turn.state)
        if waiting is not None:
            self._ask(turn, waiting)

    # ------------------------------------------------------------------ actions

    async def _run_names(self, turn: Turn, names: Sequence[str], *, policy: str) -> bool:
        """Run responses and actions in order; False when one failed (and the turn ended)."""
        for name in names:
            if name in self.domain.responses or name in BUILTIN_RESPONSES:
                self.say(turn, name)
                continue
            ok = await self.run_action(turn, name, policy=policy)
            if ok is None:
                return False
            if not ok:
                await self._tool_failure(turn)
                return False
        return True

    async def run_action(self, turn: Turn, name: str, *, policy: str | None = None) -> bool | None:
        """Run a custom action or tool: True ok, False failed, None switched off."""
        emergency = self._switches.emergency or self.config.emergency
        if name in self._switches.tools_off or emergency.tools.get(name) is False:
            turn.emit(ev.ToolCalled(name, "disabled", "tool_disabled", 0.0, 0, "switched off by an operator"))
            log.info(
                "tool switched off", extra={"tool_name": name, "outcome": "disabled", "error_type": "tool_disabled"}
            )
            specific = f"utter_{name}_unavailable"
            self.say(turn, specific if specific in self.domain.responses else emergency.unavailable_response)
            return None
        state = turn.state
        latest = state.latest_message
        ctx = ActionContext(
            sender_id=turn.sender_id,
            slots=state.slots,
            latest_message={
                "text": latest.text,
                "intent": latest.intent,
                "entities": list(latest.entities),
                "confidence": latest.confidence,
            }
            if latest
            else {},
            active_flow=state.active_flow,
            config=self.action_config,
            events=(*(await turn.history()), *turn.events),
            domain=self.domain,
        )
        outcome = await self.runner.run(name, ctx)
        called = outcome.tool_called()
        turn.emit(called)
        fields = {
            "tool_name": name,
            "outcome": called.status,
            "latency_ms": called.latency_ms,
            "attempts": called.attempts,
        }
        if not outcome.ok:
            log.warning("tool failed", extra={**fields, "error_type": outcome.error_type, "detail": outcome.message})
            return False
        log.info("tool called", extra=fields)
        for event in self._admit(outcome.events, name):
            if isinstance(event, BotUttered) and event.text is None and event.response:
                # A named response (rasa_sdk's utter_message(response=..., **kwargs)): render it,
                # with the keyword arguments as extra placeholders.
                extra = {k: v for k, v in event.data.items() if v is None or isinstance(v, str | int | float | bool)}
                self.say(turn, event.response, extra)
            else:
                turn.emit(event)
        return True

    def _admit(self, returned: Sequence[Event], name: str) -> list[Event]:
        """The events an action may return: slot values (checked), bot messages, a handoff."""
        admitted: list[Event] = []
        for event in returned:
            if isinstance(event, ev.SlotSet):
                slot = self.domain.slots.get(event.name)
                if slot is None:
                    log.warning("action %s set unknown slot %s: ignored", name, event.name)
                    continue
                result = check(slot, event.value)
                if not result.ok:
                    log.warning("action %s set %s to %r (%s): ignored", name, event.name, event.value, result.reason)
                    continue
                admitted.append(ev.SlotSet(event.name, result.value))
            elif isinstance(event, BotUttered | ev.HandoffRequested):
                admitted.append(event)
            else:
                log.warning("action %s returned a %s event: ignored", name, type(event).__name__)
        return admitted

    async def _tool_failure(self, turn: Turn) -> None:
        """The generic failure path: say so, stop the flows, hand over to a person."""
        self.say(turn, self.config.handoff.failure_response)
        self._cancel_stack(turn, "tool_failure")
        turn.emit(ev.HandoffRequested("tool_failure"))

    # ------------------------------------------------------------------ fallback / handoff

    def _fallback(self, turn: Turn, reason: str) -> None:
        latest = turn.state.latest_message
        hidden = set(FALLBACK_INTENTS_HIDDEN)
        if latest is not None and reason == "unhandled" and latest.intent:
            hidden.add(latest.intent)  # offering what was just not handled helps nobody
        ranked = [str(r.get("name")) for r in (latest.ranking if latest else ())]
        top = tuple(n for n in ranked if n not in hidden and n in self._actionable)[
            : self.config.fallback.offer_top_intents
        ]
        will_handoff = turn.state.fallbacks_in_row + 1 >= self.config.fallback.max_in_a_row
        turn.emit(ev.FallbackTriggered(reason, top))
        if will_handoff:
            self._cancel_stack(turn, "handoff")
            self.say(turn, self.config.handoff.response)
            turn.emit(ev.HandoffRequested("repeated_fallback"))
            return
        if reason == "unhandled" and "utter_default" in self.domain.responses:
            self.say(turn, "utter_default")
            return
        message = self.render(turn, self.config.fallback.response)
        if message is not None and top:
            message = BotUttered(
                message.text, message.response, tuple(self._intent_button(i) for i in top), message.data
            )
        if message is not None:
            turn.emit(message)

    def _intent_button(self, intent: str) -> dict[str, str]:
        flow = next((f for f in self.flows.values() if any(t.intent == intent for t in f.nlu_triggers)), None)
        title = flow.name if flow is not None and flow.name else intent.replace("_", " ").capitalize()
        return {"title": title, "payload": f"/{intent}"}

    async def _handoff(self, turn: Turn, reason: str, flow_id: str | None) -> None:
        self._cancel_stack(turn, "handoff")
        before = len(turn.said)
        if flow_id is not None:
            self._start(turn, flow_id, "trigger")
            await self._advance(turn)
        if len(turn.said) == before:
            self.say(turn, self.config.handoff.response)
        turn.emit(ev.HandoffRequested(reason))

    # ------------------------------------------------------------------ NLG

    def render(self, turn: Turn, name: str, extra: Mapping[str, JsonValue] | None = None) -> BotUttered | None:
        slots: Mapping[str, JsonValue] = turn.state.slots
        if extra:
            slots = {**slots, **extra}
        message = nlg.render(self.domain, name, slots, channel=turn.channel, rng=self.rng)
        if message is None and name in BUILTIN_RESPONSES and name not in self.domain.responses:
            message = BotUttered(text=nlg.fill(BUILTIN_RESPONSES[name], slots), response=name)
        if message is None:
            log.warning("response %s has no variation for this conversation (channel %s)", name, turn.channel)
        return message

    def say(self, turn: Turn, name: str, extra: Mapping[str, JsonValue] | None = None) -> None:
        message = self.render(turn, name, extra)
        if message is not None:
            turn.emit(message)
