"""Build the :class:`~engine.domain.Domain` from schema-valid ``domain/`` files."""

from __future__ import annotations

from typing import Any

from engine.conditions import Condition, slot_equals_condition
from engine.diagnostics import Diagnostic, Location
from engine.domain import (
    Button,
    Domain,
    Entity,
    Intent,
    Response,
    ResponseVariation,
    SessionConfig,
    Slot,
    SlotMapping,
)
from engine.loading._common import Merged, condition_at, names
from engine.loading.yaml_reader import SourceFile


def build_domain(files: list[SourceFile]) -> tuple[Domain, list[Diagnostic]]:
    intents: Merged[Intent] = Merged("intent")
    entities: Merged[Entity] = Merged("entity")
    slots: Merged[Slot] = Merged("slot")
    responses: Merged[Response] = Merged("response")
    actions: Merged[Location] = Merged("action")
    session: Merged[SessionConfig] = Merged("session_config")
    diags: list[Diagnostic] = []
    for src in files:
        data = src.data
        for i, item in enumerate(data.get("intents", [])):
            name, props = _named_item(item)
            loc = src.loc(
                ["intents", i] if isinstance(item, str) else ["intents", i, name], key=not isinstance(item, str)
            )
            use = props.get("use_entities", True)
            intents.add(
                name, Intent(name, props.get("description"), use if isinstance(use, bool) else tuple(use), loc), loc
            )
        for i, item in enumerate(data.get("entities", [])):
            name, props = _named_item(item)
            loc = src.loc(
                ["entities", i] if isinstance(item, str) else ["entities", i, name], key=not isinstance(item, str)
            )
            entities.add(
                name,
                Entity(
                    name, tuple(props.get("roles", ())), tuple(props.get("groups", ())), props.get("description"), loc
                ),
                loc,
            )
        for name, spec in data.get("slots", {}).items():
            loc = src.loc(["slots", name], key=True)
            slots.add(name, _slot(src, name, spec, loc), loc)
        for name, variations in data.get("responses", {}).items():
            loc = src.loc(["responses", name], key=True)
            built = []
            for j, var in enumerate(variations):
                variation, diag = _variation(src, ["responses", name, j], var)
                built.append(variation)
                if diag:
                    diags.append(diag)
            responses.add(name, Response(name, tuple(built), loc), loc)
        for i, name in enumerate(data.get("actions", [])):
            loc = src.loc(["actions", i])
            actions.add(name, loc, loc)
        if "session_config" in data:
            cfg = data["session_config"]
            loc = src.loc(["session_config"], key=True)
            session.add(
                "session_config",
                SessionConfig(
                    float(cfg.get("session_expiration_time", 60)),
                    bool(cfg.get("carry_over_slots_to_new_session", True)),
                ),
                loc,
            )
    for merged in (intents, entities, slots, responses, actions, session):
        diags.extend(merged.diagnostics)
    domain = Domain(
        intents=intents.items,
        entities=entities.items,
        slots=slots.items,
        responses=responses.items,
        actions=actions.items,
        session_config=session.items.get("session_config", SessionConfig()),
    )
    return domain, diags


def _named_item(item: str | dict[str, Any]) -> tuple[str, dict[str, Any]]:
    if isinstance(item, str):
        return item, {}
    name, props = next(iter(item.items()))
    return name, props or {}


def _slot(src: SourceFile, name: str, spec: dict[str, Any], loc: Location) -> Slot:
    mappings = tuple(
        SlotMapping(
            type=m["type"],
            entity=m.get("entity"),
            role=m.get("role"),
            group=m.get("group"),
            intents=names(m.get("intent")),
            not_intents=names(m.get("not_intent")),
            value=m.get("value"),
            active_flow=m.get("active_flow"),
            loc=src.loc(["slots", name, "mappings", i]),
            key_locs=tuple((key, src.loc(["slots", name, "mappings", i, key])) for key in m),
        )
        for i, m in enumerate(spec.get("mappings", []))
    )
    return Slot(
        name=name,
        type=spec["type"],
        mappings=mappings,
        initial_value=spec.get("initial_value"),
        values=tuple(spec.get("values", ())),
        min_value=spec.get("min_value"),
        max_value=spec.get("max_value"),
        influence_conversation=bool(spec.get("influence_conversation", False)),
        description=spec.get("description"),
        loc=loc,
    )


def _variation(
    src: SourceFile, path: list[str | int], var: dict[str, Any]
) -> tuple[ResponseVariation, Diagnostic | None]:
    condition: Condition | None = None
    diag = None
    raw = var.get("condition")
    if isinstance(raw, str):
        condition, diag = condition_at(src, [*path, "condition"], raw)
    elif isinstance(raw, list):
        text = slot_equals_condition([(c["name"], c["value"]) for c in raw])
        condition, diag = condition_at(src, [*path, "condition"], text)
    return (
        ResponseVariation(
            text=var.get("text"),
            condition=condition,
            channel=var.get("channel"),
            buttons=tuple(Button(b["title"], b["payload"]) for b in var.get("buttons", ())),
            quick_replies=tuple(Button(b["title"], b["payload"]) for b in var.get("quick_replies", ())),
            image=var.get("image"),
            custom=var.get("custom"),
            loc=src.loc(path),
        ),
        diag,
    )
