"""The Sanic application of ``taiwa run``: channels, the HTTP API, auth, limits, metrics.

:func:`create_app` builds the app from :class:`ServerSettings`; each worker process opens the
assistant (project, model, tracker store, action runners) in ``before_server_start`` and
closes it after the last in-flight turn has finished.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json as jsonlib
import logging
import os
import signal
import time
import uuid
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

import aiohttp
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, multiprocess
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from sanic import Request, Sanic
from sanic.response import HTTPResponse, json, raw

from engine import __version__
from engine import events as ev
from engine.dialogue.wire import bot_message_dict
from engine.events import BotUttered, event_to_dict
from engine.server.auth import Auth, Role
from engine.server.balance import ConnectionBalance
from engine.server.body import MESSAGE_BODY, PARSE_BODY, TRIGGER_BODY, json_body, path_id
from engine.server.channels.base import ChannelContext, Incoming
from engine.server.errors import ApiError, install_error_handler
from engine.server.ratelimit import Bucket, Limiter, TokenBuckets, redis_limiter, retry_after
from engine.stores.base import ConcurrentWriteError, LockTimeoutError, StoreUnavailableError

if TYPE_CHECKING:
    from engine.dialogue.assistant import Assistant
    from engine.dialogue.processor import TurnResult
    from engine.llm.chain import ChainLink
    from engine.loading.project import Project

log = logging.getLogger("taiwa.server")

MAX_BODY = 1_000_000
"""Bytes in one request body."""
GC_YOUNG_THRESHOLD = 10_000
"""Allocations between collections of the garbage collector's youngest generation, in a worker."""


@dataclass(frozen=True)
class ServerSettings:
    project: Path
    model: Path | None = None
    store_url: str | None = None
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    max_body: int = MAX_BODY
    rate_capacity: float = 20.0
    """Messages a sender may send at once."""
    rate_per_second: float = 5.0
    """Sustained messages per second per sender."""
    audit_log: Path | None = None
    """Where the audit log goes (default PROJECT/.taiwa/audit.jsonl)."""
    loaded: Project | None = None
    """``project`` already loaded in this process (one worker: it is not loaded twice)."""
    nlu: Any = None
    """The NLU model already loaded (an ``NluModel``): one worker, or workers forked from the
    process that loaded it, which then share its memory."""
    workers: int = 1
    """Worker processes that will serve this app (forked after it is built): with more than
    one, they keep their keep-alive connections evenly spread (:mod:`engine.server.balance`)."""


MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
"""Set (by ``taiwa run --workers N``) when several worker processes serve one port: each writes
its metrics to files there and ``/metrics`` adds them up, whichever worker answers."""


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.exposed = self.registry
        if os.environ.get(MULTIPROC_ENV):
            self.exposed = CollectorRegistry()
            multiprocess.MultiProcessCollector(self.exposed)  # type: ignore[no-untyped-call]
        self.turns = Counter("taiwa_turns_total", "Turns processed", ["channel", "policy"], registry=self.registry)
        self.latency = Histogram(
            "taiwa_turn_latency_seconds",
            "Turn latency, NLU and tools included",
            ["channel"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=self.registry,
        )
        self.tools = Counter(
            "taiwa_tool_calls_total", "Tool calls", ["tool", "status", "error_type"], registry=self.registry
        )
        self.fallbacks = Counter("taiwa_fallbacks_total", "Fallbacks", ["reason"], registry=self.registry)
        self.handoffs = Counter("taiwa_handoffs_total", "Handoffs", ["reason"], registry=self.registry)
        self.rate_limited = Counter(
            "taiwa_rate_limited_total", "Requests refused by the rate limit", registry=self.registry
        )
        self.channel_failures = Counter(
            "taiwa_channel_failures_total",
            "Messages a channel accepted and then could not serve (stage: process or reply)",
            ["channel", "stage"],
            registry=self.registry,
        )
        self.rate_limit_store_errors = Counter(
            "taiwa_rate_limit_store_errors_total",
            "Requests let through unlimited because the rate-limit store (Redis) was unreachable",
            registry=self.registry,
        )

    def observe(self, channel: str, result: TurnResult) -> None:
        policy = result.decision.policy if result.decision else "none"
        self.turns.labels(channel, policy).inc()
        self.latency.labels(channel).observe(result.latency_ms / 1000)
        for e in result.events:
            if isinstance(e, ev.ToolCalled):
                self.tools.labels(e.name, e.status, e.error_type or "").inc()
            elif isinstance(e, ev.FallbackTriggered):
                self.fallbacks.labels(e.reason).inc()
            elif isinstance(e, ev.HandoffRequested):
                self.handoffs.labels(e.reason).inc()


def create_app(settings: ServerSettings, name: str = "taiwa") -> Sanic[Any, Any]:
    app: Sanic[Any, Any] = Sanic(name)
    app.config.REQUEST_MAX_SIZE = settings.max_body
    app.config.REQUEST_TIMEOUT = 30
    app.config.RESPONSE_TIMEOUT = 60
    app.config.GRACEFUL_SHUTDOWN_TIMEOUT = 15.0
    app.config.FALLBACK_ERROR_FORMAT = "json"
    install_error_handler(app)
    auth = Auth.from_env(settings.env)
    capacity, per_second = rate_limit_from_env(settings.env, settings.rate_capacity, settings.rate_per_second)
    metrics = Metrics()
    limiter: Limiter | None = None
    if capacity:
        store = settings.env.get(RATE_LIMIT_STORE_ENV, "").strip()
        try:
            limiter = (
                redis_limiter(store, on_error=lambda exc: metrics.rate_limit_store_errors.inc())
                if store
                else TokenBuckets()
            )
        except ValueError as exc:
            raise ValueError(f"{RATE_LIMIT_STORE_ENV}: {exc}") from None
    background: set[asyncio.Task[None]] = set()
    http_session: list[aiohttp.ClientSession] = []
    balance = ConnectionBalance(settings.workers) if settings.workers > 1 else None
    audit_path = settings.audit_log or Path(
        settings.env.get("TAIWA_AUDIT_LOG") or settings.project / ".taiwa" / "audit.jsonl"
    )

    def assistant() -> Assistant:
        a: Assistant | None = getattr(app.ctx, "assistant", None)
        if a is None:
            raise ApiError(503, "unavailable", "The assistant is still starting.")
        return a

    def http() -> aiohttp.ClientSession:
        if not http_session:
            http_session.append(aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)))
        return http_session[0]

    def spawn(coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        background.add(task)
        task.add_done_callback(_finished)

    def _finished(task: asyncio.Task[None]) -> None:
        background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background work failed", exc_info=task.exception())

    async def limit(key: str, ip: str | None = None) -> None:
        if limiter is None:
            return
        buckets = [Bucket(key, capacity, per_second)]
        if ip is not None:
            # Senders are chosen by clients: a second bucket per IP stops one client posing as many.
            buckets.append(Bucket(f"ip:{ip}", capacity * 10, per_second * 20))
        wait = await limiter.take(buckets)
        if wait > 0:
            metrics.rate_limited.inc()
            raise ApiError(
                429,
                "rate_limited",
                f"Too many messages from this sender; retry in {retry_after(wait)} s.",
                {"Retry-After": retry_after(wait)},
            )

    async def run_turn(
        cid: str, text: str, channel: str, message_id: str | None, metadata: Mapping[str, Any]
    ) -> TurnResult:
        processor = assistant().processor
        try:
            try:
                result = await processor.handle(
                    cid, text, channel=channel, message_id=message_id, metadata=dict(metadata)
                )
            except ConcurrentWriteError:
                # Another process wrote to the conversation without holding its lock (SQLite
                # locks are per process): nothing was stored; run the turn again on fresh state.
                result = await processor.handle(
                    cid, text, channel=channel, message_id=message_id, metadata=dict(metadata)
                )
        except ConcurrentWriteError:
            raise ApiError(
                409, "conflict", "The conversation changed during the turn; send the message again."
            ) from None
        except LockTimeoutError:
            raise ApiError(
                503, "busy", "The conversation is busy with another message; retry shortly.", {"Retry-After": "1"}
            ) from None
        except StoreUnavailableError:
            raise ApiError(503, "store_unavailable", "The tracker store is unavailable; retry later.") from None
        metrics.observe(channel, result)
        return result

    async def process(msg: Incoming) -> list[BotUttered]:
        await limit(f"{msg.channel}:{msg.sender_id}", msg.client_ip)
        result = await run_turn(msg.sender_id, msg.text, msg.channel, msg.message_id, msg.metadata)
        return list(result.messages)

    async def process_new(msg: Incoming) -> list[BotUttered]:
        await limit(f"{msg.channel}:{msg.sender_id}", msg.client_ip)
        result = await run_turn(msg.sender_id, msg.text, msg.channel, msg.message_id, msg.metadata)
        return [] if result.duplicate else list(result.messages)

    ctx = ChannelContext(
        process=process,
        process_new=process_new,
        http=http,
        spawn=spawn,
        env=settings.env,
        failed=lambda channel, stage: metrics.channel_failures.labels(channel, stage).inc(),
    )
    channels = mount_channels(app, ctx, settings.env)
    app.ctx.channel_names = [c.name for c in channels]

    @app.before_server_start
    async def start(app_: Sanic[Any, Any]) -> None:
        # Imported here, in the worker: the process that only manages workers stays small.
        from engine.dialogue.assistant import open_assistant

        app_.ctx.assistant = await open_assistant(
            settings.project,
            model=settings.model,
            store_url=settings.store_url,
            env=settings.env,
            project=settings.loaded,
            nlu=settings.nlu,
        )
        app_.ctx.started = time.time()
        # The model, project and libraries are loaded for good: move them out of the garbage
        # collector's generations, so a full collection walks the turn's objects only (it
        # walked hundreds of thousands of long-lived ones, a pause in every p99).
        gc.collect()
        gc.freeze()
        # A turn allocates thousands of short-lived containers; with the default threshold
        # (700) the youngest generation was collected several times per turn, 26 us of each
        # turn's CPU. Reference counting frees almost all of them anyway.
        gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])

    stopping: list[bool] = []

    @app.after_server_start
    async def stop_on_signal(app_: Sanic[Any, Any]) -> None:
        # Sanic's own SIGTERM handler stops the event loop at once; a signal that arrives while
        # the server is still finishing its start-up (it may already answer requests then) is
        # swallowed and the server runs on. Here a signal is remembered and acted on once the
        # server is running.
        loop = asyncio.get_running_loop()
        asked = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, asked.set)

        async def stop_when_asked() -> None:
            await asked.wait()
            # Let the watch end by itself: ``stop()`` cancels every task left, and Sanic logs
            # a warning for each task it cancels.
            app_.ctx.assistant.emergency.stop()
            watch = app_.get_task("taiwa-emergency-watch", raise_exception=False)
            if watch is not None:
                await asyncio.wait([watch], timeout=1.0)
            while not app_.state.is_running:
                await asyncio.sleep(0.01)
            app_.stop(terminate=False)

        app_.add_task(stop_when_asked(), name="taiwa-stop-on-signal")
        # policies/ `emergency:` edits apply without a restart, in every worker.
        app_.add_task(app_.ctx.assistant.emergency.keep_watching(), name="taiwa-emergency-watch")

    async def close_when_asked(request: Request, response: Any) -> None:
        # Sanic closes idle keep-alive connections once, when it stops; a turn still in flight
        # then would keep its connection open until the graceful timeout. Answer it, then close.
        # A worker holding more than its share of the connections closes one the same way.
        if stopping or (balance is not None and balance.should_close()):
            http1: Any = request.stream
            if http1 is not None:
                http1.keep_alive = False

    app.register_middleware(close_when_asked, "response")

    if balance is not None:
        spread = balance

        @app.signal("http.lifecycle.begin")
        async def connection_opened(conn_info: Any) -> None:
            spread.opened()

        @app.signal("http.lifecycle.complete")
        async def connection_closed(conn_info: Any) -> None:
            spread.closed()

        @app.before_server_start
        async def join_the_balance(app_: Sanic[Any, Any]) -> None:
            spread.join()

        @app.after_server_stop
        async def leave_the_balance(app_: Sanic[Any, Any]) -> None:
            spread.leave()

    @app.before_server_stop
    async def drain(app_: Sanic[Any, Any]) -> None:
        stopping.append(True)
        a = getattr(app_.ctx, "assistant", None)
        if a is not None:
            a.emergency.stop()
        if background:
            await asyncio.wait(list(background), timeout=app.config.GRACEFUL_SHUTDOWN_TIMEOUT)

    @app.after_server_stop
    async def stop(app_: Sanic[Any, Any]) -> None:
        a = getattr(app_.ctx, "assistant", None)
        if a is not None:
            await a.close()
        for s in http_session:
            await s.close()
        if limiter is not None:
            await limiter.close()

    def need(request: Request, role: Role) -> str:
        return auth.require(request, role).subject

    # ------------------------------------------------------------------ public

    @app.get("/health")
    async def health(request: Request) -> HTTPResponse:
        a = getattr(app.ctx, "assistant", None)
        checks: dict[str, Any] = {}
        if a is None:
            return json({"status": "starting", "checks": {}}, status=503)
        t0 = time.perf_counter()
        try:
            await asyncio.wait_for(a.store.length("__health__"), timeout=2.0)
            checks["tracker_store"] = {"status": "up", "latency_ms": _ms(t0), "required": True}
        except Exception as exc:  # noqa: BLE001 - any failure means "down", reported
            checks["tracker_store"] = {"status": "down", "error": type(exc).__name__, "required": True}
        t0 = time.perf_counter()
        try:
            async with asyncio.timeout(2.0), a.store.lock("__health__"):
                pass
            checks["lock_store"] = {"status": "up", "latency_ms": _ms(t0), "required": True}
        except Exception as exc:  # noqa: BLE001 - any failure means "down", reported
            checks["lock_store"] = {"status": "down", "error": type(exc).__name__, "required": True}
        remote = getattr(a.processor.runner, "remote", None)
        if remote is not None:
            up, ms = await remote.health()
            checks["action_server"] = {"status": "up" if up else "down", "latency_ms": round(ms, 3), "required": False}
        if a.processor.llm is not None:
            for link in a.processor.llm.chain.links:
                checks[f"llm:{link.provider.name}"] = await _provider_check(link, settings.env)
        ok = all(c["status"] != "down" for c in checks.values() if c.get("required"))
        degraded = any(c["status"] == "down" for c in checks.values())
        status = "ok" if ok and not degraded else ("degraded" if ok else "down")
        worker = {"X-Taiwa-Worker": str(os.getpid())}  # which worker answered, behind one port
        return json({"status": status, "checks": checks}, status=200 if ok else 503, headers=worker)

    @app.get("/version")
    async def version(request: Request) -> HTTPResponse:
        a = assistant()
        return json(
            {
                "version": __version__,
                "model_id": a.nlu.model_id,
                "revisions": a.revisions(),
                "channels": app.ctx.channel_names,
            }
        )

    @app.get("/openapi.json")
    async def openapi(request: Request) -> HTTPResponse:
        from engine.server.openapi import document

        a = getattr(app.ctx, "assistant", None)
        return json(document(__version__, tuple(a.project.domain.intents) if a is not None else ()))

    # ------------------------------------------------------------------ API

    @app.post("/model/parse")
    async def parse(request: Request) -> HTTPResponse:
        need(request, "reader")
        body = json_body(request, PARSE_BODY)
        return json(assistant().nlu.parse(body["text"]).to_dict())

    @app.get("/conversations/<cid:str>/tracker")
    async def tracker(request: Request, cid: str) -> HTTPResponse:
        cid = path_id(unquote(cid), "cid")
        need(request, "reader")
        a = assistant()
        events = await a.store.load(cid)
        state = a.processor.replay(events)
        return json(
            {
                "conversation_id": cid,
                "slots": dict(state.slots),
                "active_flow": state.active_flow,
                "stack": [{"flow": f.flow, "step": f.step, "how": f.how} for f in state.stack],
                "handoff": state.handoff,
                "events": [event_to_dict(e) for e in events],
            }
        )

    @app.post("/conversations/<cid:str>/messages")
    async def messages(request: Request, cid: str) -> HTTPResponse:
        cid = path_id(unquote(cid), "cid")
        need(request, "operator")
        body = json_body(request, MESSAGE_BODY)
        await limit(f"api:{cid}")
        result = await run_turn(cid, body["text"], "api", body.get("message_id"), body.get("metadata") or {})
        return json(_turn_json(result))

    @app.post("/conversations/<cid:str>/trigger_intent")
    async def trigger(request: Request, cid: str) -> HTTPResponse:
        cid = path_id(unquote(cid), "cid")
        need(request, "operator")
        body = json_body(request, TRIGGER_BODY)
        a = assistant()
        if body["name"] not in a.project.domain.intents:
            raise ApiError(400, "unknown_intent", f"No intent {body['name']!r} in the domain.")
        await limit(f"api:{cid}")
        entities = body.get("entities") or {}
        text = f"/{body['name']}" + (jsonlib.dumps(entities) if entities else "")
        result = await run_turn(cid, text, "api", None, {})
        return json(_turn_json(result))

    @app.delete("/users/<user_id:str>/data")
    async def delete_user(request: Request, user_id: str) -> HTTPResponse:
        user_id = path_id(unquote(user_id), "user_id")
        actor = need(request, "admin")
        a = assistant()
        owned = [c for c in await a.store.conversations() if c == user_id or c.endswith(":" + user_id)]
        for cid in owned:
            async with a.store.lock(cid):
                await a.store.delete(cid)
            a.processor.forget(cid)
        entry = {
            "time": time.time(),
            "action": "delete_user_data",
            "user_id": user_id,
            "conversations": len(owned),
            "actor": actor,
            "request_id": uuid.uuid4().hex,
        }
        audit_path.parent.mkdir(parents=True, exist_ok=True)
        with audit_path.open("a", encoding="utf-8") as fh:
            fh.write(jsonlib.dumps(entry) + "\n")
        return json({"deleted_conversations": owned})

    @app.get("/metrics")
    async def prometheus(request: Request) -> HTTPResponse:
        need(request, "reader")
        return raw(
            generate_latest(metrics.exposed),
            content_type=CONTENT_TYPE_LATEST,
            headers={"X-Taiwa-Worker": str(os.getpid())},
        )

    return app


RATE_LIMIT_ENV = "TAIWA_RATE_LIMIT"
RATE_LIMIT_STORE_ENV = "TAIWA_RATE_LIMIT_STORE"
"""``redis://host:port/db``: buckets shared by every worker and instance (default: per process)."""


def rate_limit_from_env(env: Mapping[str, str], capacity: float, per_second: float) -> tuple[float, float]:
    """``TAIWA_RATE_LIMIT``: ``BURST,PER_SECOND`` per sender (per IP: x10 burst, x20 rate), or ``off``."""
    raw = env.get(RATE_LIMIT_ENV, "").strip().lower()
    if not raw:
        return capacity, per_second
    if raw in ("off", "0", "none"):
        return 0.0, 0.0
    try:
        burst, rate = (float(x) for x in raw.split(","))
    except ValueError:
        raise ValueError(f"{RATE_LIMIT_ENV}={raw!r}: expected BURST,PER_SECOND (e.g. 20,5) or off") from None
    return burst, rate


async def _provider_check(link: ChainLink, env: Mapping[str, str]) -> dict[str, Any]:
    """An LLM provider: its key is set and its host answers a TCP connection (no tokens spent)."""
    out: dict[str, Any] = {"model": link.provider.model, "required": False}
    if link.api_key_env is not None and not env.get(link.api_key_env):
        return {**out, "status": "down", "error": f"{link.api_key_env} is not set"}
    url = urlsplit(link.provider.base_url)
    port = url.port or (443 if url.scheme == "https" else 80)
    t0 = time.perf_counter()
    try:
        async with asyncio.timeout(min(link.timeout, 1.0)):
            _, writer = await asyncio.open_connection(url.hostname, port)
        writer.close()
        return {**out, "status": "up", "latency_ms": _ms(t0)}
    except (OSError, TimeoutError) as exc:
        return {**out, "status": "down", "error": type(exc).__name__}


def _turn_json(result: TurnResult) -> dict[str, Any]:
    return {
        "conversation_id": result.conversation_id,
        "turn_id": result.turn_id,
        "messages": [bot_message_dict(m, result.conversation_id) for m in result.messages],
        "policy": result.decision.policy if result.decision else None,
        "reason": result.decision.reason if result.decision else None,
        "active_flow": result.state.active_flow,
        "latency_ms": round(result.latency_ms, 3),
        "duplicate": result.duplicate,
    }


def mount_channels(app: Sanic[Any, Any], ctx: ChannelContext, env: Mapping[str, str]) -> list[Any]:
    from engine.server.channels import rest

    channels: list[Any] = list(rest.from_env(env))
    for module in _optional_channel_modules():
        channel = module.from_env(env)
        if channel is not None:
            channels.append(channel)
    for channel in channels:
        app.blueprint(channel.blueprint(ctx))
    return channels


def _optional_channel_modules() -> list[Any]:
    import importlib

    modules = []
    for name in ("line", "slack", "telegram", "teams", "webchat"):
        try:
            modules.append(importlib.import_module(f"engine.server.channels.{name}"))
        except ModuleNotFoundError as exc:
            if exc.name != f"engine.server.channels.{name}":
                raise
    return modules


def _ms(since: float) -> float:
    return round((time.perf_counter() - since) * 1000, 3)
