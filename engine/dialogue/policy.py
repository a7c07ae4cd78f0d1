"""The decision (the DM node): which policy handles a message, and why. Pure.

Four policies look at the message, the state and what state tracking made of it
(:class:`~engine.dialogue.understand.Understanding`); each either passes or proposes a
:class:`Decision`. When several propose, the highest ``priority`` from ``policies/`` wins
(defaults: rules 6, flows 5, handoff 4, fallback 1), and the :class:`PolicyDecided` event
names the winner, its reason and the policies it outranked.

- ``rule_policy``: a confident intent matching a rule (and its slot condition; a rule whose
  condition holds beats one without), unless the message answers the active flow's question.
- ``flow_policy``, in this order: cancel the active flow (intent ``cancel``); take an
  answer to its question; take a correction of an earlier answer; start a flow whose
  ``nlu_trigger`` intent is confident enough (interrupting the active one); or, while a
  question is pending, count a message that does not answer it and ask again.
- ``handoff_policy``: a confident intent listed under ``handoff.intents``.
- ``fallback_policy``: the top intent is below ``nlu_threshold`` or within
  ``ambiguity_threshold`` of the second, or no other policy handles the message.

Before all of them, ``guardrail_policy`` answers a message on one of the
``guardrails.disallowed_topics`` (a keyword, matched as a whole word) with the topic's
response; under STRICT_POLICY it also hands the conversation to a person.

A confident intent is one at or above ``nlu_threshold`` and at least
``ambiguity_threshold`` ahead of the runner-up.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from engine.dialogue.tracker import DialogueState
from engine.dialogue.understand import Understanding
from engine.events import PolicyDecided, UserUttered
from engine.flows.model import Flow
from engine.policies.config import DEFAULT_POLICIES, PolicyConfig

CANCEL_INTENT = "cancel"
"""The intent that cancels the active flow ("never mind")."""

RULE, FLOW, HANDOFF, FALLBACK = "rule_policy", "flow_policy", "handoff_policy", "fallback_policy"
GUARDRAIL = "guardrail_policy"

Kind = Literal[
    "rule", "answer", "correction", "trigger", "resume", "cancel", "no_answer", "handoff", "fallback", "guardrail"
]


@dataclass(frozen=True, slots=True)
class Decision:
    policy: str
    kind: Kind
    reason: str
    actions: tuple[str, ...] = ()
    """For rules: the responses and actions to run."""
    flow: str | None = None
    """For triggers: the flow to start; for handoffs: the flow to run first, if any."""
    handoff_reason: str | None = None
    fallback_reason: str | None = None
    """``low_confidence``, ``ambiguous`` or ``unhandled``."""
    outranked: tuple[str, ...] = ()

    def event(self) -> PolicyDecided:
        reason = self.reason
        if self.outranked:
            reason += f" (outranked: {', '.join(self.outranked)})"
        return PolicyDecided(self.policy, reason, self.actions)


@dataclass(frozen=True, slots=True)
class Confidence:
    intent: str | None
    score: float
    margin: float
    """Lead over the second intent (1.0 when there is none)."""
    confident: bool
    ambiguous: bool


def confidence(message: UserUttered, config: PolicyConfig) -> Confidence:
    ranking = [_float(r.get("confidence")) for r in message.ranking]
    second = ranking[1] if len(ranking) > 1 else 0.0
    margin = message.confidence - second if message.source != "shortcut" else 1.0
    above = message.intent is not None and message.confidence >= config.nlu_threshold
    ambiguous = above and len(ranking) > 1 and margin < config.ambiguity_threshold and message.source != "shortcut"
    confident = above and not ambiguous
    return Confidence(message.intent, message.confidence, margin, confident, ambiguous)


def _float(value: object) -> float:
    return float(value) if isinstance(value, int | float) else 0.0


def priorities(config: PolicyConfig) -> dict[str, int]:
    """Each enabled policy's priority; ``fallback_policy`` is always there (the last resort)."""
    entries = {p.name: p.priority for p in config.policies} or dict(DEFAULT_POLICIES)
    entries.setdefault(FALLBACK, min(entries.values(), default=1) - 1 if entries else 1)
    return entries


def decide(
    config: PolicyConfig,
    flows: Mapping[str, Flow],
    state: DialogueState,
    message: UserUttered,
    understood: Understanding,
    *,
    strict: bool = False,
) -> Decision:
    """The winning decision for ``message`` (see the module docstring).

    ``strict`` is STRICT_POLICY (from ``guardrails`` or switched on at run time): a message
    on a disallowed topic then also hands the conversation to a person (reason ``policy``).
    """
    guarded = _guardrail(config, message, strict or config.guardrails.strict_policy)
    if guarded is not None:
        return guarded
    conf = confidence(message, config)
    prio = priorities(config)
    proposals: list[Decision] = []
    if RULE in prio and (d := _rule(config, state, message, understood, conf)) is not None:
        proposals.append(d)
    if FLOW in prio and (d := _flow(config, flows, state, message, understood, conf)) is not None:
        proposals.append(d)
    if HANDOFF in prio and (d := _handoff(config, flows, message, conf)) is not None:
        proposals.append(d)
    if any(d.kind == "no_answer" for d in proposals) and any(d.policy in (RULE, HANDOFF) for d in proposals):
        # "You didn't answer my question" yields to anything that actually handles the message.
        proposals = [d for d in proposals if d.kind != "no_answer"]
    if not conf.confident or not proposals:
        proposals.append(_fallback(message, conf))
    proposals.sort(key=lambda d: prio.get(d.policy, 0), reverse=True)
    winner = proposals[0]
    others = tuple(f"{d.policy} ({d.kind})" for d in proposals[1:])
    return Decision(
        winner.policy,
        winner.kind,
        winner.reason,
        winner.actions,
        winner.flow,
        winner.handoff_reason,
        winner.fallback_reason,
        others,
    )


def _rule(
    config: PolicyConfig, state: DialogueState, message: UserUttered, understood: Understanding, conf: Confidence
) -> Decision | None:
    if not conf.confident or understood.for_the_flow:
        return None
    slots = dict(state.slots)
    slots.update(understood.global_sets)
    matching = [
        r for r in config.rules if r.intent == message.intent and (r.condition is None or r.condition.evaluate(slots))
    ]
    if not matching:
        return None
    # A rule whose slot condition holds is more specific than one without: it wins.
    rule = next((r for r in matching if r.condition is not None), matching[0])
    why = f"rule '{rule.name}' matches intent {message.intent} ({conf.score:.2f})"
    if rule.condition is not None:
        why += f" and {rule.condition.text}"
    return Decision(RULE, "rule", why, rule.then)


def triggered_flow(
    flows: Mapping[str, Flow], message: UserUttered, conf: Confidence, state: DialogueState
) -> tuple[Flow, float] | None:
    """The flow whose ``nlu_trigger`` the message fires (guard holding), if any."""
    if not conf.confident or message.intent is None:
        return None
    for flow in flows.values():
        for trigger in flow.nlu_triggers:
            if (
                trigger.intent == message.intent
                and message.confidence >= trigger.confidence_threshold
                and (flow.guard is None or flow.guard.evaluate(state.slots))
            ):
                return flow, trigger.confidence_threshold
    return None


def _flow(
    config: PolicyConfig,
    flows: Mapping[str, Flow],
    state: DialogueState,
    message: UserUttered,
    understood: Understanding,
    conf: Confidence,
) -> Decision | None:
    active = state.active_flow
    if active is not None and conf.confident and message.intent == CANCEL_INTENT:
        return Decision(FLOW, "cancel", f"intent {CANCEL_INTENT} ({conf.score:.2f}) cancels flow {active}", flow=active)
    if understood.for_the_flow and active is not None:
        names = ", ".join([s for s, _ in understood.answers] + [r.slot for r in understood.rejected])
        return Decision(FLOW, "answer", f"the message answers {active}'s question ({names})", flow=active)
    if understood.corrections:
        names = ", ".join(c.slot for c in understood.corrections)
        return Decision(FLOW, "correction", f"the message corrects {names}", flow=understood.corrections[0].flow)
    found = triggered_flow(flows, message, conf, state)
    if found is not None and message.intent not in config.handoff.intents:
        flow, threshold = found
        on_stack = [f.flow for f in state.stack]
        why = f"intent {message.intent} ({conf.score:.2f} >= {threshold:.2f}) triggers flow {flow.id}"
        if flow.id in on_stack:
            return Decision(FLOW, "resume", why + ", which is already running: continue it", flow=flow.id)
        if active is not None:
            why += f", interrupting {active}"
        return Decision(FLOW, "trigger", why, flow=flow.id)
    if understood.collecting is not None and active is not None:
        return Decision(
            FLOW,
            "no_answer",
            f"{active} is waiting for {understood.collecting} and the message gives no value for it",
            flow=active,
        )
    return None


def _handoff(
    config: PolicyConfig, flows: Mapping[str, Flow], message: UserUttered, conf: Confidence
) -> Decision | None:
    if not conf.confident or message.intent not in config.handoff.intents:
        return None
    flow = next((f.id for f in flows.values() if any(t.intent == message.intent for t in f.nlu_triggers)), None)
    why = f"intent {message.intent} ({conf.score:.2f}) asks for a person"
    return Decision(HANDOFF, "handoff", why, flow=flow, handoff_reason="user_request")


def _keyword_pattern(keyword: str) -> re.Pattern[str]:
    escaped = re.escape(keyword.lower())
    if keyword.isascii():
        return re.compile(rf"(?<!\w){escaped}(?!\w)")
    return re.compile(escaped)  # scripts without spaces between words: match inside words


def _guardrail(config: PolicyConfig, message: UserUttered, strict: bool) -> Decision | None:
    """A disallowed topic: always answered with its response, whatever the priorities."""
    if message.source == "shortcut" or not config.guardrails.disallowed_topics:
        return None
    text = message.text.lower()
    for topic in config.guardrails.disallowed_topics:
        for keyword in topic.keywords:
            if _keyword_pattern(keyword).search(text):
                why = f"the message touches the disallowed topic {topic.name} ({keyword!r})"
                return Decision(
                    GUARDRAIL,
                    "guardrail",
                    why + (", and STRICT_POLICY hands it to a person" if strict else ""),
                    (topic.response,),
                    handoff_reason="policy" if strict else None,
                )
    return None


def _fallback(message: UserUttered, conf: Confidence) -> Decision:
    if conf.ambiguous:
        return Decision(
            FALLBACK,
            "fallback",
            f"top intents within the ambiguity threshold (lead {conf.margin:.2f})",
            fallback_reason="ambiguous",
        )
    if not conf.confident:
        return Decision(
            FALLBACK,
            "fallback",
            f"top intent {message.intent} ({conf.score:.2f}) is below nlu_threshold",
            fallback_reason="low_confidence",
        )
    return Decision(
        FALLBACK, "fallback", f"no rule or flow handles intent {message.intent}", fallback_reason="unhandled"
    )
