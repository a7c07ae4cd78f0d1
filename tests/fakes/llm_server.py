"""A fake LLM provider: a real aiohttp.web server on 127.0.0.1 (port 0) speaking both wire formats.

Each request takes the next scripted :class:`Reply` (or the ``default`` once the script is
used up) and is recorded as :class:`Received`, so tests can assert what really went over the
wire: paths, headers, bodies, and the masked text.

    async with FakeLlmServer(openai_answer("greet"), Reply(status=500)) as server:
        ...  # base urls: server.openai_base (…/v1), server.anthropic_base
        assert len(server.received) == 2

A reply's ``delay`` simulates a slow provider; it ends early when the server closes, so a
test never waits for a client that already gave up.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from aiohttp import web


@dataclass(frozen=True)
class Reply:
    """One scripted behaviour."""

    status: int = 200
    json: Any = None
    """Body, serialised as JSON (ignored when ``body`` is given)."""
    body: bytes | None = None
    """Raw body (for malformed responses)."""
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0
    """Seconds to wait before answering (a slow provider)."""


@dataclass(frozen=True)
class Received:
    """One request as the server saw it."""

    method: str
    path: str
    headers: Mapping[str, str]
    """Lower-cased names."""
    body: bytes
    at: float
    """``time.monotonic()`` when it arrived."""

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def user_text(self) -> str:
        """The user message, from either wire format."""
        messages = self.json["messages"]
        return str(next(m["content"] for m in messages if m["role"] == "user"))

    @property
    def system_text(self) -> str:
        data = self.json
        if "system" in data:
            return str(data["system"])
        return str(next(m["content"] for m in data["messages"] if m["role"] == "system"))


Behaviour = Reply | Callable[[Received], Reply]


class FakeLlmServer:
    """Scripted replies in order, then ``default`` (a 500 unless given)."""

    def __init__(self, *script: Behaviour, default: Behaviour | None = None) -> None:
        self._script: deque[Behaviour] = deque(script)
        self._default: Behaviour = default if default is not None else Reply(status=500, json={"error": "unscripted"})
        self.received: list[Received] = []
        self._runner: web.AppRunner | None = None
        self._closing = asyncio.Event()
        self._port = 0

    def script(self, *replies: Behaviour) -> None:
        """Queue more replies."""
        self._script.extend(replies)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    @property
    def openai_base(self) -> str:
        return f"{self.url}/v1"

    @property
    def anthropic_base(self) -> str:
        return self.url

    async def start(self) -> FakeLlmServer:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, handler_cancellation=True, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self._port = int(self._runner.addresses[0][1])
        return self

    async def close(self) -> None:
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeLlmServer:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def _handle(self, request: web.Request) -> web.Response:
        received = Received(
            request.method,
            request.path,
            {k.lower(): v for k, v in request.headers.items()},
            await request.read(),
            time.monotonic(),
        )
        self.received.append(received)
        behaviour = self._script.popleft() if self._script else self._default
        reply = behaviour(received) if callable(behaviour) else behaviour
        if reply.delay:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), reply.delay)
        body = reply.body if reply.body is not None else json.dumps(reply.json).encode()
        return web.Response(
            status=reply.status, body=body, headers={"Content-Type": "application/json", **reply.headers}
        )


def closed_port_url() -> str:
    """A base url on which nothing listens (connection refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


# -- answers -----------------------------------------------------------------------------


def answer_json(intent: str | None, confidence: float = 0.9, entities: Sequence[Mapping[str, Any]] = ()) -> str:
    """The JSON text a well-behaved LLM answers."""
    return json.dumps({"intent": intent, "entities": list(entities), "confidence": confidence})


def openai_reply(
    content: str, *, prompt_tokens: int = 100, completion_tokens: int = 20, model: str = "gpt-4o-mini"
) -> Reply:
    """A chat-completions response carrying ``content``."""
    return Reply(
        json={
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }
    )


def anthropic_reply(
    content: str, *, input_tokens: int = 100, output_tokens: int = 20, model: str = "claude-3-5-haiku"
) -> Reply:
    """A messages-API response carrying ``content``."""
    return Reply(
        json={
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "text", "text": content}],
            "stop_reason": "end_turn",
            "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens},
        }
    )


def openai_answer(
    intent: str | None, confidence: float = 0.9, entities: Sequence[Mapping[str, Any]] = (), **usage: Any
) -> Reply:
    return openai_reply(answer_json(intent, confidence, entities), **usage)


def anthropic_answer(
    intent: str | None, confidence: float = 0.9, entities: Sequence[Mapping[str, Any]] = (), **usage: Any
) -> Reply:
    return anthropic_reply(answer_json(intent, confidence, entities), **usage)
