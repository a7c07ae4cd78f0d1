"""LocalActionRunner and DispatchingRunner: timeouts, retries, classification, what reaches the action."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from fakes.llm_server import FakeLlmServer, Reply, closed_port_url

from engine.actions.registry import ActionContext, ActionSpec, action, discover_actions, registered_actions
from engine.actions.remote import RemoteActionRunner
from engine.actions.runner import (
    ActionOutcome,
    Backoff,
    DispatchingRunner,
    LocalActionRunner,
    ToolHttpError,
    classify,
)
from engine.events import BotUttered, Event, SlotSet, ToolCalled

ROOT = Path(__file__).resolve().parents[2]
FAST = Backoff(initial=0.001, maximum=0.002)


def spec(
    name: str,
    func: Callable[[ActionContext], Any],
    *,
    timeout: float = 1.0,
    idempotent: bool = False,
    retries: int = 0,
) -> ActionSpec:
    return ActionSpec(name, func, timeout, idempotent, retries, f"tests:{name}")


def run(
    specs: Sequence[ActionSpec] | dict[str, ActionSpec],
    name: str,
    ctx: ActionContext | None = None,
    *,
    config: dict[str, Any] | None = None,
    backoff: Backoff = FAST,
) -> ActionOutcome:
    by_name = specs if isinstance(specs, dict) else {s.name: s for s in specs}
    runner = LocalActionRunner(by_name, config, backoff=backoff)
    return asyncio.run(runner.run(name, ctx or ActionContext(sender_id="user-1", slots={})))


class Counter:
    """An action body that counts its calls and fails the first ``failures`` of them with ``error``."""

    def __init__(self, error: BaseException | None = None, failures: int = 10**9) -> None:
        self.error = error
        self.failures = failures
        self.calls = 0

    def __call__(self, ctx: ActionContext) -> list[Event]:
        self.calls += 1
        if self.error is not None and self.calls <= self.failures:
            raise self.error
        return [SlotSet("calls", self.calls)]


# -- success ---------------------------------------------------------------------------------


def test_an_async_action_is_awaited() -> None:
    async def greet(ctx: ActionContext) -> list[Event]:
        await asyncio.sleep(0)
        return [SlotSet("greeted", ctx.slots["name"]), BotUttered(text="hi")]

    outcome = run([spec("greet", greet)], "greet", ActionContext("u", {"name": "Ada"}))
    assert outcome.ok and outcome.status == "ok"
    assert outcome.events == (SlotSet("greeted", "Ada"), BotUttered(text="hi"))
    assert (outcome.error_type, outcome.message, outcome.attempts) == (None, None, 1)
    assert outcome.latency_ms > 0


def test_a_registered_sync_action_runs_in_a_worker_thread_with_the_runners_config(isolated_actions: None) -> None:
    seen: dict[str, Any] = {}

    @action("where_am_i", timeout=1.0)
    def where_am_i(ctx: ActionContext) -> list[Event]:
        seen["thread"] = threading.current_thread()
        seen["config"] = dict(ctx.config)
        seen["sender"] = ctx.sender_id
        return [SlotSet("ok", True)]

    outcome = run(dict(registered_actions()), "where_am_i", ActionContext("u-7", {}), config={"TAIWA_CRM_DB": "/x"})
    assert outcome.ok and outcome.events == (SlotSet("ok", True),)
    assert seen["thread"] is not threading.main_thread()
    assert seen["config"] == {"TAIWA_CRM_DB": "/x"}
    assert seen["sender"] == "u-7"


def test_an_inline_sync_action_runs_on_the_event_loops_thread(isolated_actions: None) -> None:
    seen: dict[str, Any] = {}

    @action("quick", timeout=1.0, inline=True)
    def quick(ctx: ActionContext) -> list[Event]:
        seen["thread"] = threading.get_ident()
        seen["loop"] = asyncio.get_running_loop()  # raises outside the loop's thread
        return [SlotSet("ok", ctx.sender_id)]

    @action("quick_but_broken", timeout=1.0, inline=True)
    def broken(ctx: ActionContext) -> list[Event]:
        raise KeyError("customer_id")

    specs = dict(registered_actions())
    assert specs["quick"].inline and not specs["quick_but_broken"].idempotent

    async def both() -> tuple[ActionOutcome, ActionOutcome, int]:
        runner = LocalActionRunner(specs, backoff=FAST)
        ok = await runner.run("quick", ActionContext("u-9", {}))
        failed = await runner.run("quick_but_broken", ActionContext("u-9", {}))
        return ok, failed, threading.get_ident()

    ok, failed, loop_thread = asyncio.run(both())
    assert ok.ok and ok.events == (SlotSet("ok", "u-9"),)
    assert seen["thread"] == loop_thread
    # Failures are classified as for any action.
    assert failed.status == "failed" and failed.error_type == "tool_error" and failed.attempts == 1


def test_inline_is_refused_for_an_async_action(isolated_actions: None) -> None:
    async def already_on_the_loop(ctx: ActionContext) -> list[Event]:
        return []

    with pytest.raises(ValueError, match=r"'async_inline'.*Fix: remove inline=True"):
        action("async_inline", inline=True)(already_on_the_loop)
    assert "async_inline" not in registered_actions()


@pytest.mark.parametrize("ending", ["returns", "raises"])
def test_an_inline_action_past_its_timeout_is_tool_timeout_and_its_result_unused(ending: str) -> None:
    calls: list[int] = []

    def overran(ctx: ActionContext) -> list[Event]:
        calls.append(1)
        time.sleep(0.05)
        if ending == "raises":
            raise RuntimeError("late failure")
        return [SlotSet("late", True)]

    late = ActionSpec("overran", overran, 0.02, True, 1, "tests:overran", inline=True)
    outcome = run([late], "overran")
    assert outcome.status == "failed" and outcome.error_type == "tool_timeout", outcome
    assert outcome.events == () and "0.02 s" in (outcome.message or "")
    assert len(calls) == 2 and outcome.attempts == 2  # idempotent: retried like any timeout


def test_an_inline_action_that_holds_the_loop_is_reported_once(caplog: pytest.LogCaptureFixture) -> None:
    def slow(ctx: ActionContext) -> list[Event]:
        time.sleep(0.03)
        return [SlotSet("done", True)]

    inline_spec = ActionSpec("slow_inline", slow, 1.0, False, 0, "tests:slow", inline=True)

    async def twice() -> list[ActionOutcome]:
        runner = LocalActionRunner({"slow_inline": inline_spec})
        ctx = ActionContext("u", {})
        return [await runner.run("slow_inline", ctx), await runner.run("slow_inline", ctx)]

    with caplog.at_level("WARNING", logger="engine.actions.runner"):
        outcomes = asyncio.run(twice())
    assert all(o.ok and o.events == (SlotSet("done", True),) for o in outcomes)
    warnings = [r.getMessage() for r in caplog.records if "held the event loop" in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert "'slow_inline'" in warnings[0] and "drop inline=True" in warnings[0] and "tests:slow" in warnings[0]


def test_a_context_with_its_own_config_keeps_it() -> None:
    seen: list[dict[str, Any]] = []

    def body(ctx: ActionContext) -> list[Event]:
        seen.append(dict(ctx.config))
        return []

    ctx = ActionContext("u", {}, config={"mine": 1})
    assert run([spec("a", body)], "a", ctx, config={"runner": 2}).ok
    assert seen == [{"mine": 1}]


def test_the_reference_kb_search_through_the_runner(isolated_actions: None) -> None:
    for key in [k for k in sys.modules if k == "actions" or k.startswith("actions.")]:
        del sys.modules[key]  # import afresh so the decorators register (the fixture restores it all)
    specs = discover_actions(ROOT)
    assert {"kb_search", "crm_lookup", "create_ticket"} <= set(specs)
    # The in-memory search and the read-only lookup run on the loop; the ticket write, which
    # may wait for another worker's write lock, on a worker thread.
    assert specs["kb_search"].inline and specs["crm_lookup"].inline and not specs["create_ticket"].inline
    runner = LocalActionRunner(specs)
    ctx = ActionContext("u", {"question": "I forgot my password, how do I reset it?"})
    outcome = asyncio.run(runner.run("kb_search", ctx))
    assert outcome.ok, outcome.message
    slots = {e.name: e.value for e in outcome.events if isinstance(e, SlotSet)}
    assert slots["kb_article_id"] == "KB-001"
    assert isinstance(slots["kb_answer"], str) and slots["kb_answer"]
    miss = asyncio.run(runner.run("kb_search", ActionContext("u", {"question": "purple elephants dance"})))
    assert miss.ok and miss.events == (SlotSet("kb_answer", None), SlotSet("kb_article_id", None))


# -- timeouts --------------------------------------------------------------------------------


def test_an_async_action_past_its_timeout_is_tool_timeout() -> None:
    async def slow(ctx: ActionContext) -> list[Event]:
        await asyncio.sleep(5)
        return []

    started = time.monotonic()
    outcome = run([spec("slow", slow, timeout=0.1)], "slow")
    assert time.monotonic() - started < 2.0
    assert (outcome.status, outcome.error_type, outcome.attempts) == ("failed", "tool_timeout", 1)
    assert outcome.message == "action 'slow' did not finish within 0.1 s"
    assert 90 <= outcome.latency_ms < 2000


def test_a_sync_action_past_its_timeout_is_tool_timeout() -> None:
    def slow(ctx: ActionContext) -> list[Event]:
        time.sleep(1.5)
        return []

    async def main() -> tuple[ActionOutcome, float]:
        started = time.monotonic()
        outcome = await LocalActionRunner({"slow": spec("slow", slow, timeout=0.1)}).run("slow", ActionContext("u", {}))
        return outcome, time.monotonic() - started

    outcome, elapsed = asyncio.run(main())
    assert elapsed < 1.0  # the conversation does not wait for the thread
    assert (outcome.error_type, outcome.attempts) == ("tool_timeout", 1)
    assert "did not finish within 0.1 s" in (outcome.message or "")


def test_an_idempotent_action_that_timed_out_is_retried() -> None:
    calls = 0

    async def sometimes_slow(ctx: ActionContext) -> list[Event]:
        nonlocal calls
        calls += 1
        if calls == 1:
            await asyncio.sleep(5)
        return [SlotSet("calls", calls)]

    outcome = run([spec("s", sometimes_slow, timeout=0.1, idempotent=True, retries=1)], "s")
    assert outcome.ok and outcome.attempts == 2 and outcome.events == (SlotSet("calls", 2),)
    assert outcome.latency_ms >= 90


def test_a_timeout_raised_by_the_tool_itself_is_tool_timeout() -> None:
    def body(ctx: ActionContext) -> list[Event]:
        raise TimeoutError("CRM read timed out")

    outcome = run([spec("t", body)], "t")
    assert (outcome.error_type, outcome.message) == ("tool_timeout", "TimeoutError: CRM read timed out")


# -- HTTP errors and retries -----------------------------------------------------------------


def test_a_4xx_is_never_retried_even_when_idempotent() -> None:
    body = Counter(ToolHttpError(403, "CRM said forbidden"))
    outcome = run([spec("crm", body, idempotent=True, retries=3)], "crm")
    assert (outcome.status, outcome.error_type, outcome.attempts, body.calls) == ("failed", "tool_4xx", 1, 1)
    assert outcome.message == "HTTP 403: CRM said forbidden"


def test_a_5xx_is_retried_exactly_retries_times_for_an_idempotent_action() -> None:
    body = Counter(ToolHttpError(500, "CRM is down"))
    outcome = run([spec("crm", body, idempotent=True, retries=2)], "crm")
    assert (outcome.status, outcome.error_type, outcome.attempts, body.calls) == ("failed", "tool_5xx", 3, 3)
    assert outcome.message == "HTTP 500: CRM is down (after 3 attempts)"


def test_a_5xx_is_not_retried_for_a_non_idempotent_action() -> None:
    body = Counter(ToolHttpError(500, "CRM is down"))
    outcome = run([spec("crm", body, idempotent=False, retries=2)], "crm")
    assert (outcome.error_type, outcome.attempts, body.calls) == ("tool_5xx", 1, 1)


def test_a_retry_that_succeeds_gives_the_events_and_counts_the_attempts() -> None:
    body = Counter(ToolHttpError(503), failures=1)
    outcome = run([spec("crm", body, idempotent=True, retries=3)], "crm")
    assert outcome.ok and outcome.attempts == 2 and body.calls == 2
    assert outcome.events == (SlotSet("calls", 2),)
    assert outcome.tool_called() == ToolCalled(
        "crm", "ok", None, round(outcome.latency_ms, 3), attempts=2, message=None
    )


def test_retries_wait_with_exponential_backoff() -> None:
    body = Counter(ToolHttpError(502))
    started = time.monotonic()
    outcome = run([spec("crm", body, idempotent=True, retries=2)], "crm", backoff=Backoff(initial=0.1, maximum=1.0))
    elapsed = time.monotonic() - started
    assert outcome.attempts == 3
    assert 0.3 <= elapsed < 1.5  # 0.1 s, then 0.2 s
    assert outcome.latency_ms >= 300


def test_an_exception_is_tool_error_and_not_retried() -> None:
    body = Counter(ValueError("create_ticket needs the slot ticket_summary"))
    outcome = run([spec("t", body, idempotent=True, retries=3)], "t")
    assert (outcome.status, outcome.error_type, outcome.attempts, body.calls) == ("failed", "tool_error", 1, 1)
    assert outcome.message == "ValueError: create_ticket needs the slot ticket_summary"


def test_an_aiohttp_4xx_from_the_tool_is_tool_4xx() -> None:
    async def body(ctx: ActionContext) -> list[Event]:
        async with (
            FakeLlmServer(Reply(status=404, json={"error": "no such customer"})) as server,
            aiohttp.ClientSession(raise_for_status=True) as session,
            session.get(f"{server.url}/customers/C1") as resp,
        ):
            return [SlotSet("customer", await resp.json())]

    outcome = run([spec("crm", body, idempotent=True, retries=2)], "crm")
    assert (outcome.error_type, outcome.attempts) == ("tool_4xx", 1)
    assert outcome.message is not None and outcome.message.startswith("ClientResponseError: 404")


def test_an_unreachable_service_is_tool_5xx_and_says_so() -> None:
    url = closed_port_url()

    async def body(ctx: ActionContext) -> list[Event]:
        async with aiohttp.ClientSession() as session, session.get(url) as resp:
            return [SlotSet("x", resp.status)]

    outcome = run([spec("crm", body, idempotent=True, retries=1)], "crm")
    assert (outcome.error_type, outcome.attempts) == ("tool_5xx", 2)
    assert outcome.message is not None and "unreachable" in outcome.message


def test_messages_are_short_and_carry_no_secrets_or_tracebacks() -> None:
    def body(ctx: ActionContext) -> list[Event]:
        raise RuntimeError(
            "GET https://crm-user:hunter2@crm.example.com/v1?api_key=AKIA123&q=1 failed; "
            "Authorization: Bearer eyJhbGciOi.secret " + "x" * 1000
        )

    outcome = run([spec("crm", body)], "crm")
    message = outcome.message or ""
    assert message.startswith("RuntimeError: GET https://***@crm.example.com/v1?api_key=***&q=1 failed")
    for secret in ("hunter2", "crm-user", "AKIA123", "eyJhbGciOi", "Traceback"):
        assert secret not in message
    assert len(message) <= 300 and "\n" not in message


# -- what the action returns -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("returned", "fragment"),
    [
        (None, "returned NoneType None; expected a list of events"),
        ({"kb_answer": "x"}, "returned dict {'kb_answer': 'x'}"),
        ("done", "returned str 'done'"),
        ([SlotSet("a", 1), {"event": "slot", "name": "b", "value": 2}], "at position 1"),
        ((e for e in [SlotSet("a", 1)]), "returned generator"),
    ],
)
def test_a_wrong_return_value_is_tool_error(returned: Any, fragment: str) -> None:
    body = Counter()

    def wrong(ctx: ActionContext) -> Any:
        body(ctx)
        return returned

    outcome = run([spec("w", wrong, idempotent=True, retries=2)], "w")
    assert (outcome.status, outcome.error_type, outcome.attempts, body.calls) == ("failed", "tool_error", 1, 1)
    assert outcome.message is not None and fragment in outcome.message
    assert "expected a list of events from engine.events" in outcome.message


def test_a_tuple_of_events_is_accepted() -> None:
    outcome = run([spec("t", lambda ctx: (SlotSet("a", 1),))], "t")
    assert outcome.ok and outcome.events == (SlotSet("a", 1),)


def test_an_unknown_action_is_tool_error_with_a_fix() -> None:
    outcome = run([spec("kb_search", Counter())], "kb_serch")
    assert (outcome.status, outcome.error_type, outcome.attempts) == ("failed", "tool_error", 0)
    assert outcome.message is not None
    assert outcome.message.startswith("action 'kb_serch' is not registered. Fix: define it with @action('kb_serch')")
    assert "kb_search" in outcome.message


def test_cancellation_propagates() -> None:
    started = asyncio.Event()

    async def slow(ctx: ActionContext) -> list[Event]:
        started.set()
        await asyncio.sleep(5)
        return []

    async def main() -> None:
        runner = LocalActionRunner({"slow": spec("slow", slow, timeout=10, idempotent=True, retries=3)})
        task = asyncio.create_task(runner.run("slow", ActionContext("u", {})))
        await started.wait()
        task.cancel()
        await task

    t0 = time.monotonic()
    with pytest.raises(asyncio.CancelledError):
        asyncio.run(main())
    assert time.monotonic() - t0 < 2.0


def test_tool_called_of_a_failure() -> None:
    outcome = run([spec("crm", Counter(ToolHttpError(404, "no such customer")))], "crm")
    called = outcome.tool_called()
    assert called == ToolCalled(
        name="crm",
        status="error",
        error_type="tool_4xx",
        latency_ms=round(outcome.latency_ms, 3),
        attempts=1,
        message="HTTP 404: no such customer",
    )


# -- classify --------------------------------------------------------------------------------


class _WithStatusCode(Exception):
    def __init__(self, status_code: Any) -> None:
        super().__init__(f"status {status_code}")
        self.status_code = status_code


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (TimeoutError(), "tool_timeout"),
        (aiohttp.ServerTimeoutError("read"), "tool_timeout"),
        (ToolHttpError(400), "tool_4xx"),
        (ToolHttpError(499), "tool_4xx"),
        (ToolHttpError(500), "tool_5xx"),
        (ToolHttpError(599), "tool_5xx"),
        (ToolHttpError(302), "tool_error"),
        (_WithStatusCode(429), "tool_4xx"),
        (_WithStatusCode(503), "tool_5xx"),
        (_WithStatusCode("503"), "tool_error"),
        (_WithStatusCode(True), "tool_error"),
        (ConnectionRefusedError(), "tool_5xx"),
        (ConnectionResetError(), "tool_5xx"),
        (aiohttp.ClientConnectionError("down"), "tool_5xx"),
        (aiohttp.ServerDisconnectedError(), "tool_5xx"),
        (ValueError("bad"), "tool_error"),
        (KeyError("x"), "tool_error"),
    ],
)
def test_classify(exc: BaseException, expected: str) -> None:
    assert classify(exc) == expected


def test_classify_httpx_errors() -> None:
    httpx = pytest.importorskip("httpx")
    request = httpx.Request("GET", "http://crm/x")
    assert classify(httpx.ConnectError("refused", request=request)) == "tool_5xx"
    assert classify(httpx.ReadTimeout("slow", request=request)) == "tool_timeout"
    for status, expected in ((404, "tool_4xx"), (503, "tool_5xx")):
        response = httpx.Response(status, request=request)
        assert classify(httpx.HTTPStatusError("x", request=request, response=response)) == expected


def test_classify_requests_errors() -> None:
    requests = pytest.importorskip("requests")
    assert classify(requests.ConnectionError("refused")) == "tool_5xx"
    assert classify(requests.Timeout("slow")) == "tool_timeout"
    assert classify(requests.ReadTimeout("slow")) == "tool_timeout"
    response = requests.Response()
    response.status_code = 401
    assert classify(requests.HTTPError("unauthorized", response=response)) == "tool_4xx"


# -- dispatching -----------------------------------------------------------------------------


def test_dispatching_prefers_local_actions() -> None:
    async def main() -> tuple[ActionOutcome, bool]:
        remote = RemoteActionRunner(closed_port_url())  # would fail if asked
        runner = DispatchingRunner(LocalActionRunner({"a": spec("a", Counter())}), remote)
        try:
            return await runner.run("a", ActionContext("u", {})), runner.has("b")
        finally:
            await runner.close()

    outcome, has_b = asyncio.run(main())
    assert outcome.ok and outcome.events == (SlotSet("calls", 1),)
    assert has_b  # the server decides


def test_dispatching_without_a_server() -> None:
    runner = DispatchingRunner(LocalActionRunner({"a": spec("a", Counter())}), None)
    assert runner.has("a") and not runner.has("b")
    outcome = asyncio.run(runner.run("b", ActionContext("u", {})))
    assert (outcome.status, outcome.error_type) == ("failed", "tool_error")
    assert outcome.message == (
        "action 'b' is not implemented in actions/ and no action server is configured (set TAIWA_ACTION_SERVER_URL)"
    )
    asyncio.run(runner.close())


def test_time_spent_waiting_for_a_worker_thread_does_not_count_against_the_timeout() -> None:
    def slowish(ctx: ActionContext) -> list[Event]:
        time.sleep(0.3)
        return [SlotSet("done", True)]

    runner = LocalActionRunner({"t": spec("t", slowish, timeout=0.5)}, threads=1)

    async def main() -> list[Any]:
        try:
            return await asyncio.gather(*(runner.run("t", ActionContext("c", {})) for _ in range(3)))
        finally:
            await runner.close()

    outcomes = asyncio.run(main())
    # One thread: the third call waits ~0.6 s for it, more than the 0.5 s timeout; each call
    # itself takes 0.3 s, so none timed out.
    assert [o.status for o in outcomes] == ["ok", "ok", "ok"]
    assert max(o.latency_ms for o in outcomes) > 500
