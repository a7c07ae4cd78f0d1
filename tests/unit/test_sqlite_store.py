"""The SQLite store opened by several processes at once, as `taiwa run --workers N` does."""

from __future__ import annotations

import asyncio
import multiprocessing
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path

from engine.stores.sqlite import SQLiteTrackerStore

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
