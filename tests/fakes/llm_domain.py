"""A small domain and configurations for the LLM fallback tests (built in code: no YAML, no I/O)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from engine.diagnostics import Location
from engine.domain import Domain, Entity, Intent, SessionConfig
from engine.llm.chain import Backoff
from engine.nlu.model import IntentScore, ParseResult
from engine.policies.config import LlmFallbackConfig, LlmProvider

FAST = Backoff(initial=0.01, maximum=0.02)
"""Backoff for tests: retries without noticeable waits."""

PRICES: Mapping[str, Mapping[str, float]] = {
    "gpt-4o-mini": {"input": 0.15, "output": 0.6},
    "claude-3-5-haiku": {"input": 0.8, "output": 4.0},
}
"""USD per 1,000 tokens (large, so that costs are easy to check by hand)."""


def make_domain() -> Domain:
    loc = Location("domain/test.yml")
    intents = {
        "greet": Intent("greet", "The user says hello.", True, loc),
        "check_order": Intent("check_order", "The user asks where an order is.", True, loc),
        "update_email": Intent("update_email", "The user wants to change their e-mail address.", True, loc),
        "book_trip": Intent("book_trip", None, True, loc),
    }
    entities = {
        "order_id": Entity("order_id", (), (), "An order number such as A-1234.", loc),
        "email": Entity("email", (), (), None, loc),
        "city": Entity("city", ("origin", "destination"), ("outbound", "return"), None, loc),
    }
    return Domain(intents, entities, {}, {}, {}, SessionConfig())


def provider(
    name: str,
    base_url: str,
    *,
    type: str = "openai",
    model: str | None = None,
    api_key_env: str | None = None,
    timeout: float | None = None,
    retries: int | None = None,
) -> LlmProvider:
    default_model = "gpt-4o-mini" if type == "openai" else "claude-3-5-haiku"
    return LlmProvider(name, type, model or default_model, base_url, api_key_env, timeout, retries)


def config(
    providers: Sequence[LlmProvider],
    *,
    threshold: float = 0.5,
    timeout: float = 0.5,
    retries: int = 0,
    cache_size: int = 8,
    enabled: bool = True,
) -> LlmFallbackConfig:
    return LlmFallbackConfig(enabled, threshold, timeout, retries, cache_size, tuple(providers), PRICES)


def nlu_result(text: str, intent: str = "greet", confidence: float = 0.3) -> ParseResult:
    """What an unsure local NLU returns."""
    top = IntentScore(intent, confidence)
    return ParseResult(text, top, (top, IntentScore("check_order", confidence / 2)))
