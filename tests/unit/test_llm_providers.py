"""The two wire formats, over a real local HTTP server, and how each failure is typed."""

from __future__ import annotations

import asyncio
from email.utils import formatdate

import aiohttp
import pytest
from fakes.llm_domain import provider
from fakes.llm_server import FakeLlmServer, Reply, anthropic_reply, closed_port_url, openai_reply

from engine.llm.providers import (
    AnthropicProvider,
    BadResponseError,
    Completion,
    OpenAIProvider,
    Prompt,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeoutError,
    RateLimitedError,
    RequestRejectedError,
    ServerError,
    make_provider,
    parse_retry_after,
)

PROMPT = Prompt("You classify messages. Answer in JSON.", "where is my order?", max_tokens=64)


def call(server: FakeLlmServer, kind: str, *, api_key: str | None = "k-123", timeout: float = 1.0) -> Completion:
    async def main() -> Completion:
        async with server, aiohttp.ClientSession() as session:
            base = server.openai_base if kind == "openai" else server.anthropic_base
            return await make_provider(provider("p1", base, type=kind)).complete(session, PROMPT, api_key, timeout)

    return asyncio.run(main())


def test_openai_wire_format() -> None:
    server = FakeLlmServer(
        openai_reply('{"intent": "greet"}', prompt_tokens=31, completion_tokens=7, model="gpt-x-2024")
    )
    completion = call(server, "openai")
    assert completion == Completion('{"intent": "greet"}', 31, 7, "gpt-x-2024", "p1")
    [request] = server.received
    assert (request.method, request.path) == ("POST", "/v1/chat/completions")
    assert request.headers["authorization"] == "Bearer k-123"
    assert request.headers["content-type"].startswith("application/json")
    assert request.json == {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": PROMPT.system},
            {"role": "user", "content": PROMPT.user},
        ],
        "response_format": {"type": "json_object"},
    }


def test_anthropic_wire_format() -> None:
    server = FakeLlmServer(anthropic_reply('{"intent": "greet"}', input_tokens=40, output_tokens=9))
    completion = call(server, "anthropic")
    assert completion == Completion('{"intent": "greet"}', 40, 9, "claude-3-5-haiku", "p1")
    [request] = server.received
    assert (request.method, request.path) == ("POST", "/v1/messages")
    assert request.headers["x-api-key"] == "k-123"
    assert request.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in request.headers
    assert request.json == {
        "model": "claude-3-5-haiku",
        "max_tokens": 64,
        "system": PROMPT.system,
        "messages": [{"role": "user", "content": PROMPT.user}],
    }


def test_anthropic_answer_takes_the_first_text_block() -> None:
    reply = Reply(
        json={
            "content": [{"type": "thinking", "thinking": "hm"}, {"type": "text", "text": "{}"}],
            "usage": {"input_tokens": 1, "output_tokens": 2},
        }
    )
    assert call(FakeLlmServer(reply), "anthropic").text == "{}"


def test_no_key_sends_no_auth_header() -> None:
    server = FakeLlmServer(openai_reply("{}"))
    call(server, "openai", api_key=None)
    assert "authorization" not in server.received[0].headers


def test_default_base_urls() -> None:
    openai = OpenAIProvider(provider("o", "", type="openai"))
    anthropic = AnthropicProvider(provider("a", "", type="anthropic"))
    assert openai.build_request(PROMPT, None).url == "https://api.openai.com/v1/chat/completions"
    assert anthropic.build_request(PROMPT, None).url == "https://api.anthropic.com/v1/messages"
    trailing = OpenAIProvider(provider("o", "http://127.0.0.1:8000/v1/", type="openai"))
    assert trailing.build_request(PROMPT, None).url == "http://127.0.0.1:8000/v1/chat/completions"


def test_unknown_type_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match="known types: anthropic, openai"):
        make_provider(provider("x", "http://x", type="cohere"))


@pytest.mark.parametrize(
    ("kind", "reply", "error", "message"),
    [
        ("openai", Reply(status=429, headers={"Retry-After": "2"}), RateLimitedError, "429"),
        ("openai", Reply(status=500), ServerError, "HTTP 500"),
        ("anthropic", Reply(status=529), ServerError, "HTTP 529"),
        ("openai", Reply(status=401, json={"error": {"message": "bad key"}}), RequestRejectedError, "401: bad key"),
        ("openai", Reply(body=b"<html>oops"), BadResponseError, "not JSON"),
        ("openai", Reply(json={"choices": []}), BadResponseError, "choices"),
        ("openai", Reply(json=[1, 2]), BadResponseError, "expected an object"),
        ("anthropic", Reply(json={"content": [{"type": "tool_use"}]}), BadResponseError, "no text block"),
    ],
)
def test_failures_are_typed(kind: str, reply: Reply, error: type[ProviderError], message: str) -> None:
    with pytest.raises(error, match=message) as info:
        call(FakeLlmServer(reply), kind)
    if isinstance(info.value, RateLimitedError):
        assert info.value.retry_after == 2.0


def test_slow_server_is_a_timeout() -> None:
    with pytest.raises(ProviderTimeoutError, match=r"0\.1s"):
        call(FakeLlmServer(Reply(delay=2.0)), "openai", timeout=0.1)


def test_closed_port_is_a_connection_error() -> None:
    async def main() -> None:
        async with aiohttp.ClientSession() as session:
            await OpenAIProvider(provider("o", closed_port_url())).complete(session, PROMPT, None, 1.0)

    with pytest.raises(ProviderConnectionError):
        asyncio.run(main())


def test_retry_after_forms() -> None:
    assert parse_retry_after({"Retry-After": "3"}) == 3.0
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert parse_retry_after({"Retry-After": formatdate(1_000_030, usegmt=True)}, now=1_000_000) == 30.0
    assert parse_retry_after({"Retry-After": "soon"}) is None
    assert parse_retry_after({}) is None
