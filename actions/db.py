"""The demo CRM database shared by ``crm_lookup`` and ``create_ticket``.

The SQLite file lives at ``$TAIWA_CRM_DB`` or, by default, in the user's cache directory
(``$XDG_CACHE_HOME/taiwa`` or ``~/.cache/taiwa``, else the system temp dir). It is created
from ``data/crm_seed.sql`` on first use; nothing is ever written into the project.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

DB_ENV = "TAIWA_CRM_DB"
"""Environment variable (or action config key) naming the SQLite file."""

SEED_SQL = Path(__file__).resolve().parent / "data" / "crm_seed.sql"
_TABLES = ("customers", "tickets")


def _default_path() -> Path:
    """A per-user cache location for the database, falling back to the temp dir."""
    try:
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        candidate = Path(base) / "taiwa" / "acme_crm.sqlite3"
        candidate.parent.mkdir(parents=True, exist_ok=True)
        return candidate
    except (OSError, RuntimeError):
        return Path(tempfile.gettempdir()) / "taiwa-acme-crm.sqlite3"


def _configured(config: Mapping[str, Any] | None) -> object:
    """The file named by the action config, else by ``$TAIWA_CRM_DB`` (None: neither)."""
    return (config or {}).get(DB_ENV) or os.environ.get(DB_ENV)


def db_path(config: Mapping[str, Any] | None = None) -> Path:
    """Where the database is: action config, then ``$TAIWA_CRM_DB``, then the default."""
    configured = _configured(config)
    if configured:
        path = Path(str(configured)).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        return path
    return _default_path()


def connect(config: Mapping[str, Any] | None = None) -> sqlite3.Connection:
    """Open the database, creating and seeding it first if its tables are missing (a new
    connection, the caller closes it; tools use :func:`connection`)."""
    conn = sqlite3.connect(db_path(config), timeout=5.0)
    try:
        # WAL: a lookup never waits for a ticket being written, nor a write for lookups (in the
        # default rollback journal, several server workers' tools queued behind each other).
        conn.execute("PRAGMA journal_mode = WAL")
        placeholders = ", ".join("?" for _ in _TABLES)
        found = conn.execute(
            f"SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN ({placeholders})",
            _TABLES,
        ).fetchone()[0]
        if found < len(_TABLES):
            # The seed only uses CREATE ... IF NOT EXISTS and INSERT OR IGNORE, so two
            # processes seeding at once is harmless.
            conn.executescript(SEED_SQL.read_text(encoding="utf-8"))
    except BaseException:
        conn.close()
        raise
    return conn


_local = threading.local()


def connection(config: Mapping[str, Any] | None = None) -> sqlite3.Connection:
    """This thread's open connection to the database (opened, and seeded if need be, on first
    use): tools run on a small pool of threads, or inline on the event loop's, and opening the
    file and checking its tables on every call cost more than the query. Use it as ``with connection(cfg) as conn:`` for a
    transaction; do not close it."""
    # Keyed by the setting, not the resolved path: db_path creates folders, once is enough.
    key = str(_configured(config) or "")
    opened: dict[str, sqlite3.Connection] = _local.__dict__.setdefault("connections", {})
    conn = opened.get(key)
    if conn is None:
        conn = opened[key] = connect(config)
    return conn


_write_lock = threading.Lock()


@contextmanager
def writing(config: Mapping[str, Any] | None = None) -> Iterator[sqlite3.Connection]:
    """A write transaction on this thread's connection, one thread of the process at a time.

    Threads of one process that write at once otherwise meet in SQLite's busy handler, which
    sleeps 1, 2, 5, 10 ... 100 ms between tries: with a hundred conversations filing tickets
    at once, some waited a second for writes that take a fraction of a millisecond each. Here
    they queue on a lock, and each write starts when the previous one has committed (another
    server worker's writes are still waited for through SQLite's own locking).
    """
    with _write_lock, connection(config) as conn:
        yield conn
