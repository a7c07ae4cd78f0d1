"""State tracking (the ST node): which slot values a message offers, and to whom.

Every value a message offers (:func:`engine.dialogue.slots.candidates`) is sorted into one
of four piles, relative to the flow stack:

- **answers**: the slot the active flow is collecting (and, in a ``SLOT_FILLING`` flow, any
  of its still-empty collect slots), checked against the slot's type and the collect step's
  ``rejections``; failures go to **rejected** with the response to say;
- **corrections**: a new value for a slot a flow on the stack has already collected
  ("actually my id is C54321");
- **global** values for slots no flow on the stack collects (e.g. entities in the message
  that starts a flow), set whoever handles the message;
- values for collect slots a ``STEP_BY_STEP`` flow has not reached yet are left alone: that
  flow asks for them in order.

Pure: reads the state, returns a :class:`Understanding`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from engine.dialogue.slots import Candidate, candidates, check
from engine.dialogue.tracker import DialogueState
from engine.domain import Domain
from engine.events import JsonValue, UserUttered
from engine.flows.model import CollectStep, Flow


@dataclass(frozen=True, slots=True)
class Rejected:
    slot: str
    value: JsonValue
    reason: str
    response: str | None
    """The rejection's response, or None for a value of the wrong type."""


@dataclass(frozen=True, slots=True)
class Correction:
    slot: str
    value: JsonValue
    flow: str
    """The flow on the stack that collected the slot."""
    step: str
    """Its collect step."""


@dataclass(frozen=True, slots=True)
class Understanding:
    answers: tuple[tuple[str, JsonValue], ...] = ()
    rejected: tuple[Rejected, ...] = ()
    corrections: tuple[Correction, ...] = ()
    global_sets: tuple[tuple[str, JsonValue], ...] = ()
    collecting: str | None = None
    """The slot the active flow waits for, if any."""

    @property
    def for_the_flow(self) -> bool:
        """The message answers the active flow's question (accepted or not)."""
        return bool(self.answers or self.rejected)


def collecting_step(flows: Mapping[str, Flow], state: DialogueState) -> CollectStep | None:
    """The collect step the active flow is waiting at."""
    top = state.top
    if top is None or top.step is None:
        return None
    flow = flows.get(top.flow)
    step = flow.step(top.step) if flow is not None else None
    return step if isinstance(step, CollectStep) else None


def collect_steps(flow: Flow) -> dict[str, CollectStep]:
    """The flow's collect steps by slot (the first one for a slot collected twice)."""
    out: dict[str, CollectStep] = {}
    for step in flow.steps:
        if isinstance(step, CollectStep):
            out.setdefault(step.slot, step)
    return out


def understand(
    domain: Domain,
    flows: Mapping[str, Flow],
    state: DialogueState,
    message: UserUttered,
    direct: Mapping[str, JsonValue] | None = None,
) -> Understanding:
    """Sort the message's slot values into answers, rejections, corrections and global values.

    ``direct`` holds values a shortcut gives for slots by name.
    """
    waiting = collecting_step(flows, state)
    top = state.top
    offered = candidates(
        domain, message, active_flow=top.flow if top else None, collecting=waiting.slot if waiting else None
    )
    known = {c.slot for c in offered}
    for name, value in (direct or {}).items():
        if name in domain.slots and not domain.slots[name].controlled and name not in known:
            offered.append(Candidate(name, value, "shortcut"))

    on_stack: dict[str, tuple[str, CollectStep]] = {}
    for frame in reversed(state.stack):
        flow = flows.get(frame.flow)
        if flow is None:
            continue
        for slot, step in collect_steps(flow).items():
            on_stack.setdefault(slot, (flow.id, step))

    answer_slots: set[str] = set()
    if waiting is not None and top is not None:
        answer_slots.add(waiting.slot)
        top_flow = flows[top.flow]
        if top_flow.mode == "SLOT_FILLING":
            answer_slots |= {s for s in collect_steps(top_flow) if state.slots.get(s) is None}

    answers: list[tuple[str, JsonValue]] = []
    rejected: list[Rejected] = []
    corrections: list[Correction] = []
    global_sets: list[tuple[str, JsonValue]] = []
    for c in offered:
        result = check(domain.slots[c.slot], c.value)
        current = state.slots.get(c.slot)
        if c.slot in answer_slots and top is not None:
            step = collect_steps(flows[top.flow])[c.slot]
            verdict = _judge(step, c.slot, c.value, result.ok, result.value, result.reason, state.slots)
            if isinstance(verdict, Rejected):
                rejected.append(verdict)
            else:
                answers.append((c.slot, verdict))
        elif c.slot in on_stack:
            owner, step = on_stack[c.slot]
            if current is None or not result.ok or result.value == current:
                continue
            verdict = _judge(step, c.slot, c.value, True, result.value, "", state.slots)
            if isinstance(verdict, Rejected):
                rejected.append(verdict)
            else:
                corrections.append(Correction(c.slot, verdict, owner, step.id))
        elif result.ok and result.value != current:
            global_sets.append((c.slot, result.value))
    return Understanding(
        tuple(answers),
        tuple(rejected),
        tuple(corrections),
        tuple(global_sets),
        waiting.slot if waiting else None,
    )


def _judge(
    step: CollectStep,
    name: str,
    raw: JsonValue,
    ok: bool,
    value: JsonValue,
    reason: str,
    slots: Mapping[str, JsonValue],
) -> JsonValue | Rejected:
    """The value to set, or why it is rejected: the step's rejections first, then the type."""
    trial = dict(slots)
    trial[name] = value if ok else raw
    for rejection in step.rejections:
        if rejection.condition.evaluate(trial):
            return Rejected(name, raw, f"rejected: {rejection.condition.text}", rejection.response)
    if not ok:
        return Rejected(name, raw, reason, None)
    return value
