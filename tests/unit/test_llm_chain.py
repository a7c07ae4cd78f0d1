"""The provider chain: order, retries, and failing over on every kind of failure."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from contextlib import AsyncExitStack

import aiohttp
import pytest
from fakes.llm_domain import FAST, config, provider
from fakes.llm_server import FakeLlmServer, Reply, anthropic_reply, closed_port_url, openai_reply

from engine.llm.chain import ChainResult, ProviderChain, ProvidersFailedError
from engine.llm.providers import BadResponseError, Completion, Prompt
from engine.policies.config import LlmProvider

PROMPT = Prompt("Answer in JSON.", "hello")
ChainOutcome = ChainResult[str] | ProvidersFailedError


def run_chain(
    servers: Sequence[FakeLlmServer],
    providers: Callable[[], Sequence[LlmProvider]],
    *,
    timeout: float = 0.5,
    retries: int = 0,
    parse: Callable[[Completion], str] = lambda c: c.text,
    environ: Mapping[str, str] | None = None,
) -> ChainOutcome:
    """Start the servers, build the chain (``providers`` may read their urls), ask once."""

    async def main() -> ChainOutcome:
        async with AsyncExitStack() as stack:
            for server in servers:
                await stack.enter_async_context(server)
            session = await stack.enter_async_context(aiohttp.ClientSession())
            cfg = config(providers(), timeout=timeout, retries=retries)
            chain = ProviderChain.from_config(cfg, backoff=FAST, environ=environ or {})
            try:
                return await chain.complete(session, PROMPT, parse)
            except ProvidersFailedError as exc:
                return exc

    return asyncio.run(main())


def ok(outcome: ChainOutcome) -> ChainResult[str]:
    assert isinstance(outcome, ChainResult), str(outcome)
    return outcome


def test_first_provider_answers_and_the_rest_are_not_asked() -> None:
    a, b = FakeLlmServer(openai_reply("from a")), FakeLlmServer(anthropic_reply("from b"))
    result = ok(
        run_chain([a, b], lambda: [provider("a", a.openai_base), provider("b", b.anthropic_base, type="anthropic")])
    )
    assert (result.value, result.provider, result.failures) == ("from a", "a", ())
    assert (len(a.received), len(b.received)) == (1, 0)


@pytest.mark.parametrize(
    ("reply", "kind"),
    [
        (Reply(delay=2.0), "timeout"),
        (Reply(status=429, headers={"Retry-After": "30"}), "rate_limited"),
        (Reply(status=500), "server_error"),
        (Reply(status=200, body=b'{"choices": [{"message": '), "bad_response"),
        (Reply(status=403, json={"error": {"message": "no access"}}), "rejected"),
    ],
)
def test_fails_over_to_the_next_provider(reply: Reply, kind: str) -> None:
    a, b = FakeLlmServer(reply), FakeLlmServer(anthropic_reply("from b"))
    result = ok(
        run_chain(
            [a, b],
            lambda: [provider("a", a.openai_base), provider("b", b.anthropic_base, type="anthropic")],
            timeout=0.2,
        )
    )
    assert (result.value, result.provider) == ("from b", "b")
    [failure] = result.failures
    assert (failure.provider, failure.kind, failure.attempts) == ("a", kind, 1)
    assert len(b.received) == 1


def test_connection_refused_fails_over() -> None:
    b = FakeLlmServer(openai_reply("from b"))
    result = ok(run_chain([b], lambda: [provider("down", closed_port_url()), provider("b", b.openai_base)]))
    assert result.provider == "b"
    assert [(f.provider, f.kind) for f in result.failures] == [("down", "connection")]


def test_transient_failures_are_retried_on_the_same_provider() -> None:
    a = FakeLlmServer(Reply(status=500), Reply(delay=2.0), openai_reply("third time"))
    result = ok(run_chain([a], lambda: [provider("a", a.openai_base)], timeout=0.2, retries=2))
    assert (result.value, result.failures) == ("third time", ())
    assert len(a.received) == 3


def test_retries_run_out_then_the_next_provider() -> None:
    a, b = FakeLlmServer(default=Reply(status=503)), FakeLlmServer(openai_reply("from b"))
    result = ok(run_chain([a, b], lambda: [provider("a", a.openai_base, retries=2), provider("b", b.openai_base)]))
    assert len(a.received) == 3
    assert [(f.kind, f.attempts) for f in result.failures] == [("server_error", 3)]
    assert "after 3 attempts" in str(result.failures[0])


def test_bad_responses_are_not_retried() -> None:
    a, b = FakeLlmServer(default=Reply(body=b"nope")), FakeLlmServer(openai_reply("from b"))
    result = ok(run_chain([a, b], lambda: [provider("a", a.openai_base), provider("b", b.openai_base)], retries=3))
    assert len(a.received) == 1
    assert result.failures[0].kind == "bad_response"


def test_retry_after_within_the_timeout_is_honoured() -> None:
    a = FakeLlmServer(Reply(status=429, headers={"Retry-After": "0.15"}), openai_reply("after waiting"))
    result = ok(run_chain([a], lambda: [provider("a", a.openai_base)], timeout=0.5, retries=1))
    assert result.value == "after waiting"
    first, second = a.received
    assert second.at - first.at >= 0.14


def test_retry_after_beyond_the_timeout_fails_over_at_once() -> None:
    a = FakeLlmServer(Reply(status=429, headers={"Retry-After": "5"}), openai_reply("never asked"))
    b = FakeLlmServer(openai_reply("from b"))
    result = ok(
        run_chain([a, b], lambda: [provider("a", a.openai_base), provider("b", b.openai_base)], timeout=0.3, retries=3)
    )
    assert result.provider == "b"
    assert len(a.received) == 1
    assert result.failures[0].message == "HTTP 429 rate limited (Retry-After 5s)"


def test_per_provider_timeout_overrides_the_section() -> None:
    a, b = FakeLlmServer(Reply(delay=2.0)), FakeLlmServer(openai_reply("from b"))
    result = ok(
        run_chain(
            [a, b], lambda: [provider("a", a.openai_base, timeout=0.1), provider("b", b.openai_base)], timeout=5.0
        )
    )
    assert result.failures[0].message == "no answer within 0.1s"


def test_an_answer_refused_by_parse_moves_on_and_keeps_the_completion() -> None:
    a, b = FakeLlmServer(openai_reply("garbage", prompt_tokens=11)), FakeLlmServer(openai_reply("good"))

    def parse(completion: Completion) -> str:
        if completion.text != "good":
            raise BadResponseError("not the answer")
        return completion.text

    result = ok(
        run_chain([a, b], lambda: [provider("a", a.openai_base), provider("b", b.openai_base)], parse=parse, retries=2)
    )
    [failure] = result.failures
    assert (failure.kind, failure.attempts) == ("bad_response", 1)
    assert failure.completion is not None and failure.completion.input_tokens == 11
    assert result.value == "good"


def test_missing_api_key_skips_the_provider() -> None:
    a, b = FakeLlmServer(openai_reply("from a")), FakeLlmServer(anthropic_reply("from b"))
    result = ok(
        run_chain(
            [a, b],
            lambda: [
                provider("a", a.openai_base, api_key_env="A_KEY"),
                provider("b", b.anthropic_base, type="anthropic", api_key_env="B_KEY"),
            ],
            environ={"B_KEY": "secret-b"},
        )
    )
    assert result.provider == "b"
    assert [(f.provider, f.kind, f.attempts) for f in result.failures] == [("a", "missing_key", 0)]
    assert "A_KEY" in result.failures[0].message
    assert len(a.received) == 0
    assert b.received[0].headers["x-api-key"] == "secret-b"


def test_all_down_lists_every_provider() -> None:
    a = FakeLlmServer(default=Reply(status=500))
    outcome = run_chain([a], lambda: [provider("a", a.openai_base), provider("b", closed_port_url())])
    assert isinstance(outcome, ProvidersFailedError)
    assert [(f.provider, f.kind) for f in outcome.failures] == [("a", "server_error"), ("b", "connection")]
    assert str(outcome).startswith("all 2 LLM providers failed: a: server_error (HTTP 500); b: connection")


def test_no_provider_is_an_error_too() -> None:
    outcome = run_chain([], lambda: [])
    assert isinstance(outcome, ProvidersFailedError)
    assert str(outcome) == "no LLM provider is configured"
