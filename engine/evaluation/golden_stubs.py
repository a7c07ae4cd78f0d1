"""Stubbed tools for golden runs (``MODE=stubbed``): no golden case ever reaches a real system.

Every tool of the assistant is replaced by a stub with the real tool's contract (timeout,
idempotency, retries), so the engine's retry and failure paths run as they would in
production. What a stub does comes from the case being run, looked up by conversation id
(a case's conversation id is its ``case_id``):

- ``result``: the events the tool returns (``SlotSet``... exactly what the tool would return);
- ``timeout: true``: raises ``TimeoutError`` (classified ``tool_timeout``);
- ``error: 4xx`` / ``5xx``: raises :class:`~engine.actions.runner.ToolHttpError` 404 / 503
  (``tool_4xx`` / ``tool_5xx``); ``error: raise``: a ``RuntimeError`` (``tool_error``).

A case lists one answer or a list of answers per tool: call (attempt) *n* gets answer *n*,
the last one repeats. A tool the case has no stub for (nor its file's default ``stubs:``)
fails with ``tool_error`` and the call is marked ``missing``: the case then fails with cause
``exec`` ("tool X called without a stub"). Stubs are async, so no worker thread is used and
a "timeout" costs no time; retries wait no backoff.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

from engine.actions.registry import ActionContext, ActionFunc, ActionSpec
from engine.actions.runner import Backoff, LocalActionRunner, ToolHttpError
from engine.evaluation.golden import StubAnswer
from engine.events import Event, JsonValue

DEFAULT_TIMEOUT = 5.0
"""Timeout of a tool the domain declares but ``actions/`` does not implement (a remote action)."""

NO_BACKOFF = Backoff(0.0, 0.0)


class MissingStubError(Exception):
    """A golden case called a tool it has no stub for."""


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One call (attempt) of a stubbed tool."""

    name: str
    args: dict[str, JsonValue]
    """The slots the tool saw (those with a value), sorted by name."""
    answer: str
    """What the stub did: result, timeout, 4xx, 5xx, raise, or missing."""


@dataclass
class _CaseStubs:
    answers: Mapping[str, tuple[StubAnswer, ...]]
    calls: list[ToolCall] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)


class StubBook:
    """The stubs of the cases being run, by conversation id, and the calls they received."""

    def __init__(self) -> None:
        self._cases: dict[str, _CaseStubs] = {}

    def open(self, conversation_id: str, answers: Mapping[str, tuple[StubAnswer, ...]]) -> None:
        self._cases[conversation_id] = _CaseStubs(answers)

    def close(self, conversation_id: str) -> None:
        self._cases.pop(conversation_id, None)

    def take_calls(self, conversation_id: str) -> list[ToolCall]:
        """The calls made since the last time this was asked."""
        case = self._cases.get(conversation_id)
        if case is None:
            return []
        calls, case.calls = case.calls, []
        return calls

    def answer(self, name: str, ctx: ActionContext) -> list[Event]:
        """Play the stub of ``name`` for the case ``ctx.sender_id`` (raise what it raises)."""
        case = self._cases.get(ctx.sender_id)
        args = {k: ctx.slots[k] for k in sorted(ctx.slots) if ctx.slots[k] is not None}
        answers = case.answers.get(name, ()) if case is not None else ()
        if case is None or not answers:
            if case is not None:
                case.calls.append(ToolCall(name, args, "missing"))
            raise MissingStubError(f"tool {name!r} called without a stub")
        n = case.counts.get(name, 0)
        case.counts[name] = n + 1
        stub = answers[min(n, len(answers) - 1)]
        case.calls.append(ToolCall(name, args, stub.kind))
        match stub.kind:
            case "timeout":
                raise TimeoutError(f"stub: {name} timed out")
            case "4xx":
                raise ToolHttpError(404, f"stub: {name} answered 404")
            case "5xx":
                raise ToolHttpError(503, f"stub: {name} answered 503")
            case "raise":
                raise RuntimeError(f"stub: {name} raised")
        return list(stub.events)


def _stub(book: StubBook, name: str) -> ActionFunc:
    async def call(ctx: ActionContext) -> list[Event]:
        return book.answer(name, ctx)

    return call


def stub_runner(tools: Collection[str], real: Mapping[str, ActionSpec], book: StubBook) -> LocalActionRunner:
    """A runner whose every tool is a stub played from ``book``, with the real tool's contract."""
    specs: dict[str, ActionSpec] = {}
    for name in sorted(tools):
        spec = real.get(name)
        timeout = spec.timeout if spec is not None else DEFAULT_TIMEOUT
        idempotent = spec.idempotent if spec is not None else False
        retries = spec.retries if spec is not None else 0
        specs[name] = ActionSpec(name, _stub(book, name), timeout, idempotent, retries, f"golden-stub:{name}")
    return LocalActionRunner(specs, backoff=NO_BACKOFF)
