"""Events in Redis: a list per conversation, for deployments with several server processes.

Keys, under a configurable prefix (default ``taiwa:``):

- ``{prefix}events:{conversation_id}``: a list, one JSON row per event
  (``{"seq", "conversation_id", "type", "stored_at", "data"}``);
- ``{prefix}conversations``: the set of conversation ids that have events;
- ``{prefix}lock:{conversation_id}``: the turn lock while a turn runs.

An append is one Lua script on the conversation's list (check the length, push the rows), so
it is atomic and its ``expected_length`` check cannot race. The id joins the set of
conversations just before a conversation's first append (a separate command: in a Redis
Cluster the set and the list live in different hash slots, and a script may only touch one
slot), so a crash in between leaves at worst a listed conversation without events, never
events that ``conversations()`` misses. The turn lock is a ``redis.asyncio`` lock with a TTL
(``lock_ttl``, default 30 s) so that a crashed holder blocks the conversation for at most that
long; a live holder renews it every ``lock_ttl / 3`` seconds, so a long turn keeps it. Every
command and script touches one key: the store works on one Redis, a primary with replicas,
or a Redis Cluster (``redis+cluster://``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager

from redis.asyncio.lock import Lock
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import LockNotOwnedError, RedisClusterException, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from engine.events import Event, event_from_dict
from engine.stores._codec import encode_events
from engine.stores._locks import LocalLocks
from engine.stores.base import (
    DEFAULT_LOCK_TIMEOUT,
    ConcurrentWriteError,
    LockTimeoutError,
    StoreClosedError,
    StoreUnavailableError,
    TrackerStore,
    check_since,
)
from engine.stores.redis_client import ClusterReady, redis_from_url

logger = logging.getLogger(__name__)

DEFAULT_PREFIX = "taiwa:"
DEFAULT_LOCK_TTL = 30.0
"""Seconds a turn lock outlives a crashed holder."""
DEFAULT_LOCK_POLL = 0.02
"""Seconds between tries while another process holds a turn lock."""

# KEYS[1]: the conversation's list (the only key: one hash slot in a cluster).
# ARGV[1]: the expected length or -1, ARGV[2...]: the rows, each a JSON object without its
# opening brace: the script adds '{"seq":N,' so the sequence number is the one the row gets.
_APPEND_LUA = """
local length = redis.call('LLEN', KEYS[1])
local expected = tonumber(ARGV[1])
if expected >= 0 and expected ~= length then
  return {0, length}
end
for i = 2, #ARGV do
  redis.call('RPUSH', KEYS[1], '{"seq":' .. (length + i - 2) .. ',' .. ARGV[i])
end
return {1, length + #ARGV - 1}
"""


class RedisTrackerStore(TrackerStore):
    """Events and turn locks in Redis, shared by every process that uses the same prefix."""

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        prefix: str = DEFAULT_PREFIX,
        lock_ttl: float = DEFAULT_LOCK_TTL,
        lock_poll: float = DEFAULT_LOCK_POLL,
    ) -> None:
        """Connect lazily (on the first command) to the Redis at ``url`` (``redis-py`` syntax;
        ``redis+cluster://`` for a Redis Cluster)."""
        if lock_ttl <= 0:
            raise ValueError(f"lock_ttl must be > 0 seconds, got {lock_ttl}")
        self.prefix = prefix
        self.lock_ttl = lock_ttl
        self.lock_poll = lock_poll
        self._client = redis_from_url(url)
        self._ready = ClusterReady(self._client)
        self._append_script = self._client.register_script(_APPEND_LUA)
        self._locks = LocalLocks()
        self._closed = False

    def _events_key(self, conversation_id: str) -> str:
        return f"{self.prefix}events:{conversation_id}"

    @property
    def _conversations_key(self) -> str:
        return f"{self.prefix}conversations"

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError("redis")

    @contextmanager
    def _unavailable(self) -> Iterator[None]:
        """redis-py's connection errors as :class:`StoreUnavailableError`, like the other stores."""
        try:
            yield
        except (RedisConnectionError, RedisTimeoutError, RedisClusterException) as exc:
            raise StoreUnavailableError(
                f"the Redis tracker store does not answer ({type(exc).__name__}). Fix: check that the "
                "server runs and the URL's host, port and password are right."
            ) from exc

    async def append(self, conversation_id: str, events: Sequence[Event], *, expected_length: int | None = None) -> int:
        self._check_open()
        encoded = encode_events(events)
        head = f'"conversation_id":{json.dumps(conversation_id)},"stored_at":{time.time():.6f},"type":'
        rows = [f'{head}{json.dumps(e.type)},"data":{e.data}}}' for e in encoded]
        expected = -1 if expected_length is None else expected_length
        with self._unavailable():
            await self._ready()
            if rows and expected <= 0:  # a first append (or one that does not say): list the id
                await self._client.sadd(self._conversations_key, conversation_id)
            ok, length = await self._append_script(keys=[self._events_key(conversation_id)], args=[expected, *rows])
        if not ok:
            raise ConcurrentWriteError(conversation_id, expected, int(length))
        return int(length)

    async def load(self, conversation_id: str, *, since: int = 0) -> list[Event]:
        self._check_open()
        check_since(since)
        with self._unavailable():
            await self._ready()
            rows = await self._client.lrange(self._events_key(conversation_id), since, -1)
        return [_decode_row(row) for row in rows]

    async def length(self, conversation_id: str) -> int:
        self._check_open()
        with self._unavailable():
            await self._ready()
            length: int = await self._client.llen(self._events_key(conversation_id))
        return length

    async def conversations(self) -> list[str]:
        self._check_open()
        with self._unavailable():
            await self._ready()
            members = await self._client.smembers(self._conversations_key)
        return sorted(m.decode() if isinstance(m, bytes) else m for m in members)

    async def delete(self, conversation_id: str) -> None:
        self._check_open()
        with self._unavailable():
            await self._ready()
            # Two slots in a cluster, so two commands: the events first, then the listing.
            await self._client.delete(self._events_key(conversation_id))
            await self._client.srem(self._conversations_key, conversation_id)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._client.aclose()

    def lock(self, conversation_id: str, *, timeout: float = DEFAULT_LOCK_TIMEOUT) -> AbstractAsyncContextManager[None]:
        self._check_open()
        return self._hold(conversation_id, timeout)

    @asynccontextmanager
    async def _hold(self, conversation_id: str, timeout: float) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        # This process's tasks queue on a local lock first: only one of them polls Redis.
        async with self._locks.hold(conversation_id, timeout):
            lock = Lock(
                self._client,
                f"{self.prefix}lock:{conversation_id}",
                timeout=self.lock_ttl,
                sleep=self.lock_poll,
                blocking_timeout=max(0.0, deadline - loop.time()),
                thread_local=False,
            )
            with self._unavailable():
                await self._ready()
                acquired = await lock.acquire()
            if not acquired:
                raise LockTimeoutError(conversation_id, timeout)
            keeper = asyncio.create_task(self._keep_alive(lock, conversation_id))
            try:
                yield
            finally:
                keeper.cancel()
                await asyncio.wait([keeper])
                try:
                    await lock.release()
                except LockNotOwnedError:
                    # The TTL ran out (the renewals failed): another process may have run a
                    # turn meanwhile. Appends with expected_length still refuse to interleave.
                    logger.warning("store.lock.lost conversation_id=%r (held past its TTL)", conversation_id)

    async def _keep_alive(self, lock: Lock, conversation_id: str) -> None:
        """Reset the lock's TTL every third of it, for as long as the turn holds it."""
        while True:
            await asyncio.sleep(self.lock_ttl / 3)
            try:
                await lock.reacquire()
            except LockNotOwnedError:
                logger.warning("store.lock.lost conversation_id=%r (expired before renewal)", conversation_id)
                return
            except RedisError as exc:  # a blip: the TTL leaves two more chances
                logger.warning("store.lock.renewal_failed conversation_id=%r: %s", conversation_id, exc)


def _decode_row(row: bytes | str) -> Event:
    return event_from_dict(json.loads(row)["data"])
