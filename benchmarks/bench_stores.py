"""Tracker-store cost per turn: lock, load the whole conversation, append 5 events (with
``expected_length``), unlock — 1,000 turns (100 conversations x 10 turns) per store.

Usage: .venv/bin/python benchmarks/bench_stores.py [--turns 10] [--conversations 100]
Redis and PostgreSQL come from TAIWA_TEST_REDIS_URL / TAIWA_TEST_POSTGRES_URL (defaults:
127.0.0.1); a store whose server does not answer is reported as skipped.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.events import ActionExecuted, BotUttered, SlotSet  # noqa: E402
from engine.stores import open_store  # noqa: E402
from engine.stores.base import StoreError  # noqa: E402

TURN = [
    ActionExecuted("action_listen"),
    SlotSet("amount", 50),
    SlotSet("recipient", {"name": "Ann", "iban": "DE00"}),
    BotUttered(
        text="Sending 50 to Ann. Confirm?", response="utter_confirm", buttons=({"title": "yes", "payload": "/affirm"},)
    ),
    ActionExecuted("action_listen"),
]


async def bench(url: str, conversations: int, turns: int) -> dict[str, float]:
    ids = [f"bench-{uuid.uuid4().hex[:8]}-{c}" for c in range(conversations)]
    async with open_store(url) as store:
        t_lock = t_load = t_append = 0.0
        start = time.perf_counter()
        for _ in range(turns):
            for cid in ids:
                t0 = time.perf_counter()
                async with store.lock(cid):
                    t1 = time.perf_counter()
                    events = await store.load(cid)
                    t2 = time.perf_counter()
                    await store.append(cid, TURN, expected_length=len(events))
                    t3 = time.perf_counter()
                t4 = time.perf_counter()
                t_lock += (t1 - t0) + (t4 - t3)
                t_load += t2 - t1
                t_append += t3 - t2
        total = time.perf_counter() - start
        assert await store.length(ids[0]) == turns * len(TURN)
        for cid in ids:
            await store.delete(cid)
    n = conversations * turns
    return {
        "turn_ms": round(total / n * 1e3, 3),
        "lock_unlock_ms": round(t_lock / n * 1e3, 3),
        "load_ms": round(t_load / n * 1e3, 3),
        "append_ms": round(t_append / n * 1e3, 3),
        "turns_per_s": round(n / total),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--conversations", type=int, default=100)
    parser.add_argument("--turns", type=int, default=10)
    parser.add_argument("--report", type=Path, help="write the results as JSON")
    args = parser.parse_args()
    table = "bench_" + uuid.uuid4().hex[:8]
    redis_url = os.environ.get("TAIWA_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    pg_url = os.environ.get("TAIWA_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
    results: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp:
        urls = {
            "memory": "memory://",
            "sqlite": f"sqlite://{tmp}/bench.db",
            "redis": f"{redis_url}{'&' if '?' in redis_url else '?'}prefix={table}:",
            "postgresql": f"{pg_url}{'&' if '?' in pg_url else '?'}table={table}",
        }
        for name, url in urls.items():
            try:
                r = asyncio.run(bench(url, args.conversations, args.turns))
            except (StoreError, OSError) as exc:
                print(f"{name:10s} skipped: {exc}")
                results[name] = {"skipped": str(exc)}
                continue
            results[name] = r
            print(
                f"{name:10s} {r['turn_ms']:7.3f} ms/turn  (lock+unlock {r['lock_unlock_ms']:.3f}, "
                f"load {r['load_ms']:.3f}, append {r['append_ms']:.3f})  {r['turns_per_s']:,} turns/s",
                flush=True,
            )
    if isinstance(results.get("postgresql"), dict) and "turn_ms" in results["postgresql"]:
        import psycopg

        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(f"DROP TABLE IF EXISTS {table}")
    if args.report:
        args.report.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
