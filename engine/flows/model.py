"""Flows and their steps, as declared in ``flows/*.yml``.

One frozen dataclass per step kind; :class:`Flow` holds them in order. ``next`` targets
are resolved by :mod:`engine.flows.graph` at load time, never at run time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from engine.conditions import Condition
from engine.diagnostics import Location
from engine.events import JsonValue

END = "END"
"""The target that ends a flow."""

FlowMode = Literal["STEP_BY_STEP", "SLOT_FILLING"]


@dataclass(frozen=True, slots=True)
class Branch:
    """One arm of a ``next`` list; ``condition`` is None for ``else``."""

    condition: Condition | None
    target: str
    loc: Location


@dataclass(frozen=True, slots=True)
class StepBase:
    id: str
    """The step's ``id``, or a generated one such as ``2_collect_priority``."""
    index: int
    next: tuple[Branch, ...] | None
    """Explicit ``next``; None means "the following step" (or END after the last)."""
    description: str | None
    loc: Location
    name_loc: Location | None = field(default=None, kw_only=True)
    """Where the name the step uses (its slot, response, action or flow) is written."""


@dataclass(frozen=True, slots=True)
class Rejection:
    condition: Condition
    """When this holds for the new value, the value is rejected."""
    response: str
    loc: Location


@dataclass(frozen=True, slots=True)
class CollectStep(StepBase):
    slot: str
    utter: str
    """Response that asks for the slot (``utter_ask_<slot>`` unless overridden)."""
    utter_explicit: bool
    ask_before_filling: bool
    reset_after_flow_ends: bool
    max_retries: int
    rejections: tuple[Rejection, ...]
    kind: Literal["collect"] = "collect"


@dataclass(frozen=True, slots=True)
class ActionStep(StepBase):
    action: str
    on_failure: str | None
    """Step to take when the action fails; None: generic failure response + handoff."""
    on_failure_loc: Location | None
    kind: Literal["action"] = "action"


@dataclass(frozen=True, slots=True)
class UtterStep(StepBase):
    response: str
    kind: Literal["utter"] = "utter"


@dataclass(frozen=True, slots=True)
class SetSlotsStep(StepBase):
    values: tuple[tuple[str, JsonValue, Location], ...]
    kind: Literal["set_slots"] = "set_slots"


@dataclass(frozen=True, slots=True)
class NoopStep(StepBase):
    kind: Literal["noop"] = "noop"


@dataclass(frozen=True, slots=True)
class LinkStep(StepBase):
    flow: str
    """The flow that replaces this one."""
    kind: Literal["link"] = "link"


@dataclass(frozen=True, slots=True)
class CallStep(StepBase):
    flow: str
    """The sub-flow to run; this flow continues when it ends."""
    kind: Literal["call"] = "call"


Step = CollectStep | ActionStep | UtterStep | SetSlotsStep | NoopStep | LinkStep | CallStep


@dataclass(frozen=True, slots=True)
class NluTrigger:
    intent: str
    confidence_threshold: float
    loc: Location


@dataclass(frozen=True, slots=True)
class Flow:
    id: str
    name: str
    description: str
    mode: FlowMode
    guard: Condition | None
    nlu_triggers: tuple[NluTrigger, ...]
    persisted_slots: tuple[str, ...]
    steps: tuple[Step, ...]
    loc: Location

    def step(self, step_id: str) -> Step | None:
        """The step with this id, if any."""
        for step in self.steps:
            if step.id == step_id:
                return step
        return None
