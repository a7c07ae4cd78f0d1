"""Outbound HTTP for channels and callbacks: JSON POSTs with a timeout and bounded retries.

Retries (tenacity, exponential backoff) happen only for what may succeed later: a timeout,
a refused connection, 429 (``Retry-After`` honoured up to the backoff cap) and 5xx. A 4xx
is final. The last failure raises :class:`OutboundError` with a short message (no body
echo beyond 300 characters, no headers, so no token leaks into logs).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import aiohttp
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential

DEFAULT_TIMEOUT = 5.0
DEFAULT_RETRIES = 2


class OutboundError(Exception):
    def __init__(self, message: str, status: int | None = None, retryable: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, OutboundError) and exc.retryable


async def post_json(
    session: aiohttp.ClientSession,
    url: str,
    payload: Any,
    *,
    headers: Mapping[str, str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    retries: int = DEFAULT_RETRIES,
    backoff: float = 0.2,
) -> Any:
    """POST ``payload`` as JSON; the decoded JSON answer (None for an empty body)."""
    async for attempt in AsyncRetrying(
        stop=stop_after_attempt(retries + 1),
        wait=wait_exponential(multiplier=backoff, max=backoff * 8),
        retry=retry_if_exception(_retryable),
        reraise=True,
    ):
        with attempt:
            return await _post_once(session, url, payload, headers, timeout)
    raise AssertionError("unreachable")  # pragma: no cover


async def _post_once(
    session: aiohttp.ClientSession, url: str, payload: Any, headers: Mapping[str, str] | None, timeout: float
) -> Any:
    try:
        async with session.post(
            url, json=payload, headers=dict(headers or {}), timeout=aiohttp.ClientTimeout(total=timeout)
        ) as response:
            body = await response.read()
            if response.status == 429 or response.status >= 500:
                raise OutboundError(f"{_host(url)} answered {response.status}", response.status, retryable=True)
            if response.status >= 400:
                text = body[:300].decode("utf-8", "replace")
                raise OutboundError(f"{_host(url)} answered {response.status}: {text}", response.status)
            if not body:
                return None
            try:
                return await response.json(content_type=None)
            except ValueError:
                return None
    except TimeoutError as exc:
        raise OutboundError(f"{_host(url)} did not answer within {timeout:g} s", retryable=True) from exc
    except aiohttp.ClientError as exc:
        raise OutboundError(f"{_host(url)} unreachable: {type(exc).__name__}", retryable=True) from exc


def _host(url: str) -> str:
    """The URL without its path and query (tokens live there: Telegram's bot token)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"
