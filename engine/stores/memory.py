"""A tracker store in a dict: for tests and single-process development; nothing survives a restart."""

from __future__ import annotations

import time
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass

from engine.events import Event
from engine.stores._codec import decode_event, encode_events
from engine.stores._locks import LocalLocks
from engine.stores.base import (
    DEFAULT_LOCK_TIMEOUT,
    ConcurrentWriteError,
    StoreClosedError,
    TrackerStore,
    check_since,
)


@dataclass(frozen=True, slots=True)
class _Row:
    conversation_id: str
    seq: int
    type: str
    data: str
    """The event's JSON: kept as text so a stored event shares no mutable value with the caller."""
    stored_at: float


class InMemoryTrackerStore(TrackerStore):
    """Events in process memory, locks per conversation in process.

    Appends run without an ``await`` between the length check and the write, so they are
    atomic for the event loop.
    """

    def __init__(self) -> None:
        self._rows: dict[str, list[_Row]] = {}
        self._locks = LocalLocks()
        self._closed = False

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError("memory")

    async def append(self, conversation_id: str, events: Sequence[Event], *, expected_length: int | None = None) -> int:
        self._check_open()
        encoded = encode_events(events)
        rows = self._rows.get(conversation_id, [])
        if expected_length is not None and expected_length != len(rows):
            raise ConcurrentWriteError(conversation_id, expected_length, len(rows))
        if not encoded:
            return len(rows)
        now = time.time()
        start = len(rows)
        rows.extend(_Row(conversation_id, start + i, e.type, e.data, now) for i, e in enumerate(encoded))
        self._rows[conversation_id] = rows
        return len(rows)

    async def load(self, conversation_id: str, *, since: int = 0) -> list[Event]:
        self._check_open()
        check_since(since)
        return [decode_event(row.data) for row in self._rows.get(conversation_id, [])[since:]]

    async def length(self, conversation_id: str) -> int:
        self._check_open()
        return len(self._rows.get(conversation_id, ()))

    async def conversations(self) -> list[str]:
        self._check_open()
        return sorted(self._rows)

    async def delete(self, conversation_id: str) -> None:
        self._check_open()
        self._rows.pop(conversation_id, None)

    async def close(self) -> None:
        self._closed = True

    def lock(self, conversation_id: str, *, timeout: float = DEFAULT_LOCK_TIMEOUT) -> AbstractAsyncContextManager[None]:
        self._check_open()
        return self._locks.hold(conversation_id, timeout)
