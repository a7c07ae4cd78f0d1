"""The SQLite store opened by several processes at once, as `taiwa run --workers N` does."""

from __future__ import annotations

import asyncio
import multiprocessing
import sqlite3
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path

from engine.events import BotUttered, Event, UserUttered
from engine.stores.base import ConcurrentWriteError
from engine.stores.sqlite import WAL_RESTART_FRAMES, WAL_SIZE_LIMIT, SQLiteTrackerStore

PROCESSES = 4
ROUNDS = 20


def _open(path: Path, start: Barrier, results: Queue[str]) -> None:
    start.wait()
    try:
        store = SQLiteTrackerStore(path)
        asyncio.run(store.close())
        results.put("ok")
    except Exception as exc:  # noqa: BLE001 - reported to the test
        results.put(f"{type(exc).__name__}: {exc}")


def test_workers_opening_one_new_file_at_once_all_succeed(tmp_path: Path) -> None:
    # Forked server workers open the store at the same moment; switching a new file to WAL
    # does not wait on SQLite's busy handler, and one of them used to fail to start with
    # "database is locked" (about 1 in 20 here).
    ctx = multiprocessing.get_context("fork")
    failures: list[str] = []
    for n in range(ROUNDS):
        path = tmp_path / f"tracker-{n}.sqlite3"
        start = ctx.Barrier(PROCESSES)
        results: Queue[str] = ctx.Queue()
        processes = [ctx.Process(target=_open, args=(path, start, results)) for _ in range(PROCESSES)]
        for p in processes:
            p.start()
        outcomes = [results.get(timeout=30) for _ in processes]
        for p in processes:
            p.join(timeout=30)
        failures += [o for o in outcomes if o != "ok"]
    assert failures == []


# -- group commit and reads on the caller's thread ---------------------------------------------


def _said(text: str) -> list[Event]:
    return [UserUttered(text, "greet", 0.9), BotUttered(f"re: {text}")]


async def test_appends_arriving_together_each_get_their_own_outcome(tmp_path: Path) -> None:
    # Appends queued while the store's thread is busy are committed in one transaction; each
    # is still checked against its own expected_length, and a conflict fails that one alone.
    async with SQLiteTrackerStore(tmp_path / "t.db") as store:
        await store.append("taken", _said("first"))
        results = await asyncio.gather(
            *(store.append(f"c{i}", _said(str(i)), expected_length=0) for i in range(40)),
            store.append("taken", _said("late"), expected_length=0),
            return_exceptions=True,
        )
        assert results[:40] == [2] * 40
        assert isinstance(results[40], ConcurrentWriteError)
        for i in range(40):
            assert await store.load(f"c{i}") == _said(str(i))
        assert await store.load("taken") == _said("first")


async def test_an_append_sqlite_refuses_fails_alone(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    async with SQLiteTrackerStore(path) as store:
        with sqlite3.connect(path) as conn:
            conn.execute(
                "CREATE TRIGGER refuse BEFORE INSERT ON taiwa_events WHEN NEW.conversation_id = 'bad' "
                "BEGIN SELECT RAISE(ABORT, 'refused by a trigger'); END"
            )
        results = await asyncio.gather(
            store.append("a", _said("a")), store.append("bad", _said("x")), store.append("b", _said("b")),
            return_exceptions=True,
        )  # fmt: skip
        assert results[0] == 2 and results[2] == 2
        assert isinstance(results[1], sqlite3.IntegrityError) and "refused by a trigger" in str(results[1])
        assert await store.load("bad") == []
        assert await store.load("a") == _said("a") and await store.load("b") == _said("b")


class _BusyTwice:
    """Stands in for the store's connection: the first two reads find the file busy, as a
    read does while another connection recovers the WAL or restarts it (rare, and not
    reproducible on demand with real connections: WAL readers are otherwise never blocked)."""

    def __init__(self, real: sqlite3.Connection) -> None:
        self.real = real
        self.busy = 2

    def execute(self, sql: str, params: tuple[object, ...] = ()) -> sqlite3.Cursor:
        if self.busy and sql.startswith("SELECT"):
            self.busy -= 1
            exc = sqlite3.OperationalError("database is locked")
            exc.sqlite_errorcode = sqlite3.SQLITE_BUSY
            raise exc
        return self.real.execute(sql, params)

    def __getattr__(self, name: str) -> object:
        return getattr(self.real, name)


async def test_a_read_that_finds_the_file_busy_is_tried_again(tmp_path: Path) -> None:
    async with SQLiteTrackerStore(tmp_path / "t.db") as store:
        await store.append("c", _said("hi"))
        store._conn = _BusyTwice(store._conn)  # type: ignore[assignment]
        assert await store.load("c") == _said("hi")
        assert await store.length("c") == 2
        assert store._conn.busy == 0  # type: ignore[attr-defined]
        assert await store.load("c", since=1) == _said("hi")[1:]


async def test_an_append_waits_while_another_process_writes(tmp_path: Path) -> None:
    # Another connection (another server worker) holds the write lock for 0.3 s: the append
    # waits for it without blocking the event loop, then commits.
    path = tmp_path / "t.db"
    async with SQLiteTrackerStore(path) as store:
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        loop = asyncio.get_running_loop()
        loop.call_later(0.3, lambda: (other.execute("COMMIT"), other.close()))
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        ticker = asyncio.create_task(tick())
        started = loop.time()
        assert await store.append("c", _said("hi"), expected_length=0) == 2
        ticker.cancel()
        assert loop.time() - started >= 0.25
        assert ticks >= 10  # the loop kept running while the append waited
        assert await store.load("c") == _said("hi")


async def test_the_wal_is_checkpointed_and_restarts_instead_of_growing(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    async with SQLiteTrackerStore(path) as store:
        big = [BotUttered("x" * 3000)]
        lengths: dict[str, int] = {}
        for i in range(6000):  # ~26,000 pages through the WAL, one append per commit
            cid = f"c{i % 50}"
            lengths[cid] = await store.append(cid, big, expected_length=lengths.get(cid, 0))
        if store._checkpoint is not None:
            await store._checkpoint
        with sqlite3.connect(path) as conn:
            _, frames, _ = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        # Restarts keep it near WAL_RESTART_FRAMES (more while writes go on during one).
        assert frames < 3 * WAL_RESTART_FRAMES
        assert path.with_name(path.name + "-wal").stat().st_size <= WAL_SIZE_LIMIT


async def test_close_commits_the_appends_already_accepted(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    store = SQLiteTrackerStore(path)
    pending = [asyncio.ensure_future(store.append(f"c{i}", _said(str(i)))) for i in range(20)]
    await asyncio.sleep(0)  # every append is queued
    await store.close()
    assert [p.result() for p in pending] == [2] * 20
    async with SQLiteTrackerStore(path) as again:
        assert await again.conversations() == sorted(f"c{i}" for i in range(20))
