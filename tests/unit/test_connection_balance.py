"""Keep-alive connections spread over server workers: the shared counts and the decision to close."""

from __future__ import annotations

import multiprocessing
import time
from multiprocessing.connection import Connection

from engine.server import balance
from engine.server.balance import SLACK, ConnectionBalance


def _worker(spread: ConnectionBalance, connections: int, orders: Connection) -> None:
    spread.join()
    for _ in range(connections):
        spread.opened()
    orders.send("joined")
    while (order := orders.recv()) != "stop":
        if order == "close one":
            spread.closed()
        elif order == "open one":
            spread.opened()
        elif order == "should close?":
            time.sleep(balance.CHECK_EVERY)
            orders.send(spread.should_close())
    spread.leave()
    orders.send("left")


def test_the_worker_above_its_share_closes_connections_until_even() -> None:
    ctx = multiprocessing.get_context("fork")
    spread = ConnectionBalance(2)
    busy, busy_end = ctx.Pipe()
    idle, idle_end = ctx.Pipe()
    workers = [
        ctx.Process(target=_worker, args=(spread, 73, busy_end)),
        ctx.Process(target=_worker, args=(spread, 27, idle_end)),
    ]
    for w in workers:
        w.start()
    assert busy.recv() == idle.recv() == "joined"
    assert sorted(spread.counts().values()) == [27, 73]
    closed = 0
    while True:
        busy.send("should close?")
        if not busy.recv():
            break
        busy.send("close one")
        idle.send("open one")  # the client reconnects, here to the idle worker
        closed += 1
    # The busy worker stops closing once it is within SLACK of its even share (50).
    assert sorted(spread.counts().values()) == [50 - SLACK, 50 + SLACK]
    assert closed == 73 - 50 - SLACK
    idle.send("should close?")
    assert idle.recv() is False
    for pipe in (busy, idle):
        pipe.send("stop")
        assert pipe.recv() == "left"
    for w in workers:
        w.join(timeout=10)
    assert spread.counts() == {}


def test_a_lone_or_even_worker_never_closes() -> None:
    spread = ConnectionBalance(2)
    assert spread.should_close() is False  # not joined (one worker: no balance at all)
    spread.join()
    for _ in range(3):
        spread.opened()
    time.sleep(balance.CHECK_EVERY)
    assert spread.should_close() is False  # alone with 3: all of them are its share
    spread.leave()
