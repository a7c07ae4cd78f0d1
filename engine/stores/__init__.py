"""Tracker stores: where conversations' events live, and the turn locks that serialise them.

``open_store(url)`` picks the store: ``memory://`` (tests), ``sqlite:///path.db`` (the
embedded default), ``redis://...`` and ``postgresql://...`` (several server processes).
The Redis and PostgreSQL stores need their client libraries (``redis``, ``psycopg``), which
are imported only when such a URL is opened; import their classes from
:mod:`engine.stores.redis` and :mod:`engine.stores.postgres`.
"""

from __future__ import annotations

from engine.stores._url import open_store
from engine.stores.base import (
    DEFAULT_LOCK_TIMEOUT,
    ConcurrentWriteError,
    LockTimeoutError,
    StoreClosedError,
    StoreConfigError,
    StoreError,
    StoreUnavailableError,
    TrackerStore,
)
from engine.stores.memory import InMemoryTrackerStore
from engine.stores.sqlite import SQLiteTrackerStore

__all__ = [
    "DEFAULT_LOCK_TIMEOUT",
    "ConcurrentWriteError",
    "InMemoryTrackerStore",
    "LockTimeoutError",
    "SQLiteTrackerStore",
    "StoreClosedError",
    "StoreConfigError",
    "StoreError",
    "StoreUnavailableError",
    "TrackerStore",
    "open_store",
]
