"""The tracker stores as test backends: memory, SQLite, and Redis/PostgreSQL with a fresh
key prefix / table per test, removed afterwards (shared by the store and engine tests)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from engine.stores import TrackerStore, open_store

Body = Callable[[TrackerStore], Awaitable[None]]


@dataclass(frozen=True)
class Backend:
    name: str
    url: str

    def open(self) -> TrackerStore:
        return open_store(self.url)

    def run(self, body: Body) -> None:
        async def main() -> None:
            async with self.open() as store:
                await body(store)

        asyncio.run(main())


@contextmanager
def store_backend(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    unique = uuid.uuid4().hex[:12]
    if kind == "memory":
        yield Backend(kind, "memory://")
    elif kind == "sqlite":
        yield Backend(kind, f"sqlite://{tmp_path}/events.db")
    elif kind == "redis":
        import redis

        base: str = request.getfixturevalue("redis_url")
        prefix = f"taiwa-test-{unique}:"
        try:
            yield Backend(kind, f"{base}{'&' if '?' in base else '?'}prefix={prefix}")
        finally:
            client = redis.Redis.from_url(base)
            try:
                keys = list(client.scan_iter(match=f"{prefix}*"))
                if keys:
                    client.delete(*keys)
            finally:
                client.close()
    elif kind == "redis-cluster":
        # The cluster lives for the session only: a prefix per test keeps tests apart.
        base = request.getfixturevalue("redis_cluster_url")
        yield Backend(kind, f"{base}?prefix=taiwa-test-{unique}:")
    else:
        import psycopg

        base = request.getfixturevalue("postgres_url")
        table = f"taiwa_test_{unique}"
        try:
            yield Backend(kind, f"{base}{'&' if '?' in base else '?'}table={table}")
        finally:
            with psycopg.connect(base, autocommit=True) as conn:
                conn.execute(f"DROP TABLE IF EXISTS {table}")


def free_local_port() -> int:
    """A port on 127.0.0.1 nothing listens on (for "server down" tests)."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
