"""One turn, end to end: message -> IR -> ST -> DM -> EXEC/NLG -> events stored -> replies.

:class:`MessageProcessor` is what the shell, the server and the evaluation call. A turn holds
the conversation's lock in the tracker store for its whole duration, reads only the events
it has not seen (an in-process cache keeps each conversation's replayed state), and appends
its events in one atomic write with ``expected_length``, so concurrent messages for one
conversation never interleave and a message carrying an already-seen ``message_id`` is not
processed twice.
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from engine import events as ev
from engine import structured_logs
from engine.actions.runner import ActionRunner
from engine.dialogue.executor import Executor, Switches, Turn
from engine.dialogue.policy import HANDOFF, decide
from engine.dialogue.shortcut import parse_shortcut
from engine.dialogue.tracker import DialogueState, initial_state
from engine.dialogue.understand import Understanding, understand
from engine.dialogue.wire import bot_message_dict
from engine.events import BotUttered, Event, JsonValue
from engine.loading.project import Project
from engine.nlu.model import NluModel, ParseResult
from engine.policies.config import with_learned_threshold
from engine.stores.base import ConcurrentWriteError, TrackerStore

log = logging.getLogger("taiwa.turn")

NODES = ("IR", "ST", "DM", "EXEC")
"""The named nodes of a turn: intent recognition, state tracking, decision, execution (with NLG)."""

STATE_CACHE_SIZE = 10_000
"""Conversations whose replayed state is kept in memory."""

SEEN_MESSAGE_IDS = 256
"""Recent ``message_id``s remembered per conversation for de-duplication."""

_turn_ids = random.Random()
"""Where turn ids come from: 64 random bits without a system call per turn (``uuid4`` reads
the kernel's entropy each time). Its own generator, so a caller seeding ``random`` for
repeatable replies does not repeat turn ids, reseeded in each forked server worker."""
os.register_at_fork(after_in_child=_turn_ids.seed)


@dataclass(frozen=True)
class TurnResult:
    conversation_id: str
    turn_id: str
    messages: tuple[BotUttered, ...]
    events: tuple[Event, ...]
    """The events this turn appended (empty for a duplicate message)."""
    state: DialogueState
    decision: ev.PolicyDecided | None = None
    parse: Mapping[str, Any] | None = None
    """What the NLU made of the message (None for a shortcut)."""
    latency_ms: float = 0.0
    nodes_ms: Mapping[str, float] = field(default_factory=dict)
    errors: tuple[str, ...] = ()
    duplicate: bool = False
    outcome: str = ""
    """How the turn ended: the decision's kind (``answer``, ``trigger``, ``rule``, ``fallback``,
    ``handoff``, ``guardrail``, ...), ``restart``, ``with_human`` (a person has the
    conversation; the bot stayed silent) or ``duplicate``."""

    def replies(self) -> list[dict[str, Any]]:
        """The bot messages in the wire format of Rasa's REST channel."""
        return [bot_message_dict(m, self.conversation_id) for m in self.messages]


@dataclass
class _Cached:
    length: int
    state: DialogueState
    seen: deque[str]


class MessageProcessor:
    """Turns messages into replies for one assistant (see the module docstring)."""

    def __init__(
        self,
        project: Project,
        nlu: NluModel,
        store: TrackerStore,
        runner: ActionRunner,
        *,
        llm: Any | None = None,
        switches: Callable[[], Switches] | None = None,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        action_config: Mapping[str, Any] | None = None,
        lock_timeout: float = 10.0,
    ) -> None:
        self.project = project
        self.nlu = nlu
        self.store = store
        self.runner = runner
        self.llm = llm
        self.switches = switches or Switches
        self.clock = clock
        self.lock_timeout = lock_timeout
        # `nlu_threshold: auto` becomes the threshold this model learned (raises if it has none).
        self.policies = with_learned_threshold(
            project.policies, getattr(nlu, "card", {}) or {}, getattr(nlu, "model_id", "")
        )
        self.executor = Executor(
            project.domain, project.flows, self.policies, runner, rng=rng, action_config=action_config
        )
        self._initial = initial_state(project.domain)
        self._cache: OrderedDict[str, _Cached] = OrderedDict()

    # ------------------------------------------------------------------ public

    async def handle(
        self,
        conversation_id: str,
        text: str,
        *,
        channel: str | None = None,
        message_id: str | None = None,
        metadata: Mapping[str, JsonValue] | None = None,
        parsed: ParseResult | None = None,
    ) -> TurnResult:
        """Process one user message and return the bot's replies.

        ``parsed`` is the NLU's reading of ``text`` when the caller already has it (the
        golden runner parses many messages in one batch); the NLU is then not called.
        """
        started = time.perf_counter()
        turn_id = f"{_turn_ids.getrandbits(64):016x}"
        context, token = structured_logs.enter_turn(conversation_id, turn_id)
        try:
            async with self.store.lock(conversation_id, timeout=self.lock_timeout):
                cached = await self._load(conversation_id)
                if message_id is not None and message_id in cached.seen:
                    # A retry of a message already processed: answer what was answered then.
                    said = await self._replies_to(conversation_id, message_id)
                    log.info("duplicate message", extra={"outcome": "duplicate", "message_id": message_id})
                    return TurnResult(conversation_id, "", said, (), cached.state, duplicate=True, outcome="duplicate")
                result, new_events = await self._turn(
                    conversation_id, context, cached, text, channel, message_id, metadata, started, parsed
                )
                context.node = None
                try:
                    length = await self.store.append(conversation_id, new_events, expected_length=cached.length)
                except ConcurrentWriteError:
                    self._cache.pop(conversation_id, None)
                    raise
                self._remember(conversation_id, length, result.state, cached.seen, message_id)
            if log.isEnabledFor(logging.INFO):
                self._log_turn(result, channel)
            return result
        finally:
            structured_logs.leave_turn(token)

    @staticmethod
    def _log_turn(result: TurnResult, channel: str | None) -> None:
        """One line per stored turn: what was understood, who decided, how it ended, how long."""
        parse = result.parse or {}
        intent = parse.get("intent") or {}
        log.info(
            "turn",
            extra={
                "channel": channel,
                "intent": intent.get("name"),
                "confidence": intent.get("confidence"),
                "policy": result.decision.policy if result.decision is not None else None,
                "outcome": result.outcome,
                "errors": list(result.errors),
                "latency_ms": round(result.latency_ms, 3),
                "nodes_ms": {k: round(v, 3) for k, v in result.nodes_ms.items()},
            },
        )

    async def _replies_to(self, conversation_id: str, message_id: str) -> tuple[BotUttered, ...]:
        """The bot messages that followed the user message ``message_id`` (from the event log)."""
        said: list[BotUttered] = []
        inside = False
        for event in await self.store.load(conversation_id):
            if isinstance(event, ev.UserUttered):
                if inside:
                    break
                inside = event.message_id == message_id
            elif inside and isinstance(event, BotUttered):
                said.append(event)
        return tuple(said)

    async def state(self, conversation_id: str) -> DialogueState:
        """The conversation's current state (read without taking its lock)."""
        return self.replay(await self.store.load(conversation_id))

    def replay(self, events: Sequence[Event]) -> DialogueState:
        """The state after ``events`` (a conversation's stored events)."""
        return self._initial.apply(events)

    async def release_handoff(self, conversation_id: str) -> None:
        """Give the conversation back to the bot after a human handled it."""
        await self._append_outside_turn(conversation_id, [ev.HandoffReleased()])

    async def _append_outside_turn(self, conversation_id: str, events: Sequence[Event]) -> None:
        async with self.store.lock(conversation_id, timeout=self.lock_timeout):
            cached = await self._load(conversation_id)
            length = await self.store.append(conversation_id, events, expected_length=cached.length)
            self._remember(conversation_id, length, cached.state.apply(events), cached.seen, None)

    # ------------------------------------------------------------------ the turn

    async def _turn(
        self,
        cid: str,
        context: structured_logs.TurnContext,
        cached: _Cached,
        text: str,
        channel: str | None,
        message_id: str | None,
        metadata: Mapping[str, JsonValue] | None,
        started: float,
        parsed: ParseResult | None = None,
    ) -> tuple[TurnResult, list[Event]]:
        project = self.project
        domain = project.domain
        now = self.clock()
        turn_id = context.turn_id
        turn = Turn(cached.state, sender_id=cid, channel=channel)
        if self._needs_history():
            turn.history = _once(lambda: self.store.load(cid))
        nodes: dict[str, float] = {}

        # Sessions: a new conversation, or one idle for longer than session_expiration_time.
        expiry = domain.session_config.expiration_minutes * 60
        last = turn.state.last_user_time
        if not turn.state.session_started or (expiry > 0 and last is not None and now - last > expiry):
            turn.emit(ev.SessionStarted(dict(metadata or {}), now))

        # IR
        context.node = "IR"
        t0 = time.perf_counter()
        shortcut = parse_shortcut(text)
        parse: dict[str, Any] | None = None
        direct: dict[str, JsonValue] = {}
        if shortcut is not None and shortcut.command == "restart":
            turn.emit(
                ev.UserUttered(
                    text,
                    "restart",
                    1.0,
                    source="shortcut",
                    channel=channel,
                    message_id=message_id,
                    turn_id=turn_id,
                    timestamp=now,
                )
            )
            turn.emit(ev.Restarted(), ev.SessionStarted(dict(metadata or {}), now))
            if "utter_restart" in domain.responses:
                self.executor.say(turn, "utter_restart")
            return self._result(cid, turn_id, turn, None, parse, started, nodes, "restart"), turn.events
        if shortcut is not None:
            entities, direct = [], {}
            for key, value in shortcut.values.items():
                if key in domain.entities:
                    entities.append({"entity": key, "value": value})
                else:
                    direct[key] = value
            message = ev.UserUttered(
                text, shortcut.intent, 1.0, tuple(entities), ({"name": shortcut.intent, "confidence": 1.0},),
                source="shortcut", channel=channel, message_id=message_id, turn_id=turn_id, timestamp=now,
            )  # fmt: skip
        else:
            result, used_llm = await self._llm(parsed if parsed is not None else self.nlu.parse(text), cid, turn)
            parse = result.to_dict()
            message = ev.UserUttered(
                text,
                result.intent.name,
                float(result.intent.confidence),
                tuple(parse["entities"]),
                tuple(parse["intent_ranking"]),
                source="llm" if used_llm else "nlu",
                channel=channel,
                message_id=message_id,
                turn_id=turn_id,
                timestamp=now,
            )
        turn.emit(message)
        nodes["IR"] = _ms(t0)

        if turn.state.handoff is not None:
            decided = ev.PolicyDecided(
                HANDOFF, f"the conversation is with a person ({turn.state.handoff}); the bot stays silent"
            )
            turn.emit(decided)
            return self._result(cid, turn_id, turn, decided, parse, started, nodes, "with_human"), turn.events

        # ST
        context.node = "ST"
        t0 = time.perf_counter()
        understood: Understanding = understand(domain, project.flows, turn.state, message, direct)
        nodes["ST"] = _ms(t0)

        # DM
        context.node = "DM"
        t0 = time.perf_counter()
        switches = self.switches()
        strict = switches.strict_policy or (switches.emergency or project.policies.emergency).strict_policy
        decision = decide(self.policies, project.flows, turn.state, message, understood, strict=strict)
        decided = decision.event()
        turn.emit(decided)
        nodes["DM"] = _ms(t0)

        # EXEC + NLG
        context.node = "EXEC"
        t0 = time.perf_counter()
        await self.executor.carry_out(turn, decision, understood, switches)
        nodes["EXEC"] = _ms(t0)
        return self._result(cid, turn_id, turn, decided, parse, started, nodes, decision.kind), turn.events

    def _needs_history(self) -> bool:
        """Remote actions get the whole tracker; in-process ones do not need it loaded."""
        return getattr(self.runner, "remote", None) is not None or bool(getattr(self.runner, "wants_history", False))

    async def _llm(self, result: ParseResult, cid: str, turn: Turn) -> tuple[ParseResult, bool]:
        if self.llm is None:
            return result, False
        outcome = await self.llm.resolve(result.text, result, conversation_id=cid)
        if outcome.used_llm or outcome.llm_error:
            turn.emit(
                ev.LlmCalled(
                    outcome.provider,
                    outcome.model,
                    outcome.source if outcome.used_llm else "failed",
                    outcome.input_tokens,
                    outcome.output_tokens,
                    outcome.cost_usd,
                    outcome.llm_error,
                )
            )
        res: ParseResult = outcome.result
        return res, bool(outcome.used_llm)

    def _result(
        self,
        cid: str,
        turn_id: str,
        turn: Turn,
        decided: ev.PolicyDecided | None,
        parse: Mapping[str, Any] | None,
        started: float,
        nodes: Mapping[str, float],
        outcome: str,
    ) -> TurnResult:
        return TurnResult(
            cid,
            turn_id,
            tuple(turn.said),
            tuple(turn.events),
            turn.state,
            decided,
            parse,
            _ms(started),
            dict(nodes),
            tuple(turn.errors),
            outcome=outcome,
        )

    # ------------------------------------------------------------------ state cache

    async def _load(self, cid: str) -> _Cached:
        cached = self._cache.get(cid)
        if cached is None:
            events = await self.store.load(cid)
            seen: deque[str] = deque(maxlen=SEEN_MESSAGE_IDS)
            seen.extend(e.message_id for e in events if isinstance(e, ev.UserUttered) and e.message_id)
            return _Cached(len(events), self.replay(events), seen)
        newer = await self.store.load(cid, since=cached.length)
        if newer:
            # Another process wrote to this conversation since we last saw it.
            cached.seen.extend(e.message_id for e in newer if isinstance(e, ev.UserUttered) and e.message_id)
            cached = _Cached(cached.length + len(newer), cached.state.apply(newer), cached.seen)
        return cached

    def _remember(self, cid: str, length: int, state: DialogueState, seen: deque[str], message_id: str | None) -> None:
        if message_id is not None:
            seen.append(message_id)
        self._cache[cid] = _Cached(length, state, seen)
        self._cache.move_to_end(cid)
        while len(self._cache) > STATE_CACHE_SIZE:
            self._cache.popitem(last=False)

    def forget(self, conversation_id: str) -> None:
        """Drop the cached state (after the conversation was deleted from the store)."""
        self._cache.pop(conversation_id, None)


def _once(load: Callable[[], Awaitable[list[Event]]]) -> Callable[[], Awaitable[Sequence[Event]]]:
    """``load`` called at most once, on first use (a turn reads the whole history only if a
    remote action needs it)."""
    cached: list[list[Event]] = []

    async def history() -> Sequence[Event]:
        if not cached:
            cached.append(await load())
        return cached[0]

    return history


def _ms(since: float) -> float:
    return (time.perf_counter() - since) * 1000.0
