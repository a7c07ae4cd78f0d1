"""Build :class:`~engine.flows.model.Flow` objects from schema-valid ``flows/`` files."""

from __future__ import annotations

from typing import Any

from engine.conditions import Condition
from engine.diagnostics import Diagnostic
from engine.errors import Errors
from engine.flows.model import (
    ActionStep,
    Branch,
    CallStep,
    CollectStep,
    Flow,
    LinkStep,
    NluTrigger,
    NoopStep,
    Rejection,
    SetSlotsStep,
    Step,
    UtterStep,
)
from engine.loading._common import Merged, condition_at, never
from engine.loading.yaml_reader import PathPart, SourceFile

DEFAULT_MAX_RETRIES = 2
DEFAULT_TRIGGER_THRESHOLD = 0.0
_NAMED_KINDS = ("collect", "action", "utter", "link", "call")
"""Step kinds whose value names something (a slot, an action, a response, a flow)."""


def build_flows(files: list[SourceFile]) -> tuple[dict[str, Flow], list[Diagnostic]]:
    flows: Merged[Flow] = Merged("flow")
    diags: list[Diagnostic] = []
    for src in files:
        for flow_id, spec in src.data.get("flows", {}).items():
            flow, flow_diags = _flow(src, flow_id, spec)
            diags.extend(flow_diags)
            flows.add(flow_id, flow, src.loc(["flows", flow_id], key=True))
    return flows.items, flows.diagnostics + diags


def _flow(src: SourceFile, flow_id: str, spec: dict[str, Any]) -> tuple[Flow, list[Diagnostic]]:
    base: list[PathPart] = ["flows", flow_id]
    diags: list[Diagnostic] = []
    guard = None
    if "if" in spec:
        guard, diag = condition_at(src, [*base, "if"], spec["if"])
        diags.extend([diag] if diag else [])
    max_retries = int(spec.get("max_retries", DEFAULT_MAX_RETRIES))
    steps: list[Step] = []
    seen_ids: dict[str, int] = {}
    for index, raw in enumerate(spec["steps"]):
        step, step_diags = _step(src, [*base, "steps", index], index, raw, max_retries)
        diags.extend(step_diags)
        if step.id in seen_ids:
            diags.append(
                Errors.E316.at(
                    src.loc([*base, "steps", index, "id"]),
                    f"flow {flow_id!r} has two steps with the id {step.id!r} (steps {seen_ids[step.id] + 1} and {index + 1})",
                    related=[steps[seen_ids[step.id]].loc],
                )
            )
        else:
            seen_ids[step.id] = index
        steps.append(step)
    triggers = tuple(
        NluTrigger(
            t["intent"],
            float(t.get("confidence_threshold", DEFAULT_TRIGGER_THRESHOLD)),
            src.loc([*base, "nlu_trigger", i, "intent"]),
        )
        for i, t in enumerate(spec.get("nlu_trigger", []))
    )
    flow = Flow(
        id=flow_id,
        name=spec.get("name", flow_id),
        description=spec["description"],
        mode=spec.get("mode", "STEP_BY_STEP"),
        guard=guard,
        nlu_triggers=triggers,
        persisted_slots=tuple(spec.get("persisted_slots", ())),
        steps=tuple(steps),
        loc=src.loc(base, key=True),
    )
    return flow, diags


def _auto_id(index: int, raw: dict[str, Any]) -> str:
    for kind in ("collect", "action", "utter", "link", "call"):
        if kind in raw:
            name = str(raw[kind])
            # `utter: utter_greet` -> 3_utter_greet, not 3_utter_utter_greet
            return f"{index}_{name}" if name.startswith(f"{kind}_") else f"{index}_{kind}_{name}"
    if "set_slots" in raw:
        return f"{index}_set_slots"
    return f"{index}_noop"


def _step(
    src: SourceFile, path: list[PathPart], index: int, raw: dict[str, Any], flow_retries: int
) -> tuple[Step, list[Diagnostic]]:
    diags: list[Diagnostic] = []
    step_id = raw.get("id") or _auto_id(index, raw)
    branches = _next(src, [*path, "next"], raw.get("next"), diags)
    common: dict[str, Any] = {
        "id": step_id,
        "index": index,
        "next": branches,
        "description": raw.get("description"),
        "loc": src.loc(path),
        "name_loc": next((src.loc([*path, k]) for k in _NAMED_KINDS if k in raw), None),
    }
    if "collect" in raw:
        slot = raw["collect"]
        rejections = []
        for j, rej in enumerate(raw.get("rejections", [])):
            cond, diag = condition_at(src, [*path, "rejections", j, "if"], rej["if"])
            if diag:
                diags.append(diag)
            if cond is not None:
                rejections.append(Rejection(cond, rej["utter"], src.loc([*path, "rejections", j, "utter"])))
        step: Step = CollectStep(
            **common,
            slot=slot,
            utter=raw.get("utter", f"utter_ask_{slot}"),
            utter_explicit="utter" in raw,
            ask_before_filling=bool(raw.get("ask_before_filling", False)),
            reset_after_flow_ends=bool(raw.get("reset_after_flow_ends", True)),
            max_retries=int(raw.get("max_retries", flow_retries)),
            rejections=tuple(rejections),
        )
    elif "action" in raw:
        step = ActionStep(
            **common,
            action=raw["action"],
            on_failure=raw.get("on_failure"),
            on_failure_loc=src.loc([*path, "on_failure"]) if "on_failure" in raw else None,
        )
    elif "utter" in raw:
        step = UtterStep(**common, response=raw["utter"])
    elif "set_slots" in raw:
        values = []
        for j, item in enumerate(raw["set_slots"]):
            name, value = next(iter(item.items()))
            values.append((name, value, src.loc([*path, "set_slots", j, name], key=True)))
        step = SetSlotsStep(**common, values=tuple(values))
    elif "link" in raw:
        step = LinkStep(**common, flow=raw["link"])
    elif "call" in raw:
        step = CallStep(**common, flow=raw["call"])
    else:
        step = NoopStep(**common)
    return step, diags


def _next(src: SourceFile, path: list[PathPart], raw: Any, diags: list[Diagnostic]) -> tuple[Branch, ...] | None:
    if raw is None:
        return None
    if isinstance(raw, str):
        return (Branch(None, raw, src.loc(path)),)
    branches = []
    for i, arm in enumerate(raw):
        if "else" in arm:
            branches.append(Branch(None, arm["else"], src.loc([*path, i, "else"])))
            continue
        cond: Condition | None
        cond, diag = condition_at(src, [*path, i, "if"], arm["if"])
        if diag:
            diags.append(diag)
        # A branch whose condition did not parse (E315) is kept, never taken, so that its
        # target is not also reported as unreachable.
        branches.append(Branch(cond or never(arm["if"]), arm["then"], src.loc([*path, i, "then"])))
    return tuple(branches)
