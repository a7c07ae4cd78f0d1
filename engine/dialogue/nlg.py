"""Response rendering: choose a variation, fill in slot values, attach buttons and data.

A variation applies when its ``condition`` holds and its ``channel`` is unset or the
message's channel. Among the applicable ones, channel-specific variations win over generic
ones and conditional over unconditional (the more specific answer is the intended one);
the rest is chosen at random (seeded ``random.Random`` in tests).
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping
from typing import Any

from engine.domain import Button, Domain, Response, ResponseVariation
from engine.events import BotUttered, JsonValue

_PLACEHOLDER = re.compile(r"\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::(?P<spec>[^{}]*))?\}")


def fill(template: str, slots: Mapping[str, JsonValue]) -> str:
    """``template`` with ``{slot}`` / ``{slot:spec}`` replaced by slot values.

    Only names of slots are replaced, so JSON in a payload (``/inform{"priority": "high"}``)
    is left alone; an unset slot renders as an empty string.
    """
    if "{" not in template:
        return template

    def one(m: re.Match[str]) -> str:
        name = m.group("name")
        if name not in slots:
            return m.group(0)
        return _format_value(slots[name], m.group("spec") or "")

    return _PLACEHOLDER.sub(one, template)


def _format_value(value: Any, spec: str) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value)
    try:
        return format(value, spec)
    except (ValueError, TypeError):
        return str(value)


def applicable(response: Response, slots: Mapping[str, JsonValue], channel: str | None) -> list[ResponseVariation]:
    """The variations to choose from, most specific first (see the module docstring)."""
    ok = [
        v
        for v in response.variations
        if (v.channel is None or v.channel == channel) and (v.condition is None or v.condition.evaluate(slots))
    ]
    if not ok:
        return []
    best = max(_specificity(v) for v in ok)
    return [v for v in ok if _specificity(v) == best]


def _specificity(v: ResponseVariation) -> int:
    return (2 if v.channel is not None else 0) + (1 if v.condition is not None else 0)


def render(
    domain: Domain,
    name: str,
    slots: Mapping[str, JsonValue],
    *,
    channel: str | None = None,
    rng: random.Random | None = None,
) -> BotUttered | None:
    """The message for response ``name``, or None when no variation applies."""
    response = domain.responses.get(name)
    if response is None:
        return None
    choices = applicable(response, slots, channel)
    if not choices:
        return None
    variation = choices[0] if len(choices) == 1 else (rng or random).choice(choices)
    data: dict[str, JsonValue] = {}
    if variation.image:
        data["image"] = fill(variation.image, slots)
    if variation.custom:
        data["custom"] = dict(variation.custom)
    if variation.quick_replies:
        data["quick_replies"] = [_button(b, slots) for b in variation.quick_replies]
    return BotUttered(
        text=fill(variation.text, slots) if variation.text is not None else None,
        response=name,
        buttons=tuple(_button(b, slots) for b in variation.buttons),
        data=data,
    )


def _button(b: Button, slots: Mapping[str, JsonValue]) -> dict[str, str]:
    return {"title": fill(b.title, slots), "payload": fill(b.payload, slots)}
