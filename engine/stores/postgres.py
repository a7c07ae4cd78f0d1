"""Events in PostgreSQL: one table, for deployments with several server processes.

The driver is psycopg 3 (``psycopg[binary,pool]``): it ships type hints (``mypy --strict``
needs no stubs), its async pool lives in ``psycopg_pool``, and it cancels the server-side
query when a task is cancelled, so a cancelled lock wait leaves no stuck connection.

The table (default ``taiwa_events``, created on first use) has one row per event, with
``(conversation_id, seq)`` as primary key and the event in a JSONB ``data`` column. An
append is a single ``INSERT ... SELECT`` that numbers the rows after the current maximum
``seq``: two concurrent appends to one conversation collide on the primary key, and the
loser either retries (no ``expected_length``) or raises :class:`ConcurrentWriteError`.

The turn lock is a session-level advisory lock, ``pg_advisory_lock(hashtextextended(key, 0))``
with ``key = "taiwa:{table}:{conversation_id}"`` (the table name keeps deployments that share
a database apart), taken on a connection of a second, separate pool and held for the whole
turn. Separate, because the holder needs data connections for its turn: if lock waiters
could take every data connection, the holder could never finish. If the holder's process
dies, PostgreSQL ends the session and releases the lock.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import psycopg
from psycopg import AsyncConnection, sql
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from engine.events import Event, event_from_dict
from engine.stores._codec import encode_events
from engine.stores._locks import LocalLocks
from engine.stores.base import (
    DEFAULT_LOCK_TIMEOUT,
    ConcurrentWriteError,
    LockTimeoutError,
    StoreClosedError,
    StoreError,
    StoreUnavailableError,
    TrackerStore,
    check_since,
)

logger = logging.getLogger(__name__)

DEFAULT_TABLE = "taiwa_events"
MAX_APPEND_ATTEMPTS = 100
"""Retries of an append without ``expected_length`` that keeps losing races to other writers."""

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")

_Pool = AsyncConnectionPool[AsyncConnection[Any]]


def parse_table(name: str) -> tuple[str, ...]:
    """``table`` or ``schema.table`` as identifier parts; ``ValueError`` for anything else."""
    parts = tuple(name.split("."))
    if len(parts) > 2 or not all(_IDENTIFIER.fullmatch(p) for p in parts):
        raise ValueError(
            f"table {name!r} is not a plain name: use letters, digits and underscores "
            "(up to 63), optionally as schema.table"
        )
    return parts


class PostgresTrackerStore(TrackerStore):
    """Events and turn locks in PostgreSQL, shared by every process that uses the same table."""

    def __init__(
        self,
        conninfo: str = "postgresql://postgres@127.0.0.1:5432/postgres",
        *,
        table: str = DEFAULT_TABLE,
        pool_size: int = 10,
        lock_pool_size: int = 10,
        connect_timeout: float = 10.0,
    ) -> None:
        """Set up; the pools connect on first use (``conninfo`` is a libpq URL or key=value string).

        Args:
            conninfo: Where the database is.
            table: The events table, ``name`` or ``schema.name``; created if missing.
            pool_size: Connections for reads and appends.
            lock_pool_size: Connections that hold turn locks: the most conversations this
                process can run a turn for at once.
            connect_timeout: Seconds to wait for the first connection.
        """
        self.conninfo = conninfo
        self.table = table
        self._table = sql.Identifier(*parse_table(table))
        self.pool_size = pool_size
        self.lock_pool_size = lock_pool_size
        self.connect_timeout = connect_timeout
        self._pools: tuple[_Pool, _Pool] | None = None
        self._opening = asyncio.Lock()
        self._locks = LocalLocks()
        self._closed = False
        t = self._table
        self._sql_length = sql.SQL("SELECT coalesce(max(seq) + 1, 0) FROM {} WHERE conversation_id = %s").format(t)
        self._sql_load = sql.SQL("SELECT data FROM {} WHERE conversation_id = %s AND seq >= %s ORDER BY seq").format(t)
        self._sql_delete = sql.SQL("DELETE FROM {} WHERE conversation_id = %s").format(t)
        self._sql_conversations = sql.SQL("SELECT DISTINCT conversation_id FROM {}").format(t)
        # One statement, one round trip: the rows are numbered from the length in the same
        # snapshot, and a concurrent append at the same length hits the primary key.
        self._sql_append = sql.SQL(
            """
            WITH base AS (
                SELECT coalesce(max(seq) + 1, 0) AS n FROM {t} WHERE conversation_id = %(cid)s
            ), inserted AS (
                INSERT INTO {t} (conversation_id, seq, type, data)
                SELECT %(cid)s, base.n + e.ord - 1, e.type, e.data::jsonb
                FROM base, unnest(%(types)s::text[], %(data)s::text[]) WITH ORDINALITY AS e(type, data, ord)
                WHERE %(expected)s::integer IS NULL OR base.n = %(expected)s::integer
                RETURNING 1
            )
            SELECT base.n, (SELECT count(*) FROM inserted) FROM base
            """
        ).format(t=t)

    # -- connections ------------------------------------------------------------------

    async def _data_pool(self) -> _Pool:
        return (await self._ready())[0]

    async def _ready(self) -> tuple[_Pool, _Pool]:
        if self._closed:
            raise StoreClosedError("postgresql")
        if self._pools is None:
            async with self._opening:
                if self._pools is None:
                    self._pools = await self._open()
        return self._pools

    async def _open(self) -> tuple[_Pool, _Pool]:
        def make(size: int, name: str) -> _Pool:
            return AsyncConnectionPool(
                self.conninfo,
                min_size=1,
                max_size=size,
                open=False,
                name=name,
                kwargs={"autocommit": True},
                timeout=self.connect_timeout,
            )

        data = make(self.pool_size, "taiwa-store")
        locks = make(self.lock_pool_size, "taiwa-store-locks")
        try:
            await data.open(wait=True, timeout=self.connect_timeout)
            await locks.open()
            await self._create_table(data)
        except BaseException as exc:
            await data.close()
            await locks.close()
            if isinstance(exc, PoolTimeout):
                raise StoreUnavailableError(
                    f"no connection to the PostgreSQL tracker store within {self.connect_timeout:g} s "
                    f"({_redact(self.conninfo)}). Fix: check that the server runs and the URL's "
                    "host, port, user and database are right."
                ) from exc
            raise
        return data, locks

    async def _create_table(self, pool: _Pool) -> None:
        async with pool.connection() as conn, conn.transaction():
            # Processes starting together would race on CREATE TABLE IF NOT EXISTS.
            await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (f"taiwa:schema:{self.table}",))
            await conn.execute(
                sql.SQL(
                    """
                    CREATE TABLE IF NOT EXISTS {} (
                        conversation_id text NOT NULL,
                        seq integer NOT NULL,
                        type text NOT NULL,
                        data jsonb NOT NULL,
                        stored_at timestamptz NOT NULL DEFAULT now(),
                        PRIMARY KEY (conversation_id, seq)
                    )
                    """
                ).format(self._table)
            )

    # -- events -----------------------------------------------------------------------

    async def append(self, conversation_id: str, events: Sequence[Event], *, expected_length: int | None = None) -> int:
        encoded = encode_events(events)
        pool = await self._data_pool()
        params = {
            "cid": conversation_id,
            "types": [e.type for e in encoded],
            "data": [e.data for e in encoded],
            "expected": expected_length,
        }
        for _ in range(MAX_APPEND_ATTEMPTS):
            try:
                async with pool.connection() as conn:
                    row = await (await conn.execute(self._sql_append, params)).fetchone()
            except psycopg.errors.UniqueViolation:
                if expected_length is None:
                    continue  # another append took these numbers first: number after it
                raise ConcurrentWriteError(
                    conversation_id, expected_length, await self.length(conversation_id)
                ) from None
            except psycopg.errors.UntranslatableCharacter as exc:
                raise ValueError(
                    f"PostgreSQL cannot store the events: {exc.diag.message_primary} (JSONB has no \\u0000)"
                ) from exc
            if row is None:  # pragma: no cover - the query always returns one row
                raise StoreError("the append query returned no row")
            before, inserted = int(row[0]), int(row[1])
            if expected_length is not None and before != expected_length:
                raise ConcurrentWriteError(conversation_id, expected_length, before)
            return before + inserted
        raise StoreError(
            f"appending to conversation {conversation_id!r} lost {MAX_APPEND_ATTEMPTS} races to other writers. "
            "Fix: append inside `async with store.lock(conversation_id)`."
        )

    async def load(self, conversation_id: str, *, since: int = 0) -> list[Event]:
        check_since(since)
        pool = await self._data_pool()
        async with pool.connection() as conn:
            rows = await (await conn.execute(self._sql_load, (conversation_id, since))).fetchall()
        return [event_from_dict(data) for (data,) in rows]

    async def length(self, conversation_id: str) -> int:
        pool = await self._data_pool()
        async with pool.connection() as conn:
            row = await (await conn.execute(self._sql_length, (conversation_id,))).fetchone()
        return int(row[0]) if row else 0

    async def conversations(self) -> list[str]:
        pool = await self._data_pool()
        async with pool.connection() as conn:
            rows = await (await conn.execute(self._sql_conversations)).fetchall()
        return sorted(str(cid) for (cid,) in rows)

    async def delete(self, conversation_id: str) -> None:
        pool = await self._data_pool()
        async with pool.connection() as conn:
            await conn.execute(self._sql_delete, (conversation_id,))

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        async with self._opening:
            if self._pools is not None:
                for pool in self._pools:
                    await pool.close()
                self._pools = None

    # -- turn locks -------------------------------------------------------------------

    def lock(self, conversation_id: str, *, timeout: float = DEFAULT_LOCK_TIMEOUT) -> AbstractAsyncContextManager[None]:
        if self._closed:
            raise StoreClosedError("postgresql")
        return self._hold(conversation_id, timeout)

    @asynccontextmanager
    async def _hold(self, conversation_id: str, timeout: float) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        # This process's tasks queue on a local lock first: one lock connection per conversation.
        async with self._locks.hold(conversation_id, timeout):
            _, pool = await self._ready()
            try:
                conn = await pool.getconn(timeout=max(0.0, deadline - loop.time()))
            except PoolTimeout:
                raise LockTimeoutError(conversation_id, timeout) from None
            key = f"taiwa:{self.table}:{conversation_id}"
            try:
                # lock_timeout 0 would mean "wait forever": wait at least 1 ms. Both statements in
                # one round trip (several statements are allowed in a query without parameters).
                wait_ms = max(1, math.ceil((deadline - loop.time()) * 1000))
                await conn.execute(
                    sql.SQL("SET lock_timeout = {}; SELECT pg_advisory_lock(hashtextextended({}, 0))").format(
                        sql.Literal(wait_ms), sql.Literal(key)
                    )
                )
            except psycopg.errors.LockNotAvailable:
                await pool.putconn(conn)
                raise LockTimeoutError(conversation_id, timeout) from None
            except BaseException:
                await _discard(pool, conn)
                raise
            try:
                yield
            finally:
                await self._release(pool, conn, key)

    async def _release(self, pool: _Pool, conn: AsyncConnection[Any], key: str) -> None:
        try:
            await conn.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", (key,))
        except BaseException as exc:
            # Ending the session is the other way to release its locks.
            logger.warning("store.lock.unlock_failed key=%r: %r; closing its connection", key, exc)
            await _discard(pool, conn)
            if not isinstance(exc, psycopg.Error):
                raise
        else:
            await pool.putconn(conn)


async def _discard(pool: _Pool, conn: AsyncConnection[Any]) -> None:
    """Close a connection in an unknown state (its session, and its locks, end) and return it."""
    await conn.close()
    await pool.putconn(conn)


def _redact(conninfo: str) -> str:
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", conninfo)
