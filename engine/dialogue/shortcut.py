"""``/intent{"entity": "value"}`` messages: an intent (and values) given directly, bypassing NLU.

Buttons send them (``/inform{"priority": "high"}``), testers type them, and they behave as in
Rasa: the intent has confidence 1.0 and each key is an entity of the message. A key that is
a slot but not an entity sets that slot directly (when its value passes the slot's checks).
``/restart`` and ``/session_start`` are commands, not intents.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from engine.events import JsonValue

_SHORTCUT = re.compile(r"^/(?P<intent>[A-Za-z_][\w\-.]*)(?P<json>\{.*\})?\s*$", re.DOTALL)

COMMANDS = frozenset({"restart", "session_start"})
"""Shortcut names that are commands of the engine rather than intents."""


@dataclass(frozen=True, slots=True)
class Shortcut:
    intent: str
    values: dict[str, JsonValue] = field(default_factory=dict)
    error: str | None = None
    """Why the JSON part could not be read (the intent still counts)."""

    @property
    def command(self) -> str | None:
        return self.intent if self.intent in COMMANDS else None


def parse_shortcut(text: str) -> Shortcut | None:
    """The shortcut in ``text``, or None when it is an ordinary message."""
    m = _SHORTCUT.match(text.strip())
    if m is None:
        return None
    raw = m.group("json")
    if raw is None:
        return Shortcut(m.group("intent"))
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        return Shortcut(
            m.group("intent"), {}, f"the part after the intent is not JSON ({exc.msg} at column {exc.pos + 1})"
        )
    if not isinstance(data, dict):
        return Shortcut(m.group("intent"), {}, "the part after the intent must be a JSON object")
    return Shortcut(m.group("intent"), {str(k): v for k, v in data.items()})
