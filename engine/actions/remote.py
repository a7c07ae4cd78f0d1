"""Run actions on a Rasa SDK action server (``python -m rasa_sdk``) over its HTTP protocol.

Configured with ``TAIWA_ACTION_SERVER_URL`` (e.g. ``http://localhost:5055/webhook``, as in
Rasa's ``endpoints.yml``; a url without ``/webhook`` gets it appended). The request carries the
tracker and the domain (:mod:`engine.actions.rasa_protocol`); the answer's bot responses come
first in the outcome's events, then the action's events, as in Rasa.

Failures: a 4xx (``ActionExecutionRejection`` is a 400, an unknown action a 404) is
``tool_4xx``; a 5xx (the action raised) or an unreachable server is ``tool_5xx``; no answer
within ``timeout`` is ``tool_timeout``; a body that is not the protocol's JSON is ``tool_error``.
Actions named in ``idempotent_actions`` are retried after ``tool_timeout`` / ``tool_5xx``;
any other action is sent once, since the server may have run it already.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from engine.actions.rasa_protocol import RASA_VERSION, events_from_rasa, parse_responses, request_payload
from engine.actions.registry import ActionContext
from engine.actions.runner import (
    ActionOutcome,
    AttemptFailedError,
    Backoff,
    ErrorType,
    call_with_retries,
    classify,
    failure_outcome,
    shorten,
)
from engine.domain import Domain
from engine.events import Event

logger = logging.getLogger(__name__)

URL_ENV = "TAIWA_ACTION_SERVER_URL"
TIMEOUT_ENV = "TAIWA_ACTION_SERVER_TIMEOUT"
TOKEN_ENV = "TAIWA_ACTION_SERVER_TOKEN"
RETRIES_ENV = "TAIWA_ACTION_SERVER_RETRIES"
IDEMPOTENT_ENV = "TAIWA_ACTION_SERVER_IDEMPOTENT"

ERROR_TEXT_LIMIT = 200
"""Longest part of the server's ``error`` text quoted in a message."""


def _server_error_text(body: bytes) -> str:
    """The ``error`` of a JSON error body (rasa_sdk's format), else the start of the body."""
    text = body.decode("utf-8", errors="replace").strip()
    try:
        data = json.loads(text)
    except ValueError:
        return shorten(text, ERROR_TEXT_LIMIT)
    if isinstance(data, Mapping) and data.get("error") is not None:
        return shorten(str(data["error"]), ERROR_TEXT_LIMIT)
    return shorten(text, ERROR_TEXT_LIMIT)


class RemoteActionRunner:
    """Runs actions on a Rasa SDK action server; one shared HTTP session, opened on first use."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 5.0,
        retries: int = 1,
        idempotent_actions: frozenset[str] = frozenset(),
        token: str | None = None,
        rasa_version: str = RASA_VERSION,
        backoff: Backoff | None = None,
    ) -> None:
        parts = urlsplit(url.strip())
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(
                f"action server url {url!r} is not an http(s) url. Fix: set it like http://localhost:5055/webhook"
            )
        if timeout <= 0:
            raise ValueError(f"action server timeout must be > 0 seconds, got {timeout}")
        path = parts.path.rstrip("/")
        if path.endswith("/webhook"):
            path = path[: -len("/webhook")]
        self.base_url = f"{parts.scheme}://{parts.netloc}{path}"
        self.webhook_url = f"{self.base_url}/webhook"
        self.timeout = timeout
        self.retries = max(0, retries)
        self.idempotent_actions = frozenset(idempotent_actions)
        self.rasa_version = rasa_version
        self._token = token or None
        self._backoff = backoff or Backoff()
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:  # never shows the token
        return f"RemoteActionRunner({self.webhook_url!r}, timeout={self.timeout}, retries={self.retries})"

    def has(self, name: str) -> bool:
        """Always true: the server decides (an unknown action is a 404, ``tool_4xx``)."""
        return True

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(raise_for_status=False)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    @property
    def _params(self) -> dict[str, str]:
        # Rasa's endpoint config sends its ``token`` as a query parameter.
        return {"token": self._token} if self._token else {}

    async def health(self) -> tuple[bool, float]:
        """Whether ``GET {base}/health`` answers 200 within the timeout, and how long it took (ms)."""
        started = time.perf_counter()
        try:
            async with self._client().get(
                f"{self.base_url}/health",
                params=self._params,
                timeout=aiohttp.ClientTimeout(total=self.timeout),
            ) as resp:
                await resp.read()
                up = resp.status == 200
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            logger.debug("action server health check failed: %s", type(exc).__name__)
            up = False
        return up, (time.perf_counter() - started) * 1000

    async def run(self, name: str, ctx: ActionContext) -> ActionOutcome:
        started = time.perf_counter()
        try:
            payload = request_payload(name, ctx, ctx.events, ctx.domain, self.rasa_version)
            body = json.dumps(payload, default=_json_default).encode("utf-8")
        except (TypeError, ValueError) as exc:
            message = shorten(f"the tracker for {name!r} cannot be sent as JSON: {exc}")
            return ActionOutcome(name, "failed", error_type="tool_error", message=message, attempts=0)
        attempts = 0

        async def attempt() -> tuple[tuple[Event, ...], list[str]]:
            nonlocal attempts
            attempts += 1
            return await self._post(name, body, ctx.domain)

        retries = self.retries if name in self.idempotent_actions else 0
        try:
            events, warnings = await call_with_retries(attempt, retries=retries, backoff=self._backoff)
        except AttemptFailedError as failure:
            return failure_outcome(name, failure, attempts=attempts, started=started)
        latency = (time.perf_counter() - started) * 1000
        if warnings:
            logger.warning("remote action %s: %s", name, "; ".join(warnings))
        note = shorten("; ".join(warnings)) if warnings else None
        return ActionOutcome(name, "ok", events, None, note, latency, attempts)

    async def _post(self, name: str, body: bytes, domain: Domain | None) -> tuple[tuple[Event, ...], list[str]]:
        """One call; raises :class:`AttemptFailedError` with the classified failure."""
        try:
            async with self._client().post(
                self.webhook_url,
                data=body,
                params=self._params,
                headers={"Content-Type": "application/json"},
                timeout=aiohttp.ClientTimeout(total=self.timeout),
            ) as resp:
                status = resp.status
                raw = await resp.read()
        except TimeoutError as exc:
            raise AttemptFailedError(
                "tool_timeout", f"the action server did not answer {name!r} within {self.timeout:g} s"
            ) from exc
        except (aiohttp.ClientConnectionError, OSError) as exc:
            raise AttemptFailedError(
                "tool_5xx",
                shorten(f"action server unreachable at {self.base_url} ({type(exc).__name__}) while running {name!r}"),
            ) from exc
        except aiohttp.ClientError as exc:
            kind: ErrorType = classify(exc)
            raise AttemptFailedError(
                kind, shorten(f"calling the action server for {name!r}: {type(exc).__name__}")
            ) from exc
        if 200 <= status <= 299:
            return self._parse(name, raw, domain)
        error = _server_error_text(raw)
        if status == 404:
            message = f"the action server has no action {name!r} (HTTP 404): {error}"
        elif status == 449:
            message = f"the action server needs the domain to run {name!r} (HTTP 449): {error}"
        elif status == 400:
            message = f"the action server rejected {name!r} (HTTP 400): {error}"
        else:
            message = f"the action server answered HTTP {status} for {name!r}: {error}"
        if 400 <= status <= 499:
            raise AttemptFailedError("tool_4xx", shorten(message))
        if 500 <= status <= 599:
            raise AttemptFailedError("tool_5xx", shorten(message))
        raise AttemptFailedError("tool_error", shorten(message))

    @staticmethod
    def _parse(name: str, raw: bytes, domain: Domain | None) -> tuple[tuple[Event, ...], list[str]]:
        try:
            data: Any = json.loads(raw)
        except ValueError as exc:
            start = raw[:80].decode("utf-8", errors="replace")
            raise AttemptFailedError(
                "tool_error", shorten(f"the action server's answer for {name!r} is not JSON: {start!r}")
            ) from exc
        if not isinstance(data, Mapping):
            raise AttemptFailedError(
                "tool_error",
                shorten(
                    f"the action server's answer for {name!r} is not an object with events and responses: {str(data)[:80]!r}"
                ),
            )
        raw_events, raw_responses = data.get("events"), data.get("responses")
        if not isinstance(raw_events, list | None) or not isinstance(raw_responses, list | None):
            raise AttemptFailedError(
                "tool_error", f"the action server's answer for {name!r}: 'events' and 'responses' must be lists"
            )
        messages, response_warnings = parse_responses(raw_responses)
        events, event_warnings = events_from_rasa(raw_events, domain=domain)
        return (*messages, *events), response_warnings + event_warnings


def _json_default(value: object) -> Any:
    """Tuples, sets and other containers that ``json`` does not know (slot values come from Python)."""
    if isinstance(value, set | frozenset):
        return sorted(value, key=repr)
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def remote_runner_from_env(env: Mapping[str, str] = os.environ) -> RemoteActionRunner | None:
    """The action-server runner ``TAIWA_ACTION_SERVER_URL`` configures, or ``None`` when unset.

    Also read: ``TAIWA_ACTION_SERVER_TIMEOUT`` (seconds, default 5), ``TAIWA_ACTION_SERVER_RETRIES``
    (default 1), ``TAIWA_ACTION_SERVER_IDEMPOTENT`` (comma-separated action names that may be
    retried) and ``TAIWA_ACTION_SERVER_TOKEN`` (sent as the ``token`` query parameter, as Rasa does).

    Raises:
        ValueError: a setting is not valid (the message says which and how to fix it).
    """
    url = env.get(URL_ENV, "").strip()
    if not url:
        return None
    timeout = _number(env, TIMEOUT_ENV, 5.0)
    if timeout <= 0:
        raise ValueError(f"{TIMEOUT_ENV} must be > 0 seconds, got {env.get(TIMEOUT_ENV)!r}")
    retries = _number(env, RETRIES_ENV, 1)
    if retries < 0 or retries != int(retries):
        raise ValueError(f"{RETRIES_ENV} must be a whole number >= 0, got {env.get(RETRIES_ENV)!r}")
    idempotent = frozenset(n.strip() for n in env.get(IDEMPOTENT_ENV, "").split(",") if n.strip())
    return RemoteActionRunner(
        url,
        timeout=timeout,
        retries=int(retries),
        idempotent_actions=idempotent,
        token=env.get(TOKEN_ENV) or None,
    )


def _number(env: Mapping[str, str], key: str, default: float) -> float:
    raw = env.get(key, "").strip()
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"{key} must be a number, got {raw!r}. Fix: e.g. {key}={default:g}") from None
