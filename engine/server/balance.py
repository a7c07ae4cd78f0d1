"""Keep-alive connections spread evenly over the workers of ``taiwa run --workers N``.

The workers share one listening socket, and the kernel gives a new connection to whichever
worker accepts it first. Clients that open their connections all at once (a load balancer's
pool, a load generator) often end up split 70/30 or 80/20 over two workers, and stay so for as
long as the connections live: the busier worker saturates and its turns queue while the other
one idles. Measured here with 100 paced connections on 2 workers, an 80/20 split took p95
from single-digit milliseconds to 66 ms at a load both workers together carried easily.

Each worker publishes how many connections it holds in a small array shared by all of them
(created before the fork). A worker holding more than its share (``ceil(total / workers)``)
plus :data:`SLACK` answers its next response with ``Connection: close``, at most once per
:data:`CHECK_EVERY`. The client reconnects, and the new connection usually lands on a less
busy worker, the one that is waiting in ``accept`` rather than running turns; HTTP/1.1 clients
handle a server's ``Connection: close`` as a matter of course.
"""

from __future__ import annotations

import ctypes
import math
import multiprocessing
import os
import time
from multiprocessing.sharedctypes import RawArray
from typing import Any

SLACK = 2
"""Connections a worker may hold above its even share before it closes one."""
CHECK_EVERY = 0.02
"""Seconds between two looks at the shared counts by one worker (and so between two closes)."""


class ConnectionBalance:
    """The shared connection counts of a server's workers (see the module docstring)."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        # A spare slot per worker: a worker that died keeps its slot until its pid is checked.
        self._pids: Any = RawArray(ctypes.c_long, 2 * workers)
        self._open: Any = RawArray(ctypes.c_long, 2 * workers)
        self._claim = multiprocessing.get_context("fork").Lock()
        self._slot = -1
        self._next_check = 0.0

    def join(self) -> None:
        """Take a slot for this worker process (in the worker, before it serves)."""
        pid = os.getpid()
        with self._claim:
            for i, owner in enumerate(self._pids):
                if owner == pid or owner == 0 or not _alive(owner):
                    self._pids[i] = pid
                    self._open[i] = 0
                    self._slot = i
                    return

    def leave(self) -> None:
        """Give the slot back (the worker is stopping)."""
        if self._slot >= 0:
            with self._claim:
                self._pids[self._slot] = 0
                self._open[self._slot] = 0
            self._slot = -1

    def opened(self) -> None:
        if self._slot >= 0:
            self._open[self._slot] += 1

    def closed(self) -> None:
        if self._slot >= 0:
            self._open[self._slot] = max(0, self._open[self._slot] - 1)

    def should_close(self) -> bool:
        """Whether this worker should close the connection it is answering on."""
        if self._slot < 0:
            return False
        now = time.monotonic()
        if now < self._next_check:
            return False
        self._next_check = now + CHECK_EVERY
        total = workers = 0
        for pid, count in zip(self._pids, self._open, strict=True):
            if pid:
                total += count
                workers += 1
        mine: int = self._open[self._slot]
        return mine > math.ceil(total / max(workers, 1)) + SLACK

    def counts(self) -> dict[int, int]:
        """Open connections per worker pid (for tests and diagnostics)."""
        return {pid: count for pid, count in zip(self._pids, self._open, strict=True) if pid}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
