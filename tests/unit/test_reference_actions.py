"""Tests for the reference assistant's tools (actions/ at the repository root)."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from engine.actions import ActionContext, discover_actions, registered_actions
from engine.events import Event, SlotSet

ROOT = Path(__file__).resolve().parents[2]

Action = Callable[[ActionContext], Sequence[Event]]


def _reference_module(name: str) -> ModuleType:
    """Import ``actions.<name>`` from this repository, even if another project's actions were loaded."""
    discover_actions(ROOT)
    loaded = sys.modules.get("actions")
    if loaded is None or Path(loaded.__file__ or "").resolve() != (ROOT / "actions" / "__init__.py").resolve():
        pytest.fail("could not import the reference assistant's actions package")
    return importlib.import_module(f"actions.{name}")


def _slots(events: Sequence[Event]) -> dict[str, Any]:
    return {e.name: e.value for e in events if isinstance(e, SlotSet)}


def _ctx(slots: Mapping[str, Any], sender_id: str = "user-1") -> ActionContext:
    return ActionContext(sender_id=sender_id, slots=dict(slots))


@pytest.fixture
def crm_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "crm" / "acme.sqlite3"
    monkeypatch.setenv("TAIWA_CRM_DB", str(path))
    return path


def test_actions_are_registered_with_their_contract() -> None:
    for module in ("kb_search", "crm", "tickets"):
        _reference_module(module)
    specs = registered_actions()
    if not {"kb_search", "crm_lookup", "create_ticket"} <= specs.keys():
        # Another test emptied the registry after our package was imported: import it afresh.
        for key in [k for k in sys.modules if k == "actions" or k.startswith("actions.")]:
            del sys.modules[key]
        specs = discover_actions(ROOT)
    assert specs["kb_search"].timeout == 2.0 and specs["kb_search"].idempotent
    assert specs["crm_lookup"].timeout == 2.0 and specs["crm_lookup"].idempotent
    assert specs["create_ticket"].timeout == 3.0 and specs["create_ticket"].idempotent


@pytest.mark.parametrize(
    ("question", "article_id"),
    [
        ("How do I reset my password?", "KB-001"),
        ("what are the API rate limits", "KB-010"),
        ("Can I get a refund for my annual plan?", "KB-005"),
        ("how do i turn on 2fa", "KB-009"),
        ("Could you tell me how to export everything as CSV?", "KB-008"),
    ],
)
def test_kb_search_finds_the_right_article(question: str, article_id: str) -> None:
    kb: Action = _reference_module("kb_search").kb_search
    slots = _slots(kb(_ctx({"question": question})))
    assert slots["kb_article_id"] == article_id
    assert isinstance(slots["kb_answer"], str) and slots["kb_answer"]


@pytest.mark.parametrize("question", ["purple elephants dance quietly", "what's the weather in Paris?", "", None])
def test_kb_search_returns_none_without_a_match(question: str | None) -> None:
    kb: Action = _reference_module("kb_search").kb_search
    assert _slots(kb(_ctx({"question": question}))) == {"kb_answer": None, "kb_article_id": None}


@pytest.mark.parametrize("birth_date", ["1990-04-12", "12/04/1990", "April 12 1990", "12th April, 1990"])
def test_crm_lookup_accepts_each_birth_date_format(crm_db: Path, birth_date: str) -> None:
    lookup: Action = _reference_module("crm").crm_lookup
    slots = _slots(lookup(_ctx({"customer_id": "C12345", "birth_date": birth_date})))
    assert slots == {
        "account_found": True,
        "account_name": "Jane Doe",
        "account_plan": "Business",
        "account_status": "active",
    }
    assert crm_db.is_file()


@pytest.mark.parametrize(
    ("customer_id", "birth_date"),
    [
        ("C12345", "1990-04-13"),
        ("C12345", "04/12/1990"),
        ("C99999", "1990-04-12"),
        ("C12345", "not a date"),
        (None, None),
    ],
)
def test_crm_lookup_rejects_a_wrong_identity(crm_db: Path, customer_id: str | None, birth_date: str | None) -> None:
    lookup: Action = _reference_module("crm").crm_lookup
    slots = _slots(lookup(_ctx({"customer_id": customer_id, "birth_date": birth_date})))
    assert slots == {"account_found": False, "account_name": None, "account_plan": None, "account_status": None}


def test_birth_dates_are_normalised_to_iso() -> None:
    normalise = _reference_module("crm").normalise_birth_date
    assert normalise("1990-04-12") == "1990-04-12"
    assert normalise("12/04/1990") == "1990-04-12"
    assert normalise("04/25/1990") == "1990-04-25"  # month first only when day first is impossible
    assert normalise("April 12 1990") == "1990-04-12"
    assert normalise("Apr 12, 1990") == "1990-04-12"
    assert normalise("31/02/1990") is None
    assert normalise("yesterday") is None


def test_create_ticket_is_idempotent(crm_db: Path) -> None:
    create: Action = _reference_module("tickets").create_ticket
    request = {"ticket_summary": "API returns 500 errors", "ticket_priority": "high"}
    first = _slots(create(_ctx(request)))["ticket_id"]
    again = _slots(create(_ctx(request)))["ticket_id"]
    assert first == again
    assert first.startswith("T-") and len(first) == 8

    other_priority = _slots(create(_ctx({**request, "ticket_priority": "low"})))["ticket_id"]
    other_summary = _slots(create(_ctx({**request, "ticket_summary": "Backups are slow"})))["ticket_id"]
    other_user = _slots(create(_ctx(request, sender_id="user-2")))["ticket_id"]
    assert len({first, other_priority, other_summary, other_user}) == 4


def test_tickets_filed_by_many_threads_at_once_each_get_one_id(crm_db: Path) -> None:
    # Tools run on a pool of threads: 40 requests (20 distinct, each sent twice) at once.
    from concurrent.futures import ThreadPoolExecutor

    create: Action = _reference_module("tickets").create_ticket
    requests = [
        (f"user-{i % 20}", {"ticket_summary": f"problem {i % 20}", "ticket_priority": "low"}) for i in range(40)
    ]
    with ThreadPoolExecutor(16) as pool:
        ids = list(pool.map(lambda r: _slots(create(_ctx(r[1], sender_id=r[0])))["ticket_id"], requests))
    assert len(set(ids)) == 20
    assert ids[:20] == ids[20:]  # a request sent twice is one ticket


def test_create_ticket_fails_without_a_summary(crm_db: Path) -> None:
    create: Action = _reference_module("tickets").create_ticket
    with pytest.raises(ValueError, match="ticket_summary"):
        create(_ctx({"ticket_priority": "low"}))
