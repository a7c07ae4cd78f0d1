"""Tokens and money spent on LLM calls, per conversation and per user.

Prices come from ``llm_fallback.prices``: USD per 1,000 tokens, keyed by model, with
``input`` and ``output``. A model missing from the table costs nothing here but is counted in
``unpriced_requests``, so a forgotten price shows up instead of passing for free.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass

Prices = Mapping[str, Mapping[str, float]]


def compute_cost(prices: Prices, model: str, input_tokens: int, output_tokens: int) -> float | None:
    """USD for one request; None when ``model`` has no price."""
    price = prices.get(model)
    if price is None:
        return None
    return input_tokens / 1000 * price.get("input", 0.0) + output_tokens / 1000 * price.get("output", 0.0)


@dataclass(frozen=True, slots=True)
class Usage:
    requests: int = 0
    """Completions received (failed answers included: they were paid for)."""
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    unpriced_requests: int = 0
    """Requests whose model is not in the price table (counted at no cost)."""

    def add(self, input_tokens: int, output_tokens: int, cost_usd: float | None) -> Usage:
        return Usage(
            self.requests + 1,
            self.input_tokens + input_tokens,
            self.output_tokens + output_tokens,
            self.cost_usd + (cost_usd or 0.0),
            self.unpriced_requests + (cost_usd is None),
        )


class UsageLedger:
    """Running totals; safe to share between asyncio tasks and threads.

    Per-conversation entries live until :meth:`forget_conversation` (the dialogue engine calls
    it when a conversation ends), so a long-running server does not keep every conversation.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._total = Usage()
        self._conversations: dict[str, Usage] = {}
        self._users: dict[str, Usage] = {}

    def record(
        self,
        *,
        conversation_id: str,
        user_id: str | None,
        input_tokens: int,
        output_tokens: int,
        cost_usd: float | None,
    ) -> None:
        """Add one request to the totals of its conversation, its user (if known) and overall."""
        with self._lock:
            self._total = self._total.add(input_tokens, output_tokens, cost_usd)
            conv = self._conversations.get(conversation_id, Usage())
            self._conversations[conversation_id] = conv.add(input_tokens, output_tokens, cost_usd)
            if user_id is not None:
                user = self._users.get(user_id, Usage())
                self._users[user_id] = user.add(input_tokens, output_tokens, cost_usd)

    @property
    def total(self) -> Usage:
        return self._total

    def for_conversation(self, conversation_id: str) -> Usage:
        return self._conversations.get(conversation_id, Usage())

    def for_user(self, user_id: str) -> Usage:
        return self._users.get(user_id, Usage())

    def conversations(self) -> dict[str, Usage]:
        """A copy of the per-conversation totals."""
        with self._lock:
            return dict(self._conversations)

    def users(self) -> dict[str, Usage]:
        """A copy of the per-user totals."""
        with self._lock:
            return dict(self._users)

    def forget_conversation(self, conversation_id: str) -> Usage:
        """Drop a finished conversation's entry (its user and the total keep it); returns it."""
        with self._lock:
            return self._conversations.pop(conversation_id, Usage())
