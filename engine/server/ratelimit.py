"""Per-sender rate limits: a token bucket per key (``capacity`` requests at once, refilled at
``rate`` per second). Over the limit: 429 with ``Retry-After`` (whole seconds, at least 1).

Two implementations of one interface (``await limiter.take(keys)``):

- :class:`TokenBuckets`, in process: each worker has its own buckets (the default);
- :class:`RedisTokenBuckets`, shared by every worker and instance through Redis
  (``TAIWA_RATE_LIMIT_STORE=redis://...``). The bucket arithmetic runs in one Lua script on the
  Redis server's clock, so instances with skewed clocks agree. When Redis is unreachable the
  request passes (a limiter must not take the assistant down) and ``on_error`` is told, which
  the server counts in ``taiwa_rate_limit_store_errors_total`` and logs.
"""

from __future__ import annotations

import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from redis.exceptions import RedisClusterException, RedisError

from engine.stores.redis_client import SCHEMES, ClusterReady, is_cluster_url, redis_from_url

log = logging.getLogger("taiwa.server")

MAX_KEYS = 100_000
"""Buckets kept in process (least recently used dropped beyond this: a dropped bucket starts full)."""


@dataclass(frozen=True)
class Bucket:
    """One limit: its key and its size."""

    key: str
    capacity: float
    rate: float

    def __post_init__(self) -> None:
        if self.capacity < 1 or self.rate <= 0:
            raise ValueError("rate limit: capacity must be >= 1 and rate > 0")


class Limiter(Protocol):
    async def take(self, buckets: Sequence[Bucket]) -> float:
        """Take one token from each bucket in order, stopping at the first that is empty:
        0.0 when the request may pass, else the seconds until it would."""
        ...

    async def close(self) -> None: ...


@dataclass
class _State:
    tokens: float
    at: float


class TokenBuckets:
    """In-process buckets."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._state: OrderedDict[str, _State] = OrderedDict()

    def take_one(self, bucket: Bucket) -> float:
        now = self.clock()
        state = self._state.get(bucket.key)
        if state is None:
            state = self._state[bucket.key] = _State(bucket.capacity, now)
            if len(self._state) > MAX_KEYS:
                self._state.popitem(last=False)
        else:
            self._state.move_to_end(bucket.key)
            state.tokens = min(bucket.capacity, state.tokens + (now - state.at) * bucket.rate)
            state.at = now
        if state.tokens >= 1:
            state.tokens -= 1
            return 0.0
        return (1 - state.tokens) / bucket.rate

    async def take(self, buckets: Sequence[Bucket]) -> float:
        for bucket in buckets:
            wait = self.take_one(bucket)
            if wait > 0:
                return wait
        return 0.0

    async def close(self) -> None:
        return None


# KEYS: the buckets; ARGV: capacity and rate of each, in the same order. Returns the wait as a
# string (Lua numbers become integer replies).
_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
for i, key in ipairs(KEYS) do
  local capacity = tonumber(ARGV[2 * i - 1])
  local rate = tonumber(ARGV[2 * i])
  local b = redis.call('HMGET', key, 'tokens', 'at')
  local tokens = tonumber(b[1]) or capacity
  local at = tonumber(b[2]) or now
  tokens = math.min(capacity, tokens + math.max(0, now - at) * rate)
  local wait = 0
  if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / rate end
  redis.call('HSET', key, 'tokens', tostring(tokens), 'at', tostring(now))
  redis.call('PEXPIRE', key, math.ceil(capacity / rate * 1000) + 1000)
  if wait > 0 then return tostring(wait) end
end
return '0'
"""


class RedisTokenBuckets:
    """Buckets in Redis, shared by every process that uses the same ``prefix``."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "taiwa:ratelimit:",
        timeout: float = 0.25,
        on_error: Callable[[BaseException], None] | None = None,
    ) -> None:
        self.client = redis_from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
        self._ready = ClusterReady(self.client)
        self._one_key_per_call = is_cluster_url(url)
        """In a Redis Cluster a script touches one hash slot: one call per bucket."""
        self.prefix = prefix
        self.on_error = on_error
        self._script = self.client.register_script(_TAKE)
        self._warned_at = 0.0

    async def take(self, buckets: Sequence[Bucket]) -> float:
        keys = [self.prefix + b.key for b in buckets]
        args: list[float] = []
        for b in buckets:
            args += [b.capacity, b.rate]
        try:
            await self._ready()
            if not self._one_key_per_call:
                return _seconds(await self._script(keys=keys, args=args))
            for i, key in enumerate(keys):  # in order, stopping at the first empty bucket, as the script does
                wait = _seconds(await self._script(keys=[key], args=args[2 * i : 2 * i + 2]))
                if wait > 0:
                    return wait
            return 0.0
        except (RedisError, RedisClusterException, OSError) as exc:  # a cluster's own errors are not RedisErrors
            self._failed(exc)
            return 0.0

    def _failed(self, exc: BaseException) -> None:
        if self.on_error is not None:
            self.on_error(exc)
        now = time.monotonic()
        if now - self._warned_at > 10:  # one line per 10 s, not one per request
            self._warned_at = now
            log.warning("rate limit store unreachable, requests pass unlimited: %s: %s", type(exc).__name__, exc)

    async def close(self) -> None:
        await self.client.aclose()


def _seconds(reply: bytes | str) -> float:
    return float(reply.decode() if isinstance(reply, bytes) else reply)


def redis_limiter(url: str, on_error: Callable[[BaseException], None] | None = None) -> RedisTokenBuckets:
    """``redis://host:port/db?prefix=taiwa:ratelimit:`` (``rediss://`` for TLS,
    ``redis+cluster://host:port`` for a Redis Cluster)."""
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES or not parts.hostname:
        raise ValueError(
            f"{url!r}: expected redis://HOST:PORT/DB or redis+cluster://HOST:PORT (optionally ?prefix=...)"
        )
    query = dict(parse_qsl(parts.query))
    prefix = query.pop("prefix", "taiwa:ratelimit:")
    plain = urlunsplit(parts._replace(query=urlencode(query)))
    return RedisTokenBuckets(plain, prefix=prefix, on_error=on_error)


def retry_after(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))
