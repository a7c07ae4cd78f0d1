"""Run custom actions and tools: bounded in time, retried when safe, never raising for a tool's failure.

Every call ends in an :class:`ActionOutcome`: the events the action returned, or a failure
classified as ``tool_timeout``, ``tool_4xx``, ``tool_5xx`` or ``tool_error`` with a short
message (no stack trace, no secrets) that the engine records as a :class:`ToolCalled` event.

* :class:`LocalActionRunner` calls the functions registered with ``@action`` in this process:
  async functions are awaited, sync ones run in a worker thread, each attempt is bounded by the
  action's ``timeout``. A sync function that overruns keeps its worker thread until it returns
  (a thread cannot be stopped), but the conversation no longer waits for it.
* Only idempotent actions are retried, at most ``retries`` extra times, and only after a
  transient failure (``tool_timeout``, ``tool_5xx``), with a short exponential backoff.
* :class:`DispatchingRunner` runs local actions first and sends every other name to the Rasa
  SDK action server (:class:`engine.actions.remote.RemoteActionRunner`), if one is configured.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar

import aiohttp
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential

from engine.actions.registry import ActionContext, ActionSpec
from engine.events import EVENT_TYPES, Event, ToolCalled

if TYPE_CHECKING:
    from engine.actions.remote import RemoteActionRunner

logger = logging.getLogger(__name__)

ErrorType = Literal["tool_timeout", "tool_4xx", "tool_5xx", "tool_error"]
"""How a tool call failed (the ``error_type`` of :class:`ToolCalled`)."""

TRANSIENT: frozenset[ErrorType] = frozenset({"tool_timeout", "tool_5xx"})
"""Failures worth retrying (for idempotent actions): the same call may well succeed next time."""

MESSAGE_LIMIT = 300
"""Longest :attr:`ActionOutcome.message`, in characters."""

_EVENT_CLASSES = tuple(EVENT_TYPES.values())


@dataclass(frozen=True, slots=True)
class Backoff:
    """Wait ``initial * 2**(n-1)`` seconds before retry ``n``, at most ``maximum``."""

    initial: float = 0.05
    maximum: float = 1.0


@dataclass(frozen=True)
class ActionOutcome:
    """What came of one action call (all its attempts)."""

    name: str
    status: Literal["ok", "failed"]
    events: tuple[Event, ...] = ()
    """What the action returned (only when ok)."""
    error_type: ErrorType | None = None
    message: str | None = None
    """Short and human-readable: no stack trace, no secrets. On success, warnings (if any)."""
    latency_ms: float = 0.0
    """Total wall time, retries and backoff included."""
    attempts: int = 1

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def tool_called(self) -> ToolCalled:
        """The :class:`ToolCalled` event recording this outcome (status ``ok`` or ``error``)."""
        return ToolCalled(
            name=self.name,
            status="ok" if self.ok else "error",
            error_type=self.error_type,
            latency_ms=round(self.latency_ms, 3),
            attempts=self.attempts,
            message=self.message,
        )


class ActionRunner(Protocol):
    """Runs actions by name; :meth:`run` reports failures in the outcome instead of raising."""

    async def run(self, name: str, ctx: ActionContext) -> ActionOutcome: ...

    def has(self, name: str) -> bool: ...

    async def close(self) -> None: ...


class ToolHttpError(Exception):
    """Raise it from a tool when a service it calls answered with an HTTP error.

    Example: ``raise ToolHttpError(403, "CRM said forbidden")``; 4xx is classified
    ``tool_4xx`` (never retried), 5xx ``tool_5xx`` (retried for idempotent tools).
    """

    def __init__(self, status: int, message: str = "") -> None:
        self.status = int(status)
        self.message = message
        super().__init__(f"HTTP {self.status}: {message}" if message else f"HTTP {self.status}")


# -- classifying failures ------------------------------------------------------------------

# Client libraries whose errors do not derive from TimeoutError / ConnectionError.
_HTTP_LIBRARIES = frozenset({"httpx", "httpcore", "requests", "urllib3"})
_TIMEOUT_NAMES = frozenset(
    {"Timeout", "TimeoutException", "ConnectTimeout", "ReadTimeout", "WriteTimeout", "PoolTimeout"}
)
_CONNECTION_NAMES = frozenset({"ConnectError", "ConnectionError", "NewConnectionError"})


def _http_status(exc: BaseException) -> int | None:
    """The HTTP status an exception carries (``status`` / ``status_code``, or on its ``response``)."""
    for holder in (exc, getattr(exc, "response", None)):
        if holder is None:
            continue
        for attr in ("status", "status_code"):
            value = getattr(holder, attr, None)
            if isinstance(value, int) and not isinstance(value, bool):
                return value
    return None


def _library_kind(exc: BaseException) -> ErrorType | None:
    """``tool_timeout`` / ``tool_5xx`` for the timeout and connection errors of httpx, requests, urllib3."""
    for cls in type(exc).__mro__:
        if cls.__module__.split(".")[0] not in _HTTP_LIBRARIES:
            continue
        if cls.__name__ in _TIMEOUT_NAMES:
            return "tool_timeout"
        if cls.__name__ in _CONNECTION_NAMES:
            return "tool_5xx"
    return None


def _is_connection_error(exc: BaseException) -> bool:
    return isinstance(exc, aiohttp.ClientConnectionError | ConnectionError) or _library_kind(exc) == "tool_5xx"


def classify(exc: BaseException) -> ErrorType:
    """The error type of a tool's exception.

    ``TimeoutError`` -> ``tool_timeout``; an HTTP status 400-499 (``status`` or ``status_code``
    attribute, as on :class:`ToolHttpError`, ``aiohttp.ClientResponseError``, or on the
    exception's ``response`` as with httpx and requests) -> ``tool_4xx``, 500-599 -> ``tool_5xx``;
    a connection failure (the service is unreachable) -> ``tool_5xx``; anything else -> ``tool_error``.
    """
    if isinstance(exc, TimeoutError):
        return "tool_timeout"
    status = _http_status(exc)
    if status is not None and 400 <= status <= 499:
        return "tool_4xx"
    if status is not None and 500 <= status <= 599:
        return "tool_5xx"
    library_kind = _library_kind(exc)
    if library_kind is not None:
        return library_kind
    if isinstance(exc, aiohttp.ClientConnectionError | ConnectionError):
        return "tool_5xx"
    return "tool_error"


_SECRET_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s:@]+:[^/\s@]+@"), r"\1***@"),
    (re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]+"), "Bearer ***"),
    (
        re.compile(r"(?i)\b(token|api[_-]?key|apikey|key|secret|password|passwd|pwd|access_token|auth)=([^&\s'\"]+)"),
        r"\1=***",
    ),
)


def redact(text: str) -> str:
    """``text`` without credentials in URLs, bearer tokens or ``token=`` / ``key=`` style parameters."""
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def shorten(text: str, limit: int = MESSAGE_LIMIT) -> str:
    """One line, redacted, at most ``limit`` characters."""
    text = redact(" ".join(text.split()))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def describe(exc: BaseException, error_type: ErrorType | None = None) -> str:
    """A short message for ``exc`` (its type and text, never a traceback)."""
    kind = error_type or classify(exc)
    if isinstance(exc, ToolHttpError):
        detail = f"HTTP {exc.status}" + (f": {exc.message}" if exc.message else "")
    else:
        text = str(exc).strip()
        detail = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    if kind == "tool_5xx" and _is_connection_error(exc):
        detail = f"service unavailable (unreachable): {detail}"
    return shorten(detail)


# -- retrying ------------------------------------------------------------------------------


class AttemptFailedError(Exception):
    """One attempt failed; raised inside the retry loop, turned into a failed outcome after it."""

    def __init__(self, error_type: ErrorType, message: str) -> None:
        self.error_type = error_type
        self.message = message
        super().__init__(message)


T = TypeVar("T")


async def call_with_retries(
    attempt: Callable[[], Awaitable[T]],
    *,
    retries: int,
    backoff: Backoff,
) -> T:
    """Call ``attempt`` until it succeeds, at most ``1 + retries`` times.

    Only :class:`AttemptFailedError` of a transient type is retried; anything else
    (including ``CancelledError``) propagates at once.
    """
    try:
        return await attempt()
    except AttemptFailedError as exc:
        if retries <= 0 or exc.error_type not in TRANSIENT:
            raise
        first_failure = exc
    # The first attempt ran outside tenacity (most calls succeed, and its bookkeeping cost more
    # than a fast tool); tenacity replays that failure as its own attempt 1, so the backoff
    # and the stop count are exactly those of a loop that ran every attempt itself.
    replayed = False

    async def replay_then_attempt() -> T:
        nonlocal replayed
        if not replayed:
            replayed = True
            raise first_failure
        return await attempt()

    retrying = AsyncRetrying(
        stop=stop_after_attempt(1 + max(0, retries)),
        wait=wait_exponential(multiplier=backoff.initial, max=backoff.maximum),
        retry=retry_if_exception(lambda exc: isinstance(exc, AttemptFailedError) and exc.error_type in TRANSIENT),
        reraise=True,
    )
    return await retrying(replay_then_attempt)


def failure_outcome(name: str, failure: AttemptFailedError, *, attempts: int, started: float) -> ActionOutcome:
    """The failed outcome after the last attempt (``started``: ``time.perf_counter()`` before the first)."""
    message = failure.message
    if attempts > 1:
        message = shorten(f"{message} (after {attempts} attempts)")
    logger.debug("action %s failed: %s: %s", name, failure.error_type, message)
    latency = (time.perf_counter() - started) * 1000
    return ActionOutcome(name, "failed", (), failure.error_type, message, latency, attempts)


# -- the local runner ----------------------------------------------------------------------


def _is_async(func: Callable[..., Any]) -> bool:
    call = type(func).__call__ if not inspect.isroutine(func) else None
    return inspect.iscoroutinefunction(func) or (call is not None and inspect.iscoroutinefunction(call))


def _describe_value(value: object) -> str:
    text = repr(value)
    if len(text) > 80:
        text = text[:79] + "…"
    return f"{type(value).__name__} {text}"


def check_events(name: str, value: object) -> tuple[Event, ...]:
    """The events an action returned, or :class:`AttemptFailedError` (``tool_error``) saying what is wrong."""
    expected = "a list of events from engine.events (e.g. [SlotSet('name', value)])"
    if not isinstance(value, list | tuple):
        raise AttemptFailedError(
            "tool_error", shorten(f"action {name!r} returned {_describe_value(value)}; expected {expected}")
        )
    for index, item in enumerate(value):
        if not isinstance(item, _EVENT_CLASSES):
            raise AttemptFailedError(
                "tool_error",
                shorten(f"action {name!r} returned {_describe_value(item)} at position {index}; expected {expected}"),
            )
    return tuple(value)


DEFAULT_THREADS = 16
"""Worker threads for synchronous actions (``TAIWA_ACTION_THREADS``)."""

INLINE_SLOW = 0.02
"""Seconds an ``inline`` action may hold the event loop before a warning says it should not be
inline (every conversation of the worker waits while it runs)."""

QUEUE_TIMEOUT = 30.0
"""Seconds a synchronous action may wait for a free worker thread before it counts as timed out."""


class LocalActionRunner:
    """Runs the actions registered in this process (``@action`` in the project's ``actions/``)."""

    def __init__(
        self,
        specs: Mapping[str, ActionSpec],
        config: Mapping[str, Any] | None = None,
        *,
        backoff: Backoff | None = None,
        threads: int = DEFAULT_THREADS,
    ) -> None:
        self._specs = specs
        self._config: Mapping[str, Any] = MappingProxyType(dict(config or {}))
        self._backoff = backoff or Backoff()
        self._threads = max(1, threads)
        self._pool: ThreadPoolExecutor | None = None
        self._warned_slow: set[str] = set()

    def has(self, name: str) -> bool:
        return name in self._specs

    def names(self) -> list[str]:
        return sorted(self._specs)

    async def close(self) -> None:
        """Release the worker threads (a sync action that overran finishes on its own)."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    async def run(self, name: str, ctx: ActionContext) -> ActionOutcome:
        started = time.perf_counter()
        spec = self._specs.get(name)
        if spec is None:
            known = ", ".join(sorted(self._specs)) or "none"
            message = (
                f"action {name!r} is not registered. Fix: define it with @action({name!r}) in the project's "
                f"actions/ package, or correct the name (registered: {known})"
            )
            return ActionOutcome(name, "failed", error_type="tool_error", message=shorten(message), attempts=0)
        if not ctx.config and self._config:
            ctx = replace(ctx, config=self._config)
        attempts = 0

        async def attempt() -> tuple[Event, ...]:
            nonlocal attempts
            attempts += 1
            try:
                value = await self._call(spec, ctx)
            except Exception as exc:  # a tool's failure, whatever it is, becomes an outcome
                error_type = classify(exc)
                if isinstance(exc, _ToolTimedOutError):
                    message = f"action {name!r} did not finish within {spec.timeout:g} s"
                else:
                    message = describe(exc, error_type)
                logger.debug("action %s attempt %d failed (%s)", name, attempts, error_type, exc_info=True)
                raise AttemptFailedError(error_type, message) from exc
            return check_events(name, value)

        retries = spec.retries if spec.idempotent else 0
        try:
            events = await call_with_retries(attempt, retries=retries, backoff=self._backoff)
        except AttemptFailedError as failure:
            return failure_outcome(name, failure, attempts=attempts, started=started)
        latency = (time.perf_counter() - started) * 1000
        return ActionOutcome(name, "ok", events, None, None, latency, attempts)

    async def _call(self, spec: ActionSpec, ctx: ActionContext) -> object:
        """Run the action; its timeout starts when it starts, not while it waits for a thread
        (under load that wait is ours, not the tool's)."""
        loop = asyncio.get_running_loop()
        if _is_async(spec.func):
            return await _bounded(spec.func(ctx), spec.timeout)
        if spec.inline:
            began = time.perf_counter()
            try:
                value: object = spec.func(ctx)
            except Exception as exc:
                self._after_inline(spec, time.perf_counter() - began, exc)
                raise
            took = time.perf_counter() - began
            self._after_inline(spec, took)
            return await _bounded(value, spec.timeout - took)
        started = asyncio.Event()

        def in_thread() -> object:
            loop.call_soon_threadsafe(started.set)
            return spec.func(ctx)

        if self._pool is None:
            self._pool = ThreadPoolExecutor(self._threads, thread_name_prefix="taiwa-action")
        # The thread logs with the turn's context (session_id, turn_id) like the loop does.
        future = loop.run_in_executor(self._pool, contextvars.copy_context().run, in_thread)
        async with asyncio.timeout(QUEUE_TIMEOUT):
            await started.wait()
        result = await _bounded(future, spec.timeout)
        if inspect.isawaitable(result):
            result = await _bounded(result, spec.timeout)
        return result

    def _after_inline(self, spec: ActionSpec, seconds: float, error: Exception | None = None) -> None:
        """Warn about an inline action that held the loop; an inline call that ran past its
        timeout could not be stopped, but its contract holds: what it returned or raised after
        the timeout is not used, and the call is a ``tool_timeout`` as on a thread."""
        self._warn_if_slow(spec, seconds)
        if seconds > spec.timeout:
            raise _ToolTimedOutError() from error

    def _warn_if_slow(self, spec: ActionSpec, seconds: float) -> None:
        if seconds > INLINE_SLOW and spec.name not in self._warned_slow:
            self._warned_slow.add(spec.name)
            logger.warning(
                "inline action %r held the event loop for %.0f ms; every conversation of this worker "
                "waited. Fix: if it can block or run long, drop inline=True from its @action (%s)",
                spec.name,
                seconds * 1000,
                spec.source,
            )


class _ToolTimedOutError(TimeoutError):
    """The action itself ran past its timeout."""


async def _bounded(awaitable: object, seconds: float) -> object:
    if not inspect.isawaitable(awaitable):
        return awaitable
    deadline = asyncio.timeout(seconds)
    try:
        async with deadline:
            return await awaitable
    except TimeoutError as exc:
        if deadline.expired():
            raise _ToolTimedOutError() from exc
        raise  # the tool's own timeout (e.g. its HTTP client's): still tool_timeout, its message kept


# -- local first, then the action server ---------------------------------------------------


class DispatchingRunner:
    """Runs an action locally when ``actions/`` defines it, else on the action server (if any)."""

    def __init__(self, local: LocalActionRunner, remote: RemoteActionRunner | None) -> None:
        self.local = local
        self.remote = remote

    def has(self, name: str) -> bool:
        return self.local.has(name) or (self.remote is not None and self.remote.has(name))

    async def run(self, name: str, ctx: ActionContext) -> ActionOutcome:
        if self.local.has(name):
            return await self.local.run(name, ctx)
        if self.remote is not None:
            return await self.remote.run(name, ctx)
        message = (
            f"action {name!r} is not implemented in actions/ and no action server is configured "
            "(set TAIWA_ACTION_SERVER_URL)"
        )
        return ActionOutcome(name, "failed", error_type="tool_error", message=message, attempts=0)

    async def close(self) -> None:
        try:
            await self.local.close()
        finally:
            if self.remote is not None:
                await self.remote.close()
