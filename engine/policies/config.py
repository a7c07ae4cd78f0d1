"""The dialogue policy configuration from ``policies/*.yml``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from engine.conditions import Condition
from engine.diagnostics import Location


@dataclass(frozen=True, slots=True)
class PolicyEntry:
    name: str
    priority: int
    loc: Location


@dataclass(frozen=True, slots=True)
class Rule:
    """When ``intent`` (and ``condition``) then run ``then`` (responses or actions)."""

    name: str
    intent: str
    condition: Condition | None
    then: tuple[str, ...]
    loc: Location
    """Where the rule's intent is written."""
    then_locs: tuple[Location, ...] = ()
    """Where each name of ``then`` is written."""


@dataclass(frozen=True, slots=True)
class FallbackConfig:
    response: str = "utter_ask_rephrase"
    max_in_a_row: int = 2
    offer_top_intents: int = 3


@dataclass(frozen=True, slots=True)
class HandoffConfig:
    response: str = "utter_handoff"
    intents: tuple[str, ...] = ()
    failure_response: str = "utter_tool_failure"


@dataclass(frozen=True, slots=True)
class LlmProvider:
    name: str
    type: str
    model: str
    base_url: str | None
    api_key_env: str | None
    timeout_seconds: float | None
    retries: int | None


@dataclass(frozen=True, slots=True)
class LlmFallbackConfig:
    enabled: bool = False
    threshold: float = 0.5
    timeout_seconds: float = 5.0
    retries: int = 1
    cache_size: int = 256
    providers: tuple[LlmProvider, ...] = ()
    prices: Mapping[str, Mapping[str, float]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DisallowedTopic:
    name: str
    keywords: tuple[str, ...]
    response: str
    loc: Location


@dataclass(frozen=True, slots=True)
class GuardrailsConfig:
    strict_policy: bool = False
    injection_check: bool = True
    pii_masking: bool = True
    disallowed_topics: tuple[DisallowedTopic, ...] = ()


@dataclass(frozen=True, slots=True)
class EmergencyConfig:
    safe_mode: bool = False
    strict_policy: bool = False
    tools: Mapping[str, bool] = field(default_factory=dict)
    """Per-tool switch: False turns the tool off."""
    unavailable_response: str = "utter_tool_unavailable"


@dataclass(frozen=True, slots=True)
class PipelineComponent:
    name: str
    """Registry name with a version, e.g. ``classifier.linear.v1``."""
    options: Mapping[str, object]
    loc: Location


DEFAULT_PIPELINE = (
    "tokenizer.spacy.v1",
    "featurizer.tfidf.v1",
    "classifier.linear.v1",
    "entities.regex.v1",
    "entities.lookup.v1",
    "entities.synonyms.v1",
    "entities.tagger.v1",
)
"""The NLU components used when ``policies/`` has no ``pipeline``."""

DEFAULT_POLICIES = (
    ("rule_policy", 6),
    ("flow_policy", 5),
    ("handoff_policy", 4),
    ("fallback_policy", 1),
)


@dataclass(frozen=True)
class PolicyConfig:
    policies: tuple[PolicyEntry, ...]
    nlu_threshold: float
    ambiguity_threshold: float
    fallback: FallbackConfig
    handoff: HandoffConfig
    llm_fallback: LlmFallbackConfig
    guardrails: GuardrailsConfig
    emergency: EmergencyConfig
    feature_flags: Mapping[str, bool | str | float]
    rules: tuple[Rule, ...]
    pipeline: tuple[PipelineComponent, ...]
    max_steps_per_turn: int
    response_refs: tuple[tuple[str, Location], ...]
    """Every response name the configuration uses, with where (for cross-checks)."""
    action_refs: tuple[tuple[str, Location], ...] = ()
    """Tool names under ``emergency.tools``, with where."""
    intent_refs: tuple[tuple[str, Location], ...] = ()
    """Intents under ``handoff.intents``, with where."""
