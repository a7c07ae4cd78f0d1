"""open_store(url): which store each URL form opens, and the errors for bad ones.

Network stores connect lazily, so these tests need no server: they only look at the
configuration of the store that was built.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from engine.stores import (
    InMemoryTrackerStore,
    SQLiteTrackerStore,
    StoreConfigError,
    StoreError,
    TrackerStore,
    open_store,
)
from engine.stores.postgres import PostgresTrackerStore
from engine.stores.redis import RedisTrackerStore


def _close(store: TrackerStore) -> None:
    asyncio.run(store.close())


def test_memory() -> None:
    store = open_store("memory://")
    assert isinstance(store, InMemoryTrackerStore)
    assert isinstance(store, TrackerStore)
    _close(store)


def test_sqlite_absolute_path(tmp_path: Path) -> None:
    store = open_store(f"sqlite://{tmp_path}/sub/events.db")
    assert isinstance(store, SQLiteTrackerStore)
    assert store.path == tmp_path / "sub" / "events.db"
    assert store.path.is_file()  # created, with its folder, on open
    _close(store)


def test_sqlite_relative_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    store = open_store("sqlite://data/events.db")
    assert isinstance(store, SQLiteTrackerStore)
    assert store.path == Path("data/events.db")
    assert (tmp_path / "data" / "events.db").is_file()
    _close(store)


def test_sqlite_file_is_wal_with_the_schema(tmp_path: Path) -> None:
    import sqlite3

    _close(open_store(f"sqlite://{tmp_path}/events.db"))
    conn = sqlite3.connect(tmp_path / "events.db")
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        columns = [row[1] for row in conn.execute("PRAGMA table_info(taiwa_events)")]
        assert columns == ["conversation_id", "seq", "type", "data", "stored_at"]
    finally:
        conn.close()


def test_redis() -> None:
    store = open_store("redis://127.0.0.1:6380/2?prefix=bot1:&lock_ttl=5")
    assert isinstance(store, RedisTrackerStore)
    assert (store.prefix, store.lock_ttl) == ("bot1:", 5.0)
    kwargs = store._client.connection_pool.connection_kwargs
    assert (kwargs["host"], kwargs["port"], kwargs["db"]) == ("127.0.0.1", 6380, 2)
    _close(store)


def test_redis_defaults() -> None:
    store = open_store("redis://localhost")
    assert isinstance(store, RedisTrackerStore)
    assert (store.prefix, store.lock_ttl) == ("taiwa:", 30.0)
    _close(store)


def test_redis_cluster() -> None:
    from redis.asyncio import RedisCluster

    store = open_store("redis+cluster://:pw@10.0.0.5:7001?prefix=bot1:")
    assert isinstance(store, RedisTrackerStore) and isinstance(store._client, RedisCluster)
    assert store.prefix == "bot1:"
    node = store._client.startup_nodes[0]
    assert (node.host, node.port) == ("10.0.0.5", 7001)
    assert store._client.connection_kwargs["password"] == "pw"
    _close(store)


def test_postgresql() -> None:
    store = open_store("postgresql://bot:secret@db.internal:5433/taiwa?table=app.events&sslmode=require")
    assert isinstance(store, PostgresTrackerStore)
    assert store.table == "app.events"
    assert store.conninfo == "postgresql://bot:secret@db.internal:5433/taiwa?sslmode=require"
    _close(store)


def test_postgres_alias_and_default_table() -> None:
    store = open_store("postgres://postgres@127.0.0.1/test")
    assert isinstance(store, PostgresTrackerStore)
    assert (store.table, store.conninfo) == ("taiwa_events", "postgresql://postgres@127.0.0.1/test")
    _close(store)


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("mysql://localhost/db", "unknown scheme 'mysql'"),
        ("postgress://localhost/db", "Did you mean 'postgres'?"),
        ("sqlit:///tmp/x.db", "Did you mean 'sqlite'?"),
        ("events.db", "starts with a scheme"),
        ("memory://somewhere", "memory:// takes no host"),
        ("sqlite://", "needs the path of a database file"),
        ("sqlite:///", "needs the path of a database file"),
        ("sqlite:///tmp/x.db?mode=ro", "sqlite:// takes no options"),
        ("redis://localhost:notaport/0", "port is not a number"),
        ("redis://localhost:6379/zero", "'zero' is not a number"),
        ("redis://:6379/0", "names no host"),
        ("redis://localhost?prefx=a:", "unknown option(s) prefx. Did you mean 'prefix'?"),
        ("redis://localhost?lock_ttl=0", "lock_ttl='0' is not a positive number"),
        ("redis+cluster://localhost:7000/3", "a Redis Cluster has only database 0, not 3"),
        ("redis+clustr://localhost:7000", "Did you mean 'redis+cluster'?"),
        ("postgresql://localhost/db?table=events;drop", "is not a plain name"),
        ("postgresql://localhost:99999/db", "port is not a number"),
    ],
)
def test_bad_urls_say_what_is_wrong_and_the_valid_forms(url: str, problem: str) -> None:
    with pytest.raises(StoreConfigError) as info:
        open_store(url)
    text = str(info.value)
    assert problem in text
    assert "valid forms:" in text
    assert "sqlite:///absolute/path/to/file.db" in text and "postgresql://user" in text
    assert isinstance(info.value, ValueError) and isinstance(info.value, StoreError)


def test_the_unknown_scheme_is_named_with_a_fix() -> None:
    with pytest.raises(StoreConfigError) as info:
        open_store("mongodb://localhost")
    assert info.value.scheme == "mongodb"
    assert "Fix: use one of the schemes memory://, sqlite://" in str(info.value)


def test_a_bare_file_name_gets_a_sqlite_hint() -> None:
    with pytest.raises(StoreConfigError, match=r"write sqlite:///events\.db \(absolute\) or sqlite://events\.db"):
        open_store("events.db")


def test_passwords_are_not_echoed() -> None:
    with pytest.raises(StoreConfigError) as info:
        open_store("postgresql://bot:hunter2@localhost/db?table=bad-name")
    assert "hunter2" not in str(info.value)
    assert "bot:***@localhost" in str(info.value)
