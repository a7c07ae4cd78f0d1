"""Build the :class:`~engine.policies.config.PolicyConfig` from ``policies/`` files.

Top-level keys may be spread over several files (``policies.yml``, ``rules.yml``,
``pipeline.yml``); a key set in two files is an error, except ``rules``, whose lists are
concatenated (rule names must stay unique).
"""

from __future__ import annotations

from typing import Any, Literal

from engine.diagnostics import Diagnostic, Location
from engine.loading._common import Merged, condition_at
from engine.loading.yaml_reader import SourceFile
from engine.policies.config import (
    DEFAULT_NLU_THRESHOLD,
    DEFAULT_PIPELINE,
    DEFAULT_POLICIES,
    DisallowedTopic,
    EmergencyConfig,
    FailureGate,
    FallbackConfig,
    Gate,
    GateBound,
    GuardrailsConfig,
    HandoffConfig,
    LlmFallbackConfig,
    LlmProvider,
    MetricGate,
    PipelineComponent,
    PolicyConfig,
    PolicyEntry,
    Rule,
)


def build_policies(files: list[SourceFile]) -> tuple[PolicyConfig, list[Diagnostic]]:
    keys: Merged[tuple[SourceFile, Any]] = Merged("policies key")
    rules: Merged[Rule] = Merged("rule")
    diags: list[Diagnostic] = []
    response_refs: list[tuple[str, Location]] = []
    for source in files:
        for key, value in source.data.items():
            if key == "version":
                continue
            if key == "rules":
                for i, raw in enumerate(value):
                    rule, diag = _rule(source, i, raw)
                    diags.extend([diag] if diag else [])
                    rules.add(rule.name, rule, source.loc(["rules", i, "rule"]))
                continue
            keys.add(key, (source, value), source.loc([key], key=True))
    diags.extend(keys.diagnostics + rules.diagnostics)
    top = keys.items

    def get(key: str) -> tuple[SourceFile | None, Any]:
        src, value = top.get(key, (None, None))
        return src, value

    src, raw_policies = get("policies")
    if raw_policies is not None and src is not None:
        policies = tuple(
            PolicyEntry(p["name"], p["priority"], src.loc(["policies", i])) for i, p in enumerate(raw_policies)
        )
    else:
        policies = tuple(PolicyEntry(n, p, Location("policies/")) for n, p in DEFAULT_POLICIES)

    src, fb = get("fallback")
    fallback = FallbackConfig(**(fb or {}))
    if fb and src and "response" in fb:
        response_refs.append((fallback.response, src.loc(["fallback", "response"])))
    intent_refs: list[tuple[str, Location]] = []
    action_refs: list[tuple[str, Location]] = []
    src, ho = get("handoff")
    if ho and src:
        intent_refs.extend((name, src.loc(["handoff", "intents", i])) for i, name in enumerate(ho.get("intents", [])))
    handoff = HandoffConfig(**{**(ho or {}), "intents": tuple((ho or {}).get("intents", ()))})
    for field_name in ("response", "failure_response"):
        if ho and src and field_name in ho:
            response_refs.append((ho[field_name], src.loc(["handoff", field_name])))

    _, llm = get("llm_fallback")
    llm = dict(llm or {})
    providers = tuple(
        LlmProvider(
            p["name"],
            p["type"],
            p["model"],
            p.get("base_url"),
            p.get("api_key_env"),
            p.get("timeout_seconds"),
            p.get("retries"),
        )
        for p in llm.pop("providers", [])
    )
    llm_fallback = LlmFallbackConfig(**llm, providers=providers)

    src, gr = get("guardrails")
    gr = dict(gr or {})
    topics = []
    for i, t in enumerate(gr.pop("disallowed_topics", [])):
        assert src is not None
        loc = src.loc(["guardrails", "disallowed_topics", i, "response"])
        topics.append(DisallowedTopic(t["name"], tuple(t["keywords"]), t["response"], loc))
        response_refs.append((t["response"], loc))
    guardrails = GuardrailsConfig(**gr, disallowed_topics=tuple(topics))

    src, em = get("emergency")
    emergency = EmergencyConfig(**(em or {}))
    if em and src:
        action_refs.extend((name, src.loc(["emergency", "tools", name], key=True)) for name in em.get("tools", {}))
    if em and src and "unavailable_response" in em:
        response_refs.append((emergency.unavailable_response, src.loc(["emergency", "unavailable_response"])))

    src, pipe = get("pipeline")
    if pipe is not None and src is not None:
        pipeline = tuple(
            PipelineComponent(c["name"], {k: v for k, v in c.items() if k != "name"}, src.loc(["pipeline", i, "name"]))
            for i, c in enumerate(pipe)
        )
    else:
        pipeline = tuple(PipelineComponent(n, {}, Location("policies/")) for n in DEFAULT_PIPELINE)

    src, raw_gates = get("gates")
    gates = _gates(src, raw_gates) if src is not None and raw_gates else ()

    _, session = get("session")
    _, flags = get("feature_flags")
    threshold_src, nlu_threshold = get("nlu_threshold")
    threshold_auto = None
    if nlu_threshold == "auto":
        threshold_auto = threshold_src.loc(["nlu_threshold"]) if threshold_src is not None else Location("policies/")
        nlu_threshold = None
    _, ambiguity = get("ambiguity_threshold")
    config = PolicyConfig(
        policies=policies,
        nlu_threshold=float(nlu_threshold if nlu_threshold is not None else DEFAULT_NLU_THRESHOLD),
        nlu_threshold_auto=threshold_auto,
        ambiguity_threshold=float(ambiguity if ambiguity is not None else 0.1),
        fallback=fallback,
        handoff=handoff,
        llm_fallback=llm_fallback,
        guardrails=guardrails,
        emergency=emergency,
        feature_flags=flags or {},
        rules=tuple(rules.items.values()),
        pipeline=pipeline,
        max_steps_per_turn=int((session or {}).get("max_steps_per_turn", 20)),
        response_refs=tuple(response_refs),
        action_refs=tuple(action_refs),
        intent_refs=tuple(intent_refs),
        gates=gates,
    )
    return config, diags


def _rule(src: SourceFile, i: int, raw: dict[str, Any]) -> tuple[Rule, Diagnostic | None]:
    when = raw["when"]
    condition, diag = (None, None)
    if "if" in when:
        condition, diag = condition_at(src, ["rules", i, "when", "if"], when["if"])
    rule = Rule(
        name=raw["rule"],
        intent=when["intent"],
        condition=condition,
        then=tuple(raw["then"]),
        loc=src.loc(["rules", i, "when", "intent"]),
        then_locs=tuple(src.loc(["rules", i, "then", j]) for j in range(len(raw["then"]))),
    )
    return rule, diag


GATE_BOUNDS: tuple[GateBound, ...] = ("min", "max", "max_drop", "max_rise")


def _gates(src: SourceFile, raw: list[dict[str, Any]]) -> tuple[Gate, ...]:
    """One gate per bound (the schema has checked the shapes)."""
    gates: list[Gate] = []
    for i, item in enumerate(raw):
        optional = item.get("when_baseline") == "optional"
        description = item.get("description")
        if "metric" in item:
            gates.extend(
                MetricGate(
                    item["metric"], bound, float(item[bound]), src.loc(["gates", i, bound]), optional, description
                )
                for bound in GATE_BOUNDS
                if bound in item
            )
            continue
        kind: Literal["no_new_failures", "no_failures"] = (
            "no_new_failures" if "no_new_failures" in item else "no_failures"
        )
        value = item[kind]
        priorities = () if value == "any" else ((value,) if isinstance(value, str) else tuple(value))
        gates.append(FailureGate(kind, priorities, src.loc(["gates", i, kind]), optional, description))
    return tuple(gates)
