"""RemoteActionRunner against an action server speaking the Rasa SDK protocol.

Every test runs against the fake server (tests/fakes/action_server.py) and, where rasa_sdk can be
imported (or TAIWA_RASA_SDK_PYTHON names a Python that has it), against a real
``python -m rasa_sdk`` subprocess serving the same actions (rasa_actions.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import rasa_actions
from fakes.action_server import FakeActionServer, ServerThread
from fakes.llm_server import FakeLlmServer, Reply, closed_port_url

from engine.actions.registry import ActionContext
from engine.actions.remote import RemoteActionRunner, remote_runner_from_env
from engine.actions.runner import ActionOutcome, Backoff, DispatchingRunner, LocalActionRunner
from engine.domain import Domain
from engine.events import (
    ActionExecuted,
    BotUttered,
    Event,
    FlowStarted,
    HandoffRequested,
    SessionStarted,
    SlotSet,
    ToolCalled,
    UserUttered,
)
from engine.loading.build_domain import build_domain
from engine.loading.yaml_reader import read_source

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
FAST = Backoff(initial=0.01, maximum=0.02)
STARTUP_SECONDS = 60.0


def reference_domain() -> Domain:
    files = []
    for path in sorted((ROOT / "domain").glob("*.yml")):
        source, diagnostics = read_source(ROOT, path, "domain")
        assert source is not None, diagnostics
        files.append(source)
    domain, diagnostics = build_domain(files)
    assert not diagnostics
    return domain


DOMAIN = reference_domain()


# -- the servers ----------------------------------------------------------------------------


def _rasa_sdk_python() -> str | None:
    configured = os.environ.get("TAIWA_RASA_SDK_PYTHON")
    if configured:
        return configured
    return sys.executable if importlib.util.find_spec("rasa_sdk") is not None else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=1.0) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop the server and its Sanic worker (they share the process group started for it)."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
    with contextlib.suppress(ProcessLookupError):  # a worker left behind by a killed main process
        os.killpg(proc.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def rasa_sdk_server() -> Iterator[str]:
    """A real ``python -m rasa_sdk --actions rasa_actions`` on a free port; its base url."""
    python = _rasa_sdk_python()
    if python is None:
        reason = "rasa_sdk is not installed here; set TAIWA_RASA_SDK_PYTHON to a Python that has it"
        if os.environ.get("TAIWA_REQUIRE_SERVICES") == "1":
            pytest.fail(f"{reason} (TAIWA_REQUIRE_SERVICES=1; `make test` installs it)", pytrace=False)
        pytest.skip(reason)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "SANIC_HOST": "127.0.0.1", "PYTHONDONTWRITEBYTECODE": "1"}
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            [python, "-m", "rasa_sdk", "--actions", "rasa_actions", "--port", str(port)],
            cwd=HERE,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + STARTUP_SECONDS
            while not _healthy(url):
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    tail = log.read().decode(errors="replace")[-3000:]
                    pytest.fail(f"the rasa_sdk action server did not come up on {url}:\n{tail}")
                time.sleep(0.2)
            yield url
        finally:
            _stop(proc)


@pytest.fixture(scope="module", params=["fake", "rasa_sdk"])
def server_url(request: pytest.FixtureRequest) -> Iterator[str]:
    if request.param == "rasa_sdk":
        yield request.getfixturevalue("rasa_sdk_server")
        return
    with ServerThread(FakeActionServer(rasa_actions.ACTIONS)) as url:
        yield url


# -- helpers --------------------------------------------------------------------------------


def ctx(slots: dict[str, Any] | None = None, *, events: tuple[Event, ...] = (), **kwargs: Any) -> ActionContext:
    return ActionContext(
        sender_id=kwargs.pop("sender_id", f"test-{uuid.uuid4().hex[:8]}"),
        slots=slots or {},
        events=events,
        domain=kwargs.pop("domain", DOMAIN),
        **kwargs,
    )


def run(url: str, name: str, context: ActionContext, **options: Any) -> ActionOutcome:
    async def main() -> ActionOutcome:
        runner = RemoteActionRunner(url, backoff=FAST, **options)
        try:
            return await runner.run(name, context)
        finally:
            await runner.close()

    return asyncio.run(main())


def slots_of(outcome: ActionOutcome) -> dict[str, Any]:
    return {e.name: e.value for e in outcome.events if isinstance(e, SlotSet)}


# -- success --------------------------------------------------------------------------------


def test_slots_and_responses_come_back_as_events_responses_first(server_url: str) -> None:
    outcome = run(f"{server_url}/webhook", "action_set_account", ctx({"customer_id": "C12345"}))
    assert outcome.ok, outcome.message
    assert (outcome.error_type, outcome.message, outcome.attempts) == (None, None, 1)
    assert outcome.events == (
        BotUttered(text=None, response="utter_account_found", data={"name": "Ada"}),
        BotUttered(
            text="Found C12345. Anything else?",
            buttons=({"title": "Yes", "payload": "/affirm"}, {"title": "No", "payload": "/deny"}),
        ),
        SlotSet("account_found", True),
        SlotSet("account_name", "Ada Lovelace"),
    )
    called = outcome.tool_called()
    assert (called.name, called.status, called.error_type, called.attempts) == ("action_set_account", "ok", None, 1)
    assert called.latency_ms > 0


def test_the_action_reads_our_tracker_and_domain(server_url: str) -> None:
    events: tuple[Event, ...] = (
        SessionStarted(timestamp=1_700_000_000.0),
        UserUttered(
            "my id is C12345",
            intent="inform",
            confidence=0.93,
            entities=({"entity": "customer_id", "value": "C12345", "start": 9, "end": 15},),
            timestamp=1_700_000_001.0,
        ),
        FlowStarted("account_lookup"),
        SlotSet("customer_id", "C12345"),
        HandoffRequested("user_request"),
    )
    context = ctx(
        {"customer_id": "C12345"},
        events=events,
        sender_id="conv-42",
        latest_message={"text": "my id is C12345", "intent": "inform"},
        active_flow="account_lookup",
    )
    outcome = run(server_url, "action_echo_tracker", context)  # the base url works as well
    assert outcome.ok, outcome.message
    assert slots_of(outcome) == {
        "sender": "conv-42",
        "intent": "inform",
        "text": "my id is C12345",
        "entities": ["C12345"],
        "customer": "C12345",
        "event_kinds": ["session_started", "user", "flow_started", "slot", "pause"],
        "latest_action": "action_listen",
        "paused": True,
        "flow": "account_lookup",
        "domain_slots": sorted(DOMAIN.slots),
        "domain_actions": ["crm_lookup", "create_ticket", "kb_search"],
    }


def test_latest_action_is_the_last_action_executed(server_url: str) -> None:
    events = (UserUttered("hi", intent="greet"), ActionExecuted("utter_greet"))
    outcome = run(server_url, "action_echo_tracker", ctx(events=events))
    assert slots_of(outcome)["latest_action"] == "utter_greet"
    assert slots_of(outcome)["paused"] is False


def test_unsupported_rasa_events_are_skipped_with_a_note(server_url: str) -> None:
    outcome = run(server_url, "action_followup", ctx())
    assert outcome.ok
    assert outcome.events == (SlotSet("followed", True),)
    assert outcome.message is not None and "'followup' is not supported" in outcome.message
    assert outcome.tool_called().status == "ok"


def test_reset_slots_sets_every_domain_slot_to_its_initial_value(server_url: str) -> None:
    outcome = run(server_url, "action_reset_slots", ctx({"customer_id": "C1"}))
    assert outcome.ok and outcome.message is None
    assert outcome.events == tuple(SlotSet(name, slot.initial_value) for name, slot in DOMAIN.slots.items())
    assert len(outcome.events) == len(DOMAIN.slots) > 0


# -- failures -------------------------------------------------------------------------------


def test_a_rejection_is_tool_4xx_with_the_servers_reason(server_url: str) -> None:
    outcome = run(server_url, "action_reject", ctx(), idempotent_actions=frozenset({"action_reject"}), retries=3)
    assert (outcome.status, outcome.error_type, outcome.attempts) == ("failed", "tool_4xx", 1)
    assert outcome.message is not None
    assert "HTTP 400" in outcome.message and "cannot run before the customer is verified" in outcome.message
    assert outcome.events == ()
    called = outcome.tool_called()
    assert (called.status, called.error_type, called.message) == ("error", "tool_4xx", outcome.message)


def test_an_unknown_action_is_tool_4xx(server_url: str) -> None:
    outcome = run(server_url, "action_nobody_wrote", ctx())
    assert (outcome.status, outcome.error_type) == ("failed", "tool_4xx")
    assert outcome.message is not None and "HTTP 404" in outcome.message and "action_nobody_wrote" in outcome.message


def test_an_exception_in_the_action_is_tool_5xx_without_the_request_body(server_url: str) -> None:
    context = ctx({"customer_id": "C99999-very-private"})
    outcome = run(server_url, "action_crash", context)
    assert (outcome.status, outcome.error_type, outcome.attempts) == ("failed", "tool_5xx", 1)
    assert outcome.message is not None and "HTTP 500" in outcome.message
    assert "the CRM database is on fire" in outcome.message
    assert "C99999-very-private" not in outcome.message  # rasa_sdk echoes the request body: not quoted


def test_a_slow_action_is_tool_timeout(server_url: str) -> None:
    started = time.monotonic()
    outcome = run(server_url, "action_slow", ctx({"delay": 2.0}), timeout=0.3)
    elapsed = time.monotonic() - started
    assert (outcome.status, outcome.error_type, outcome.attempts) == ("failed", "tool_timeout", 1)
    assert outcome.message is not None and "0.3 s" in outcome.message
    assert elapsed < 1.5
    assert 250 <= outcome.latency_ms < 1500


def test_an_idempotent_action_is_retried_after_a_5xx(server_url: str) -> None:
    context = ctx({"failures": 2})
    outcome = run(server_url, "action_flaky", context, retries=2, idempotent_actions=frozenset({"action_flaky"}))
    assert outcome.ok, outcome.message
    assert outcome.attempts == 3
    assert slots_of(outcome) == {"calls": 3}
    assert outcome.tool_called().attempts == 3


def test_retries_stop_after_the_configured_number(server_url: str) -> None:
    context = ctx({"failures": 5})
    outcome = run(server_url, "action_flaky", context, retries=2, idempotent_actions=frozenset({"action_flaky"}))
    assert (outcome.status, outcome.error_type, outcome.attempts) == ("failed", "tool_5xx", 3)
    assert outcome.message is not None and "after 3 attempts" in outcome.message
    seen = run(server_url, "action_calls", context)
    assert slots_of(seen) == {"calls": 3}


def test_a_non_idempotent_action_is_sent_once(server_url: str) -> None:
    context = ctx({"failures": 1})
    outcome = run(server_url, "action_flaky", context, retries=3)
    assert (outcome.status, outcome.error_type, outcome.attempts) == ("failed", "tool_5xx", 1)
    seen = run(server_url, "action_calls", context)
    assert slots_of(seen) == {"calls": 1}


def test_health_reports_a_running_server(server_url: str) -> None:
    async def main() -> tuple[bool, float]:
        runner = RemoteActionRunner(f"{server_url}/webhook")
        try:
            return await runner.health()
        finally:
            await runner.close()

    up, latency = asyncio.run(main())
    assert up is True
    assert 0 < latency < 5000


# -- no server, broken servers --------------------------------------------------------------


def test_a_server_that_is_down_is_tool_5xx_unreachable() -> None:
    url = closed_port_url()
    outcome = run(f"{url}/webhook", "action_set_account", ctx(), retries=2, idempotent_actions=frozenset({"x"}))
    assert (outcome.status, outcome.error_type, outcome.attempts) == ("failed", "tool_5xx", 1)
    assert outcome.message is not None and "unreachable" in outcome.message and url in outcome.message


def test_an_idempotent_action_is_retried_while_the_server_is_down() -> None:
    outcome = run(closed_port_url(), "x", ctx(), retries=2, idempotent_actions=frozenset({"x"}))
    assert (outcome.error_type, outcome.attempts) == ("tool_5xx", 3)


def test_health_of_a_server_that_is_down() -> None:
    async def main() -> tuple[bool, float]:
        runner = RemoteActionRunner(closed_port_url(), timeout=1.0)
        try:
            return await runner.health()
        finally:
            await runner.close()

    up, latency = asyncio.run(main())
    assert up is False
    assert latency < 1500


@pytest.mark.parametrize(
    "reply",
    [
        Reply(body=b"<html>oops</html>"),
        Reply(json=None),  # rasa_sdk answers null when next_action is missing
        Reply(json=["not", "an", "object"]),
        Reply(json={"events": {"event": "slot"}, "responses": []}),
        Reply(status=302, json={"error": "moved"}),
    ],
)
def test_an_answer_that_is_not_the_protocol_is_tool_error(reply: Reply) -> None:
    async def main() -> ActionOutcome:
        async with FakeLlmServer(reply) as server:
            runner = RemoteActionRunner(server.url, backoff=FAST, idempotent_actions=frozenset({"a"}), retries=2)
            try:
                return await runner.run("a", ctx())
            finally:
                await runner.close()

    outcome = asyncio.run(main())
    assert (outcome.status, outcome.error_type, outcome.attempts) == ("failed", "tool_error", 1)
    assert outcome.message


def test_an_error_body_that_is_not_json_is_quoted_shortly() -> None:
    async def main() -> ActionOutcome:
        async with FakeLlmServer(Reply(status=503, body=b"Service Unavailable " + b"x" * 5000)) as server:
            runner = RemoteActionRunner(server.url, backoff=FAST)
            try:
                return await runner.run("a", ctx())
            finally:
                await runner.close()

    outcome = asyncio.run(main())
    assert outcome.error_type == "tool_5xx"
    assert outcome.message is not None and "HTTP 503" in outcome.message and "Service Unavailable" in outcome.message
    assert len(outcome.message) <= 300


def test_the_request_follows_the_protocol_and_carries_the_token() -> None:
    async def main() -> tuple[ActionOutcome, FakeLlmServer]:
        async with FakeLlmServer(Reply(json={"events": [], "responses": []})) as server:
            runner = RemoteActionRunner(f"{server.url}/webhook", backoff=FAST, token="s3cret")
            try:
                return await runner.run("action_x", ctx({"a": 1}, sender_id="conv-1")), server
            finally:
                await runner.close()

    outcome, server = asyncio.run(main())
    assert outcome.ok and outcome.events == ()
    (request,) = server.received
    assert (request.method, request.path) == ("POST", "/webhook")
    assert request.headers["content-type"] == "application/json"
    body = request.json
    assert set(body) == {"next_action", "sender_id", "tracker", "domain", "version"}
    assert (body["next_action"], body["sender_id"], body["tracker"]["sender_id"]) == ("action_x", "conv-1", "conv-1")
    assert body["tracker"]["slots"]["a"] == 1
    assert body["domain"]["actions"] == ["crm_lookup", "create_ticket", "kb_search"]
    assert "s3cret" not in repr(RemoteActionRunner(server.url, token="s3cret"))


def test_a_server_needing_the_domain_is_told_so() -> None:
    async def main() -> ActionOutcome:
        async with FakeActionServer(rasa_actions.ACTIONS) as server:
            runner = RemoteActionRunner(server.url, backoff=FAST)
            try:
                return await runner.run("action_calls", ctx(domain=None))
            finally:
                await runner.close()

    outcome = asyncio.run(main())
    assert (outcome.error_type, outcome.attempts) == ("tool_4xx", 1)
    assert outcome.message is not None and "HTTP 449" in outcome.message and "domain" in outcome.message


def test_the_shared_session_is_reused_and_closed() -> None:
    async def main() -> tuple[list[ActionOutcome], bool]:
        async with FakeActionServer(rasa_actions.ACTIONS) as server:
            runner = RemoteActionRunner(server.url, backoff=FAST)
            outcomes = [await runner.run("action_calls", ctx()) for _ in range(3)]
            session = runner._session
            await runner.close()
            return outcomes, session is not None and session.closed

    outcomes, closed = asyncio.run(main())
    assert all(o.ok for o in outcomes)
    assert closed


# -- configuration and dispatching ---------------------------------------------------------


def test_from_env() -> None:
    assert remote_runner_from_env({}) is None
    assert remote_runner_from_env({"TAIWA_ACTION_SERVER_URL": "  "}) is None
    runner = remote_runner_from_env(
        {
            "TAIWA_ACTION_SERVER_URL": "http://actions:5055/webhook",
            "TAIWA_ACTION_SERVER_TIMEOUT": "2.5",
            "TAIWA_ACTION_SERVER_IDEMPOTENT": "kb_search, crm_lookup,",
        }
    )
    assert runner is not None
    assert (runner.webhook_url, runner.base_url, runner.timeout) == (
        "http://actions:5055/webhook",
        "http://actions:5055",
        2.5,
    )
    assert runner.idempotent_actions == frozenset({"kb_search", "crm_lookup"})
    assert runner.has("anything")


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"TAIWA_ACTION_SERVER_URL": "localhost:5055"}, "not an http(s) url"),
        ({"TAIWA_ACTION_SERVER_URL": "http://a:1", "TAIWA_ACTION_SERVER_TIMEOUT": "soon"}, "must be a number"),
        ({"TAIWA_ACTION_SERVER_URL": "http://a:1", "TAIWA_ACTION_SERVER_TIMEOUT": "0"}, "must be > 0"),
        ({"TAIWA_ACTION_SERVER_URL": "http://a:1", "TAIWA_ACTION_SERVER_RETRIES": "1.5"}, "whole number"),
    ],
)
def test_from_env_rejects_bad_settings(env: dict[str, str], fragment: str) -> None:
    with pytest.raises(ValueError) as info:
        remote_runner_from_env(env)
    assert fragment in str(info.value)


def test_dispatching_sends_unknown_local_names_to_the_server(server_url: str) -> None:
    async def main() -> ActionOutcome:
        runner = DispatchingRunner(LocalActionRunner({}), RemoteActionRunner(server_url, backoff=FAST))
        try:
            assert runner.has("action_set_account")
            return await runner.run("action_set_account", ctx({"customer_id": "C1"}))
        finally:
            await runner.close()

    outcome = asyncio.run(main())
    assert outcome.ok and SlotSet("account_found", True) in outcome.events
    assert isinstance(outcome.tool_called(), ToolCalled)
