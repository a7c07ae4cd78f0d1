"""LlmFallback end to end against local fake providers: when it asks, what it sends, what it keeps."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from fakes.llm_domain import FAST, PRICES, config, make_domain, nlu_result, provider
from fakes.llm_server import (
    FakeLlmServer,
    Reply,
    anthropic_answer,
    closed_port_url,
    openai_answer,
    openai_reply,
)

from engine.llm.fallback import FallbackOutcome, LlmFallback
from engine.llm.usage import Usage
from engine.loading.project import load_project
from engine.nlu.model import ParseResult
from engine.policies.config import EmergencyConfig, LlmFallbackConfig

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Msg:
    text: str
    confidence: float = 0.3
    conversation_id: str = "c1"
    user_id: str | None = "u1"

    @property
    def nlu(self) -> ParseResult:
        return nlu_result(self.text, confidence=self.confidence)


def run(
    servers: Sequence[FakeLlmServer],
    make: Callable[[], LlmFallback],
    messages: Sequence[Msg],
    between: Callable[[int], None] = lambda i: None,
) -> tuple[list[FallbackOutcome], LlmFallback]:
    """Start the servers, build the fallback (``make`` may read their urls), resolve each message."""

    async def main() -> tuple[list[FallbackOutcome], LlmFallback]:
        async with AsyncExitStack() as stack:
            for server in servers:
                await stack.enter_async_context(server)
            fallback = await stack.enter_async_context(make())
            outcomes = []
            for i, msg in enumerate(messages):
                between(i)
                outcomes.append(
                    await fallback.resolve(msg.text, msg.nlu, conversation_id=msg.conversation_id, user_id=msg.user_id)
                )
            return outcomes, fallback

    return asyncio.run(main())


def one_openai(server: FakeLlmServer, *, enabled: bool = True, cache_size: int = 8) -> Callable[[], LlmFallback]:
    """A fallback whose only provider is ``server`` (OpenAI format, no key)."""
    return lambda: LlmFallback(
        config([provider("local", server.openai_base)], enabled=enabled, cache_size=cache_size),
        make_domain(),
        backoff=FAST,
        environ={},
    )


def test_accepted_answer_replaces_the_nlu_result() -> None:
    server = FakeLlmServer(
        openai_answer(
            "check_order", 0.85, [{"entity": "order_id", "value": "A-1234"}], prompt_tokens=1000, completion_tokens=100
        )
    )
    [outcome], _ = run([server], one_openai(server), [Msg("wheres my A-1234 thing")])
    assert (outcome.source, outcome.used_llm, outcome.reason, outcome.llm_error) == ("llm", True, None, None)
    result = outcome.result
    assert (result.intent.name, result.intent.confidence) == ("check_order", 0.85)
    assert [s.name for s in result.ranking] == ["check_order", "greet"]
    assert [(e.entity, e.value, e.start, e.extractor) for e in result.entities] == [("order_id", "A-1234", 10, "llm")]
    assert result.extras["llm_fallback"]["nlu_intent"] == {"name": "greet", "confidence": 0.3}
    assert result.to_dict()["llm_fallback"]["provider"] == "local"
    assert (outcome.provider, outcome.input_tokens, outcome.output_tokens) == ("local", 1000, 100)
    assert outcome.cost_usd == pytest.approx(0.15 + 0.06)
    assert "- check_order: The user asks where an order is." in server.received[0].system_text


@pytest.mark.parametrize("confidence", [0.5, 0.9])
def test_confident_nlu_never_asks(confidence: float) -> None:
    server = FakeLlmServer(openai_answer("check_order"))
    msg = Msg("hello", confidence=confidence)
    [outcome], _ = run([server], one_openai(server), [msg])
    assert (outcome.source, outcome.reason, outcome.used_llm) == ("nlu", "above_threshold", False)
    assert outcome.result == msg.nlu
    assert server.received == []


def test_disabled_never_asks() -> None:
    server = FakeLlmServer(openai_answer("check_order"))
    [outcome], _ = run([server], one_openai(server, enabled=False), [Msg("hm")])
    assert outcome.reason == "disabled"
    assert server.received == []


def test_safe_mode_switched_at_run_time() -> None:
    server = FakeLlmServer(default=openai_answer("check_order"))
    switch = {"safe_mode": True}
    policies = load_project(ROOT, import_actions=False).project
    assert policies is not None

    def make() -> LlmFallback:
        cfg = config([provider("local", server.openai_base)])
        pol = replace(policies.policies, llm_fallback=cfg)
        return LlmFallback.from_policies(
            pol,
            make_domain(),
            emergency=lambda: EmergencyConfig(safe_mode=switch["safe_mode"]),
            backoff=FAST,
            environ={},
        )

    def flip(i: int) -> None:
        switch["safe_mode"] = i in (0, 2)

    outcomes, _ = run([server], make, [Msg("a"), Msg("b"), Msg("c")], between=flip)
    assert [o.reason for o in outcomes] == ["safe_mode", None, "safe_mode"]
    assert [r.user_text for r in server.received] == ["b"]  # SAFE_MODE: not a single request


def test_reference_project_config_builds_and_is_off_by_default() -> None:
    project = load_project(ROOT, import_actions=False).project
    assert project is not None
    server = FakeLlmServer()
    [outcome], fallback = run(
        [server], lambda: LlmFallback.from_policies(project.policies, project.domain), [Msg("hm", confidence=0.1)]
    )
    assert outcome.reason == "disabled"
    assert [link.provider.name for link in fallback.chain.links] == ["local_openai", "anthropic"]
    assert all(f"- {name}" in fallback.system_prompt for name in project.domain.intents)


def test_all_providers_down_the_nlu_answer_stands() -> None:
    a = FakeLlmServer(default=Reply(status=500))

    def make() -> LlmFallback:
        cfg = config([provider("a", a.openai_base), provider("b", closed_port_url())], retries=1)
        return LlmFallback(cfg, make_domain(), backoff=FAST, environ={})

    msg = Msg("hmm")
    [outcome], fallback = run([a], make, [msg])
    assert (outcome.source, outcome.reason, outcome.used_llm) == ("nlu", "providers_failed", False)
    assert outcome.result.intent == msg.nlu.intent
    assert outcome.llm_error is not None and outcome.llm_error.startswith("all 2 LLM providers failed")
    assert outcome.result.extras["llm_fallback"]["error"] == outcome.llm_error
    assert [(f.provider, f.kind, f.attempts) for f in outcome.failures] == [
        ("a", "server_error", 2),
        ("b", "connection", 2),
    ]
    assert fallback.ledger.total == Usage()
    assert len(fallback.cache) == 0  # failures are not cached


def test_malformed_answer_fails_over_and_both_completions_are_paid() -> None:
    a = FakeLlmServer(openai_reply('{"intent": "greet"}', prompt_tokens=100, completion_tokens=10))  # no confidence
    b = FakeLlmServer(anthropic_answer("greet", 0.7, input_tokens=200, output_tokens=20))

    def make() -> LlmFallback:
        cfg = config([provider("a", a.openai_base), provider("b", b.anthropic_base, type="anthropic")])
        return LlmFallback(cfg, make_domain(), backoff=FAST, environ={})

    [outcome], fallback = run([a, b], make, [Msg("hi there")])
    assert (outcome.source, outcome.provider, outcome.result.intent.name) == ("llm", "b", "greet")
    assert [(f.provider, f.kind) for f in outcome.failures] == [("a", "invalid_answer")]
    expected = (100 * 0.15 + 10 * 0.6 + 200 * 0.8 + 20 * 4.0) / 1000
    assert (outcome.input_tokens, outcome.output_tokens) == (300, 30)
    assert outcome.cost_usd == pytest.approx(expected)
    assert fallback.ledger.for_conversation("c1").requests == 2
    assert fallback.ledger.for_conversation("c1").cost_usd == pytest.approx(expected)


@pytest.mark.parametrize("content", ["The user greets.", '{"intent": ["greet"], "confidence": 0.9}'])
def test_only_provider_with_a_bad_answer_leaves_the_nlu(content: str) -> None:
    server = FakeLlmServer(openai_reply(content))
    [outcome], fallback = run([server], one_openai(server), [Msg("hm")])
    assert (outcome.source, outcome.reason) == ("nlu", "providers_failed")
    assert outcome.llm_error is not None and "invalid_answer" in outcome.llm_error
    assert fallback.ledger.total.requests == 1


def test_unknown_intent_is_ignored_without_asking_the_next_provider() -> None:
    a, b = FakeLlmServer(openai_answer("cancel_account", 0.99)), FakeLlmServer(openai_answer("greet"))

    def make() -> LlmFallback:
        cfg = config([provider("a", a.openai_base), provider("b", b.openai_base)])
        return LlmFallback(cfg, make_domain(), backoff=FAST, environ={})

    msg = Msg("close it all")
    [outcome], _ = run([a, b], make, [msg])
    assert (outcome.source, outcome.reason, outcome.used_llm) == ("nlu", "unknown_intent", False)
    assert outcome.llm_error == "the LLM answered the unknown intent 'cancel_account'"
    assert outcome.result.intent == msg.nlu.intent
    assert outcome.input_tokens == 100  # paid for all the same
    assert len(b.received) == 0


def test_null_intent_keeps_the_nlu_without_an_error() -> None:
    server = FakeLlmServer(openai_answer(None, 0.2))
    [outcome], _ = run([server], one_openai(server), [Msg("blah")])
    assert (outcome.reason, outcome.llm_error, outcome.source) == ("no_intent", None, "nlu")


def test_unknown_entities_are_dropped() -> None:
    entities = [
        {"entity": "airport", "value": "CDG"},
        {"entity": "city", "value": "Paris", "role": "destination"},
        {"entity": "city", "value": "Nice", "role": "pilot"},
    ]
    server = FakeLlmServer(openai_answer("book_trip", 0.8, entities))
    [outcome], _ = run([server], one_openai(server), [Msg("CDG to Paris, Nice")])
    assert [(e.entity, e.value, e.role) for e in outcome.result.entities] == [("city", "Paris", "destination")]
    assert outcome.result.extras["llm_fallback"]["dropped"] == [
        "airport: unknown entity type",
        "city: unknown role 'pilot'",
    ]


def test_costs_per_conversation_and_per_user() -> None:
    a = FakeLlmServer(default=openai_answer("greet", prompt_tokens=1000, completion_tokens=100))
    messages = [
        Msg("one", conversation_id="c1", user_id="u1"),
        Msg("two", conversation_id="c1", user_id="u1"),
        Msg("three", conversation_id="c2", user_id="u1"),
        Msg("four", conversation_id="c3", user_id="u2"),
        Msg("five", conversation_id="c4", user_id=None),
    ]
    _, fallback = run([a], one_openai(a), messages)
    per_request = (1000 * PRICES["gpt-4o-mini"]["input"] + 100 * PRICES["gpt-4o-mini"]["output"]) / 1000
    ledger = fallback.ledger
    assert ledger.for_conversation("c1").requests == 2
    assert ledger.for_conversation("c1").cost_usd == pytest.approx(2 * per_request)
    assert ledger.for_user("u1").input_tokens == 3000
    assert ledger.for_user("u1").cost_usd == pytest.approx(3 * per_request)
    assert ledger.for_user("u2").output_tokens == 100
    assert ledger.total.requests == 5
    assert ledger.total.cost_usd == pytest.approx(5 * per_request)
    assert set(ledger.users()) == {"u1", "u2"}


def test_unpriced_model_costs_nothing_but_is_counted() -> None:
    server = FakeLlmServer(openai_answer("greet", model="mystery-model"))

    def make() -> LlmFallback:
        cfg = config([provider("local", server.openai_base, model="mystery-model")])
        return LlmFallback(cfg, make_domain(), backoff=FAST, environ={})

    [outcome], fallback = run([server], make, [Msg("hi")])
    assert outcome.cost_usd == 0.0
    assert fallback.ledger.total.unpriced_requests == 1


def test_cache_asks_once_for_the_same_masked_text() -> None:
    server = FakeLlmServer(default=openai_answer("update_email", 0.9, [{"entity": "email", "value": "<EMAIL>"}]))
    messages = [Msg("change my email to a@x.io"), Msg("change my email to b@y.org", conversation_id="c2")]
    outcomes, fallback = run([server], one_openai(server), messages)
    assert len(server.received) == 1
    assert [o.source for o in outcomes] == ["llm", "cache"]
    # The cached answer is unmasked with each message's own data.
    assert [o.result.entities[0].value for o in outcomes] == ["a@x.io", "b@y.org"]
    assert (outcomes[1].input_tokens, outcomes[1].cost_usd, outcomes[1].provider) == (0, 0.0, "local")
    assert fallback.ledger.for_conversation("c2") == Usage()


def test_cache_evicts_the_least_recently_used() -> None:
    server = FakeLlmServer(default=openai_answer("greet"))
    messages = [Msg("alpha"), Msg("beta"), Msg("alpha"), Msg("gamma"), Msg("alpha"), Msg("beta")]
    _, fallback = run([server], one_openai(server, cache_size=2), messages)
    # alpha, beta asked; alpha cached; gamma evicts beta; alpha cached; beta asked again.
    assert [r.user_text for r in server.received] == ["alpha", "beta", "gamma", "beta"]
    assert len(fallback.cache) == 2


def test_personal_data_never_goes_over_the_wire() -> None:
    server = FakeLlmServer(default=openai_answer("greet"))
    text = "I'm jane@corp.example, +44 20 7946 0958, card 4111 1111 1111 1111, from 10.0.0.7"
    _, _ = run([server], one_openai(server), [Msg(text)])
    [request] = server.received
    assert request.user_text == "I'm <EMAIL>, <PHONE>, card <CARD>, from <IP>"
    for secret in ("jane@corp.example", "7946", "4111", "10.0.0.7"):
        assert secret.encode() not in request.body


def test_pii_masking_can_be_turned_off() -> None:
    server = FakeLlmServer(default=openai_answer("greet"))

    def make() -> LlmFallback:
        cfg: LlmFallbackConfig = config([provider("local", server.openai_base)])
        return LlmFallback(cfg, make_domain(), pii_masking=False, backoff=FAST, environ={})

    run([server], make, [Msg("mail jane@corp.example")])
    assert server.received[0].user_text == "mail jane@corp.example"
