"""``create_ticket``: file a support ticket in the demo CRM, idempotently."""

from __future__ import annotations

import hashlib

from engine.actions import ActionContext, action
from engine.events import Event, SlotSet

from .db import writing

PRIORITIES = ("low", "medium", "high")


def idempotency_key(sender_id: str, summary: str, priority: str) -> str:
    """The same conversation, summary and priority always give the same key."""
    raw = "\x1f".join((sender_id, " ".join(summary.split()), priority))
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


def format_ticket_id(number: int) -> str:
    """``123`` -> ``T-000123``."""
    return f"T-{number:06d}"


# Not inline: the write may wait for another server worker's write lock, on a worker thread.
@action("create_ticket", timeout=3.0, idempotent=True)
def create_ticket(ctx: ActionContext) -> list[Event]:
    """Create the ticket (or find the one already created for the same request); set ``ticket_id``."""
    summary = str(ctx.slots.get("ticket_summary") or "").strip()
    priority = str(ctx.slots.get("ticket_priority") or "").strip().lower()
    if not summary:
        raise ValueError("create_ticket needs the slot ticket_summary; the flow should collect it first")
    if priority not in PRIORITIES:
        raise ValueError(f"create_ticket: ticket_priority must be one of {PRIORITIES}, got {priority!r}")
    key = idempotency_key(ctx.sender_id, summary, priority)
    with writing(ctx.config) as conn:
        conn.execute(
            "INSERT OR IGNORE INTO tickets (idempotency_key, sender_id, summary, priority) VALUES (?, ?, ?, ?)",
            (key, ctx.sender_id, summary, priority),
        )
        (number,) = conn.execute("SELECT id FROM tickets WHERE idempotency_key = ?", (key,)).fetchone()
    return [SlotSet("ticket_id", format_ticket_id(int(number)))]
