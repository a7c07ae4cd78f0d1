"""The tracker store interface and its errors.

A conversation's state is a replay of its events, so a store only keeps events: it appends
them (atomically, optionally only if nobody else appended first), loads them back in order,
and serialises turns with a per-conversation lock. It never looks inside an event: each one
is stored as the JSON of :func:`engine.events.event_to_dict` and rebuilt with
:func:`engine.events.event_from_dict`, so new event types need no store change.

Every stored event is a row of ``(conversation_id, seq, type, data, stored_at)``: ``seq``
counts from 0 within the conversation, ``type`` is the event's wire name, ``data`` its JSON,
``stored_at`` the wall-clock time it was written.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Protocol, Self, runtime_checkable

from engine.diagnostics import EngineError, closest
from engine.events import Event

DEFAULT_LOCK_TIMEOUT = 10.0
"""Seconds :meth:`TrackerStore.lock` waits for a turn in progress to finish."""


@runtime_checkable
class TrackerStore(Protocol):
    """Where conversations' events live.

    Implementations: :class:`~engine.stores.memory.InMemoryTrackerStore`,
    :class:`~engine.stores.sqlite.SQLiteTrackerStore` (the embedded default),
    :class:`~engine.stores.redis.RedisTrackerStore` and
    :class:`~engine.stores.postgres.PostgresTrackerStore`; :func:`engine.stores.open_store`
    picks one from a URL. A store is used from one event loop, and is also an async context
    manager that closes it.

    A turn is ``async with store.lock(cid): events = await store.load(cid); ...;
    await store.append(cid, new, expected_length=len(events))``: the lock serialises turns of a
    conversation (across processes for Redis and PostgreSQL), and ``expected_length`` turns a
    broken lock (expired, or a writer that does not lock) into a :class:`ConcurrentWriteError`
    instead of a silently interleaved history.
    """

    async def append(self, conversation_id: str, events: Sequence[Event], *, expected_length: int | None = None) -> int:
        """Append ``events`` atomically (all or none) and return the conversation's new length.

        Args:
            conversation_id: The conversation; it exists once it has an event.
            events: The events, in order; an empty sequence writes nothing.
            expected_length: If given, append only if the conversation has exactly this many
                events (optimistic concurrency).

        Raises:
            ConcurrentWriteError: ``expected_length`` differs from the stored length; nothing
                was written.
            ValueError: an event does not serialise to JSON; nothing was written.
        """
        ...

    async def load(self, conversation_id: str, *, since: int = 0) -> list[Event]:
        """The conversation's events from index ``since`` on, in order (``[]`` if unknown)."""
        ...

    async def length(self, conversation_id: str) -> int:
        """How many events the conversation has (0 if unknown)."""
        ...

    async def conversations(self) -> list[str]:
        """Ids of the conversations that have events, sorted."""
        ...

    async def delete(self, conversation_id: str) -> None:
        """Forget a conversation's events (nothing happens if it is unknown)."""
        ...

    async def close(self) -> None:
        """Release connections and threads; idempotent. Other calls then raise StoreClosedError."""
        ...

    def lock(self, conversation_id: str, *, timeout: float = DEFAULT_LOCK_TIMEOUT) -> AbstractAsyncContextManager[None]:
        """Hold the conversation's turn lock for the ``async with`` block.

        The lock is not reentrant: taking it again inside the block waits for itself until
        ``timeout``. Waiting counts against ``timeout``, holding it does not.

        Raises:
            LockTimeoutError: the lock was not free within ``timeout`` seconds.
        """
        ...

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


def check_since(since: int) -> None:
    """``since`` is an index into the conversation: negative values are a caller's bug."""
    if since < 0:
        raise ValueError(f"since must be >= 0, got {since}")


class StoreError(EngineError):
    """Base class of the tracker stores' errors."""


class ConcurrentWriteError(StoreError):
    """``append(..., expected_length=n)`` found another length: someone else appended first."""

    def __init__(self, conversation_id: str, expected_length: int, actual_length: int) -> None:
        self.conversation_id = conversation_id
        self.expected_length = expected_length
        self.actual_length = actual_length
        super().__init__(conversation_id, expected_length, actual_length)

    def __str__(self) -> str:
        return (
            f"conversation {self.conversation_id!r} has {self.actual_length} events, "
            f"expected {self.expected_length}: another writer appended first, nothing was written. "
            "Fix: append inside `async with store.lock(conversation_id)`, "
            "or reload the events and decide again."
        )


class LockTimeoutError(StoreError, TimeoutError):
    """A conversation's turn lock was not free in time."""

    def __init__(self, conversation_id: str, timeout: float) -> None:
        self.conversation_id = conversation_id
        self.timeout = timeout
        super().__init__(conversation_id, timeout)

    def __str__(self) -> str:
        return (
            f"conversation {self.conversation_id!r} stayed locked for {self.timeout:g} s: "
            "another turn of it is still running. "
            "Fix: raise the lock timeout, or look for a turn that hangs (a slow action or LLM call)."
        )


class StoreClosedError(StoreError, RuntimeError):
    """A store was used after :meth:`TrackerStore.close`."""

    def __init__(self, store: str) -> None:
        self.store = store
        super().__init__(f"the {store} tracker store is closed. Fix: open a new one with open_store(url).")


class StoreUnavailableError(StoreError, ConnectionError):
    """The store's server could not be reached."""


VALID_URL_FORMS = (
    "memory://",
    "sqlite:///absolute/path/to/file.db",
    "sqlite://relative/path/to/file.db",
    "redis://[:password@]host[:port][/db][?prefix=taiwa:&lock_ttl=30]  (rediss:// for TLS)",
    "redis+cluster://[:password@]host[:port][?prefix=taiwa:&lock_ttl=30]  (any node of a Redis Cluster)",
    "postgresql://user[:password]@host[:port]/database[?table=taiwa_events]  (postgres:// too)",
)


class StoreConfigError(StoreError, ValueError):
    """A tracker store URL that :func:`engine.stores.open_store` cannot use."""

    def __init__(self, url: str, problem: str, *, scheme: str | None = None, fix: str | None = None) -> None:
        self.url = url
        """The URL as given, with any password masked."""
        self.scheme = scheme
        self.problem = problem
        self.fix = fix
        super().__init__(url, problem)

    def __str__(self) -> str:
        lines = [f"bad tracker store URL {self.url!r}: {self.problem}", "  valid forms:"]
        lines += [f"    {form}" for form in VALID_URL_FORMS]
        if self.fix:
            lines.append(f"  Fix: {self.fix}")
        return "\n".join(lines)


def did_you_mean(name: str, options: Sequence[str]) -> str:
    """`` Did you mean 'x'?`` or an empty string."""
    hint = closest(name, options)
    return f" Did you mean {hint!r}?" if hint else ""
