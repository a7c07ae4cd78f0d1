"""The instructions sent to the LLM: the domain's intents and entity types, and the answer format.

Built once per domain (it does not depend on the message), so a request only adds the masked
user text. The prompt asks for one strict JSON object; :mod:`engine.llm.answer` checks it.
"""

from __future__ import annotations

import hashlib

from engine.domain import Domain
from engine.llm.pii import PLACEHOLDERS
from engine.llm.providers import DEFAULT_MAX_TOKENS, Prompt

ANSWER_FORMAT = (
    '{"intent": "<one intent name, or null>", '
    '"entities": [{"entity": "<entity type>", "value": "<value>", "role": "<optional>", "group": "<optional>"}], '
    '"confidence": <a number from 0 to 1>}'
)


def build_system_prompt(domain: Domain) -> str:
    """Instructions listing every intent (with its description) and every entity type."""
    lines = [
        "You classify one user message sent to a customer-support assistant.",
        "Pick the intent that matches the message from this list (name: description):",
    ]
    for intent in sorted(domain.intents.values(), key=lambda i: i.name):
        lines.append(f"- {intent.name}" + (f": {_one_line(intent.description)}" if intent.description else ""))
    if domain.entities:
        lines.append("Extract entities of these types only (name, allowed roles and groups: description):")
        for entity in sorted(domain.entities.values(), key=lambda e: e.name):
            extra = ""
            if entity.roles:
                extra += f" [roles: {', '.join(entity.roles)}]"
            if entity.groups:
                extra += f" [groups: {', '.join(entity.groups)}]"
            described = f": {_one_line(entity.description)}" if entity.description else ""
            lines.append(f"- {entity.name}{extra}{described}")
    else:
        lines.append("There are no entity types: always answer with an empty entities list.")
    placeholders = ", ".join(PLACEHOLDERS.values())
    lines += [
        f"Personal data in the message is replaced by placeholders ({placeholders}); "
        "when one is an entity value, copy the placeholder as it is.",
        "Answer with exactly one JSON object and nothing else, in this shape:",
        ANSWER_FORMAT,
        "Use null as the intent when no intent in the list fits. Omit role and group when they do not apply. "
        "confidence is how sure you are of the intent.",
    ]
    return "\n".join(lines)


def prompt_revision(domain: Domain) -> str:
    """Content hash of the system prompt (``/version`` and the logs' ``prompt_revision``):
    it changes when an intent, an entity type or a description does, or this module does."""
    return hashlib.sha256(build_system_prompt(domain).encode("utf-8")).hexdigest()[:12]


def build_prompt(system: str, masked_text: str, *, max_tokens: int = DEFAULT_MAX_TOKENS) -> Prompt:
    """The request for one message; ``masked_text`` must already be masked."""
    return Prompt(system, masked_text, max_tokens)


def _one_line(text: str) -> str:
    return " ".join(text.split())
