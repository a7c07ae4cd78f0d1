"""50 clients x 20 messages at once, to one conversation and to 50 conversations, on every
store, through two processors sharing the store (two server instances).

Every message must be processed exactly once, and the stored log must be the turns' own
event lists laid end to end: no event of one turn inside another's.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from store_backends import Backend, store_backend

from dialogue.engine_kit import bank_project, make_bot
from engine import events as ev
from engine.actions.registry import ActionContext, ActionSpec
from engine.dialogue.processor import MessageProcessor, TurnResult
from engine.dialogue.tracker import initial_state
from engine.events import Event, SlotSet
from engine.loading.project import Project
from engine.stores import TrackerStore

CLIENTS, MESSAGES = 50, 20

services = pytest.mark.services


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    return bank_project(tmp_path_factory.mktemp("bank"))


@pytest.fixture(
    params=[
        "memory",
        "sqlite",
        pytest.param("redis", marks=services),
        pytest.param("redis-cluster", marks=services),
        pytest.param("postgres", marks=services),
    ]
)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    with store_backend(request.param, request, tmp_path) as b:
        yield b


async def slow_transfer(ctx: ActionContext) -> list[Event]:
    await asyncio.sleep(random.uniform(0, 0.002))  # a tool call: other turns get the loop meanwhile
    return [SlotSet("transfer_id", f"TX-{ctx.sender_id}-{ctx.slots.get('amount')}")]


def processors(project: Project, store: TrackerStore) -> list[MessageProcessor]:
    tools = {"do_transfer": ActionSpec("do_transfer", slow_transfer, 2.0, False, 0, "test:slow_transfer")}
    return [make_bot(project, tools, store=store).processor for _ in range(2)]  # type: ignore[arg-type]


SCRIPT = [
    '/transfer_money{"recipient": "Ann"}',
    '/inform{"amount": 10}',
    "/affirm",
    "/greet",
]


def check_log(project: Project, log: Sequence[Event], results: Sequence[TurnResult]) -> None:
    """Each turn's events lie together in the log, and each turn saw every turn before it:
    the state after its block is exactly the state it ended with (no lost update)."""
    by_id = {}
    for r in results:
        user = next(e for e in r.events if isinstance(e, ev.UserUttered))
        assert user.message_id not in by_id, f"message {user.message_id} processed twice"
        by_id[user.message_id] = r
    pos, seen = 0, 0
    state = initial_state(project.domain)
    while pos < len(log):
        user = next(e for e in log[pos : pos + 2] if isinstance(e, ev.UserUttered))
        result = by_id[user.message_id]
        block = list(result.events)
        assert list(log[pos : pos + len(block)]) == block, f"turn of {user.message_id} interleaved"
        state = state.apply(block)
        assert state == result.state, f"turn of {user.message_id} did not see the turns before it"
        pos += len(block)
        seen += 1
    assert seen == len(results)


async def test_one_conversation_many_clients(project: Project, backend: Backend) -> None:
    async with backend.open() as store:
        procs = processors(project, store)

        async def client(n: int) -> list[TurnResult]:
            out = []
            for i in range(MESSAGES):
                proc = procs[(n + i) % 2]
                text = SCRIPT[(n + i) % len(SCRIPT)]
                out.append(await proc.handle("shared", text, message_id=f"{n}-{i}"))
            return out

        results = [r for rs in await asyncio.gather(*(client(n) for n in range(CLIENTS))) for r in rs]
        assert len(results) == CLIENTS * MESSAGES
        assert all(r.messages for r in results if r.state.handoff is None)
        log = await store.load("shared")
        check_log(project, log, results)
        ids = [e.message_id for e in log if isinstance(e, ev.UserUttered)]
        assert sorted(ids) == sorted(f"{n}-{i}" for n in range(CLIENTS) for i in range(MESSAGES))


async def test_many_conversations_at_once(project: Project, backend: Backend) -> None:
    async with backend.open() as store:
        procs = processors(project, store)

        async def client(n: int) -> list[TurnResult]:
            out = []
            for i in range(MESSAGES):
                text = SCRIPT[i % len(SCRIPT)]
                out.append(await procs[i % 2].handle(f"conv-{n}", text, message_id=f"{n}-{i}"))
            return out

        per_client = await asyncio.gather(*(client(n) for n in range(CLIENTS)))
        for n, results in enumerate(per_client):
            log = await store.load(f"conv-{n}")
            check_log(project, log, results)
            # Sequential within a conversation: the same script gives the same answers.
            said = [m.text for r in results for m in r.messages]
            assert said[:4] == ["How much?", "Send 10.0 to Ann?", f"Sent 10.0 to Ann (TX-conv-{n}-10.0).", "Hello!"]
            assert said == said[:4] * (MESSAGES // len(SCRIPT))
