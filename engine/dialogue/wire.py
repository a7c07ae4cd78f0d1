"""Bot messages in the wire format of Rasa's REST channel (what front ends already parse)."""

from __future__ import annotations

from typing import Any

from engine.events import BotUttered


def bot_message_dict(message: BotUttered, recipient_id: str) -> dict[str, Any]:
    out: dict[str, Any] = {"recipient_id": recipient_id}
    if message.text is not None:
        out["text"] = message.text
    if message.buttons:
        out["buttons"] = [dict(b) for b in message.buttons]
    for key in ("image", "custom", "quick_replies", "attachment"):
        if key in message.data:
            out[key] = message.data[key]
    if message.response:
        out["response"] = message.response
    return out
