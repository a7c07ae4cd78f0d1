"""The embedded default tracker store: one SQLite file, no server.

The file runs in WAL mode with ``synchronous=NORMAL``: readers never wait for the writer, a
commit is durable once the WAL is checkpointed, so a power cut may lose the last transactions
but never corrupts the file, and a crash of the process loses nothing.

Statements run on the event loop's thread, on one connection that never waits inside SQLite
(``busy_timeout`` 0): a read or a commit takes microseconds, less than handing it to a
thread would, and the thread that holds the file's write lock is the one that already holds
the GIL. Under load that was the slow part of running them on a thread of their own: that
thread held the write lock while it waited its turn for the GIL (the loop's thread keeps it
up to the 5 ms switch interval), and the other server worker's appends waited behind it. When the file is locked by another process,
the statement is retried after a short ``asyncio.sleep``, so the loop serves other turns
meanwhile.

* **Appends** queued during one pass of the event loop are committed together (group
  commit): one ``BEGIN IMMEDIATE`` and one WAL write for a batch of turns, each still checked
  against its ``expected_length`` and failing alone.
* **Checkpoints**, which copy the WAL into the file and fsync it, run on a background thread
  with a connection of their own (``wal_autocheckpoint`` is off on the loop's connection), so
  no commit waits for the disk; a WAL past :data:`WAL_RESTART_FRAMES` is checkpointed with
  ``RESTART`` so that it starts over instead of growing. ``conversations()`` and ``delete()``
  also run on that thread.

Appends take ``BEGIN IMMEDIATE``, so several processes on the same file (``taiwa run
--workers N``) still append atomically; the turn lock is in-process, and ``expected_length``
turns a turn raced by another process into a :class:`ConcurrentWriteError`.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
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

log = logging.getLogger("taiwa.stores.sqlite")

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
_SELECT = "SELECT data FROM taiwa_events WHERE conversation_id = ? AND seq >= ? ORDER BY seq"
MAX_BATCH = 256
"""Appends committed in one transaction at most (bounds how long the write lock is held)."""
CHECKPOINT_EVERY = 64
"""Commits of this process between two background checkpoints."""
WAL_RESTART_FRAMES = 4096
"""WAL frames (pages, 16 MB at 4 KiB) past which a checkpoint waits for writers and restarts
the WAL: with writes never pausing, passive checkpoints alone let it grow without bound."""
WAL_SIZE_LIMIT = 64 * 1024 * 1024
"""Bytes a restarted WAL file is truncated to (``journal_size_limit``)."""


@dataclass(slots=True)
class _Append:
    conversation_id: str
    events: list[EncodedEvent]
    expected: int | None
    done: asyncio.Future[int]


class SQLiteTrackerStore(TrackerStore):
    """Events in a SQLite file (created, with its folder, if missing)."""

    def __init__(self, path: str | PathLike[str]) -> None:
        self.path = Path(path)
        self._locks = LocalLocks()
        self._closed = False
        self._pending: list[_Append] = []
        self._flusher: asyncio.Task[None] | None = None
        self._commits = 0
        self._checkpoint: asyncio.Future[int] | None = None
        self._writes_open = asyncio.Event()
        """Cleared while a RESTART checkpoint runs: this process's appends then wait for it
        (it cannot take the write lock from a writer that never pauses)."""
        self._writes_open.set()
        self._conn = _connect(self.path)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="taiwa-sqlite")
        try:
            self._conn.execute("PRAGMA busy_timeout = 0")
            self._conn.execute("PRAGMA wal_autocheckpoint = 0")
            self._background = self._executor.submit(_connect, self.path).result()
        except BaseException:
            self._conn.close()
            self._executor.shutdown()
            raise

    async def _run(self, job: Callable[[sqlite3.Connection], T]) -> T:
        """``job(connection)`` on the background thread (its connection waits for locks)."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, job, self._background)

    async def _when_free(self, statements: Callable[[], T]) -> T:
        """``statements()`` on the loop's connection, tried again after a short sleep while
        another connection holds the lock it needs (for at most ``BUSY_TIMEOUT_MS``)."""
        pauses = _busy_pauses()
        while True:
            try:
                return statements()
            except sqlite3.OperationalError as exc:
                pause = next(pauses, None) if _is_busy(exc) else None
                if pause is None:
                    raise
            await asyncio.sleep(pause)

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError("sqlite")

    async def append(self, conversation_id: str, events: Sequence[Event], *, expected_length: int | None = None) -> int:
        self._check_open()
        encoded = encode_events(events)
        if not encoded:
            length = await self.length(conversation_id)
            if expected_length is not None and expected_length != length:
                raise ConcurrentWriteError(conversation_id, expected_length, length)
            return length
        loop = asyncio.get_running_loop()
        item = _Append(conversation_id, encoded, expected_length, loop.create_future())
        self._pending.append(item)
        if self._flusher is None:
            self._flusher = loop.create_task(self._flush())
        return await item.done

    async def _flush(self) -> None:
        """Commit the queued appends, a batch per transaction, until none is left."""
        conn = self._conn
        try:
            while self._pending:
                await self._writes_open.wait()
                batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
                jobs = [(a.conversation_id, a.events, a.expected) for a in batch]
                try:
                    outcomes: list[int | Exception] = await self._when_free(partial(_append_batch, conn, jobs))
                except asyncio.CancelledError:
                    for a in (*batch, *self._pending):
                        a.done.cancel()
                    self._pending = []
                    raise
                except Exception as exc:  # noqa: BLE001 - the batch is rolled back
                    outcomes = [exc] if len(jobs) == 1 else [await self._alone(job) for job in jobs]
                for a, outcome in zip(batch, outcomes, strict=True):
                    if a.done.done():  # its caller was cancelled; the append itself happened
                        continue
                    if isinstance(outcome, BaseException):
                        a.done.set_exception(outcome)
                    else:
                        a.done.set_result(outcome)
                self._commits += 1
                if self._commits % CHECKPOINT_EVERY == 0:
                    self._start_checkpoint()
        finally:
            self._flusher = None

    async def _alone(self, job: tuple[str, list[EncodedEvent], int | None]) -> int | Exception:
        """``job`` appended in a transaction of its own: its new length, or its error (after a
        batch failed, so that an error fails only the append it belongs to)."""
        try:
            return (await self._when_free(partial(_append_batch, self._conn, [job])))[0]
        except Exception as exc:  # noqa: BLE001 - the outcome of this append only
            return exc

    def _start_checkpoint(self, restart: bool = False) -> None:
        """A PASSIVE checkpoint on the background thread; a WAL past ``WAL_RESTART_FRAMES``
        is then checkpointed with RESTART while this process's appends wait."""
        if restart or self._checkpoint is None or self._checkpoint.done():
            if restart:
                self._writes_open.clear()
            self._checkpoint = asyncio.get_running_loop().run_in_executor(
                self._executor, partial(_checkpoint, restart=restart), self._background
            )
            self._checkpoint.add_done_callback(partial(self._checkpointed, restart))

    def _checkpointed(self, restarted: bool, done: asyncio.Future[int]) -> None:
        if restarted:
            self._writes_open.set()
        if done.cancelled():
            return
        if done.exception() is not None:
            log.warning("SQLite checkpoint of the tracker store failed: %s", done.exception())
        elif not restarted and done.result() > WAL_RESTART_FRAMES and not self._closed:
            self._start_checkpoint(restart=True)

    async def load(self, conversation_id: str, *, since: int = 0) -> list[Event]:
        check_since(since)
        self._check_open()
        rows = await self._when_free(partial(_rows, self._conn, conversation_id, since))
        return [decode_event(data) for (data,) in rows]

    async def length(self, conversation_id: str) -> int:
        self._check_open()
        return await self._when_free(partial(_length, self._conn, conversation_id))

    async def conversations(self) -> list[str]:
        self._check_open()
        return await self._run(_conversations)

    async def delete(self, conversation_id: str) -> None:
        self._check_open()
        await self._run(partial(_delete, conversation_id=conversation_id))

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._flusher is not None:
            # Appends already accepted are committed before the connection closes.
            await asyncio.shield(self._flusher)
        # Queued behind a checkpoint or delete still running, so those finish first.
        await asyncio.get_running_loop().run_in_executor(self._executor, self._background.close)
        self._executor.shutdown()
        self._conn.close()

    def lock(self, conversation_id: str, *, timeout: float = DEFAULT_LOCK_TIMEOUT) -> AbstractAsyncContextManager[None]:
        self._check_open()
        return self._locks.hold(conversation_id, timeout)


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    return exc.sqlite_errorcode & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


def _busy_pauses() -> Iterator[float]:
    """How long to wait before each new try of a statement another connection's lock refused:
    0.1 ms, doubling up to 2 ms, until ``BUSY_TIMEOUT_MS`` have passed (then none: give up)."""
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    pause = _BUSY_FIRST_SLEEP
    while time.monotonic() <= deadline:
        yield pause
        pause = min(pause * 2, _BUSY_MAX_SLEEP)


# -- statements: on the loop's connection, or the background thread's ---------------------


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
        conn.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}")
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


def _append_batch(
    conn: sqlite3.Connection, items: Sequence[tuple[str, list[EncodedEvent], int | None]]
) -> list[int | Exception]:
    """Each item's new length, or its ConcurrentWriteError, all committed in one transaction;
    any other error rolls the whole batch back and is raised."""
    # IMMEDIATE takes the write lock now, so no other process can append between the
    # length reads and the inserts; on a busy file it fails at once, and the caller retries.
    conn.execute("BEGIN IMMEDIATE")
    outcomes: list[int | Exception] = []
    try:
        now = time.time()
        for conversation_id, events, expected in items:
            length = _length(conn, conversation_id)
            if expected is not None and expected != length:
                outcomes.append(ConcurrentWriteError(conversation_id, expected, length))
                continue
            conn.executemany(
                _INSERT, [(conversation_id, length + i, e.type, e.data, now) for i, e in enumerate(events)]
            )
            outcomes.append(length + len(events))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return outcomes


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
        pauses = _busy_pauses()
        while True:
            try:
                conn.execute(statement)
                return
            except sqlite3.OperationalError as exc:
                pause = next(pauses, None) if _is_busy(exc) else None
                if pause is None:
                    raise
            time.sleep(pause)
    finally:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")


def _rows(conn: sqlite3.Connection, conversation_id: str, since: int) -> list[tuple[str]]:
    """The stored JSON of the conversation's events from ``since`` on."""
    rows: list[tuple[str]] = conn.execute(_SELECT, (conversation_id, since)).fetchall()
    return rows


def _checkpoint(conn: sqlite3.Connection, restart: bool) -> int:
    """Copy the WAL into the database file (RESTART: and make the next writer start the WAL
    over); returns the WAL's length in frames. One that finds the file busy is left to the
    next (a failure that is not is logged by the caller)."""
    try:
        _, frames, _ = conn.execute(f"PRAGMA wal_checkpoint({'RESTART' if restart else 'PASSIVE'})").fetchone()
    except sqlite3.OperationalError as exc:
        if not _is_busy(exc):
            raise
        return 0
    return int(frames)


def _conversations(conn: sqlite3.Connection) -> list[str]:
    return sorted(cid for (cid,) in conn.execute("SELECT DISTINCT conversation_id FROM taiwa_events"))


def _delete(conn: sqlite3.Connection, conversation_id: str) -> None:
    conn.execute("DELETE FROM taiwa_events WHERE conversation_id = ?", (conversation_id,))
