"""Turn ids: random, and different in every forked server worker."""

from __future__ import annotations

import multiprocessing
from multiprocessing.queues import Queue

from engine.dialogue import processor


def _next_id(out: Queue[int]) -> None:
    out.put(processor._turn_ids.getrandbits(64))


def test_forked_workers_do_not_repeat_each_others_turn_ids() -> None:
    # `taiwa run --workers N` forks after loading: without a reseed every worker would hand
    # out the same sequence of turn ids as its siblings.
    ctx = multiprocessing.get_context("fork")
    out: Queue[int] = ctx.Queue()
    children = [ctx.Process(target=_next_id, args=(out,)) for _ in range(3)]
    for c in children:
        c.start()
    ids = [out.get(timeout=30) for _ in children]
    for c in children:
        c.join(timeout=30)
    ids.append(processor._turn_ids.getrandbits(64))
    assert len(set(ids)) == len(ids)
