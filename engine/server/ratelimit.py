"""Per-sender rate limits: a token bucket per key (``capacity`` requests at once, refilled at
``rate`` per second). Over the limit: 429 with ``Retry-After`` (whole seconds, at least 1).

This is the in-process limiter; each worker has its own buckets.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

MAX_KEYS = 100_000
"""Buckets kept (least recently used dropped beyond this: a dropped bucket starts full)."""


@dataclass
class _Bucket:
    tokens: float
    at: float


class TokenBuckets:
    def __init__(self, capacity: float, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        if capacity < 1 or rate <= 0:
            raise ValueError("rate limit: capacity must be >= 1 and rate > 0")
        self.capacity = capacity
        self.rate = rate
        self.clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def take(self, key: str) -> float:
        """0.0 when the request may pass, else the seconds until it would."""
        now = self.clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(self.capacity, now)
            if len(self._buckets) > MAX_KEYS:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
            bucket.tokens = min(self.capacity, bucket.tokens + (now - bucket.at) * self.rate)
            bucket.at = now
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return 0.0
        return (1 - bucket.tokens) / self.rate


def retry_after(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))
