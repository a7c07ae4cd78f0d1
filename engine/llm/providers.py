"""The two wire formats an LLM provider may speak, and the typed errors of a call.

``openai`` is the chat-completions API (``POST {base}/chat/completions``), which local
servers (vLLM, Ollama, LM Studio) speak too; ``anthropic`` is the messages API
(``POST {base}/v1/messages``). Each class builds its request and parses its response with
pure methods (:meth:`build_request`, :meth:`parse_response`), so both are testable without a
network; :meth:`HttpProvider.complete` sends the request over an ``aiohttp`` session and maps
every way it can fail onto one :class:`ProviderError` subclass, which the chain uses to decide
whether to retry or to move on to the next provider.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar

import aiohttp

from engine.diagnostics import EngineError
from engine.policies.config import LlmProvider

ANTHROPIC_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 512
"""Answer budget of a request: the JSON answer is short."""
_ERROR_SNIPPET = 200


@dataclass(frozen=True, slots=True)
class Prompt:
    system: str
    """Instructions: the intents, entity types and answer format."""
    user: str
    """The (masked) user message."""
    max_tokens: int = DEFAULT_MAX_TOKENS
    """Answer budget; sent where the wire format requires it (Anthropic)."""


@dataclass(frozen=True, slots=True)
class Completion:
    """What a provider answered, with what it cost in tokens."""

    text: str
    input_tokens: int
    output_tokens: int
    model: str
    """The model the provider reports (may carry a date suffix), else the configured one."""
    provider: str
    """The provider's configured name."""


@dataclass(frozen=True, slots=True)
class HttpRequest:
    url: str
    headers: Mapping[str, str]
    body: Mapping[str, Any]


class ProviderError(EngineError):
    """One provider call failed; ``kind`` is a stable name recorded in failures."""

    kind: ClassVar[str] = "error"
    retryable: ClassVar[bool] = False
    """Whether trying the same provider again may help."""


class ProviderTimeoutError(ProviderError):
    kind = "timeout"
    retryable = True


class RateLimitedError(ProviderError):
    kind = "rate_limited"
    retryable = True

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        """Seconds the provider asked to wait (``Retry-After``), if it said."""


class ServerError(ProviderError):
    kind = "server_error"
    retryable = True


class ProviderConnectionError(ProviderError):
    kind = "connection"
    retryable = True


class BadResponseError(ProviderError):
    """The body is not the wire format, or the content is not the expected answer."""

    kind = "bad_response"


class RequestRejectedError(ProviderError):
    """A 4xx other than 429 (bad key, unknown model...): the same request would fail again."""

    kind = "rejected"


class MissingApiKeyError(ProviderError):
    """The environment variable named by ``api_key_env`` is not set."""

    kind = "missing_key"


class HttpProvider:
    """Base of the wire formats: sending, status mapping and error mapping."""

    type: ClassVar[str]
    default_base_url: ClassVar[str]

    def __init__(self, config: LlmProvider) -> None:
        self.config = config
        self.name = config.name
        self.model = config.model
        self.base_url = (config.base_url or self.default_base_url).rstrip("/")

    def build_request(self, prompt: Prompt, api_key: str | None) -> HttpRequest:
        raise NotImplementedError

    def parse_response(self, body: bytes) -> Completion:
        raise NotImplementedError

    async def complete(
        self, session: aiohttp.ClientSession, prompt: Prompt, api_key: str | None, timeout: float
    ) -> Completion:
        """One HTTP call; raises a :class:`ProviderError` for every failure."""
        request = self.build_request(prompt, api_key)
        try:
            async with session.post(
                request.url,
                json=dict(request.body),
                headers=dict(request.headers),
                timeout=aiohttp.ClientTimeout(total=timeout),
            ) as response:
                body = await response.read()
                status = response.status
                headers = response.headers
        except TimeoutError as exc:  # aiohttp's timeouts subclass TimeoutError
            raise ProviderTimeoutError(f"no answer within {timeout:g}s") from exc
        except aiohttp.ClientError as exc:
            raise ProviderConnectionError(f"{type(exc).__name__}: {exc}") from exc
        if status == 429:
            retry_after = parse_retry_after(headers)
            waited = f" (Retry-After {retry_after:g}s)" if retry_after is not None else ""
            raise RateLimitedError(f"HTTP 429 rate limited{waited}", retry_after)
        if status >= 500 or status == 408:
            raise ServerError(f"HTTP {status}")
        if status >= 400:
            raise RequestRejectedError(f"HTTP {status}: {_error_message(body)}")
        if status != 200:
            raise BadResponseError(f"unexpected HTTP {status}")
        return self.parse_response(body)

    def _json(self, body: bytes) -> dict[str, Any]:
        try:
            data = json.loads(body)
        except (UnicodeDecodeError, ValueError) as exc:
            raise BadResponseError(f"the response body is not JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise BadResponseError(f"the response body is a {type(data).__name__}, expected an object")
        return data


class OpenAIProvider(HttpProvider):
    """OpenAI chat completions (and compatible local servers)."""

    type = "openai"
    default_base_url = "https://api.openai.com/v1"

    def build_request(self, prompt: Prompt, api_key: str | None) -> HttpRequest:
        headers = {"Content-Type": "application/json"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        # Neither max_tokens nor temperature: reasoning models reject both, and the answer is short.
        body = {
            "model": self.model,
            "messages": [
                {"role": "system", "content": prompt.system},
                {"role": "user", "content": prompt.user},
            ],
            "response_format": {"type": "json_object"},
        }
        return HttpRequest(f"{self.base_url}/chat/completions", headers, body)

    def parse_response(self, body: bytes) -> Completion:
        data = self._json(body)
        try:
            content = data["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError) as exc:
            raise BadResponseError("no choices[0].message.content in the response") from exc
        if not isinstance(content, str):
            raise BadResponseError("choices[0].message.content is not a string")
        usage = data.get("usage")
        usage = usage if isinstance(usage, dict) else {}
        return Completion(
            content,
            _count(usage.get("prompt_tokens")),
            _count(usage.get("completion_tokens")),
            _model(data, self.model),
            self.name,
        )


class AnthropicProvider(HttpProvider):
    """Anthropic messages API."""

    type = "anthropic"
    default_base_url = "https://api.anthropic.com"

    def build_request(self, prompt: Prompt, api_key: str | None) -> HttpRequest:
        headers = {"Content-Type": "application/json", "anthropic-version": ANTHROPIC_VERSION}
        if api_key:
            headers["x-api-key"] = api_key
        body = {
            "model": self.model,
            "max_tokens": prompt.max_tokens,
            "system": prompt.system,
            "messages": [{"role": "user", "content": prompt.user}],
        }
        return HttpRequest(f"{self.base_url}/v1/messages", headers, body)

    def parse_response(self, body: bytes) -> Completion:
        data = self._json(body)
        blocks = data.get("content")
        if not isinstance(blocks, list):
            raise BadResponseError("no content list in the response")
        texts = [b["text"] for b in blocks if isinstance(b, dict) and b.get("type") == "text" and "text" in b]
        if not texts or not isinstance(texts[0], str):
            raise BadResponseError("no text block in the response content")
        usage = data.get("usage")
        usage = usage if isinstance(usage, dict) else {}
        return Completion(
            texts[0],
            _count(usage.get("input_tokens")),
            _count(usage.get("output_tokens")),
            _model(data, self.model),
            self.name,
        )


PROVIDER_TYPES: dict[str, type[HttpProvider]] = {"openai": OpenAIProvider, "anthropic": AnthropicProvider}


def make_provider(config: LlmProvider) -> HttpProvider:
    """The wire format of ``config.type``; unknown types list the known ones."""
    cls = PROVIDER_TYPES.get(config.type)
    if cls is None:
        known = ", ".join(sorted(PROVIDER_TYPES))
        raise ValueError(f"LLM provider {config.name!r} has type {config.type!r}; known types: {known}")
    return cls(config)


def parse_retry_after(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date)."""
    lowered = {k.lower(): v for k, v in headers.items()}
    raw_ms = lowered.get("retry-after-ms")
    if raw_ms is not None:
        try:
            return max(0.0, float(raw_ms) / 1000)
        except ValueError:
            pass
    raw = lowered.get("retry-after")
    if raw is None:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _model(data: Mapping[str, Any], default: str) -> str:
    model = data.get("model")
    return model if isinstance(model, str) and model else default


def _error_message(body: bytes) -> str:
    """The provider's own error message, shortened (never the request)."""
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        return body[:_ERROR_SNIPPET].decode("utf-8", "replace")
    error = data.get("error") if isinstance(data, dict) else None
    message = error.get("message") if isinstance(error, dict) else error
    return str(message)[:_ERROR_SNIPPET] if message else ""
