"""In-process per-conversation locks, dropped as soon as nobody holds or waits for them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from engine.stores.base import LockTimeoutError


@dataclass(slots=True)
class _Entry:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0
    """Tasks holding or waiting for ``lock``; the entry is removed when it drops to 0."""


class LocalLocks:
    """One ``asyncio.Lock`` per conversation, for the stores of a single process.

    A server sees an unbounded number of conversation ids, so a lock lives only while a task
    holds or waits for it: memory stays proportional to the turns in progress. The distributed
    stores take this lock first too, so that the tasks of one process queue here instead of
    each polling Redis or holding a PostgreSQL connection while they wait.
    """

    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}

    def __len__(self) -> int:
        """Conversations whose lock is held or awaited right now."""
        return len(self._entries)

    @asynccontextmanager
    async def hold(self, conversation_id: str, timeout: float) -> AsyncIterator[None]:
        """Hold the conversation's lock; :class:`LockTimeoutError` after ``timeout`` seconds."""
        entry = self._entries.get(conversation_id)
        if entry is None:
            entry = self._entries[conversation_id] = _Entry()
        entry.users += 1
        try:
            if entry.users == 1:
                # Nobody else holds or waits for it: acquire() returns at once, no timer needed.
                await entry.lock.acquire()
            else:
                try:
                    async with asyncio.timeout(timeout):
                        await entry.lock.acquire()
                except TimeoutError:
                    raise LockTimeoutError(conversation_id, timeout) from None
            try:
                yield
            finally:
                entry.lock.release()
        finally:
            entry.users -= 1
            if entry.users == 0:
                del self._entries[conversation_id]
