"""LLM fallback for low-confidence NLU: PII masking, a provider chain, answer checks, costs.

Entry point: :class:`LlmFallback`. The pure parts (:func:`mask_pii`, :func:`build_system_prompt`,
:func:`parse_answer`, :func:`validate_answer`, :func:`compute_cost`) need no network.

The names below are imported on first use: ``engine.llm.pii`` is also used by logging, and
importing it must not pull in aiohttp and the NLU (numpy) that the rest of the package needs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from engine.llm.answer import (
        AnswerEntity,
        InvalidAnswerError,
        LlmAnswer,
        ValidatedAnswer,
        parse_answer,
        validate_answer,
    )
    from engine.llm.cache import LruCache
    from engine.llm.chain import Backoff, ChainLink, ChainResult, ProviderChain, ProviderFailure, ProvidersFailedError
    from engine.llm.fallback import FallbackOutcome, LlmFallback
    from engine.llm.pii import MaskedText, PiiSpan, mask_pii
    from engine.llm.prompt import build_prompt, build_system_prompt
    from engine.llm.providers import (
        AnthropicProvider,
        BadResponseError,
        Completion,
        HttpProvider,
        MissingApiKeyError,
        OpenAIProvider,
        Prompt,
        ProviderConnectionError,
        ProviderError,
        ProviderTimeoutError,
        RateLimitedError,
        RequestRejectedError,
        ServerError,
        make_provider,
    )
    from engine.llm.usage import Usage, UsageLedger, compute_cost

_EXPORTS = {
    "AnswerEntity": "engine.llm.answer",
    "AnthropicProvider": "engine.llm.providers",
    "Backoff": "engine.llm.chain",
    "BadResponseError": "engine.llm.providers",
    "ChainLink": "engine.llm.chain",
    "ChainResult": "engine.llm.chain",
    "Completion": "engine.llm.providers",
    "FallbackOutcome": "engine.llm.fallback",
    "HttpProvider": "engine.llm.providers",
    "InvalidAnswerError": "engine.llm.answer",
    "LlmAnswer": "engine.llm.answer",
    "LlmFallback": "engine.llm.fallback",
    "LruCache": "engine.llm.cache",
    "MaskedText": "engine.llm.pii",
    "MissingApiKeyError": "engine.llm.providers",
    "OpenAIProvider": "engine.llm.providers",
    "PiiSpan": "engine.llm.pii",
    "Prompt": "engine.llm.providers",
    "ProviderChain": "engine.llm.chain",
    "ProviderConnectionError": "engine.llm.providers",
    "ProviderError": "engine.llm.providers",
    "ProviderFailure": "engine.llm.chain",
    "ProviderTimeoutError": "engine.llm.providers",
    "ProvidersFailedError": "engine.llm.chain",
    "RateLimitedError": "engine.llm.providers",
    "RequestRejectedError": "engine.llm.providers",
    "ServerError": "engine.llm.providers",
    "Usage": "engine.llm.usage",
    "UsageLedger": "engine.llm.usage",
    "ValidatedAnswer": "engine.llm.answer",
    "build_prompt": "engine.llm.prompt",
    "build_system_prompt": "engine.llm.prompt",
    "compute_cost": "engine.llm.usage",
    "make_provider": "engine.llm.providers",
    "mask_pii": "engine.llm.pii",
    "parse_answer": "engine.llm.answer",
    "validate_answer": "engine.llm.answer",
}

__all__ = [
    "AnswerEntity",
    "AnthropicProvider",
    "Backoff",
    "BadResponseError",
    "ChainLink",
    "ChainResult",
    "Completion",
    "FallbackOutcome",
    "HttpProvider",
    "InvalidAnswerError",
    "LlmAnswer",
    "LlmFallback",
    "LruCache",
    "MaskedText",
    "MissingApiKeyError",
    "OpenAIProvider",
    "PiiSpan",
    "Prompt",
    "ProviderChain",
    "ProviderConnectionError",
    "ProviderError",
    "ProviderFailure",
    "ProviderTimeoutError",
    "ProvidersFailedError",
    "RateLimitedError",
    "RequestRejectedError",
    "ServerError",
    "Usage",
    "UsageLedger",
    "ValidatedAnswer",
    "build_prompt",
    "build_system_prompt",
    "compute_cost",
    "make_provider",
    "mask_pii",
    "parse_answer",
    "validate_answer",
]


def __getattr__(name: str) -> object:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
