"""Cross-check a golden file against the assistant: every name it uses must exist.

Intents, entities, slots (and that expected or stubbed values fit the slot), responses,
flows and tools are looked up; turns and stubs must say what they are (exactly one kind
key); case ids must be unique across the whole set. Each problem is a located diagnostic
with the valid names, a "did you mean" and a fix.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator, Mapping, Sequence
from typing import Any

from engine.diagnostics import Diagnostic, Location
from engine.dialogue.executor import BUILTIN_RESPONSES
from engine.dialogue.shortcut import COMMANDS, parse_shortcut
from engine.dialogue.slots import check
from engine.errors import Errors
from engine.loading.project import Project
from engine.loading.yaml_reader import PathPart, SourceFile

_LOOKS_LIKE_SHORTCUT = re.compile(r"^/[A-Za-z_][\w\-.]*\s*\{")


class GoldenChecker:
    """Checks every name a golden file uses against the assistant; remembers case ids across files."""

    def __init__(self, project: Project, tools: Collection[str]) -> None:
        domain = project.domain
        self.domain = domain
        self.intents = sorted({*domain.intents, *COMMANDS})
        self.entities = sorted(domain.entities)
        self.responses = sorted({*domain.responses, *BUILTIN_RESPONSES})
        self.flows = sorted(project.flows)
        self.tools = sorted(tools)
        self.diagnostics: list[Diagnostic] = []
        self.seen: dict[str, Location] = {}

    def check_file(self, source: SourceFile) -> Iterator[dict[str, Any]]:
        data = source.data
        defaults = data.get("stubs") or {}
        self._stubs(source, ["stubs"], defaults)
        for i, case in enumerate(data["cases"]):
            path: list[PathPart] = ["cases", i]
            before = len(self.diagnostics)
            self._case(source, path, case)
            if len(self.diagnostics) == before:
                stubs = {**defaults, **(case.get("stubs") or {})}
                yield {**case, "stubs": stubs, "source": str(source.loc(path))}

    def _error(self, diag: Diagnostic) -> None:
        self.diagnostics.append(diag)

    def _case(self, source: SourceFile, path: list[PathPart], case: Mapping[str, Any]) -> None:
        case_id = str(case["case_id"])
        loc = source.loc([*path, "case_id"])
        first = self.seen.get(case_id)
        if first is not None:
            self._error(
                Errors.E401.at(loc, f"the case_id {case_id!r} is used twice; first used at {first}", related=[first])
            )
        else:
            self.seen[case_id] = loc
        self._slot_values(source, [*path, "slots"], case.get("slots"), "start with")
        self._stubs(source, [*path, "stubs"], case.get("stubs") or {})
        for t, turn in enumerate(case["turns"]):
            self._turn(source, [*path, "turns", t], turn)
        expect = case.get("expect") or {}
        epath = [*path, "expect"]
        if "flow_completed" in expect:
            self._name(source, [*epath, "flow_completed"], expect["flow_completed"], "flow")
        self._slot_values(source, [*epath, "slots"], expect.get("slots"), "expect")
        self._action(source, [*epath, "action"], expect.get("action"))

    def _turn(self, source: SourceFile, path: list[PathPart], turn: Mapping[str, Any]) -> None:
        kinds = [k for k in ("user", "intent") if k in turn]
        if len(kinds) != 1:
            what = "has none of the keys that say what the user sends" if not kinds else "has both `user` and `intent`"
            self._error(
                Errors.E108.at(
                    source.loc(path),
                    f"this turn {what}",
                    expected="exactly one of user (a message) or intent (a /intent shortcut)",
                    valid=["intent", "user"],
                )
            )
        if "entities" in turn and "intent" not in turn:
            self._error(
                Errors.E109.at(
                    source.loc([*path, "entities"], key=True),
                    "`entities` is allowed only with `intent:` (the values the shortcut carries)",
                    fix='Write the message as `intent: inform` with `entities: {priority: high}`, or as `user: /inform{"priority": "high"}`.',
                )
            )
        if "intent" in turn:
            self._name(source, [*path, "intent"], turn["intent"], "intent")
            for key in turn.get("entities") or {}:
                if key not in self.domain.entities and key not in self.domain.slots:
                    self._unknown(
                        source, [*path, "entities", key], key, "entity or slot", [*self.entities, *self.domain.slots]
                    )
        elif "user" in turn:
            self._user_text(source, [*path, "user"], str(turn["user"]))
        expect = turn.get("expect") or {}
        epath = [*path, "expect"]
        if "intent" in expect:
            self._name(source, [*epath, "intent"], expect["intent"], "intent")
        for key in expect.get("entities") or {}:
            self._name(source, [*epath, "entities", key], key, "entity", key_position=True)
        self._slot_values(source, [*epath, "slots"], expect.get("slots"), "expect")
        if expect.get("active_flow") is not None:
            self._name(source, [*epath, "active_flow"], expect["active_flow"], "flow")
        bot = expect.get("bot")
        if isinstance(bot, str):
            self._name(source, [*epath, "bot"], bot, "response")
        elif isinstance(bot, list):
            for i, name in enumerate(bot):
                self._name(source, [*epath, "bot", i], name, "response")
        self._action(source, [*epath, "action"], expect.get("action"))

    def _user_text(self, source: SourceFile, path: list[PathPart], text: str) -> None:
        shortcut = parse_shortcut(text)
        if shortcut is None:
            if _LOOKS_LIKE_SHORTCUT.match(text.strip()):
                self._error(
                    Errors.E403.at(
                        source.loc(path),
                        f"the message {text[:60]!r} looks like a /intent{{...}} shortcut but is not one "
                        "(the part after the intent must be one JSON object in braces)",
                    )
                )
            return
        if shortcut.error is not None:
            self._error(Errors.E403.at(source.loc(path), f"the message {text[:60]!r} cannot be read: {shortcut.error}"))
        self._name(source, path, shortcut.intent, "intent")

    def _action(self, source: SourceFile, path: list[PathPart], action: object) -> None:
        if isinstance(action, str):
            self._name(source, path, action, "tool")
        elif isinstance(action, Mapping):
            self._name(source, [*path, "name"], action["name"], "tool")
            self._slot_values(source, [*path, "args"], action.get("args"), "expect")

    def _stubs(self, source: SourceFile, path: list[PathPart], stubs: Mapping[str, Any]) -> None:
        for tool, value in stubs.items():
            self._name(source, [*path, tool], tool, "tool", key_position=True)
            answers = value if isinstance(value, list) else [value]
            for i, answer in enumerate(answers):
                apath = [*path, tool, i] if isinstance(value, list) else [*path, tool]
                self._stub(source, apath, answer)

    def _stub(self, source: SourceFile, path: list[PathPart], answer: Mapping[str, Any]) -> None:
        kinds = [k for k in ("result", "timeout", "error") if k in answer]
        if len(kinds) != 1:
            self._error(
                Errors.E108.at(
                    source.loc(path),
                    "this stub has "
                    + (
                        "none of the keys that say what the tool does" if not kinds else f"several ({', '.join(kinds)})"
                    ),
                    expected="exactly one of result (what it returns), timeout: true or error: 4xx | 5xx | raise",
                    valid=["error", "result", "timeout"],
                )
            )
        result = answer.get("result")
        if isinstance(result, Mapping):
            self._slot_values(source, [*path, "result"], result, "return")
        elif isinstance(result, list):
            for i, event in enumerate(result):
                self._stub_event(source, [*path, "result", i], event)

    def _stub_event(self, source: SourceFile, path: list[PathPart], event: Mapping[str, Any]) -> None:
        kind = event["event"]
        needs = {"slot_set": ("name", "value"), "bot_uttered": (), "handoff_requested": ()}[kind]
        for key in needs:
            if key not in event:
                self._error(
                    Errors.E102.at(source.loc(path, key=True), f"missing required key `{key}` for a {kind} event")
                )
        if kind == "slot_set" and "name" in event:
            self._slot_values(source, path, {event["name"]: event.get("value")}, "return", value_key="value")
        if kind == "bot_uttered":
            if "text" not in event and "response" not in event:
                self._error(
                    Errors.E102.at(
                        source.loc(path),
                        "a bot_uttered event needs `text` or `response`",
                        fix="Add `text:` or `response:`.",
                    )
                )
            if "response" in event:
                self._name(source, [*path, "response"], event["response"], "response")

    def _slot_values(
        self, source: SourceFile, path: list[PathPart], values: object, verb: str, *, value_key: str | None = None
    ) -> None:
        if not isinstance(values, Mapping):
            return
        for name, value in values.items():
            at = [*path, value_key] if value_key else [*path, name]
            slot = self.domain.slots.get(name)
            if slot is None:
                self._unknown(
                    source,
                    [*path, "name"] if value_key else at,
                    name,
                    "slot",
                    sorted(self.domain.slots),
                    key=not value_key,
                )
                continue
            checked = check(slot, value)
            if not checked.ok:
                spec = Errors.E314 if slot.type == "categorical" else Errors.E317
                self._error(
                    spec.at(
                        source.loc(at),
                        f"cases that {verb} {name} = {value!r} can never pass: {checked.reason}",
                        expected=f"a value of the {slot.type} slot {name}",
                        valid=[str(v) for v in slot.values],
                        name=str(value),
                    )
                )

    def _name(
        self, source: SourceFile, path: list[PathPart], name: object, what: str, *, key_position: bool = False
    ) -> None:
        known = {
            "intent": self.intents,
            "entity": self.entities,
            "response": self.responses,
            "flow": self.flows,
            "tool": self.tools,
        }[what]
        if str(name) not in known:
            self._unknown(source, path, str(name), what, known, key=key_position)

    def _unknown(
        self,
        source: SourceFile,
        path: Sequence[PathPart],
        name: str,
        what: str,
        valid: Sequence[str],
        *,
        key: bool = False,
    ) -> None:
        spec, where = _UNKNOWN.get(what, (Errors.E305, "domain/"))
        self._error(
            spec.at(
                source.loc(path, key=key),
                f"unknown {what} {name!r} in the golden set",
                expected=f"the name of a{'n' if what[0] in 'aeiou' else ''} {what} of the assistant",
                valid=valid,
                name=name,
                fix=f"Correct the name, or add the {what} to the assistant ({where}).",
            )
        )


_UNKNOWN = {
    "intent": (Errors.E304, "domain/ and nlu_data/"),
    "entity": (Errors.E305, "domain/"),
    "entity or slot": (Errors.E305, "domain/"),
    "slot": (Errors.E301, "domain/"),
    "response": (Errors.E302, "domain/"),
    "flow": (Errors.E306, "flows/"),
    "tool": (Errors.E303, "`actions:` in domain/ and @action in actions/"),
}
