"""One conformance suite, run against every tracker store (memory, SQLite, Redis, a real
three-node Redis Cluster, PostgreSQL).

Each test opens its stores inside one ``asyncio.run`` (connections belong to an event loop).
Redis and PostgreSQL get a fresh key prefix / table per test, removed afterwards; they are
marked ``services`` and skip when the server is down, unless TAIWA_REQUIRE_SERVICES=1.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from store_backends import Backend, store_backend

from engine.events import ActionExecuted, BotUttered, Event, SlotSet
from engine.stores import (
    ConcurrentWriteError,
    LockTimeoutError,
    StoreClosedError,
    StoreUnavailableError,
    TrackerStore,
    open_store,
)
from engine.stores._locks import LocalLocks

Body = Callable[[TrackerStore], Awaitable[None]]


services = pytest.mark.services
MEMORY, SQLITE = "memory", "sqlite"
REDIS, POSTGRES = pytest.param("redis", marks=services), pytest.param("postgres", marks=services)
REDIS_CLUSTER = pytest.param("redis-cluster", marks=services)


@pytest.fixture(params=[MEMORY, SQLITE, REDIS, REDIS_CLUSTER, POSTGRES])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    with store_backend(request.param, request, tmp_path) as b:
        yield b


@pytest.fixture(params=[SQLITE, REDIS, REDIS_CLUSTER, POSTGRES])
def persistent_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """The stores that keep events after they close."""
    with store_backend(request.param, request, tmp_path) as b:
        yield b


@pytest.fixture(params=[REDIS, REDIS_CLUSTER, POSTGRES])
def shared_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """The stores whose events and turn locks are shared between processes."""
    with store_backend(request.param, request, tmp_path) as b:
        yield b


EVENTS: list[Event] = [
    SlotSet("amount", 50),
    SlotSet("nested", {"a": [1, 2.5, None, True], "b": {"c": "d"}}),
    BotUttered(text="How much?", response="utter_ask_amount", buttons=({"title": "10", "payload": "/x"},)),
    ActionExecuted("action_listen"),
    SlotSet("amount", None),
    BotUttered(data={"image": "https://example.com/a.png"}),
]


# -- events -------------------------------------------------------------------------------


def test_round_trip_keeps_order_and_values(backend: Backend) -> None:
    async def body(store: TrackerStore) -> None:
        assert await store.append("c1", EVENTS[:2]) == 2
        assert await store.append("c1", EVENTS[2:]) == len(EVENTS)
        assert await store.load("c1") == EVENTS
        assert await store.length("c1") == len(EVENTS)
        assert await store.load("unknown") == []
        assert await store.length("unknown") == 0

    backend.run(body)


def test_load_since(backend: Backend) -> None:
    async def body(store: TrackerStore) -> None:
        await store.append("c1", EVENTS)
        assert await store.load("c1", since=0) == EVENTS
        assert await store.load("c1", since=2) == EVENTS[2:]
        assert await store.load("c1", since=len(EVENTS) - 1) == EVENTS[-1:]
        assert await store.load("c1", since=len(EVENTS)) == []
        assert await store.load("c1", since=100) == []
        with pytest.raises(ValueError, match="since"):
            await store.load("c1", since=-1)

    backend.run(body)


def test_empty_append_writes_nothing(backend: Backend) -> None:
    async def body(store: TrackerStore) -> None:
        assert await store.append("c1", []) == 0
        assert await store.conversations() == []
        await store.append("c1", EVENTS[:1])
        assert await store.append("c1", [], expected_length=1) == 1
        with pytest.raises(ConcurrentWriteError):
            await store.append("c1", [], expected_length=0)

    backend.run(body)


def test_a_batch_that_does_not_serialise_writes_nothing(backend: Backend) -> None:
    async def body(store: TrackerStore) -> None:
        await store.append("c1", EVENTS[:1])
        for bad in (object(), float("nan")):
            with pytest.raises(ValueError, match="JSON"):
                await store.append("c1", [SlotSet("ok", 1), SlotSet("bad", bad)])
        assert await store.load("c1") == EVENTS[:1]

    backend.run(body)


def test_readers_never_see_half_a_batch(backend: Backend) -> None:
    async def body(store: TrackerStore) -> None:
        batch = [SlotSet(f"s{i}", i) for i in range(10)]
        done = asyncio.Event()
        seen: set[int] = set()

        async def write() -> None:
            for _ in range(20):
                await store.append("c1", batch)
                await asyncio.sleep(0)
            done.set()

        async def read() -> None:
            while not done.is_set():
                seen.add(await store.length("c1"))
                seen.add(len(await store.load("c1")))
                await asyncio.sleep(0)  # the memory store never suspends: let the writer run

        await asyncio.gather(write(), read())
        assert all(n % 10 == 0 for n in seen), sorted(seen)
        assert await store.length("c1") == 200

    backend.run(body)


def test_expected_length_conflict_writes_nothing(backend: Backend) -> None:
    async def body(store: TrackerStore) -> None:
        await store.append("c1", EVENTS[:3], expected_length=0)
        with pytest.raises(ConcurrentWriteError) as info:
            await store.append("c1", EVENTS[3:], expected_length=2)
        assert (info.value.conversation_id, info.value.expected_length, info.value.actual_length) == ("c1", 2, 3)
        assert "Fix:" in str(info.value)
        assert await store.load("c1") == EVENTS[:3]
        with pytest.raises(ConcurrentWriteError):
            await store.append("new", EVENTS[:1], expected_length=1)
        assert await store.conversations() == ["c1"]
        assert await store.append("c1", EVENTS[3:], expected_length=3) == len(EVENTS)

    backend.run(body)


def test_conversations_are_listed_and_isolated(backend: Backend) -> None:
    async def body(store: TrackerStore) -> None:
        await store.append("b", EVENTS[:2])
        await store.append("a", EVENTS[2:3])
        await store.append("b", EVENTS[3:4])
        assert await store.conversations() == ["a", "b"]
        assert await store.load("a") == EVENTS[2:3]
        assert await store.load("b") == [*EVENTS[:2], EVENTS[3]]
        # An id that is a prefix of another must not see its events.
        await store.append("b:1", EVENTS[:1])
        assert await store.length("b") == 3
        assert await store.length("b:1") == 1

    backend.run(body)


def test_delete(backend: Backend) -> None:
    async def body(store: TrackerStore) -> None:
        await store.append("a", EVENTS)
        await store.append("b", EVENTS[:1])
        await store.delete("a")
        await store.delete("never-existed")
        assert await store.conversations() == ["b"]
        assert await store.load("a") == []
        assert await store.length("a") == 0
        assert await store.append("a", EVENTS[:2], expected_length=0) == 2
        assert await store.load("a") == EVENTS[:2]
        assert await store.load("b") == EVENTS[:1]

    backend.run(body)


def test_a_reopened_store_still_has_the_events(persistent_backend: Backend) -> None:
    async def body(store: TrackerStore) -> None:
        await store.append("c1", EVENTS)
        await store.close()
        async with persistent_backend.open() as again:
            assert await again.load("c1") == EVENTS
            assert await again.conversations() == ["c1"]
            assert await again.append("c1", EVENTS[:1], expected_length=len(EVENTS)) == len(EVENTS) + 1

    persistent_backend.run(body)


def test_unicode_and_large_payloads(backend: Backend) -> None:
    cid = '会話 ü/"quoted"\\:1 🎉'
    texts = [
        "こんにちは、世界",
        "emoji 👩‍💻🚀",
        "עברית RTL",
        "quotes \" ' \\ and\nnewlines\t",
        "\u2028\u2029",
        "ß" * 10,
    ]
    big = "x" * 1_000_000 + "終"
    many = [SlotSet(f"slot_{i}", {"i": i, "text": "値" * 50}) for i in range(1000)]

    async def body(store: TrackerStore) -> None:
        unicode_events: list[Event] = [BotUttered(text=t, data={t: [t]}) for t in texts]
        await store.append(cid, unicode_events)
        await store.append(cid, [BotUttered(text=big)])
        assert await store.append(cid, many) == len(texts) + 1 + len(many)
        loaded = await store.load(cid)
        assert loaded[: len(texts)] == unicode_events
        assert loaded[len(texts)] == BotUttered(text=big)
        assert loaded[len(texts) + 1 :] == many
        assert await store.conversations() == [cid]

    backend.run(body)


def test_a_closed_store_refuses_work(backend: Backend) -> None:
    async def body(store: TrackerStore) -> None:
        await store.append("c1", EVENTS[:1])
        await store.close()
        await store.close()  # idempotent
        with pytest.raises(StoreClosedError):
            await store.load("c1")
        with pytest.raises(StoreClosedError):
            await store.append("c1", EVENTS[:1])

    backend.run(body)


# -- turn locks ---------------------------------------------------------------------------


def test_lock_serialises_turns_of_one_conversation(backend: Backend) -> None:
    async def body(store: TrackerStore) -> None:
        log: list[str] = []

        async def turn(name: str) -> None:
            async with store.lock("c1"):
                log.append(f"{name} in")
                await asyncio.sleep(0.05)
                log.append(f"{name} out")

        await asyncio.gather(turn("a"), turn("b"))
        assert log in (["a in", "a out", "b in", "b out"], ["b in", "b out", "a in", "a out"])

    backend.run(body)


def test_lock_does_not_serialise_other_conversations(backend: Backend) -> None:
    async def body(store: TrackerStore) -> None:
        inside = [asyncio.Event(), asyncio.Event()]

        async def turn(i: int) -> None:
            async with store.lock(f"c{i}", timeout=2):
                inside[i].set()
                # Serialised locks would wait here forever: the other turn never gets in.
                await asyncio.wait_for(inside[1 - i].wait(), timeout=2)

        await asyncio.gather(turn(0), turn(1))

    backend.run(body)


def test_lock_timeout(backend: Backend) -> None:
    async def body(store: TrackerStore) -> None:
        held = asyncio.Event()
        release = asyncio.Event()

        async def holder() -> None:
            async with store.lock("c1"):
                held.set()
                await release.wait()

        task = asyncio.create_task(holder())
        await held.wait()
        started = time.monotonic()
        with pytest.raises(LockTimeoutError) as info:
            async with store.lock("c1", timeout=0.2):
                pytest.fail("the lock was taken twice")
        assert 0.15 <= time.monotonic() - started < 2
        assert isinstance(info.value, TimeoutError)
        assert (info.value.conversation_id, info.value.timeout) == ("c1", 0.2)
        release.set()
        await task
        async with store.lock("c1", timeout=1):
            pass

    backend.run(body)


def test_lock_is_released_when_the_turn_fails(backend: Backend) -> None:
    async def body(store: TrackerStore) -> None:
        with pytest.raises(RuntimeError, match="boom"):
            async with store.lock("c1"):
                raise RuntimeError("boom")
        async with store.lock("c1", timeout=0.5):
            pass

    backend.run(body)


def test_idle_local_locks_are_dropped() -> None:
    async def main() -> None:
        locks = LocalLocks()
        async with locks.hold("a", 1), locks.hold("b", 1):
            assert len(locks) == 2
        assert len(locks) == 0
        async with locks.hold("a", 1):
            waiter = asyncio.create_task(_hold_briefly(locks, "a", 0.05))
            await asyncio.sleep(0.01)
            assert len(locks) == 1
            with pytest.raises(LockTimeoutError):
                await waiter
        assert len(locks) == 0

    asyncio.run(main())


async def _hold_briefly(locks: LocalLocks, conversation_id: str, timeout: float) -> None:
    async with locks.hold(conversation_id, timeout):
        pass


async def _turns(stores: list[TrackerStore], cid: str, tasks: int, turns: int) -> None:
    """``tasks`` tasks run ``turns`` turns each: lock, read, append with expected_length."""

    async def worker(task: int) -> None:
        store = stores[task % len(stores)]
        for _ in range(turns):
            async with store.lock(cid):
                n = await store.length(cid)
                last = await store.load(cid, since=max(n - 1, 0))
                assert [e.value for e in last if isinstance(e, SlotSet)] == ([n - 1] if n else [])
                await store.append(cid, [SlotSet(f"task{task}", n)], expected_length=n)

    await asyncio.gather(*(worker(t) for t in range(tasks)))
    events = await stores[0].load(cid)
    assert [e.value for e in events if isinstance(e, SlotSet)] == list(range(tasks * turns))
    names = [e.name for e in events if isinstance(e, SlotSet)]
    assert all(names.count(f"task{t}") == turns for t in range(tasks))


def test_many_tasks_append_under_the_lock(backend: Backend) -> None:
    async def body(store: TrackerStore) -> None:
        await _turns([store], "busy", tasks=50, turns=20)
        assert await store.length("busy") == 1000

    backend.run(body)


def test_two_instances_serialise_turns(shared_backend: Backend) -> None:
    async def body(store: TrackerStore) -> None:
        async with shared_backend.open() as other:
            await _turns([store, other], "busy", tasks=50, turns=20)
            assert await other.length("busy") == 1000

    shared_backend.run(body)


def test_a_lock_held_by_another_instance_times_out(shared_backend: Backend) -> None:
    async def body(store: TrackerStore) -> None:
        async with shared_backend.open() as other:
            async with store.lock("c1"):
                with pytest.raises(LockTimeoutError):
                    async with other.lock("c1", timeout=0.2):
                        pytest.fail("two instances held the lock at once")
                async with other.lock("c2", timeout=1):
                    pass
            async with other.lock("c1", timeout=1):
                pass

    shared_backend.run(body)


@pytest.mark.services
def test_redis_lock_outlives_a_crashed_holder_only_until_its_ttl(redis_url: str) -> None:
    from engine.stores.redis import RedisTrackerStore

    prefix = f"taiwa-test-{uuid.uuid4().hex[:12]}:"

    async def main() -> None:
        async with (
            RedisTrackerStore(redis_url, prefix=prefix, lock_ttl=0.45) as store,
            RedisTrackerStore(redis_url, prefix=prefix, lock_ttl=0.45) as other,
        ):
            # A holder that died: its key stays until the TTL.
            await store._client.set(f"{prefix}lock:c1", "dead-token", px=300)
            started = time.monotonic()
            async with store.lock("c1", timeout=2):
                assert time.monotonic() - started >= 0.2
            # A live holder renews its lock past the TTL.
            async with store.lock("c2"):
                with pytest.raises(LockTimeoutError):
                    async with other.lock("c2", timeout=0.8):
                        pytest.fail("the lock expired while its holder was alive")
            assert await store._client.keys(f"{prefix}*") == []

    asyncio.run(main())


@pytest.mark.parametrize("scheme", ["redis", "redis+cluster"])
def test_redis_down_is_a_store_error_with_a_fix(scheme: str) -> None:
    from store_backends import free_local_port

    async def main() -> None:
        async with open_store(f"{scheme}://127.0.0.1:{free_local_port()}") as store:
            with pytest.raises(StoreUnavailableError, match="Fix:"):
                await store.load("c1")
            with pytest.raises(StoreUnavailableError):
                async with store.lock("c1", timeout=1.0):
                    pass

    asyncio.run(main())
