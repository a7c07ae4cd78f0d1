"""Run golden cases through the real turn pipeline, with every tool stubbed.

:func:`evaluate_chunk` is the unit of work: a top-level function of plain arguments (the
model folder or a loaded model, the project folder, cases as plain dicts) returning plain,
JSON-serialisable results, so that it runs the same in this process or in a worker of a
cluster. Within one process the project and the model are loaded once and reused.

Each case is its own conversation (id = ``case_id``) with a clock and a random generator of
its own (seeded from the case id), so response variations, timestamps and therefore results
do not depend on which other cases ran before it or where. Only the latencies are measured;
they stay out of any comparison of results. The LLM fallback is never called (golden runs
touch no real system) and no tool is switched off.

**Lockstep.** The cases of a chunk run side by side: turn 1 of every case, then turn 2 of
every case still going, and so on. Before each round the messages the NLU has not seen yet
in this chunk are parsed in one batch (:meth:`~engine.nlu.model.NluModel.parse_batch`, many
times cheaper per message than one ``parse`` each), then each case plays its turn through
the :class:`~engine.dialogue.processor.MessageProcessor` with its message's parse. Turns
still run one at a time, so a case sees exactly what it would see alone; a batch parse
gives each message the result it gives it in any other batch, so results do not depend on
how the cases are chunked either. ``lockstep=False`` plays the cases one after the other
and lets the processor parse each message itself (the reference the lockstep path is
tested against; confidences may differ from it in the last bits of a float, the report
rounds them to 4 decimals).
"""

from __future__ import annotations

import asyncio
import os
import random
import zlib
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine import events as ev
from engine.actions.registry import ActionSpec
from engine.dialogue.processor import MessageProcessor
from engine.dialogue.shortcut import parse_shortcut
from engine.dialogue.tracker import DialogueState
from engine.evaluation.gc_pause import gc_paused
from engine.evaluation.golden import GoldenCase, case_from_dict
from engine.evaluation.golden_checks import Check, case_checks, coerce_slots
from engine.evaluation.golden_load import project_actions, project_tools
from engine.evaluation.golden_records import case_record, crashed_turn, filled_slots, turn_outcome, turn_record
from engine.evaluation.golden_stubs import StubBook, stub_runner
from engine.events import Event, JsonValue
from engine.loading.project import Project, load_project_or_raise
from engine.nlu.artifact import load_model, resolve_model_dir
from engine.nlu.model import NluModel, ParseResult
from engine.stores.base import DEFAULT_LOCK_TIMEOUT, ConcurrentWriteError, TrackerStore, check_since

ModelRef = str | os.PathLike[str] | NluModel
"""A model folder (or ``models/`` with ``latest``), or a model already loaded."""

OOS_INTENTS = frozenset({"out_of_scope", "oos", "nlu_fallback"})
"""Intents that mean "out of scope": their accuracy is reported on its own."""

START_TIME = 1_700_000_000.0
"""The clock of every golden conversation starts here; each turn is one second later."""

_CONTEXTS_KEPT = 4

OnResult = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class GoldenContext:
    """What every case of one project needs; built once per process."""

    project: Project
    nlu: NluModel
    tools: frozenset[str]
    specs: Mapping[str, ActionSpec]
    """The real tools' contracts (timeouts, retries), copied when the project was loaded."""
    smalltalk: frozenset[str]
    controlled: frozenset[str] = frozenset()
    """Slots only flows and tools set (not counted as false positives of the message)."""
    model_dir: Path | None = None
    """The folder ``nlu`` was loaded from (None for a model handed over already loaded)."""

    @classmethod
    def for_project(cls, project: Project, nlu: NluModel, model_dir: Path | None = None) -> GoldenContext:
        """The context of ``project`` with ``nlu`` (any object with ``parse`` and ``model_id``)."""
        specs = dict(project_actions(project.root))
        controlled = frozenset(name for name, slot in project.domain.slots.items() if slot.controlled)
        return cls(project, nlu, project_tools(project), specs, smalltalk_intents(project), controlled, model_dir)

    def intent_group(self, intent: str) -> str:
        if intent in OOS_INTENTS:
            return "oos"
        return "smalltalk" if intent in self.smalltalk else "in_scope"


_contexts: dict[tuple[str, str], GoldenContext] = {}


def smalltalk_intents(project: Project) -> frozenset[str]:
    """Intents only rules answer (greetings, thanks...): no flow starts on them, no handoff."""
    starts = {t.intent for f in project.flows.values() for t in f.nlu_triggers} | set(project.policies.handoff.intents)
    ruled = {r.intent for r in project.policies.rules}
    return frozenset(ruled - starts - OOS_INTENTS)


def golden_context(project_dir: str | os.PathLike[str], model: ModelRef | None = None) -> GoldenContext:
    """The project and model of a golden run, loaded on first use in this process."""
    root = Path(project_dir).resolve()
    if isinstance(model, NluModel):
        model_key = f"loaded:{model.model_id}"
    else:
        model_key = str(resolve_model_dir(Path(model) if model is not None else root / "models").resolve())
    key = (str(root), model_key)
    found = _contexts.get(key)
    if found is not None:
        return found
    project = load_project_or_raise(root)
    if isinstance(model, NluModel):
        context = GoldenContext.for_project(project, model)
    else:
        context = GoldenContext.for_project(project, load_model(model_key), Path(model_key))
    while len(_contexts) >= _CONTEXTS_KEPT:
        _contexts.pop(next(iter(_contexts)))
    _contexts[key] = context
    return context


def forget_contexts() -> None:
    """Drop the loaded projects and models (tests that change a project in place)."""
    _contexts.clear()


def evaluate_chunk(
    model: ModelRef | None, project_dir: str | os.PathLike[str], cases: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """Run ``cases`` (plain dicts) in lockstep and return one plain result per case, in order.

    The unit a parallel runner farms out; the same cases give the same results wherever
    they run and however they are chunked, latencies apart.
    """
    return asyncio.run(evaluate_in_chunks(golden_context(project_dir, model), cases))


CHUNK_SIZE = 250
"""Cases run side by side in one lockstep chunk (more only grows memory: the batches are
already large enough that parsing is a small part of a turn)."""


async def evaluate_in_chunks(
    context: GoldenContext,
    cases: Sequence[Mapping[str, Any]],
    on_result: OnResult | None = None,
    *,
    chunk_size: int = CHUNK_SIZE,
) -> list[dict[str, Any]]:
    """Run ``cases`` chunk after chunk, each chunk in lockstep; results in the cases' order."""
    results: list[dict[str, Any]] = []
    for start in range(0, len(cases), max(1, chunk_size)):
        with gc_paused():
            results.extend(await evaluate_cases(context, cases[start : start + chunk_size], on_result))
    return results


async def evaluate_cases(
    context: GoldenContext,
    cases: Sequence[Mapping[str, Any]],
    on_result: OnResult | None = None,
    *,
    lockstep: bool = True,
) -> list[dict[str, Any]]:
    """Run ``cases`` in this event loop (in lockstep unless ``lockstep=False``); ``on_result``
    sees each result as soon as its case ends. Results come back in the cases' order."""
    chosen = [case_from_dict(data) for data in cases]
    book = StubBook()
    runner = stub_runner(context.tools, context.specs, book)
    store = EventListStore()
    processor = MessageProcessor(context.project, context.nlu, store, runner)
    try:
        if lockstep:
            return await _in_lockstep(context, processor, book, chosen, on_result)
        results: list[dict[str, Any]] = []
        for case in chosen:
            run = await CaseRun.open(context, case, processor, book)
            while not run.done:
                await run.play(processor, book, None)
            results.append(_finished(await run.finish(processor, book), on_result))
        return results
    finally:
        await runner.close()
        await store.close()


def _finished(result: dict[str, Any], on_result: OnResult | None) -> dict[str, Any]:
    if on_result is not None:
        on_result(result)
    return result


async def _in_lockstep(
    context: GoldenContext,
    processor: MessageProcessor,
    book: StubBook,
    cases: Sequence[GoldenCase],
    on_result: OnResult | None,
) -> list[dict[str, Any]]:
    if len({case.case_id for case in cases}) != len(cases):
        raise ValueError("a chunk of golden cases has a case_id twice; cases run side by side need their own ids")
    runs = [await CaseRun.open(context, case, processor, book) for case in cases]
    results: list[dict[str, Any] | None] = [None] * len(runs)
    parses: dict[str, ParseResult] = {}
    active: list[int] = []
    for i, run in enumerate(runs):
        if run.done:  # no turns: judged as it is
            results[i] = _finished(await run.finish(processor, book), on_result)
        else:
            active.append(i)
    while active:
        parse_ahead(processor.nlu, [runs[i].next_message for i in active], parses)
        going: list[int] = []
        for i in active:
            run = runs[i]
            await run.play(processor, book, parses.get(run.next_message))
            if run.done:
                results[i] = _finished(await run.finish(processor, book), on_result)
            else:
                going.append(i)
        active = going
    return [r for r in results if r is not None]


def parse_ahead(nlu: NluModel, texts: Sequence[str], parses: dict[str, ParseResult]) -> None:
    """Add the parses of the ``texts`` not in ``parses`` yet (shortcuts left out), in one batch.

    If the batch fails, nothing is added: each turn then parses its own message, so a
    message the NLU cannot parse fails its own case only.
    """
    todo = [t for t in dict.fromkeys(texts) if t not in parses and parse_shortcut(t) is None]
    if not todo:
        return
    # Any object with ``parse`` serves as the NLU (tests script one); parse_batch is optional.
    batch: Callable[[Sequence[str]], list[ParseResult]] | None = getattr(nlu, "parse_batch", None)
    try:
        parsed = batch(todo) if batch is not None else [nlu.parse(t) for t in todo]
    except Exception:  # noqa: BLE001 - the turns parse again one by one and report their own failure
        return
    parses.update(zip(todo, parsed, strict=True))


def case_seed(case_id: str) -> int:
    """The case's own random seed: response variations never depend on other cases."""
    return zlib.crc32(case_id.encode("utf-8"))


class CaseRun:
    """One golden case being played: its conversation, clock, random generator and records.

    :meth:`open` starts it; then :meth:`play` once per turn until ``done``; then :meth:`finish`.
    """

    def __init__(self, context: GoldenContext, case: GoldenCase, state: DialogueState) -> None:
        self.context = context
        self.case = case
        self.state = state
        self.now = START_TIME
        self.rng = random.Random(case_seed(case.case_id))
        self.turns: list[dict[str, Any]] = []
        self.tools: list[dict[str, JsonValue]] = []
        self.completed: list[str] = []
        self.done = not case.turns

    @classmethod
    async def open(
        cls, context: GoldenContext, case: GoldenCase, processor: MessageProcessor, book: StubBook
    ) -> CaseRun:
        """Open the case's conversation: session started, starting slots set, its stubs ready."""
        cid = case.case_id
        book.open(cid, case.stubs)
        start: list[Event] = [ev.SessionStarted(dict(case.metadata), START_TIME)]
        start.extend(ev.SlotSet(k, v) for k, v in coerce_slots(context.project.domain, case.slots).items())
        await processor.store.append(cid, start, expected_length=0)
        return cls(context, case, processor.replay(start))

    @property
    def next_message(self) -> str:
        """The message of the turn to play next."""
        return self.case.turns[len(self.turns)].message

    def _clock(self) -> float:
        return self.now

    async def play(self, processor: MessageProcessor, book: StubBook, parsed: ParseResult | None) -> None:
        """Play the next turn (``parsed``: its message's parse, if already known)."""
        case = self.case
        number = len(self.turns) + 1
        turn = case.turns[number - 1]
        self.now += 1.0
        processor.clock = self._clock
        processor.executor.rng = self.rng
        try:
            result = await processor.handle(case.case_id, turn.message, channel=case.channel, parsed=parsed)
        except Exception as exc:  # noqa: BLE001 - one case's crash is reported as its failure, the run goes on
            self.turns.append(crashed_turn(number, turn.message, exc))
            self.done = True
            return
        outcome = turn_outcome(result, self.state, book.take_calls(case.case_id), self.context.controlled)
        self.turns.append(turn_record(self.context, number, turn.message, turn.expect, outcome, result.latency_ms))
        self.tools.extend(outcome.tools)
        self.completed.extend(outcome.flows_completed)
        self.state = result.state
        self.done = number == len(case.turns)

    async def finish(self, processor: MessageProcessor, book: StubBook) -> dict[str, Any]:
        """Close the conversation and judge the case."""
        case = self.case
        book.close(case.case_id)
        processor.forget(case.case_id)
        await processor.store.delete(case.case_id)
        finals: list[Check] = []
        if case.expect is not None:
            finals = case_checks(
                case.expect,
                self.context.project.domain,
                slots=filled_slots(self.state),
                tools=self.tools,
                flows_completed=self.completed,
                handoff=self.state.handoff is not None,
            )
        return case_record(case, self.turns, finals, handoff=any(t["handoff"] for t in self.turns))


class EventListStore(TrackerStore):
    """The golden runs' tracker store: each conversation's events in a list, as they are.

    Golden turns run one at a time in one task, so the lock has nothing to serialise, and no
    event is read back after the conversation's first turn; keeping events as objects saves
    the JSON round trip of :class:`~engine.stores.memory.InMemoryTrackerStore` (a third of a
    turn's cost).
    """

    def __init__(self) -> None:
        self._events: dict[str, list[Event]] = {}

    async def append(self, conversation_id: str, events: Sequence[Event], *, expected_length: int | None = None) -> int:
        stored = self._events.setdefault(conversation_id, [])
        if expected_length is not None and expected_length != len(stored):
            raise ConcurrentWriteError(conversation_id, expected_length, len(stored))
        stored.extend(events)
        return len(stored)

    async def load(self, conversation_id: str, *, since: int = 0) -> list[Event]:
        check_since(since)
        return list(self._events.get(conversation_id, ())[since:])

    async def length(self, conversation_id: str) -> int:
        return len(self._events.get(conversation_id, ()))

    async def conversations(self) -> list[str]:
        return sorted(self._events)

    async def delete(self, conversation_id: str) -> None:
        self._events.pop(conversation_id, None)

    async def close(self) -> None:
        self._events.clear()

    def lock(self, conversation_id: str, *, timeout: float = DEFAULT_LOCK_TIMEOUT) -> AbstractAsyncContextManager[None]:
        return _UNLOCKED


class _Unlocked(AbstractAsyncContextManager[None]):
    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *exc: object) -> None:
        return None


_UNLOCKED = _Unlocked()
