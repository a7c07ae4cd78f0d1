"""Compare what a turn (or a whole case) did with what the golden case expects.

Every expectation becomes a :class:`Check` owned by one node of the turn pipeline, and a
failed case is blamed on the first failing check in pipeline order
(:data:`CAUSE_ORDER`): a wrong intent explains a wrong slot, which explains a wrong flow,
and so on, so the cause named is the earliest thing that went wrong.

========== =======================================================================
cause      failing expectation
========== =======================================================================
IR         ``intent``
slot       ``entities``; ``slots`` of slots filled from the user's message
mode       ``active_flow``; case-level ``flow_completed``
policy     ``policy``, ``handoff``, ``fallback`` (turn and case level)
exec       ``action`` (not called, wrong args), a tool called without a stub;
           ``slots`` of ``controlled`` slots (only flows and tools set them)
NLG        ``bot`` (response names or keywords), everything upstream being right
========== =======================================================================

One exception to the order: a tool called without a stub is blamed before ``mode`` and
``policy``, since the stub's failure is what moved the flow or handed the conversation over.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from engine.dialogue.slots import check as check_slot
from engine.domain import Domain
from engine.evaluation.golden import ActionExpectation, BotExpectation, CaseExpectation, TurnExpectation
from engine.events import JsonValue

Cause = Literal["IR", "mode", "slot", "exec", "policy", "NLG"]

CAUSES: tuple[Cause, ...] = ("IR", "mode", "slot", "exec", "policy", "NLG")
"""Every cause, in the report's order."""

CAUSE_ORDER: tuple[Cause, ...] = ("IR", "slot", "mode", "policy", "exec", "NLG")
"""Pipeline order: the first failing check in this order is the case's cause."""


@dataclass(frozen=True)
class TurnOutcome:
    """What one turn did, in plain values."""

    intent: str | None
    confidence: float
    entities: tuple[dict[str, JsonValue], ...]
    policy: str | None
    active_flow: str | None
    slots: Mapping[str, JsonValue]
    """Every slot with a value after the turn."""
    filled: Mapping[str, JsonValue]
    """Slots the user's message can fill (not ``controlled``) that got a new value during the turn."""
    bot: tuple[dict[str, JsonValue], ...]
    """``{"response", "text"}`` of each bot message."""
    tools: tuple[dict[str, JsonValue], ...]
    """``{"name", "args", "status", "error_type", "attempts"}`` of each tool call."""
    handoff: bool
    fallback: bool
    flows_completed: tuple[str, ...] = ()
    missing_stubs: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, JsonValue]:
        return {
            "intent": self.intent,
            "confidence": self.confidence,
            "entities": [dict(e) for e in self.entities],
            "policy": self.policy,
            "active_flow": self.active_flow,
            "slots": dict(self.slots),
            "filled": dict(self.filled),
            "bot": [dict(b) for b in self.bot],
            "tools": [dict(t) for t in self.tools],
            "handoff": self.handoff,
            "fallback": self.fallback,
            "flows_completed": list(self.flows_completed),
            "missing_stubs": list(self.missing_stubs),
            "errors": list(self.errors),
        }


@dataclass(frozen=True)
class Check:
    """One expectation, compared."""

    name: str
    node: Cause
    passed: bool
    expected: JsonValue
    got: JsonValue
    message: str
    extra: Mapping[str, JsonValue] = field(default_factory=dict)
    """E.g. the intent group (in_scope, oos, smalltalk) of an ``intent`` check."""

    def to_dict(self) -> dict[str, JsonValue]:
        out: dict[str, JsonValue] = {
            "check": self.name,
            "node": self.node,
            "passed": self.passed,
            "expected": self.expected,
            "got": self.got,
            "message": self.message,
        }
        out.update(self.extra)
        return out


def same_value(expected: JsonValue, got: JsonValue) -> bool:
    """Equal, or the same scalar written differently (``50`` and ``"50"``, ``50`` and ``50.0``)."""
    if expected == got:
        return True
    if isinstance(expected, bool) or isinstance(got, bool):
        return False
    scalars = (str, int, float)
    if isinstance(expected, scalars) and isinstance(got, scalars):
        return str(expected) == str(got) or _numbers_equal(expected, got)
    return False


def _numbers_equal(a: object, b: object) -> bool:
    try:
        return float(str(a)) == float(str(b))
    except ValueError:
        return False


def coerce_slots(domain: Domain, values: Mapping[str, JsonValue]) -> dict[str, JsonValue]:
    """Expected slot values as the slot stores them (``HIGH`` -> ``high`` for a categorical slot)."""
    out: dict[str, JsonValue] = {}
    for name in sorted(values):
        slot = domain.slots.get(name)
        checked = check_slot(slot, values[name]) if slot is not None else None
        out[name] = checked.value if checked is not None and checked.ok else values[name]
    return out


def check_rank(name: str, node: str) -> float:
    """Where a check stands in pipeline order (:data:`CAUSE_ORDER`).

    A tool called without a stub ranks just before ``mode``: the tool then fails, and the
    flow or handoff changes that follow from that failure are not the cause.
    """
    if name == "stub":
        return CAUSE_ORDER.index("mode") - 0.5
    return float(CAUSE_ORDER.index(node))


def first_failure(checks: Sequence[Check]) -> Check | None:
    """The failing check that comes first in pipeline order."""
    failed = [c for c in checks if not c.passed]
    return min(failed, key=lambda c: check_rank(c.name, c.node)) if failed else None


# -- one turn ------------------------------------------------------------------------------


def turn_checks(
    expect: TurnExpectation, got: TurnOutcome, domain: Domain, intent_group: str | None = None
) -> list[Check]:
    """Every check of one turn (those the case expects, plus missing stubs), in pipeline order."""
    checks: list[Check] = []
    if expect.intent is not None:
        ok = expect.intent == got.intent
        checks.append(
            Check(
                "intent",
                "IR",
                ok,
                expect.intent,
                got.intent,
                f"expected intent {expect.intent}, got {got.intent} ({got.confidence:.2f})",
                {"group": intent_group or "in_scope"},
            )
        )
    if expect.entities is not None:
        checks.append(_entities_check(expect.entities, got))
    if expect.slots is not None:
        checks.extend(slot_checks(domain, expect.slots, got.slots, "after the turn"))
    if expect.active_flow is not None:
        want = expect.active_flow.value
        checks.append(
            Check(
                "active_flow",
                "mode",
                want == got.active_flow,
                want,
                got.active_flow,
                f"expected active flow {want or '(none)'}, got {got.active_flow or '(none)'}",
            )
        )
    if expect.policy is not None:
        checks.append(
            Check(
                "policy",
                "policy",
                expect.policy == got.policy,
                expect.policy,
                got.policy,
                f"expected {expect.policy} to decide, got {got.policy}",
            )
        )
    for name, want_flag, got_flag in (
        ("handoff", expect.handoff, got.handoff),
        ("fallback", expect.fallback, got.fallback),
    ):
        if want_flag is not None:
            checks.append(_flag_check(name, want_flag, got_flag))
    if expect.action is not None:
        checks.append(action_check(expect.action, got.tools, "during the turn"))
    for tool in got.missing_stubs:
        checks.append(Check("stub", "exec", False, f"a stub for {tool}", None, f"tool {tool!r} called without a stub"))
    if expect.bot is not None:
        checks.append(bot_check(expect.bot, got.bot))
    return checks


def _entities_check(expected: Mapping[str, JsonValue], got: TurnOutcome) -> Check:
    found = [(str(e.get("entity")), e.get("value")) for e in got.entities]
    missing = {k: v for k, v in expected.items() if not any(n == k and same_value(v, val) for n, val in found)}
    shown = {n: val for n, val in found}
    return Check(
        "entities",
        "slot",
        not missing,
        dict(expected),
        shown,
        f"expected entities {_short(dict(expected))}, got {_short(shown)}",
    )


def slot_checks(
    domain: Domain, expected: Mapping[str, JsonValue], slots: Mapping[str, JsonValue], when: str
) -> list[Check]:
    """One check for the slots the user fills (node ``slot``), one for controlled ones (``exec``)."""
    want = coerce_slots(domain, expected)
    groups: dict[Cause, dict[str, JsonValue]] = {}
    for name, value in want.items():
        slot = domain.slots.get(name)
        node: Cause = "exec" if slot is not None and slot.controlled else "slot"
        groups.setdefault(node, {})[name] = value
    checks = []
    for node, part in sorted(groups.items(), key=lambda kv: CAUSE_ORDER.index(kv[0])):
        got = {name: slots.get(name) for name in part}
        wrong = [n for n in part if not same_value(part[n], got[n])]
        checks.append(
            Check(
                "slots",
                node,
                not wrong,
                part,
                got,
                f"expected slots {_short({n: part[n] for n in wrong})} {when}, got {_short({n: got[n] for n in wrong})}"
                if wrong
                else "slots as expected",
            )
        )
    return checks


def _flag_check(name: str, want: bool, got: bool) -> Check:
    words = {True: f"a {name}", False: f"no {name}"}
    return Check(name, "policy", want == got, want, got, f"expected {words[want]}, got {words[got]}")


def action_check(expect: ActionExpectation, tools: Sequence[Mapping[str, JsonValue]], when: str) -> Check:
    """A tool call among ``tools`` (or none at all when ``expect.name`` is None)."""
    called = [dict(t) for t in tools]
    names = [str(t.get("name")) for t in called]
    if expect.name is None:
        return Check("action", "exec", not called, None, names, f"expected no tool call {when}, got {names}")
    expected: JsonValue = {"name": expect.name, "args": dict(expect.args)} if expect.args else expect.name
    ok = any(t.get("name") == expect.name and _args_match(expect.args, t.get("args")) for t in called)
    got: JsonValue = [{"name": t.get("name"), "args": t.get("args")} for t in called] if expect.args else names
    what = f"{expect.name} with {_short(dict(expect.args))}" if expect.args else expect.name
    return Check("action", "exec", ok, expected, got, f"expected a call of {what} {when}, got {_short(got)}")


def _args_match(expected: Mapping[str, JsonValue], args: object) -> bool:
    if not isinstance(args, Mapping):
        return not expected
    return all(same_value(v, args.get(k)) for k, v in expected.items())


def bot_check(expect: BotExpectation, bot: Sequence[Mapping[str, JsonValue]]) -> Check:
    names = [m.get("response") for m in bot]
    texts = [str(m.get("text") or "") for m in bot]
    if expect.responses is not None:
        want = list(expect.responses)
        return Check("bot", "NLG", names == want, want, names, f"expected the bot to say {want}, got {names}")
    said = " ".join(texts).lower()
    missing = [k for k in expect.contains if k.lower() not in said]
    unwanted = [k for k in expect.not_contains if k.lower() in said]
    expected: dict[str, JsonValue] = {}
    if expect.contains:
        expected["contains"] = list(expect.contains)
    if expect.not_contains:
        expected["not_contains"] = list(expect.not_contains)
    problems = ([f"without {missing}"] if missing else []) + ([f"with {unwanted}"] if unwanted else [])
    message = (
        f"the bot answered {' and '.join(problems)}: {_short(texts)}" if problems else "the bot's words as expected"
    )
    return Check("bot", "NLG", not problems, expected, texts, message)


# -- the whole case ------------------------------------------------------------------------


def case_checks(
    expect: CaseExpectation,
    domain: Domain,
    *,
    slots: Mapping[str, JsonValue],
    tools: Sequence[Mapping[str, JsonValue]],
    flows_completed: Sequence[str],
    handoff: bool,
) -> list[Check]:
    """The case-level ``expect``: judged on the state at the end of the case."""
    checks: list[Check] = []
    if expect.flow_completed is not None:
        done = list(dict.fromkeys(flows_completed))
        checks.append(
            Check(
                "flow_completed",
                "mode",
                expect.flow_completed in done,
                expect.flow_completed,
                done,
                f"expected flow {expect.flow_completed} to complete, completed: {done or '(none)'}",
            )
        )
    if expect.slots is not None:
        checks.extend(slot_checks(domain, expect.slots, slots, "at the end"))
    if expect.handoff is not None:
        checks.append(_flag_check("handoff", expect.handoff, handoff))
    if expect.action is not None:
        last = list(tools[-1:])
        checks.append(action_check(expect.action, last, "as the last tool call"))
    return sorted(checks, key=lambda c: check_rank(c.name, c.node))


def _short(value: object, limit: int = 160) -> str:
    text = repr(value) if not isinstance(value, str) else value
    return text if len(text) <= limit else text[: limit - 1] + "…"
