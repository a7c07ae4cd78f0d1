"""Turn latency and throughput of the reference assistant, in process, end to end.

Trains the reference assistant's NLU into a temporary folder (or uses ``--model DIR``), then
plays a scripted conversation that covers every use case (greeting, FAQ, account lookup,
ticket creation, an FAQ question interrupting a ticket and the resume, cancel, out of scope,
goodbye, handoff) through ``MessageProcessor.handle``: typed text goes through the NLU, only
button presses send their payloads (``/inform{"priority": "high"}``, ``/affirm``). The tools
are the real ones, with their real timeouts, on a temporary CRM database.

For each tracker store (memory, SQLite in a temp folder, Redis, PostgreSQL):

* sequential: N conversations, one turn at a time: per-turn latency p50 / p90 / p99 / max
  (wall time around ``await processor.handle(...)``, NLU included), the mean of each node
  (IR, ST, DM, EXEC; "rest" is the lock, the store reads and the append) and turns/s;
* concurrent: another N conversations with C of them in flight at once (asyncio.gather, each
  conversation sequential inside): turns/s and p50 / p99. Each message "arrives" as it would
  from a client: the conversation yields to the event loop before calling ``handle``, and the
  latency counts from that moment (sent -> reply), so it includes the wait for the loop ("wait"
  column; without the yield, a turn that never suspends, e.g. any turn without a tool on the
  memory store, would run before all the others and hide the queue).

Tool calls are also reported from their ToolCalled events (latency, errors, retries), with a
per-step table and a text histogram of the memory store's sequential latencies.

The script is checked once before measuring (every reply's response name), and every measured
turn is checked again: a turn with another reply or an error is counted in the "bad" column.

Usage: .venv/bin/python benchmarks/bench_turns.py [--conversations 200] [--concurrency 100]
       [--warmup 20] [--stores memory sqlite redis postgresql] [--model DIR] [--report FILE]
Redis and PostgreSQL come from TAIWA_TEST_REDIS_URL / TAIWA_TEST_POSTGRES_URL (defaults:
127.0.0.1, a unique key prefix / table, removed afterwards); a store whose server does not
answer is reported as skipped.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import platform
import random
import shlex
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine import __version__  # noqa: E402
from engine.actions.registry import discover_actions  # noqa: E402
from engine.actions.runner import LocalActionRunner  # noqa: E402
from engine.dialogue.processor import NODES, MessageProcessor, TurnResult  # noqa: E402
from engine.events import ToolCalled  # noqa: E402
from engine.loading.project import Project, load_project_or_raise  # noqa: E402
from engine.nlu.artifact import load_model  # noqa: E402
from engine.nlu.model import NluModel  # noqa: E402
from engine.nlu.train import train_project  # noqa: E402
from engine.stores import open_store  # noqa: E402
from engine.stores.base import StoreError, TrackerStore  # noqa: E402

STORES = ("memory", "sqlite", "redis", "postgresql")


@dataclass(frozen=True)
class Step:
    label: str
    text: str
    expected: tuple[str, ...]
    """The response names of the bot's replies, in order (empty: the bot stays silent)."""


SCRIPT: tuple[Step, ...] = (
    Step("greet", "hello", ("utter_greet",)),
    Step("faq (kb_search)", "how do I reset my password?", ("utter_kb_answer",)),
    Step("account: ask", "check my account", ("utter_ask_customer_id",)),
    Step("account: customer id", "C12345", ("utter_ask_birth_date",)),
    Step("account: birth date (crm_lookup)", "12/04/1990", ("utter_account_summary",)),
    Step("ticket: open", "I want to open a ticket", ("utter_ask_ticket_summary",)),
    Step("ticket: summary", "my invoice is wrong, I was charged twice", ("utter_ask_ticket_priority",)),
    Step("ticket: priority button", '/inform{"priority": "high"}', ("utter_ask_confirm_ticket",)),
    Step("ticket: confirm (create_ticket)", "/affirm", ("utter_ticket_created",)),
    Step("ticket 2: open", "I want to open a ticket", ("utter_ask_ticket_summary",)),
    Step("ticket 2: summary", "the dashboard is slow", ("utter_ask_ticket_priority",)),
    Step(
        "ticket 2: faq interrupts, resume",
        "how do I export my data?",
        ("utter_kb_answer", "utter_flow_resumed", "utter_ask_ticket_priority"),
    ),
    Step("ticket 2: priority button", '/inform{"priority": "low"}', ("utter_ask_confirm_ticket",)),
    Step("ticket 2: confirm (create_ticket)", "/affirm", ("utter_ticket_created",)),
    Step("cancel: start", "check my account", ("utter_ask_customer_id",)),
    Step("cancel: never mind", "never mind", ("utter_flow_cancelled",)),
    Step("out of scope", "what's the weather like in Paris?", ("utter_out_of_scope",)),
    Step("thanks", "thanks", ("utter_you_are_welcome",)),
    Step("goodbye", "bye", ("utter_goodbye",)),
    Step("handoff", "wait, I want to talk to a human", ("utter_handoff_connecting",)),
)


# ----------------------------------------------------------------------------- measuring


@dataclass
class Samples:
    """Per-turn figures of one phase (one store, one mode)."""

    wall_ms: list[float] = field(default_factory=list)
    """From the message being sent to the reply (equal to handle_ms when sequential)."""
    handle_ms: list[float] = field(default_factory=list)
    """Wall time around ``await processor.handle(...)`` alone."""
    nodes_ms: dict[str, list[float]] = field(default_factory=lambda: {n: [] for n in NODES})
    step: list[int] = field(default_factory=list)
    bad: list[str] = field(default_factory=list)
    tools_ms: dict[str, list[float]] = field(default_factory=dict)
    """ToolCalled.latency_ms per tool: the call as the runner saw it (worker-thread queueing included)."""
    tool_errors: dict[str, int] = field(default_factory=dict)
    tool_retried: dict[str, int] = field(default_factory=dict)
    elapsed_s: float = 0.0

    def add(self, index: int, wall_ms: float, handle_ms: float, result: TurnResult) -> None:
        self.wall_ms.append(wall_ms)
        self.handle_ms.append(handle_ms)
        self.step.append(index)
        for node in NODES:
            self.nodes_ms[node].append(float(result.nodes_ms.get(node, 0.0)))
        for event in result.events:
            if isinstance(event, ToolCalled):
                self.tools_ms.setdefault(event.name, []).append(float(event.latency_ms))
                if event.status != "ok":
                    self.tool_errors[event.name] = self.tool_errors.get(event.name, 0) + 1
                if event.attempts > 1:
                    self.tool_retried[event.name] = self.tool_retried.get(event.name, 0) + 1
        got = tuple(m.response for m in result.messages)
        if got != SCRIPT[index].expected or result.errors:
            self.bad.append(f"{SCRIPT[index].label}: {got} errors={list(result.errors)}")


def _pct(values: Sequence[float] | npt.NDArray[np.float64], q: float) -> float:
    return round(float(np.percentile(values, q)), 3)


def summarise(s: Samples, *, nodes: bool = True) -> dict[str, Any]:
    wall = np.asarray(s.wall_ms)
    handle = np.asarray(s.handle_ms)
    out: dict[str, Any] = {
        "turns": len(wall),
        "elapsed_s": round(s.elapsed_s, 3),
        "turns_per_s": round(len(wall) / s.elapsed_s, 1),
        "latency_ms": {
            "mean": round(float(wall.mean()), 3),
            "p50": _pct(wall, 50),
            "p90": _pct(wall, 90),
            "p99": _pct(wall, 99),
            "max": round(float(wall.max()), 3),
        },
        "in_handle_ms": {
            "mean": round(float(handle.mean()), 3),
            "p50": _pct(handle, 50),
            "p99": _pct(handle, 99),
            "max": round(float(handle.max()), 3),
        },
        "wait_mean_ms": round(float(wall.mean() - handle.mean()), 3),
    }
    if nodes:
        means = {n: round(float(np.mean(v)), 3) for n, v in s.nodes_ms.items()}
        out["nodes_mean_ms"] = means
        # Inside handle but outside the nodes: lock, store reads, append, unlock, bookkeeping.
        out["rest_mean_ms"] = round(float(handle.mean()) - sum(means.values()), 3)
    out["tools_ms"] = {
        name: {
            "calls": len(v),
            "p50": _pct(v, 50),
            "p99": _pct(v, 99),
            "max": round(max(v), 3),
            "errors": s.tool_errors.get(name, 0),
            "retried": s.tool_retried.get(name, 0),
        }
        for name, v in sorted(s.tools_ms.items())
    }
    out["bad_turns"] = len(s.bad)
    if s.bad:
        out["bad_examples"] = sorted(set(s.bad))[:5]
    return out


def per_step(s: Samples) -> list[dict[str, Any]]:
    """Latency and node means for each step of the script (which turns are the slow ones)."""
    rows = []
    steps = np.asarray(s.step)
    wall = np.asarray(s.wall_ms)
    for index, step in enumerate(SCRIPT):
        mask = steps == index
        if not mask.any():
            continue
        rows.append(
            {
                "step": step.label,
                "text": step.text,
                "p50_ms": _pct(wall[mask], 50),
                "p99_ms": _pct(wall[mask], 99),
                **{f"{n}_mean_ms": round(float(np.asarray(s.nodes_ms[n])[mask].mean()), 3) for n in NODES},
            }
        )
    return rows


class Ticker:
    """A rich progress bar refreshed by hand, at most twice a second, between turns.

    Rich's own refresh thread would render while turns are being timed (and hold the GIL).
    """

    def __init__(self, console: Console) -> None:
        self.progress = Progress(
            TextColumn("{task.description:<28}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            auto_refresh=False,
            transient=True,
            disable=not console.is_terminal,
        )
        self._last = 0.0

    def __enter__(self) -> Ticker:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def task(self, description: str, total: int) -> int:
        task_id = self.progress.add_task(description, total=total)
        self.progress.refresh()
        return int(task_id)

    def advance(self, task_id: int, n: int = 1) -> None:
        self.progress.advance(task_id, n)  # type: ignore[arg-type]
        now = time.perf_counter()
        if now - self._last > 0.5:
            self._last = now
            self.progress.refresh()

    def done(self, task_id: int) -> None:
        self.progress.remove_task(task_id)  # type: ignore[arg-type]
        self.progress.refresh()


async def converse(processor: MessageProcessor, cid: str, samples: Samples, *, arrive: bool = False) -> None:
    """One whole scripted conversation, a turn at a time.

    ``arrive``: yield to the event loop before each turn, as a message coming from a client
    would be served only when the loop gets to it; its latency counts from before the yield.
    """
    for index, step in enumerate(SCRIPT):
        t0 = time.perf_counter()
        if arrive:
            await asyncio.sleep(0)
        t1 = time.perf_counter()
        result = await processor.handle(cid, step.text)
        t2 = time.perf_counter()
        samples.add(index, (t2 - t0) * 1000.0, (t2 - t1) * 1000.0, result)


async def warm_up(processor: MessageProcessor, prefix: str, turns: int) -> list[str]:
    """``turns`` turns of the script (cycling over fresh conversations), not measured."""
    cids: list[str] = []
    done = 0
    while done < turns:
        cid = f"{prefix}-warmup-{len(cids)}"
        cids.append(cid)
        for step in SCRIPT[: turns - done]:
            await processor.handle(cid, step.text)
            done += 1
    return cids


async def sequential(processor: MessageProcessor, cids: Sequence[str], ticker: Ticker, name: str) -> Samples:
    samples = Samples()
    task = ticker.task(f"{name}: sequential", len(cids))
    start = time.perf_counter()
    for cid in cids:
        await converse(processor, cid, samples)
        ticker.advance(task)
    samples.elapsed_s = time.perf_counter() - start
    ticker.done(task)
    return samples


async def concurrent(
    processor: MessageProcessor, cids: Sequence[str], concurrency: int, ticker: Ticker, name: str
) -> Samples:
    samples = Samples()
    concurrency = max(1, min(concurrency, len(cids)))
    task = ticker.task(f"{name}: {concurrency} concurrent", len(cids))
    queue: Iterator[str] = iter(cids)

    async def worker() -> None:
        for cid in queue:  # the workers share one iterator: each conversation is played once
            await converse(processor, cid, samples, arrive=True)
            ticker.advance(task)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    samples.elapsed_s = time.perf_counter() - start
    ticker.done(task)
    return samples


@dataclass
class Setup:
    project: Project
    nlu: NluModel
    runner: LocalActionRunner
    seed: int


def make_processor(setup: Setup, store: TrackerStore) -> MessageProcessor:
    return MessageProcessor(setup.project, setup.nlu, store, setup.runner, rng=random.Random(setup.seed))


async def check_script(setup: Setup) -> list[str]:
    """Play the script once on a fresh in-memory store; the mismatches (empty when all is as expected)."""
    async with open_store("memory://") as store:
        processor = make_processor(setup, store)
        problems = []
        for step in SCRIPT:
            result = await processor.handle("script-check", step.text)
            got = tuple(m.response for m in result.messages)
            if got != step.expected or result.errors:
                intent = result.parse["intent"] if result.parse else "(shortcut)"
                problems.append(
                    f"{step.label}: {step.text!r} -> {list(got)} (expected {list(step.expected)}), "
                    f"intent {intent}, errors {list(result.errors)}"
                )
        return problems


def unavailable_errors() -> tuple[type[BaseException], ...]:
    """What opening a store whose server is down raises (the Redis store lets redis-py's errors through)."""
    errors: list[type[BaseException]] = [StoreError, OSError]
    try:
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import TimeoutError as RedisTimeoutError
    except ImportError:
        pass
    else:
        errors += [RedisConnectionError, RedisTimeoutError]
    return tuple(errors)


async def probe(url: str) -> str | None:
    """None when the store answers, else why not."""
    pool_log = logging.getLogger("psycopg.pool")  # it warns for every failed connection attempt
    level = pool_log.level
    pool_log.setLevel(logging.ERROR)
    try:
        async with open_store(url) as store:
            await store.length("bench-probe")
    except unavailable_errors() as exc:
        return f"{type(exc).__name__}: {exc}"
    finally:
        pool_log.setLevel(level)
    return None


async def bench_store(
    setup: Setup, url: str, args: argparse.Namespace, ticker: Ticker, name: str
) -> tuple[dict[str, Any], Samples]:
    async with open_store(url) as store:
        processor = make_processor(setup, store)
        prefix = f"bench-{uuid.uuid4().hex[:8]}"
        used = await warm_up(processor, prefix, args.warmup)
        try:
            seq_ids = [f"{prefix}-seq-{i}" for i in range(args.conversations)]
            con_ids = [f"{prefix}-con-{i}" for i in range(args.conversations)]
            used += seq_ids + con_ids
            seq = await sequential(processor, seq_ids, ticker, name)
            con = await concurrent(processor, con_ids, args.concurrency, ticker, name)
        finally:
            for cid in used:
                await store.delete(cid)
    result = {
        "sequential": summarise(seq),
        "concurrent": {"concurrency": min(args.concurrency, args.conversations), **summarise(con)},
        "sequential_steps": per_step(seq),
    }
    return result, seq


# ----------------------------------------------------------------------------- output


def histogram(values: Sequence[float], bins: int = 14, width: int = 40) -> tuple[list[str], list[dict[str, float]]]:
    """A text histogram on log-spaced bins (turns with and without a tool call differ 10x)."""
    arr = np.asarray(values)
    lo, hi = float(arr.min()), float(arr.max())
    edges = np.geomspace(lo, hi * 1.000001, bins + 1) if hi > lo > 0 else np.linspace(lo, lo + 1, bins + 1)
    counts, _ = np.histogram(arr, bins=edges)
    top = max(int(counts.max()), 1)
    lines, rows = [], []
    for count, a, b in zip(counts, edges[:-1], edges[1:], strict=True):
        bar = "█" * math.ceil(count / top * width) if count else ""
        lines.append(f"{a:8.3f} – {b:8.3f} ms │{bar:<{width}} {count:6d} {count / len(arr):6.1%}")
        rows.append({"from_ms": round(float(a), 4), "to_ms": round(float(b), 4), "turns": int(count)})
    return lines, rows


def results_table(results: dict[str, Any]) -> Table:
    table = Table(title="Turn latency (ms, message sent -> reply, NLU included)")
    for col in (
        "store",
        "mode",
        "turns",
        "turns/s",
        "p50",
        "p90",
        "p99",
        "max",
        "wait",
        "IR",
        "ST",
        "DM",
        "EXEC",
        "rest",
    ):
        table.add_column(col, justify="left" if col in ("store", "mode") else "right")
    table.add_column("bad", justify="right")
    for name, r in results.items():
        if "skipped" in r:
            table.add_row(name, "skipped", *[""] * 13, end_section=True)
            continue
        for mode in ("sequential", "concurrent"):
            m = r[mode]
            lat = m["latency_ms"]
            nodes = m.get("nodes_mean_ms", {})
            label = mode if mode == "sequential" else f"concurrent x{m['concurrency']}"
            table.add_row(
                name if mode == "sequential" else "",
                label,
                str(m["turns"]),
                f"{m['turns_per_s']:,.0f}",
                *(f"{lat[k]:.2f}" for k in ("p50", "p90", "p99", "max")),
                f"{m['wait_mean_ms']:.2f}",
                *(f"{nodes[n]:.3f}" for n in NODES),
                f"{m['rest_mean_ms']:.3f}",
                str(m["bad_turns"]) if not m["bad_turns"] else f"[red]{m['bad_turns']}[/red]",
                end_section=mode == "concurrent",
            )
    return table


def tools_table(results: dict[str, Any]) -> Table:
    names = sorted({t for r in results.values() if "skipped" not in r for t in r["sequential"]["tools_ms"]})
    table = Table(title="Tool calls (ms, ToolCalled.latency_ms: p50 / p99 / max; worker-thread queueing included)")
    table.add_column("store")
    table.add_column("mode")
    for name in names:
        table.add_column(name, justify="right")
    table.add_column("errors / retried", justify="right")
    for store, r in results.items():
        if "skipped" in r:
            continue
        for mode in ("sequential", "concurrent"):
            tools = r[mode]["tools_ms"]
            cells = [
                f"{tools[n]['p50']:.2f} / {tools[n]['p99']:.2f} / {tools[n]['max']:.1f}" if n in tools else ""
                for n in names
            ]
            errors = sum(t["errors"] for t in tools.values())
            retried = sum(t["retried"] for t in tools.values())
            table.add_row(
                store if mode == "sequential" else "",
                mode,
                *cells,
                f"{errors} / {retried}" if not errors + retried else f"[red]{errors} / {retried}[/red]",
                end_section=mode == "concurrent",
            )
    return table


def steps_table(rows: list[dict[str, Any]], store: str) -> Table:
    table = Table(title=f"Per step ({store}, sequential; node columns are means)")
    table.add_column("step")
    for col in ("p50", "p99", *NODES):
        table.add_column(col, justify="right")
    for row in rows:
        table.add_row(
            row["step"], f"{row['p50_ms']:.2f}", f"{row['p99_ms']:.2f}", *(f"{row[f'{n}_mean_ms']:.3f}" for n in NODES)
        )
    return table


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        commit = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = ""
    return {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "cpu": cpu,
        "taiwa": __version__,
        "git_commit": commit,
        "command": shlex.join([Path(sys.executable).name, *sys.argv]),
    }


# ----------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--conversations", type=int, default=200, help="conversations per store and mode")
    parser.add_argument("--concurrency", type=int, default=100, help="conversations in flight at once")
    parser.add_argument("--warmup", type=int, default=20, help="turns played first on each store, not counted")
    parser.add_argument("--stores", nargs="+", choices=STORES, default=list(STORES))
    parser.add_argument("--model", type=Path, help="a trained model (default: train one into a temp folder)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the response-variant choice")
    parser.add_argument("--report", type=Path, help="write the results as JSON")
    args = parser.parse_args()
    if args.conversations < 1 or args.concurrency < 1 or args.warmup < 0:
        parser.error("--conversations and --concurrency must be at least 1, --warmup at least 0")
    console = Console()
    if not console.is_terminal:  # piped into a file: do not squeeze the tables into 80 columns
        console = Console(width=150)
    table = "bench_turns_" + uuid.uuid4().hex[:8]
    redis_url = os.environ.get("TAIWA_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    pg_url = os.environ.get("TAIWA_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
    results: dict[str, Any] = {}
    memory_samples: Samples | None = None
    with tempfile.TemporaryDirectory(prefix="taiwa-bench-turns-") as tmp:
        nlu_info: dict[str, Any] = {}
        if args.model is None:
            with console.status("training the reference assistant's NLU"):
                t0 = time.perf_counter()
                outcome = train_project(ROOT, out=Path(tmp) / "models")
                nlu_info["train_s"] = round(time.perf_counter() - t0, 3)
            model_dir = outcome.model_dir
        else:
            model_dir = args.model
        nlu = load_model(model_dir)
        nlu_info["model_id"] = nlu.model_id
        nlu_info["model"] = str(model_dir) if args.model is not None else "(trained into a temp folder)"
        setup = Setup(
            load_project_or_raise(ROOT),
            nlu,
            LocalActionRunner(discover_actions(ROOT), {"TAIWA_CRM_DB": str(Path(tmp) / "crm.sqlite3")}),
            args.seed,
        )
        problems = asyncio.run(check_script(setup))
        if problems:
            console.print("[red]The script does not produce the expected replies; nothing was measured:[/red]")
            for problem in problems:
                console.print(f"  {problem}", markup=False, highlight=False)
            return 1
        console.print(
            f"NLU {nlu.model_id}"
            + (f" trained in {nlu_info['train_s']:.2f} s" if "train_s" in nlu_info else "")
            + f"; script of {len(SCRIPT)} turns checked; {args.conversations} conversations per store and mode, "
            f"{args.concurrency} at once in the concurrent mode, {args.warmup} warm-up turns."
        )
        urls = {
            "memory": "memory://",
            "sqlite": f"sqlite://{tmp}/tracker.db",
            "redis": f"{redis_url}{'&' if '?' in redis_url else '?'}prefix={table}:",
            "postgresql": f"{pg_url}{'&' if '?' in pg_url else '?'}table={table}",
        }
        with Ticker(console) as ticker:
            for name in args.stores:
                why = asyncio.run(probe(urls[name]))
                if why is not None:
                    console.print(f"{name:10s} skipped: {why}", markup=False, highlight=False)
                    results[name] = {"skipped": why}
                    continue
                r, seq = asyncio.run(bench_store(setup, urls[name], args, ticker, name))
                results[name] = r
                if name == "memory":
                    memory_samples = seq
                s, c = r["sequential"], r["concurrent"]
                console.print(
                    f"{name:10s} sequential p50 {s['latency_ms']['p50']:.2f} ms, {s['turns_per_s']:,.0f} turns/s; "
                    f"concurrent p50 {c['latency_ms']['p50']:.2f} ms, {c['turns_per_s']:,.0f} turns/s",
                    highlight=False,
                )
    if "postgresql" in results and "skipped" not in results["postgresql"]:
        import psycopg

        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(f"DROP TABLE IF EXISTS {table}")

    console.print()
    console.print(results_table(results))
    console.print(
        "p50..max: sent -> reply; wait: mean ms before handle() started (the event loop serving other "
        "conversations); IR/ST/DM/EXEC: mean ms per node (TurnResult.nodes_ms); rest: mean ms inside handle() "
        "outside the nodes (turn lock, store reads, append, unlock); bad: turns whose replies differ from the "
        "script's or had errors.",
        highlight=False,
    )
    if any("skipped" not in r for r in results.values()):
        console.print()
        console.print(tools_table(results))
    report: dict[str, Any] = {
        "benchmark": "bench_turns",
        "machine": machine(),
        "config": {
            "conversations": args.conversations,
            "concurrency": args.concurrency,
            "warmup_turns": args.warmup,
            "turns_per_conversation": len(SCRIPT),
            "seed": args.seed,
            "stores": args.stores,
            "script": [{"label": s.label, "text": s.text, "expected": list(s.expected)} for s in SCRIPT],
        },
        "nlu": nlu_info,
        "stores": results,
    }
    if memory_samples is not None:
        console.print()
        console.print(steps_table(results["memory"]["sequential_steps"], "memory"))
        lines, rows = histogram(memory_samples.wall_ms)
        console.print()
        console.print(f"Sequential turn latency, memory store ({len(memory_samples.wall_ms)} turns, log-spaced bins):")
        for line in lines:
            console.print(line, markup=False, highlight=False)
        report["histogram"] = {"store": "memory", "mode": "sequential", "bins": rows}
    if args.report:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        console.print(f"\nreport written to {args.report}", highlight=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
