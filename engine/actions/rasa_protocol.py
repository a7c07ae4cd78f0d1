"""The Rasa SDK action-server protocol: pure conversions between taiwa's values and its JSON.

Rasa calls ``POST {action server}/webhook`` with::

    {"next_action": "action_x", "sender_id": "...", "tracker": {...}, "domain": {...}, "version": "3.6.21"}

and the server answers ``200 {"events": [...], "responses": [...]}``, ``400 {"error", "action_name"}``
when the action raised ``ActionExecutionRejection``, ``404`` for an unknown action, ``449``
when it needs the domain and none was sent, and ``500 {"error", "request_body"}`` when the
action raised. Events are Rasa's event dicts (``{"event": "slot", "name", "value", "timestamp"}``);
responses are what ``dispatcher.utter_message(...)`` collected.

Our events map to Rasa's where Rasa has an equivalent (user, bot, slot, action,
session_started, restart, pause/resume for handoffs, flow events as Rasa Pro names them); the
others are internal and not sent. Conversions never raise on malformed input from the server:
an item that cannot be used is skipped and reported as a warning.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, TypeGuard

from engine.actions.registry import ActionContext
from engine.conditions import BoolOp, Compare, Condition, IsSet, Literal, SlotRef
from engine.domain import Domain, Response, ResponseVariation, Slot, SlotMapping
from engine.events import (
    ActionExecuted,
    BotUttered,
    Event,
    FlowCancelled,
    FlowCompleted,
    FlowInterrupted,
    FlowResumed,
    FlowStarted,
    HandoffReleased,
    HandoffRequested,
    JsonValue,
    Restarted,
    SessionStarted,
    SlotSet,
    UserUttered,
)

RASA_VERSION = "3.6.21"
"""The Rasa version announced in requests (rasa_sdk only warns when major.minor differ)."""

DOMAIN_VERSION = "3.1"
"""The domain format version of :func:`domain_payload`."""

ACTION_LISTEN = "action_listen"

_BOT_DATA_KEYS = ("elements", "quick_replies", "buttons", "attachment", "image", "custom")
"""The keys of a Rasa ``bot`` event's ``data``."""


# -- requests: our state -> Rasa's JSON ----------------------------------------------------


def _timestamps(events: Sequence[Event]) -> list[float | None]:
    """A timestamp per event: its own when it has one, else the last one before it (or the first one after)."""
    own: list[float | None] = [getattr(e, "timestamp", None) or None for e in events]
    current = next((t for t in own if t is not None), None)
    result: list[float | None] = []
    for t in own:
        if t is not None:
            current = t
        result.append(current)
    return result


def _with_ranking(data: dict[str, Any]) -> dict[str, Any]:
    """Put the top intent first in ``intent_ranking``, as Rasa does (rasa_sdk reads the intent from there)."""
    intent = data.get("intent")
    top = intent.get("name") if isinstance(intent, Mapping) else None
    ranking = data.get("intent_ranking") or []
    if top and not (ranking and isinstance(ranking[0], Mapping) and ranking[0].get("name") == top):
        others = [r for r in ranking if not (isinstance(r, Mapping) and r.get("name") == top)]
        data["intent_ranking"] = [dict(intent), *others]  # type: ignore[arg-type]
    return data


def _parse_data(event: UserUttered) -> dict[str, Any]:
    intent: dict[str, Any] = {"name": event.intent, "confidence": event.confidence} if event.intent else {}
    return _with_ranking(
        {
            "intent": intent,
            "entities": [dict(e) for e in event.entities],
            "text": event.text,
            "message_id": event.message_id,
            "metadata": {},
            "intent_ranking": [dict(r) for r in event.ranking],
        }
    )


def _bot_data(event: BotUttered) -> dict[str, Any]:
    data: dict[str, Any] = dict.fromkeys(_BOT_DATA_KEYS)
    data.update(event.data)
    data["buttons"] = [dict(b) for b in event.buttons] or data.get("buttons")
    return data


def event_to_rasa(event: Event, timestamp: float | None = None) -> dict[str, Any] | None:
    """Rasa's dict for ``event``, or ``None`` when Rasa has no equivalent (taiwa-internal events)."""
    base: dict[str, Any]
    match event:
        case UserUttered():
            return {
                "event": "user",
                "timestamp": timestamp,
                "metadata": {},
                "text": event.text,
                "parse_data": _parse_data(event),
                "input_channel": event.channel,
                "message_id": event.message_id,
            }
        case BotUttered():
            metadata = {"utter_action": event.response} if event.response else {}
            return {
                "event": "bot",
                "timestamp": timestamp,
                "metadata": metadata,
                "text": event.text,
                "data": _bot_data(event),
            }
        case SlotSet():
            return {"event": "slot", "timestamp": timestamp, "name": event.name, "value": event.value}
        case ActionExecuted():
            return {
                "event": "action",
                "timestamp": timestamp,
                "metadata": {},
                "name": event.name,
                "policy": event.policy,
                "confidence": None,
                "action_text": None,
                "hide_rule_turn": False,
            }
        case SessionStarted():
            return {"event": "session_started", "timestamp": timestamp, "metadata": dict(event.metadata)}
        case Restarted():
            return {"event": "restart", "timestamp": timestamp}
        case HandoffRequested():
            return {"event": "pause", "timestamp": timestamp}
        case HandoffReleased():
            return {"event": "resume", "timestamp": timestamp}
        case FlowStarted():
            base = {"event": "flow_started", "flow_id": event.flow}
        case FlowInterrupted():
            base = {"event": "flow_interrupted", "flow_id": event.flow, "step_id": None}
        case FlowResumed():
            base = {"event": "flow_resumed", "flow_id": event.flow, "step_id": None}
        case FlowCompleted():
            base = {"event": "flow_completed", "flow_id": event.flow, "step_id": None}
        case FlowCancelled():
            base = {"event": "flow_cancelled", "flow_id": event.flow, "step_id": None}
        case _:
            return None
    return {**base, "timestamp": timestamp, "metadata": {}}


def _latest_message(ctx: ActionContext, events: Sequence[Event]) -> dict[str, Any]:
    """Rasa's ``latest_message`` (the last user message's parse data)."""
    last_user = next((e for e in reversed(events) if isinstance(e, UserUttered)), None)
    given = ctx.latest_message
    data: dict[str, Any] = {
        "intent": {},
        "entities": [],
        "text": None,
        "message_id": None,
        "metadata": {},
        "intent_ranking": [],
    }
    if last_user is not None and (not given or given.get("text") in (None, last_user.text)):
        data = _parse_data(last_user)
    if not given:
        return data
    if "text" in given:
        data["text"] = given["text"]
    intent = given.get("intent")
    if isinstance(intent, Mapping):
        data["intent"] = dict(intent)
    elif isinstance(intent, str) and intent:
        previous = data["intent"].get("confidence") if data["intent"].get("name") == intent else None
        confidence = given.get("confidence", previous if previous is not None else 1.0)
        data["intent"] = {"name": intent, "confidence": confidence}
    if given.get("entities") is not None:
        data["entities"] = [dict(e) if isinstance(e, Mapping) else e for e in given["entities"]]
    ranking = given.get("intent_ranking", given.get("ranking"))
    if ranking is not None:
        data["intent_ranking"] = [dict(r) if isinstance(r, Mapping) else r for r in ranking]
    for key in ("message_id", "metadata"):
        if key in given:
            data[key] = given[key]
    return _with_ranking(data)


def _paused(events: Sequence[Event]) -> bool:
    paused = False
    for event in events:
        if isinstance(event, HandoffRequested):
            paused = True
        elif isinstance(event, HandoffReleased | Restarted):
            paused = False
    return paused


def _latest_action_name(events: Sequence[Event]) -> str | None:
    """The last action run; ``action_listen`` after a user message (as in Rasa)."""
    for event in reversed(events):
        if isinstance(event, ActionExecuted):
            return event.name
        if isinstance(event, UserUttered):
            return ACTION_LISTEN
    return None


def tracker_payload(ctx: ActionContext, events: Sequence[Event]) -> dict[str, Any]:
    """Rasa's tracker state (``tracker.current_state(EventVerbosity.ALL)``) for the action server."""
    stamps = _timestamps(events)
    rasa_events = [d for e, t in zip(events, stamps, strict=True) if (d := event_to_rasa(e, t)) is not None]
    slots: dict[str, Any] = {}
    if ctx.domain is not None:
        slots.update({name: slot.initial_value for name, slot in ctx.domain.slots.items()})
    slots.update(ctx.slots)
    latest_channel = next((e.channel for e in reversed(events) if isinstance(e, UserUttered)), None)
    latest_action = _latest_action_name(events)
    return {
        "sender_id": ctx.sender_id,
        "slots": slots,
        "latest_message": _latest_message(ctx, events),
        "latest_event_time": rasa_events[-1]["timestamp"] if rasa_events else None,
        "followup_action": None,
        "paused": _paused(events),
        "events": rasa_events,
        "latest_input_channel": latest_channel,
        "active_loop": {},
        "latest_action": {"action_name": latest_action} if latest_action else {},
        "latest_action_name": latest_action,
        "stack": [{"type": "flow", "frame_type": "regular", "flow_id": ctx.active_flow}] if ctx.active_flow else [],
    }


def _mapping_payload(mapping: SlotMapping) -> dict[str, Any]:
    if mapping.type == "controlled":
        return {"type": "custom"}  # Rasa 3.x: a slot set only by actions
    data: dict[str, Any] = {"type": mapping.type}
    if mapping.type == "from_entity":
        data["entity"] = mapping.entity
        if mapping.role is not None:
            data["role"] = mapping.role
        if mapping.group is not None:
            data["group"] = mapping.group
    if mapping.type == "from_intent":
        data["value"] = mapping.value
    if mapping.intents:
        data["intent"] = list(mapping.intents)
    if mapping.not_intents:
        data["not_intent"] = list(mapping.not_intents)
    if mapping.active_flow is not None:
        data["conditions"] = [{"active_loop": mapping.active_flow}]
    return data


def _slot_payload(slot: Slot) -> dict[str, Any]:
    data: dict[str, Any] = {
        "type": slot.type,
        "initial_value": slot.initial_value,
        "influence_conversation": slot.influence_conversation,
        "mappings": [_mapping_payload(m) for m in slot.mappings],
    }
    if slot.type == "categorical":
        data["values"] = list(slot.values)
    if slot.min_value is not None:
        data["min_value"] = slot.min_value
    if slot.max_value is not None:
        data["max_value"] = slot.max_value
    return data


def _rasa_condition(condition: Condition) -> list[dict[str, Any]] | None:
    """Rasa's response condition (``slot == value`` / ``slot is not set``, all of them) when it has that form."""
    tree = condition.tree
    parts = tree.operands if isinstance(tree, BoolOp) and tree.op == "and" else (tree,)
    result: list[dict[str, Any]] = []
    for part in parts:
        if isinstance(part, IsSet) and part.negated and isinstance(part.operand, SlotRef):
            result.append({"type": "slot", "name": part.operand.name, "value": None})
            continue
        if not (isinstance(part, Compare) and part.op == "=="):
            return None
        if isinstance(part.left, SlotRef) and isinstance(part.right, Literal):
            slot, value = part.left, part.right
        elif isinstance(part.right, SlotRef) and isinstance(part.left, Literal):
            slot, value = part.right, part.left
        else:
            return None
        result.append({"type": "slot", "name": slot.name, "value": value.value})
    return result


def _variation_payload(variation: ResponseVariation) -> dict[str, Any]:
    data: dict[str, Any] = {}
    if variation.text is not None:
        data["text"] = variation.text
    if variation.buttons:
        data["buttons"] = [{"title": b.title, "payload": b.payload} for b in variation.buttons]
    if variation.quick_replies:
        data["quick_replies"] = [{"title": b.title, "payload": b.payload} for b in variation.quick_replies]
    if variation.image is not None:
        data["image"] = variation.image
    if variation.custom is not None:
        data["custom"] = dict(variation.custom)
    if variation.channel is not None:
        data["channel"] = variation.channel
    if variation.condition is not None:
        rasa_condition = _rasa_condition(variation.condition)
        if rasa_condition is not None:
            data["condition"] = rasa_condition
        else:  # not expressible in Rasa's format: keep the expression for readers
            data["metadata"] = {"condition": variation.condition.text}
    return data


def _response_payload(response: Response) -> list[dict[str, Any]]:
    return [_variation_payload(v) for v in response.variations]


def domain_payload(domain: Domain) -> dict[str, Any]:
    """Rasa 3.x's domain dict (``Domain.as_dict()``) for the action server."""
    intents: list[Any] = []
    for name, intent in domain.intents.items():
        use = intent.use_entities
        intents.append({name: {"use_entities": use if use is True else list(use or ())}})
    entities: list[Any] = []
    for name, entity in domain.entities.items():
        extra: dict[str, Any] = {}
        if entity.roles:
            extra["roles"] = list(entity.roles)
        if entity.groups:
            extra["groups"] = list(entity.groups)
        entities.append({name: extra} if extra else name)
    session = domain.session_config
    return {
        "version": DOMAIN_VERSION,
        "config": {"store_entities_as_slots": True},
        "session_config": {
            "session_expiration_time": session.expiration_minutes,
            "carry_over_slots_to_new_session": session.carry_over_slots,
        },
        "intents": intents,
        "entities": entities,
        "slots": {name: _slot_payload(slot) for name, slot in domain.slots.items()},
        "responses": {name: _response_payload(r) for name, r in domain.responses.items()},
        "actions": list(domain.actions),
        "forms": {},
        "e2e_actions": [],
    }


def request_payload(
    name: str,
    ctx: ActionContext,
    events: Sequence[Event],
    domain: Domain | None,
    version: str = RASA_VERSION,
) -> dict[str, Any]:
    """The body of ``POST /webhook`` asking the server to run ``name`` (no ``domain`` key when None)."""
    payload: dict[str, Any] = {
        "next_action": name,
        "sender_id": ctx.sender_id,
        "tracker": tracker_payload(ctx, events),
        "version": version,
    }
    if domain is not None:
        payload["domain"] = domain_payload(domain)
    return payload


# -- answers: Rasa's JSON -> our events ----------------------------------------------------


def _short(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _button(raw: object, where: str, warnings: list[str]) -> dict[str, str] | None:
    if not isinstance(raw, Mapping):
        warnings.append(f"{where}: a button must be an object, got {_short(raw)}; ignored")
        return None
    button: dict[str, str] = {}
    for key, value in raw.items():
        if value is None:
            continue
        button[str(key)] = value if isinstance(value, str) else json.dumps(value)
    if "title" not in button and "payload" not in button:
        warnings.append(f"{where}: a button needs a title or a payload, got {_short(raw)}; ignored")
        return None
    return button


def _buttons(raw: object, where: str, warnings: list[str]) -> tuple[dict[str, str], ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list | tuple):
        warnings.append(f"{where}: buttons must be a list, got {_short(raw)}; ignored")
        return ()
    buttons = (_button(b, f"{where}.buttons[{i}]", warnings) for i, b in enumerate(raw))
    return tuple(b for b in buttons if b is not None)


def _text(raw: object, where: str, warnings: list[str]) -> str | None:
    if raw is None or raw == "":
        return None
    if isinstance(raw, str):
        return raw
    if _is_number(raw):
        return str(raw)
    warnings.append(f"{where}: text must be a string, got {_short(raw)}; ignored")
    return None


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _present(value: object) -> bool:
    return value is not None and value != "" and value != [] and value != {}


def _bot_event(item: Mapping[str, Any], where: str, warnings: list[str]) -> BotUttered | None:
    raw_data = item.get("data")
    if raw_data is None:
        raw_data = {}
    if not isinstance(raw_data, Mapping):
        warnings.append(f"{where}: 'data' must be an object, got {_short(raw_data)}; ignored")
        raw_data = {}
    metadata = item.get("metadata")
    response = metadata.get("utter_action") if isinstance(metadata, Mapping) else None
    text = _text(item.get("text"), where, warnings)
    buttons = _buttons(raw_data.get("buttons"), where, warnings)
    data = {str(k): v for k, v in raw_data.items() if k != "buttons" and _present(v)}
    name = response if isinstance(response, str) and response else None
    if text is None and name is None and not buttons and not data:
        warnings.append(f"{where}: a bot event without text, response, buttons or data; ignored")
        return None
    return BotUttered(text=text, response=name, buttons=buttons, data=data)


def events_from_rasa(items: object, *, domain: Domain | None = None) -> tuple[list[Event], list[str]]:
    """Our events for Rasa event dicts, and a warning for each item that was skipped.

    ``slot`` -> :class:`SlotSet`, ``bot`` -> :class:`BotUttered`, ``restart`` -> :class:`Restarted`,
    ``session_started`` -> :class:`SessionStarted`, ``pause`` / ``resume`` -> a handoff to a human and
    back, ``reset_slots`` -> a :class:`SlotSet` to the initial value of every domain slot (needs
    ``domain``). Other Rasa events (``followup``, ``active_loop``, ``rewind``, ``reminder``, ...)
    have no taiwa equivalent: they are skipped with a warning, as are malformed items.
    """
    if items is None:
        return [], []
    if not isinstance(items, list | tuple):
        return [], [f"events: expected a list, got {_short(items)}; ignored"]
    events: list[Event] = []
    warnings: list[str] = []
    for index, item in enumerate(items):
        where = f"events[{index}]"
        if not isinstance(item, Mapping):
            warnings.append(f"{where}: an event must be an object, got {_short(item)}; ignored")
            continue
        kind = item.get("event")
        if not isinstance(kind, str) or not kind:
            warnings.append(f"{where}: an event needs an 'event' name, got {_short(dict(item))}; ignored")
            continue
        if kind == "slot":
            name = item.get("name")
            if not isinstance(name, str) or not name:
                warnings.append(f"{where}: a slot event needs a 'name', got {_short(dict(item))}; ignored")
                continue
            events.append(SlotSet(name, item.get("value")))
        elif kind == "bot":
            bot = _bot_event(item, where, warnings)
            if bot is not None:
                events.append(bot)
        elif kind == "restart":
            events.append(Restarted())
        elif kind == "session_started":
            metadata = item.get("metadata")
            timestamp = item.get("timestamp")
            events.append(
                SessionStarted(
                    metadata=dict(metadata) if isinstance(metadata, Mapping) else {},
                    timestamp=float(timestamp) if _is_number(timestamp) else 0.0,
                )
            )
        elif kind == "reset_slots":
            if domain is None:
                warnings.append(f"{where}: 'reset_slots' needs the domain to know the slots; ignored")
                continue
            events.extend(SlotSet(name, slot.initial_value) for name, slot in domain.slots.items())
        elif kind == "pause":
            events.append(HandoffRequested(reason="policy"))
        elif kind == "resume":
            events.append(HandoffReleased())
        else:
            warnings.append(f"{where}: the Rasa event {kind!r} is not supported by taiwa; ignored")
    return events, warnings


def parse_responses(items: object) -> tuple[list[BotUttered], list[str]]:
    """:func:`responses_from_rasa` with a warning for each skipped item."""
    if items is None:
        return [], []
    if not isinstance(items, list | tuple):
        return [], [f"responses: expected a list, got {_short(items)}; ignored"]
    messages: list[BotUttered] = []
    warnings: list[str] = []
    for index, item in enumerate(items):
        where = f"responses[{index}]"
        if not isinstance(item, Mapping):
            warnings.append(f"{where}: a response must be an object, got {_short(item)}; ignored")
            continue
        rest: dict[str, JsonValue] = {str(k): v for k, v in item.items()}
        name = rest.pop("response", None) or rest.pop("template", None)
        rest.pop("template", None)
        if name is not None and not isinstance(name, str):
            warnings.append(f"{where}: 'response' must be a response name, got {_short(name)}; ignored")
            name = None
        text = _text(rest.pop("text", None), where, warnings)
        buttons = _buttons(rest.pop("buttons", None), where, warnings)
        data = {k: v for k, v in rest.items() if _present(v)}
        if text is None and not name and not buttons and not data:
            warnings.append(f"{where}: an empty response (no text, response, buttons or data); ignored")
            continue
        messages.append(BotUttered(text=text, response=name or None, buttons=buttons, data=data))
    return messages, warnings


def responses_from_rasa(items: object) -> list[BotUttered]:
    """Our bot messages for what ``dispatcher.utter_message(...)`` collected on the action server.

    A named response (``response``, or the older ``template``) without text becomes
    ``BotUttered(text=None, response=name)``: the engine renders it with its NLG, the other keys
    (e.g. ``utter_message(response="utter_greet", name="Sara")``) are kept in ``data``. Text,
    buttons, image, attachment, custom payload and elements map to the BotUttered fields
    (empty values are dropped, as Rasa does). Malformed items are skipped.
    """
    return parse_responses(items)[0]
