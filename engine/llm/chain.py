"""Ask the configured providers in order until one gives a usable answer.

Each provider gets its own timeout (one ``aiohttp.ClientTimeout`` per attempt) and a number
of retries with exponential backoff (``tenacity``). Timeouts, connection failures, 5xx and
429 are retried; a 429 whose ``Retry-After`` is longer than the provider's timeout is not
waited for: the next provider is asked at once. A rejected request (other 4xx), a body that is
not the wire format, or an answer the caller's ``parse`` rejects moves on to the next
provider without a retry, since the same request would most likely fail the same way.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Generic, TypeVar

import aiohttp
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt, wait_exponential

from engine.diagnostics import EngineError
from engine.llm.providers import (
    Completion,
    HttpProvider,
    MissingApiKeyError,
    Prompt,
    ProviderError,
    RateLimitedError,
    make_provider,
)
from engine.policies.config import LlmFallbackConfig

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff between retries of one provider: ``initial * 2**(n-1)``, capped."""

    initial: float = 0.25
    maximum: float = 2.0


@dataclass(frozen=True, slots=True)
class ChainLink:
    """One provider of the chain, with its effective limits."""

    provider: HttpProvider
    timeout: float
    """Seconds for one attempt (connect, send, read)."""
    retries: int
    """Attempts after the first one."""
    api_key_env: str | None
    """The environment variable that holds the key; None: send no key (local servers)."""


@dataclass(frozen=True, slots=True)
class ProviderFailure:
    """Why one provider did not give the answer."""

    provider: str
    kind: str
    """A :class:`ProviderError` kind: ``timeout``, ``rate_limited``, ``server_error``,
    ``connection``, ``bad_response``, ``rejected`` or ``missing_key``."""
    message: str
    attempts: int
    """HTTP calls made (0 when the provider was skipped)."""
    completion: Completion | None = None
    """The answer the provider gave when it was rejected by ``parse``: its tokens were paid for."""

    def __str__(self) -> str:
        tries = f" after {self.attempts} attempts" if self.attempts > 1 else ""
        return f"{self.provider}: {self.kind}{tries} ({self.message})"


@dataclass(frozen=True, slots=True)
class ChainResult(Generic[T]):
    value: T
    """What ``parse`` made of the accepted completion."""
    completion: Completion
    failures: tuple[ProviderFailure, ...]
    """The providers asked before, and why each failed."""

    @property
    def provider(self) -> str:
        return self.completion.provider


class ProvidersFailedError(EngineError):
    """No provider gave a usable answer; ``failures`` says why, one entry per provider."""

    def __init__(self, failures: Sequence[ProviderFailure]) -> None:
        self.failures = tuple(failures)
        if self.failures:
            text = f"all {len(self.failures)} LLM providers failed: " + "; ".join(map(str, self.failures))
        else:
            text = "no LLM provider is configured"
        super().__init__(text)


class ProviderChain:
    """The providers of ``llm_fallback.providers``, asked in order."""

    def __init__(
        self,
        links: Sequence[ChainLink],
        *,
        backoff: Backoff | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.links = tuple(links)
        self.backoff = backoff or Backoff()
        self._wait_exponential = wait_exponential(multiplier=self.backoff.initial, max=self.backoff.maximum)
        self._environ: Mapping[str, str] = os.environ if environ is None else environ

    @classmethod
    def from_config(
        cls,
        config: LlmFallbackConfig,
        *,
        backoff: Backoff | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> ProviderChain:
        """Per-provider ``timeout_seconds`` / ``retries`` override the section's own."""
        links = [
            ChainLink(
                make_provider(p),
                p.timeout_seconds if p.timeout_seconds is not None else config.timeout_seconds,
                p.retries if p.retries is not None else config.retries,
                p.api_key_env,
            )
            for p in config.providers
        ]
        return cls(links, backoff=backoff, environ=environ)

    async def complete(
        self,
        session: aiohttp.ClientSession,
        prompt: Prompt,
        parse: Callable[[Completion], T],
    ) -> ChainResult[T]:
        """The first answer that ``parse`` accepts (it raises :class:`ProviderError` to refuse).

        Raises:
            ProvidersFailedError: every provider failed or was skipped.
        """
        failures: list[ProviderFailure] = []
        for link in self.links:
            name = link.provider.name
            api_key: str | None = None
            if link.api_key_env is not None:
                api_key = self._environ.get(link.api_key_env) or None
                if api_key is None:
                    reason = MissingApiKeyError(f"the environment variable {link.api_key_env} is not set")
                    failures.append(ProviderFailure(name, reason.kind, str(reason), 0))
                    continue
            attempts = 0

            async def attempt(link: ChainLink = link, api_key: str | None = api_key) -> Completion:
                nonlocal attempts
                attempts += 1
                return await link.provider.complete(session, prompt, api_key, link.timeout)

            try:
                completion = await self._retrying(link)(attempt)
            except ProviderError as exc:
                failures.append(ProviderFailure(name, exc.kind, str(exc), attempts))
                continue
            try:
                value = parse(completion)
            except ProviderError as exc:
                failures.append(ProviderFailure(name, exc.kind, str(exc), attempts, completion))
                continue
            return ChainResult(value, completion, tuple(failures))
        raise ProvidersFailedError(failures)

    def _retrying(self, link: ChainLink) -> Callable[[Callable[[], Awaitable[Completion]]], Awaitable[Completion]]:
        return AsyncRetrying(
            stop=stop_after_attempt(link.retries + 1),
            wait=self._wait,
            retry=retry_if_exception(partial(_should_retry, link.timeout)),
            reraise=True,
        )

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome is not None else None
        if isinstance(exc, RateLimitedError) and exc.retry_after is not None:
            return exc.retry_after
        return float(self._wait_exponential(state))


def _should_retry(timeout: float, exc: BaseException) -> bool:
    if not isinstance(exc, ProviderError) or not exc.retryable:
        return False
    # Waiting longer than the provider's own timeout is worse than asking the next provider.
    return not (isinstance(exc, RateLimitedError) and exc.retry_after is not None and exc.retry_after > timeout)
