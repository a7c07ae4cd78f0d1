"""The embedded default tracker store: one SQLite file, no server.

One connection does all the work on one dedicated thread: SQLite allows a single writer at a
time anyway, a single thread needs no connection pool or cross-thread locking, and the event
loop never blocks on disk. The file runs in WAL mode (readers do not block the writer) with
``synchronous=NORMAL``: a commit is durable once the WAL is checkpointed, so a power cut
may lose the last transactions, but never corrupts the file; a crash of the process loses
nothing.

Appends take ``BEGIN IMMEDIATE``, so several processes on the same file still append
atomically; the turn lock, however, is in-process: run one server process per file.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager
from functools import partial
from os import PathLike
from pathlib import Path
from typing import TypeVar

from engine.events import Event
from engine.stores._codec import EncodedEvent, decode_event, encode_events
from engine.stores._locks import LocalLocks
from engine.stores.base import (
    DEFAULT_LOCK_TIMEOUT,
    ConcurrentWriteError,
    StoreClosedError,
    StoreUnavailableError,
    TrackerStore,
    check_since,
)

T = TypeVar("T")

SCHEMA_VERSION = 1
"""``PRAGMA user_version`` of the files this module writes."""
BUSY_TIMEOUT_MS = 5000
"""How long a write waits for another process's write transaction to end."""
_BUSY_FIRST_SLEEP = 0.0001
_BUSY_MAX_SLEEP = 0.002

_SCHEMA = """
CREATE TABLE IF NOT EXISTS taiwa_events (
    conversation_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    type TEXT NOT NULL,
    data TEXT NOT NULL,
    stored_at REAL NOT NULL,
    PRIMARY KEY (conversation_id, seq)
) WITHOUT ROWID
"""
_LENGTH = "SELECT COALESCE(MAX(seq) + 1, 0) FROM taiwa_events WHERE conversation_id = ?"
_INSERT = "INSERT INTO taiwa_events (conversation_id, seq, type, data, stored_at) VALUES (?, ?, ?, ?, ?)"


class SQLiteTrackerStore(TrackerStore):
    """Events in a SQLite file (created, with its folder, if missing)."""

    def __init__(self, path: str | PathLike[str]) -> None:
        self.path = Path(path)
        self._locks = LocalLocks()
        self._closed = False
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="taiwa-sqlite")
        try:
            self._conn = self._executor.submit(_connect, self.path).result()
        except BaseException:
            self._executor.shutdown()
            raise

    async def _run(self, job: Callable[[sqlite3.Connection], T]) -> T:
        if self._closed:
            raise StoreClosedError("sqlite")
        return await asyncio.get_running_loop().run_in_executor(self._executor, job, self._conn)

    async def append(self, conversation_id: str, events: Sequence[Event], *, expected_length: int | None = None) -> int:
        encoded = encode_events(events)
        return await self._run(
            partial(_append, conversation_id=conversation_id, events=encoded, expected=expected_length)
        )

    async def load(self, conversation_id: str, *, since: int = 0) -> list[Event]:
        check_since(since)
        return await self._run(partial(_load, conversation_id=conversation_id, since=since))

    async def length(self, conversation_id: str) -> int:
        return await self._run(partial(_length, conversation_id=conversation_id))

    async def conversations(self) -> list[str]:
        return await self._run(_conversations)

    async def delete(self, conversation_id: str) -> None:
        await self._run(partial(_delete, conversation_id=conversation_id))

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        # Queued behind any job still running, so those finish first.
        await asyncio.get_running_loop().run_in_executor(self._executor, self._conn.close)
        self._executor.shutdown()

    def lock(self, conversation_id: str, *, timeout: float = DEFAULT_LOCK_TIMEOUT) -> AbstractAsyncContextManager[None]:
        if self._closed:
            raise StoreClosedError("sqlite")
        return self._locks.hold(conversation_id, timeout)


# -- on the store's thread ----------------------------------------------------------------


def _connect(path: Path) -> sqlite3.Connection:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: no implicit transactions, this module opens them explicitly.
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    except (OSError, sqlite3.Error) as exc:
        raise StoreUnavailableError(
            f"cannot open the SQLite tracker store {str(path)!r}: {exc}. "
            "Fix: point the URL at a writable folder (sqlite:///absolute/path.db or sqlite://relative/path.db)."
        ) from exc
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreUnavailableError(
                f"the SQLite tracker store {str(path)!r} has schema version {version}, this taiwa "
                f"knows up to {SCHEMA_VERSION}. Fix: upgrade taiwa, or use another file."
            )
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        # Switching a new file to WAL does not wait for the busy handler: several server
        # workers opening one new file at once got "database is locked" here.
        _when_not_busy(conn, "PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        _when_not_busy(conn, "BEGIN IMMEDIATE")
        conn.execute(_SCHEMA)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except sqlite3.Error as exc:
        conn.close()
        raise StoreUnavailableError(
            f"cannot use {str(path)!r} as a SQLite tracker store: {exc}. "
            "Fix: point the URL at a new file, or at one this store wrote."
        ) from exc
    except BaseException:
        conn.close()
        raise
    return conn


def _length(conn: sqlite3.Connection, conversation_id: str) -> int:
    length: int = conn.execute(_LENGTH, (conversation_id,)).fetchone()[0]
    return length


def _append(conn: sqlite3.Connection, conversation_id: str, events: list[EncodedEvent], expected: int | None) -> int:
    if not events:
        length = _length(conn, conversation_id)
        if expected is not None and expected != length:
            raise ConcurrentWriteError(conversation_id, expected, length)
        return length
    # IMMEDIATE takes the write lock now, so no other process can append between the
    # length read and the insert.
    _when_not_busy(conn, "BEGIN IMMEDIATE")
    try:
        length = _length(conn, conversation_id)
        if expected is not None and expected != length:
            raise ConcurrentWriteError(conversation_id, expected, length)
        now = time.time()
        conn.executemany(_INSERT, [(conversation_id, length + i, e.type, e.data, now) for i, e in enumerate(events)])
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return length + len(events)


def _when_not_busy(conn: sqlite3.Connection, statement: str) -> None:
    """``statement`` (``BEGIN IMMEDIATE``, a journal mode switch), waiting for another
    process's lock with short sleeps.

    SQLite's own busy handler sleeps 1, 2, 5, 10, 15, 20, 25 ... ms between tries, and this
    store's one thread waits with it: two server workers appending to one file then added
    tens of ms to the turns queued behind the loser, though a write holds the lock for well
    under a millisecond. Here the wait starts at 0.1 ms and doubles up to 2 ms, for at most
    ``BUSY_TIMEOUT_MS`` in all (then the error is the usual "database is locked").
    """
    conn.execute("PRAGMA busy_timeout = 0")
    try:
        deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
        pause = _BUSY_FIRST_SLEEP
        while True:
            try:
                conn.execute(statement)
                return
            except sqlite3.OperationalError as exc:
                if exc.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY or time.monotonic() > deadline:
                    raise
            time.sleep(pause)
            pause = min(pause * 2, _BUSY_MAX_SLEEP)
    finally:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")


def _load(conn: sqlite3.Connection, conversation_id: str, since: int) -> list[Event]:
    rows = conn.execute(
        "SELECT data FROM taiwa_events WHERE conversation_id = ? AND seq >= ? ORDER BY seq", (conversation_id, since)
    ).fetchall()
    return [decode_event(data) for (data,) in rows]


def _conversations(conn: sqlite3.Connection) -> list[str]:
    return sorted(cid for (cid,) in conn.execute("SELECT DISTINCT conversation_id FROM taiwa_events"))


def _delete(conn: sqlite3.Connection, conversation_id: str) -> None:
    conn.execute("DELETE FROM taiwa_events WHERE conversation_id = ?", (conversation_id,))
