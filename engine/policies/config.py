"""The dialogue policy configuration from ``policies/*.yml``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from engine.conditions import Condition
from engine.diagnostics import EngineError, Location


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


GateBound = Literal["min", "max", "max_drop", "max_rise"]
"""How a metric gate bounds its metric: absolutely (``min``/``max``) or against the baseline."""

BASELINE_BOUNDS: frozenset[str] = frozenset({"max_drop", "max_rise"})


@dataclass(frozen=True, slots=True)
class MetricGate:
    """One bound on one report metric (``policies/gates.yml``).

    A YAML item with several bounds (``min`` and ``max_drop``, say) becomes one gate per
    bound, so each result says exactly which bound held or failed.
    """

    metric: str
    """Dotted name of a report metric, e.g. ``task_success_rate`` or ``latency_ms.p95``."""
    bound: GateBound
    threshold: float
    """In the metric's own unit: a fraction in 0..1, milliseconds, or a count."""
    loc: Location
    """Where the bound is written."""
    baseline_optional: bool = False
    """``when_baseline: optional``: without a baseline the gate is skipped, not failed."""
    description: str | None = None

    @property
    def needs_baseline(self) -> bool:
        return self.bound in BASELINE_BOUNDS

    @property
    def label(self) -> str:
        return f"{self.metric} ({self.bound})"


@dataclass(frozen=True, slots=True)
class FailureGate:
    """No failing golden case of the given priorities (newly failing, or at all)."""

    kind: Literal["no_new_failures", "no_failures"]
    priorities: tuple[str, ...]
    """e.g. ``("P0",)``; empty means every priority (``any``)."""
    loc: Location
    baseline_optional: bool = False
    """``when_baseline: optional`` (only for ``no_new_failures``)."""
    description: str | None = None

    @property
    def needs_baseline(self) -> bool:
        return self.kind == "no_new_failures"

    @property
    def label(self) -> str:
        return f"{self.kind}: {'/'.join(self.priorities) or 'any'}"


Gate = MetricGate | FailureGate
"""A release gate checked by ``taiwa eval --gate``."""


DEFAULT_NLU_THRESHOLD = 0.4
"""``nlu_threshold`` when ``policies/`` does not set it."""

OUT_OF_SCOPE_INTENTS = ("oos", "out_of_scope")
"""Names of the intent whose examples are out of scope (CLINC150's and Rasa's habits): the
first one the training data has is the one ``nlu_threshold: auto`` learns from."""

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
    nlu_threshold_auto: Location | None = None
    """Where ``nlu_threshold: auto`` is written: the threshold comes from the trained model
    (:func:`with_learned_threshold`); ``nlu_threshold`` holds the default until then."""
    intent_refs: tuple[tuple[str, Location], ...] = ()
    """Intents under ``handoff.intents``, with where."""
    gates: tuple[Gate, ...] = ()
    """Release gates (``gates:``, usually in ``policies/gates.yml``), in the order written."""


class LearnedThresholdMissingError(EngineError, ValueError):
    """``nlu_threshold: auto`` with a model that learned no threshold."""


def with_learned_threshold(config: PolicyConfig, card: Mapping[str, Any], model_id: str = "") -> PolicyConfig:
    """``config`` with ``nlu_threshold: auto`` replaced by the threshold the model learned.

    ``taiwa train`` chooses it on the cross-validation folds when the data has an ``oos``
    intent, and writes it to the model card (``cross_validation.oos_threshold``). A number in
    ``policies/`` is kept as it is. Raises :class:`LearnedThresholdMissingError` when the
    model has none (trained before the ``oos`` intent was added, or with ``--no-cv``).
    """
    if config.nlu_threshold_auto is None:
        return config
    learned = (card.get("cross_validation") or {}).get("oos_threshold")
    if learned is None:
        where = config.nlu_threshold_auto
        raise LearnedThresholdMissingError(
            f"{where}: nlu_threshold is auto, but the model {model_id or '(unnamed)'} learned no threshold "
            f"(its card has no cross_validation.oos_threshold). Fix: run `taiwa train` with examples of an "
            f"`oos` or `out_of_scope` intent in nlu_data/, or set nlu_threshold to a number"
        )
    return replace(config, nlu_threshold=float(learned))
