"""``crm_lookup``: find the customer's account in the demo CRM and verify their birth date."""

from __future__ import annotations

import datetime as dt
import re

from engine.actions import ActionContext, action
from engine.events import Event, JsonValue, SlotSet

from .db import connection

_MONTHS = (
    "january", "february", "march", "april", "may", "june",
    "july", "august", "september", "october", "november", "december",
)  # fmt: skip

_ISO = re.compile(r"^(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})$")
_NUMERIC = re.compile(r"^(\d{1,2})[-/.](\d{1,2})[-/.](\d{4})$")
_MONTH_FIRST = re.compile(r"^([a-z]+)\.? (\d{1,2}) (\d{4})$")
_DAY_FIRST = re.compile(r"^(\d{1,2}) (?:of )?([a-z]+)\.? (\d{4})$")


def _month(name: str) -> int | None:
    """1-12 for a month name or an abbreviation of at least three letters."""
    if len(name) < 3:
        return None
    for number, full in enumerate(_MONTHS, start=1):
        if full.startswith(name):
            return number
    return None


def _iso(year: int, month: int | None, day: int) -> str | None:
    """``YYYY-MM-DD`` when the parts make a real date."""
    if month is None:
        return None
    try:
        return dt.date(year, month, day).isoformat()
    except ValueError:
        return None


def normalise_birth_date(text: JsonValue) -> str | None:
    """Turn ``1990-04-12``, ``12/04/1990`` (day first) or ``April 12 1990`` into ``1990-04-12``.

    Numeric dates are read day first; month first is used only when day first is
    impossible (``04/25/1990``). Returns ``None`` for anything that is not a date.
    """
    if not isinstance(text, str):
        return None
    s = text.strip().lower().replace(",", " ")
    s = re.sub(r"(\d)(st|nd|rd|th)\b", r"\1", s)
    s = " ".join(s.split())
    if m := _ISO.match(s):
        return _iso(int(m[1]), int(m[2]), int(m[3]))
    if m := _NUMERIC.match(s):
        first, second, year = int(m[1]), int(m[2]), int(m[3])
        return _iso(year, second, first) or _iso(year, first, second)
    if m := _MONTH_FIRST.match(s):
        return _iso(int(m[3]), _month(m[1]), int(m[2]))
    if m := _DAY_FIRST.match(s):
        return _iso(int(m[3]), _month(m[2]), int(m[1]))
    return None


def normalise_customer_id(value: JsonValue) -> str | None:
    """``c12345`` / `` C12345 `` -> ``C12345``; ``None`` when it is not a customer id."""
    if not isinstance(value, str):
        return None
    candidate = value.strip().upper()
    return candidate if re.fullmatch(r"C\d{5}", candidate) else None


def _not_found() -> list[Event]:
    return [
        SlotSet("account_found", False),
        SlotSet("account_name", None),
        SlotSet("account_plan", None),
        SlotSet("account_status", None),
    ]


# inline: one indexed read of a local SQLite file in WAL mode, which never waits for a writer.
# A lookup that calls a real CRM's API over the network must not be inline: remove it then.
@action("crm_lookup", timeout=2.0, idempotent=True, inline=True)
def crm_lookup(ctx: ActionContext) -> list[Event]:
    """Set ``account_found`` and the account's name, plan and status when id and birth date match."""
    customer_id = normalise_customer_id(ctx.slots.get("customer_id"))
    birth_date = normalise_birth_date(ctx.slots.get("birth_date"))
    if customer_id is None or birth_date is None:
        return _not_found()
    row = (
        connection(ctx.config)
        .execute("SELECT birth_date, name, plan, status FROM customers WHERE customer_id = ?", (customer_id,))
        .fetchone()
    )
    if row is None or row[0] != birth_date:
        return _not_found()
    _, name, plan, status = row
    return [
        SlotSet("account_found", True),
        SlotSet("account_name", name),
        SlotSet("account_plan", plan),
        SlotSet("account_status", status),
    ]
