"""Cross-checks: every name used anywhere must exist, every step must be reachable,
values must fit their slots, and the training data must support what the flows use.

Each check is a small function returning diagnostics; :func:`cross_check` runs them all.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from engine.conditions import Condition
from engine.diagnostics import Diagnostic, Location
from engine.domain import ENGINE_PLACEHOLDERS, Domain, Entity, Slot
from engine.errors import Errors, ErrorSpec
from engine.flows.graph import build_graph, flow_cycles
from engine.flows.model import END, ActionStep, CallStep, CollectStep, Flow, LinkStep, SetSlotsStep, UtterStep
from engine.nlu.training_data import TrainingData
from engine.policies.config import OUT_OF_SCOPE_INTENTS, PolicyConfig

BUILTIN_ACTIONS = (
    "action_listen",
    "action_restart",
    "action_session_start",
    "action_handoff",
    "action_cancel_flow",
    "action_default_fallback",
)
"""Actions the engine provides; flows and rules may use them without declaring them."""

MIN_EXAMPLES = 10
_PAYLOAD = re.compile(r"^/(?P<intent>[A-Za-z_][A-Za-z0-9_\-]*)(?P<entities>\{.*\})?$", re.S)


@dataclass(frozen=True)
class ProjectParts:
    """What the cross-checks look at."""

    domain: Domain
    flows: Mapping[str, Flow]
    policies: PolicyConfig
    nlu: TrainingData
    implemented_actions: frozenset[str] | None
    """Actions registered by the project's actions/ package (None: not inspected)."""


def cross_check(parts: ProjectParts) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    for check in CHECKS:
        out.extend(check(parts))
    return out


# -- helpers ------------------------------------------------------------------------------


def _unknown(
    spec: ErrorSpec, what: str, name: str, loc: Location | None, valid: Iterable[str], context: str = ""
) -> Diagnostic:
    where = f" {context}" if context else ""
    article = "an" if what[0] in "aeiou" else "a"
    return spec.at(
        loc,
        f"unknown {what} {name!r}{where}",
        expected=f"the name of {article} {what} that exists",
        valid=valid,
        name=name,
    )


def _conditions(parts: ProjectParts) -> Iterator[tuple[Condition, str]]:
    for flow in parts.flows.values():
        if flow.guard is not None:
            yield flow.guard, f"in the `if` of flow {flow.id!r}"
        for step in flow.steps:
            for branch in step.next or ():
                if branch.condition is not None:
                    yield branch.condition, f"in a `next` of flow {flow.id!r}, step {step.id!r}"
            if isinstance(step, CollectStep):
                for rej in step.rejections:
                    yield rej.condition, f"in a rejection of flow {flow.id!r}, step {step.id!r}"
    for rule in parts.policies.rules:
        if rule.condition is not None:
            yield rule.condition, f"in rule {rule.name!r}"
    for response in parts.domain.responses.values():
        for var in response.variations:
            if var.condition is not None:
                yield var.condition, f"in a condition of response {response.name!r}"


def _undeclared(entity: Entity, kind: str, name: str, loc: Location | None, context: str) -> Diagnostic:
    declared = entity.roles if kind == "role" else entity.groups
    listing = ", ".join(declared) if declared else "none"
    return Errors.E320.at(
        loc,
        f"entity {entity.name!r} has no {kind} {name!r} ({context})",
        expected=f"a {kind} declared for entity {entity.name!r} in domain/ (declared: {listing})",
        valid=declared,
        name=name,
        fix=f"Add {name!r} to the `{kind}s` of entity {entity.name!r} in domain/, or correct the name.",
    )


def _step_context(flow: Flow, step_id: str) -> str:
    return f"in flow {flow.id!r}, step {step_id!r}"


def _is_response_or_action(name: str, parts: ProjectParts) -> bool:
    return name in parts.domain.responses or name in parts.domain.actions or name in BUILTIN_ACTIONS


# -- the checks ---------------------------------------------------------------------------


def check_slots_referenced(parts: ProjectParts) -> Iterator[Diagnostic]:
    slots = parts.domain.slots
    for flow in parts.flows.values():
        for name in flow.persisted_slots:
            if name not in slots:
                yield _unknown(Errors.E301, "slot", name, flow.loc, slots, f"in `persisted_slots` of flow {flow.id!r}")
        for step in flow.steps:
            if isinstance(step, CollectStep) and step.slot not in slots:
                yield _unknown(
                    Errors.E301,
                    "slot",
                    step.slot,
                    step.name_loc or step.loc,
                    slots,
                    f"collected {_step_context(flow, step.id)}",
                )
            if isinstance(step, SetSlotsStep):
                for name, _, loc in step.values:
                    if name not in slots:
                        yield _unknown(Errors.E301, "slot", name, loc, slots, f"set {_step_context(flow, step.id)}")
    for cond, context in _conditions(parts):
        for ref in cond.slot_refs():
            if ref.name not in slots:
                yield _unknown(Errors.E301, "slot", ref.name, cond.at(ref.offset), slots, context)


def check_responses_referenced(parts: ProjectParts) -> Iterator[Diagnostic]:
    responses = parts.domain.responses
    for flow in parts.flows.values():
        for step in flow.steps:
            if isinstance(step, UtterStep) and step.response not in responses:
                yield _unknown(
                    Errors.E302,
                    "response",
                    step.response,
                    step.name_loc or step.loc,
                    responses,
                    _step_context(flow, step.id),
                )
            if isinstance(step, CollectStep):
                if step.utter_explicit and step.utter not in responses:
                    yield _unknown(
                        Errors.E302, "response", step.utter, step.loc, responses, _step_context(flow, step.id)
                    )
                elif not step.utter_explicit and step.utter not in responses and step.slot in parts.domain.slots:
                    yield Errors.E310.at(
                        step.name_loc or step.loc,
                        f"nothing asks for slot {step.slot!r} {_step_context(flow, step.id)}: there is no response {step.utter!r}",
                        expected=f"a response {step.utter!r} in domain/, or `utter:` on the step",
                        fix=f"Add `{step.utter}:` under `responses:` in domain/, or give the step `utter: <response>`.",
                    )
                for rej in step.rejections:
                    if rej.response not in responses:
                        yield _unknown(
                            Errors.E302,
                            "response",
                            rej.response,
                            rej.loc,
                            responses,
                            f"in a rejection {_step_context(flow, step.id)}",
                        )
    for name, loc in parts.policies.response_refs:
        if name not in responses:
            yield _unknown(Errors.E302, "response", name, loc, responses, "in policies/")


def check_actions_referenced(parts: ProjectParts) -> Iterator[Diagnostic]:
    valid = [*parts.domain.actions, *BUILTIN_ACTIONS, *parts.domain.responses]
    for flow in parts.flows.values():
        for step in flow.steps:
            if isinstance(step, ActionStep) and not _is_response_or_action(step.action, parts):
                yield _unknown(
                    Errors.E303, "action", step.action, step.name_loc or step.loc, valid, _step_context(flow, step.id)
                )
    for rule in parts.policies.rules:
        for j, name in enumerate(rule.then):
            if not _is_response_or_action(name, parts):
                yield Errors.E321.at(
                    rule.then_locs[j] if j < len(rule.then_locs) else rule.loc,
                    f"rule {rule.name!r} runs {name!r}, which is neither a response nor an action",
                    expected="a response (utter_...) or an action listed under `actions:`",
                    valid=valid,
                    name=name,
                )
    for tool, loc in parts.policies.action_refs:
        if tool not in parts.domain.actions:
            yield _unknown(Errors.E303, "action", tool, loc, parts.domain.actions, "in `emergency.tools` of policies/")
    implemented = parts.implemented_actions
    if implemented is not None:
        for name, loc in parts.domain.actions.items():
            if name not in implemented:
                yield Errors.W003.at(
                    loc,
                    f"action {name!r} is declared but no @action({name!r}) was found in actions/",
                    valid=implemented,
                    name=name,
                )


def check_intents_referenced(parts: ProjectParts) -> Iterator[Diagnostic]:
    intents = parts.domain.intents
    trained = parts.nlu.intents()
    used: list[tuple[str, Location, str]] = []
    for flow in parts.flows.values():
        used.extend((t.intent, t.loc, f"in `nlu_trigger` of flow {flow.id!r}") for t in flow.nlu_triggers)
    used.extend((r.intent, r.loc, f"in rule {r.name!r}") for r in parts.policies.rules)
    used.extend((i, loc, "in `handoff.intents` of policies/") for i, loc in parts.policies.intent_refs)
    for slot in parts.domain.slots.values():
        for m in slot.mappings:
            used.extend((i, m.at("intent"), f"in a mapping of slot {slot.name!r}") for i in m.intents)
            used.extend((i, m.at("not_intent"), f"in a mapping of slot {slot.name!r}") for i in m.not_intents)
    for response in parts.domain.responses.values():
        for var in response.variations:
            for button in (*var.buttons, *var.quick_replies):
                match = _PAYLOAD.match(button.payload)
                if match:
                    used.append((match.group("intent"), var.loc, f"in a button payload of response {response.name!r}"))
    reported: set[str] = set()
    for name, loc, context in used:
        if name not in intents:
            yield _unknown(Errors.E304, "intent", name, loc, intents, context)
        elif name not in trained and name not in reported:
            reported.add(name)
            yield Errors.E312.at(
                loc,
                f"intent {name!r} is used {context} but has no training examples",
                fix=f"Add `- intent: {name}` with examples in nlu_data/.",
            )
    for example in parts.nlu.examples:
        if example.intent not in intents and example.intent not in reported:
            reported.add(example.intent)
            yield _unknown(
                Errors.E304,
                "intent",
                example.intent,
                example.loc,
                intents,
                "in nlu_data/ (examples for an undeclared intent)",
            )
    used_names = {u[0] for u in used}
    for name, intent in intents.items():
        count = len(parts.nlu.examples_for(name))
        if count == 0 and name not in used_names:
            yield Errors.W002.at(intent.loc, f"intent {name!r} has no training examples, so it can never be predicted")
        elif 0 < count < MIN_EXAMPLES:
            yield Errors.W004.at(
                intent.loc,
                f"intent {name!r} has only {count} training example(s); {MIN_EXAMPLES}+ varied examples train better",
            )


def check_entities_referenced(parts: ProjectParts) -> Iterator[Diagnostic]:
    entities = parts.domain.entities
    for slot in parts.domain.slots.values():
        for m in slot.mappings:
            if m.entity is None:
                continue
            entity = entities.get(m.entity)
            if entity is None:
                yield _unknown(
                    Errors.E305, "entity", m.entity, m.at("entity"), entities, f"in a mapping of slot {slot.name!r}"
                )
                continue
            if m.role is not None and m.role not in entity.roles:
                yield _undeclared(entity, "role", m.role, m.at("role"), f"in a mapping of slot {slot.name!r}")
            if m.group is not None and m.group not in entity.groups:
                yield _undeclared(entity, "group", m.group, m.at("group"), f"in a mapping of slot {slot.name!r}")
            if m.active_flow is not None and m.active_flow not in parts.flows:
                yield _unknown(
                    Errors.E306,
                    "flow",
                    m.active_flow,
                    m.at("active_flow"),
                    parts.flows,
                    f"in `active_flow` of a mapping of slot {slot.name!r}",
                )
    for intent in parts.domain.intents.values():
        if isinstance(intent.use_entities, tuple):
            for name in intent.use_entities:
                if name not in entities:
                    yield _unknown(
                        Errors.E305,
                        "entity",
                        name,
                        intent.loc,
                        entities,
                        f"in `use_entities` of intent {intent.name!r}",
                    )
    for example in parts.nlu.examples:
        for ann in example.entities:
            entity = entities.get(ann.entity)
            if entity is None:
                yield _unknown(
                    Errors.E305,
                    "entity",
                    ann.entity,
                    example.loc,
                    entities,
                    f"annotated in an example of intent {example.intent!r}",
                )
            elif ann.role is not None and ann.role not in entity.roles:
                context = f"in an example of intent {example.intent!r}"
                yield _undeclared(entity, "role", ann.role, example.loc, context)
            elif ann.group is not None and ann.group not in entity.groups:
                context = f"in an example of intent {example.intent!r}"
                yield _undeclared(entity, "group", ann.group, example.loc, context)


def check_flow_structure(parts: ProjectParts) -> Iterator[Diagnostic]:
    for flow in parts.flows.values():
        step_ids = [s.id for s in flow.steps]
        for step in flow.steps:
            for branch in step.next or ():
                if branch.target != END and branch.target not in step_ids:
                    yield Errors.E307.at(
                        branch.loc,
                        f"`next: {branch.target}` {_step_context(flow, step.id)} refers to a step that does not exist",
                        expected="the id of a step in this flow, or END",
                        valid=[*step_ids, END],
                        name=branch.target,
                        fix=f"Add a step with `id: {branch.target}`, or point `next` at an existing id or END.",
                    )
            if (
                isinstance(step, ActionStep)
                and step.on_failure is not None
                and step.on_failure != END
                and step.on_failure not in step_ids
            ):
                yield Errors.E307.at(
                    step.on_failure_loc,
                    f"`on_failure: {step.on_failure}` {_step_context(flow, step.id)} refers to a step that does not exist",
                    expected="the id of a step in this flow, or END",
                    valid=[*step_ids, END],
                    name=step.on_failure,
                    fix=f"Add a step with `id: {step.on_failure}`, or point `on_failure` at an existing id or END.",
                )
            if isinstance(step, LinkStep | CallStep) and step.flow not in parts.flows:
                yield _unknown(
                    Errors.E306,
                    "flow",
                    step.flow,
                    step.name_loc or step.loc,
                    parts.flows,
                    f"in `{step.kind}` {_step_context(flow, step.id)}",
                )
        reachable = build_graph(flow).reachable()
        for step in flow.steps:
            if step.id not in reachable:
                yield Errors.E308.at(
                    step.loc,
                    f"step {step.id!r} of flow {flow.id!r} can never be reached: the step before it always goes elsewhere",
                    fix=f"Point a `next` at {step.id!r}, or remove the step.",
                )
    for group in flow_cycles(parts.flows):
        members = set(group)
        if not any(build_graph(parts.flows[f]).can_end_avoiding(members) for f in group):
            first = parts.flows[group[0]]
            yield Errors.E309.at(
                first.loc,
                f"flows {', '.join(repr(g) for g in group)} link/call each other in a cycle that never ends",
                related=[parts.flows[g].loc for g in group[1:]],
            )


def check_placeholders(parts: ProjectParts) -> Iterator[Diagnostic]:
    slots = parts.domain.slots
    for response in parts.domain.responses.values():
        for var in response.variations:
            if var.text is None:
                continue
            try:
                fields = [f for _, f, _, _ in string.Formatter().parse(var.text) if f is not None]
            except ValueError as exc:
                yield Errors.E311.at(var.loc, f"response {response.name!r} has a malformed placeholder: {exc}")
                continue
            for field in fields:
                name = re.split(r"[.\[!:]", field, maxsplit=1)[0]
                if name not in slots and name not in ENGINE_PLACEHOLDERS.get(response.name, ()):
                    yield Errors.E311.at(
                        var.loc,
                        f"response {response.name!r} uses {{{field}}}, but there is no slot {name!r}",
                        valid=slots,
                        name=name,
                    )


def check_example_conflicts(parts: ProjectParts) -> Iterator[Diagnostic]:
    first: dict[str, tuple[str, Location]] = {}
    for example in parts.nlu.examples:
        key = " ".join(example.text.lower().split())
        seen = first.get(key)
        if seen is None:
            first[key] = (example.intent, example.loc)
        elif seen[0] != example.intent:
            yield Errors.E313.at(
                example.loc,
                f"the example {example.text!r} is given for intent {example.intent!r} and for {seen[0]!r} at {seen[1]}",
                related=[seen[1]],
                fix="Keep the example under the one intent it means; the classifier cannot learn both.",
            )


def check_slot_values(parts: ProjectParts) -> Iterator[Diagnostic]:
    slots = parts.domain.slots
    for slot in slots.values():
        if slot.initial_value is not None:
            yield from _value_fits(slot, slot.initial_value, slot.loc, "as `initial_value`")
        for m in slot.mappings:
            if m.type == "from_intent":
                yield from _value_fits(slot, m.value, m.loc, "by a from_intent mapping")
    for flow in parts.flows.values():
        for step in flow.steps:
            if isinstance(step, SetSlotsStep):
                for name, value, loc in step.values:
                    if name in slots and value is not None:
                        yield from _value_fits(slots[name], value, loc, f"by set_slots {_step_context(flow, step.id)}")
    for cond, context in _conditions(parts):
        for ref, literal in cond.compared_literals():
            compared = slots.get(ref.name)
            value = literal.value
            if (
                compared is not None
                and compared.type == "categorical"
                and value is not None
                and value not in compared.values
            ):
                yield _categorical(
                    compared, value, cond.at(literal.offset if literal.offset >= 0 else ref.offset), context
                )


def _categorical(slot: Slot, value: Any, loc: Location | None, context: str) -> Diagnostic:
    shown = [str(v) for v in slot.values]
    return Errors.E314.at(
        loc,
        f"{value!r} is not a value of categorical slot {slot.name!r} ({context})",
        expected="one of " + ", ".join(shown),
        valid=shown,
        name=str(value),
    )


_TYPE_VALUES = {
    "text": "a string",
    "bool": "true or false",
    "float": "a number",
    "list": "a list",
    "any": "any value",
}
"""What ``expected:`` says for a value of each (non-categorical) slot type."""


def _value_fits(slot: Slot, value: Any, loc: Location, context: str) -> Iterator[Diagnostic]:
    if slot.type == "categorical":
        if value not in slot.values:
            yield _categorical(slot, value, loc, f"set {context}")
        return
    ok = {
        "text": isinstance(value, str),
        "bool": isinstance(value, bool),
        "float": isinstance(value, int | float) and not isinstance(value, bool),
        "list": isinstance(value, list),
        "any": True,
    }[slot.type]
    if not ok:
        yield Errors.E317.at(
            loc,
            f"slot {slot.name!r} is a {slot.type} slot, but is set to {value!r} {context}",
            expected=_TYPE_VALUES[slot.type],
        )
        return
    if slot.type == "float":
        low, high = slot.min_value, slot.max_value
        if (low is not None and value < low) or (high is not None and value > high):
            yield Errors.E317.at(
                loc,
                f"{value!r} is outside the range of slot {slot.name!r} [{low}, {high}] ({context})",
                expected=f"a number between {low} and {high}",
            )


def check_pipeline_components(parts: ProjectParts) -> Iterator[Diagnostic]:
    from engine.registrations import nlu_components

    available = nlu_components.names()
    for component in parts.policies.pipeline:
        if component.name not in nlu_components:
            yield Errors.E322.at(
                component.loc,
                f"unknown NLU component {component.name!r} in the pipeline",
                expected="the name of a registered component",
                valid=available,
                name=component.name,
            )


def check_learned_threshold(parts: ProjectParts) -> Iterator[Diagnostic]:
    where = parts.policies.nlu_threshold_auto
    if where is not None and not set(OUT_OF_SCOPE_INTENTS) & parts.nlu.intents():
        yield Errors.E323.at(
            where,
            "nlu_threshold is auto, but nlu_data/ has no `oos` or `out_of_scope` intent to learn it from",
            expected="a number from 0 to 1, or auto with out-of-scope examples",
        )


CHECKS: tuple[Callable[[ProjectParts], Iterable[Diagnostic]], ...] = (
    check_slots_referenced,
    check_responses_referenced,
    check_actions_referenced,
    check_intents_referenced,
    check_entities_referenced,
    check_flow_structure,
    check_placeholders,
    check_example_conflicts,
    check_slot_values,
    check_pipeline_components,
    check_learned_threshold,
)
