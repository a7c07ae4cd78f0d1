"""Ask an LLM when the local NLU is unsure; the local answer stands whenever that fails.

:class:`LlmFallback` is the one object the dialogue engine uses. Per message it decides,
in this order: off (``enabled: false``) -> SAFE_MODE (no HTTP call at all, checked on every
message so it can be switched at run time) -> confident enough (top intent >= ``threshold``)
-> the LRU cache of earlier answers (keyed by the masked text) -> the provider chain. The
answer is checked against the domain before it replaces the NLU's; tokens and cost of every
completion received (rejected ones included) go to the :class:`UsageLedger`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Any, Literal

import aiohttp

from engine.domain import Domain
from engine.llm.answer import LlmAnswer, parse_answer, validate_answer
from engine.llm.cache import LruCache
from engine.llm.chain import Backoff, ProviderChain, ProviderFailure, ProvidersFailedError
from engine.llm.pii import MaskedText, mask_pii
from engine.llm.prompt import build_prompt, build_system_prompt
from engine.llm.providers import Completion
from engine.llm.usage import UsageLedger, compute_cost
from engine.nlu.model import IntentScore, ParseResult
from engine.policies.config import EmergencyConfig, LlmFallbackConfig, PolicyConfig

Source = Literal["nlu", "llm", "cache"]
Reason = Literal[
    "disabled", "safe_mode", "above_threshold", "no_providers", "providers_failed", "no_intent", "unknown_intent"
]


@dataclass(frozen=True, slots=True)
class FallbackOutcome:
    """What :meth:`LlmFallback.resolve` decided for one message."""

    result: ParseResult
    """The LLM's answer when accepted, else the NLU's (with ``extras['llm_fallback']`` when the LLM was asked)."""
    source: Source
    reason: Reason | None = None
    """Why the NLU's answer stands (a stable code); None when the LLM's answer was taken."""
    llm_error: str | None = None
    """What went wrong with the LLM (all providers failed, an unknown intent), for the logs."""
    provider: str | None = None
    """The provider whose answer was used (for a cached answer: the one that gave it)."""
    model: str | None = None
    input_tokens: int = 0
    """Tokens of this message's requests, failed providers' completions included (0 from the cache)."""
    output_tokens: int = 0
    cost_usd: float = 0.0
    failures: tuple[ProviderFailure, ...] = ()
    """Providers that failed before one answered (or all of them)."""

    @property
    def used_llm(self) -> bool:
        """The result is an LLM's answer (fresh or cached)."""
        return self.source != "nlu"


@dataclass(frozen=True, slots=True)
class _Cached:
    answer: LlmAnswer
    provider: str
    model: str


class LlmFallback:
    """The LLM fallback of one assistant (see the module docstring).

    Use it as an async context manager, or call :meth:`aclose`, when it owns its HTTP
    session (no ``session`` given); the session is only opened by the first LLM call.
    """

    def __init__(
        self,
        config: LlmFallbackConfig,
        domain: Domain,
        *,
        safe_mode: bool | Callable[[], bool] = False,
        pii_masking: bool = True,
        ledger: UsageLedger | None = None,
        session: aiohttp.ClientSession | None = None,
        backoff: Backoff | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        """
        Args:
            safe_mode: SAFE_MODE, or a function returning it, read on every message (run-time switch).
            pii_masking: mask personal data before it leaves the process (``guardrails.pii_masking``).
            ledger: where token counts and costs go; a new one by default (see :attr:`ledger`).
            session: an HTTP session to use (not closed here); by default one is opened and owned.
            backoff: waits between retries of one provider.
            environ: where ``api_key_env`` names are looked up; ``os.environ`` by default.
        """
        self.config = config
        self.domain = domain
        self.pii_masking = pii_masking
        self.ledger = ledger if ledger is not None else UsageLedger()
        self.chain = ProviderChain.from_config(config, backoff=backoff, environ=environ)
        self.cache: LruCache[str, _Cached] = LruCache(config.cache_size)
        self._safe_mode: Callable[[], bool] = safe_mode if callable(safe_mode) else (lambda: safe_mode)
        self._system = build_system_prompt(domain)
        self._session = session
        self._owns_session = session is None

    @classmethod
    def from_policies(
        cls,
        policies: PolicyConfig,
        domain: Domain,
        *,
        emergency: Callable[[], EmergencyConfig] | None = None,
        ledger: UsageLedger | None = None,
        session: aiohttp.ClientSession | None = None,
        backoff: Backoff | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> LlmFallback:
        """Built from ``policies/``: ``llm_fallback``, ``guardrails.pii_masking`` and SAFE_MODE.

        ``emergency`` returns the current emergency switches (the ops layer changes them at run
        time); by default the file's, which never change.
        """
        current = emergency or (lambda: policies.emergency)
        return cls(
            policies.llm_fallback,
            domain,
            safe_mode=lambda: current().safe_mode,
            pii_masking=policies.guardrails.pii_masking,
            ledger=ledger,
            session=session,
            backoff=backoff,
            environ=environ,
        )

    @property
    def system_prompt(self) -> str:
        return self._system

    async def resolve(
        self, text: str, nlu: ParseResult, *, conversation_id: str, user_id: str | None = None
    ) -> FallbackOutcome:
        """The NLU's answer, or the LLM's when the NLU is unsure and the LLM gives a valid one."""
        if not self.config.enabled:
            return FallbackOutcome(nlu, "nlu", "disabled")
        if self._safe_mode():
            return FallbackOutcome(nlu, "nlu", "safe_mode")
        if nlu.intent.confidence >= self.config.threshold:
            return FallbackOutcome(nlu, "nlu", "above_threshold")
        if not self.chain.links:
            return FallbackOutcome(nlu, "nlu", "no_providers")
        masked = mask_pii(text) if self.pii_masking else MaskedText(text, (), text)
        cached = self.cache.get(masked.text)
        if cached is not None:
            return self._decide(nlu, masked, cached, "cache", (), (0, 0, 0.0))
        session = await self._get_session()
        prompt = build_prompt(self._system, masked.text)
        try:
            answered = await self.chain.complete(session, prompt, lambda c: parse_answer(c.text))
        except ProvidersFailedError as exc:
            spent = self._record(exc.failures, None, conversation_id, user_id)
            extras = {**nlu.extras, "llm_fallback": {"error": str(exc)}}
            return FallbackOutcome(
                replace(nlu, extras=extras),
                "nlu",
                "providers_failed",
                llm_error=str(exc),
                input_tokens=spent[0],
                output_tokens=spent[1],
                cost_usd=spent[2],
                failures=exc.failures,
            )
        spent = self._record(answered.failures, answered.completion, conversation_id, user_id)
        entry = _Cached(answered.value, answered.completion.provider, answered.completion.model)
        self.cache.put(masked.text, entry)
        return self._decide(nlu, masked, entry, "llm", answered.failures, spent)

    async def aclose(self) -> None:
        """Close the HTTP session if this object opened it."""
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> LlmFallback:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def _decide(
        self,
        nlu: ParseResult,
        masked: MaskedText,
        entry: _Cached,
        source: Literal["llm", "cache"],
        failures: tuple[ProviderFailure, ...],
        spent: tuple[int, int, float],
    ) -> FallbackOutcome:
        verdict = validate_answer(entry.answer, self.domain, masked)
        details: dict[str, Any] = {
            "source": source,
            "provider": entry.provider,
            "model": entry.model,
            "nlu_intent": {"name": nlu.intent.name, "confidence": nlu.intent.confidence},
        }
        if verdict.dropped:
            details["dropped"] = list(verdict.dropped)
        common: dict[str, Any] = {
            "provider": entry.provider,
            "model": entry.model,
            "input_tokens": spent[0],
            "output_tokens": spent[1],
            "cost_usd": spent[2],
            "failures": failures,
        }
        if verdict.intent is None:
            error = (
                f"the LLM answered the unknown intent {entry.answer.intent!r}"
                if verdict.reason == "unknown_intent"
                else None
            )
            details["reason"] = verdict.reason
            if error:
                details["error"] = error
            result = replace(nlu, extras={**nlu.extras, "llm_fallback": details})
            return FallbackOutcome(result, "nlu", verdict.reason, llm_error=error, **common)
        top = IntentScore(verdict.intent, verdict.confidence)
        ranking = (top, *(s for s in nlu.ranking if s.name != verdict.intent))
        result = ParseResult(nlu.text, top, ranking, verdict.entities, {**nlu.extras, "llm_fallback": details})
        return FallbackOutcome(result, source, None, **common)

    def _record(
        self,
        failures: tuple[ProviderFailure, ...],
        accepted: Completion | None,
        conversation_id: str,
        user_id: str | None,
    ) -> tuple[int, int, float]:
        """Put every paid-for completion in the ledger; returns this message's tokens and cost."""
        completions = [f.completion for f in failures if f.completion is not None]
        if accepted is not None:
            completions.append(accepted)
        models = {link.provider.name: link.provider.model for link in self.chain.links}
        total_in = total_out = 0
        total_cost = 0.0
        for c in completions:
            configured = models.get(c.provider, c.model)
            cost = compute_cost(self.config.prices, configured, c.input_tokens, c.output_tokens)
            if cost is None and configured != c.model:
                cost = compute_cost(self.config.prices, c.model, c.input_tokens, c.output_tokens)
            self.ledger.record(
                conversation_id=conversation_id,
                user_id=user_id,
                input_tokens=c.input_tokens,
                output_tokens=c.output_tokens,
                cost_usd=cost,
            )
            total_in += c.input_tokens
            total_out += c.output_tokens
            total_cost += cost or 0.0
        return total_in, total_out, total_cost

    async def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session
