"""One Redis, or a Redis Cluster, from a URL: what the tracker store and the rate limiter share.

``redis://`` and ``rediss://`` (TLS) name one server (or a primary with replicas);
``redis+cluster://`` and ``rediss+cluster://`` name any node of a Redis Cluster, from which
redis-py learns the others and routes each command to the node holding its key's hash slot.
In a cluster a command or script may only touch keys of one slot: the callers keep every
multi-key operation to one conversation's or one bucket's key (see ``engine/stores/redis.py``).
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from redis.asyncio import Redis, RedisCluster

CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}
SCHEMES = ("redis", "rediss", *CLUSTER_SCHEMES)

AnyRedis = Redis | RedisCluster


def is_cluster_url(url: str) -> bool:
    return urlsplit(url).scheme.lower() in CLUSTER_SCHEMES


def redis_from_url(url: str, **options: Any) -> AnyRedis:
    """A client for ``url`` (one of :data:`SCHEMES`); connects on first use."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme in CLUSTER_SCHEMES:
        plain = urlunsplit(parts._replace(scheme=CLUSTER_SCHEMES[scheme], path=""))
        return RedisCluster.from_url(plain, **options)
    return Redis.from_url(url, **options)


class ClusterReady:
    """Await it before a command: a cluster client learns its nodes once, first.

    redis-py's asyncio ``RedisCluster`` sets itself up on its first command; when many tasks
    send their first commands at once, some get connections that another task's set-up has
    reset (``AttributeError: 'NoneType' object has no attribute 'writelines'``, seen here
    with 50 conversations at once). One set-up, awaited by all, avoids that. A no-op for a
    single Redis.
    """

    def __init__(self, client: AnyRedis) -> None:
        self._client = client
        self._done = not isinstance(client, RedisCluster)
        self._lock: asyncio.Lock | None = None

    async def __call__(self) -> None:
        if self._done:
            return
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if not self._done:
                assert isinstance(self._client, RedisCluster)
                await self._client.initialize()
                self._done = True
