"""Load on the real server: full REST turns of the reference assistant at 1, 10 and 100
concurrent conversations, beside a bare Sanic JSON endpoint measured in the same run, for
1 and 2 workers; throughput, p50/p95/p99, the cold start and the server's peak memory (all
its processes: the sum of their RSS, and of their PSS, which counts a page shared by
forked workers once, as the kernel's memory accounting does).

The load comes from wrk (Debian's ``wrk``; ``make bench`` installs it) driven by
benchmarks/wrk_turns.lua: a client in C costs the 2 CPUs here far less than a Python one, so
the server, not the client, is measured. Closed loop: each connection sends its next message
as soon as it has the answer. Paced (``--rate``): the 100 conversations together send R
messages/s, each still waiting for its answer, as users who read and type do; a send that
could not leave on time (the server is saturated) is counted as late. Without wrk the same
load runs from an aiohttp client (``--client aiohttp``), which takes a good part of the CPU.

Usage: .venv/bin/python benchmarks/bench_server.py [--seconds 5] [--rate 500 1500] [--report FILE]
Everything runs on 127.0.0.1; each measurement is bounded by --seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TAIWA = Path(sys.executable).parent / "taiwa"
WRK_SCRIPT = Path(__file__).resolve().parent / "wrk_turns.lua"

SCRIPT = [
    "hi",
    "how do I reset my password?",
    "check my account",
    "C12345",
    "12/04/1990",
    "I want to open a ticket",
    "the dashboard is slow",
    '/inform{"priority": "low"}',
    "/deny",
    "thanks",
    "bye",
]
"""One conversation: every use case but the handoff (after which the bot is silent)."""

BARE_APP = """
import sys
from sanic import Sanic
from sanic.response import json
app = Sanic("bare")
@app.post("/hello")
async def hello(request):
    return json([{"recipient_id": "x", "text": "hello"}])
if __name__ == "__main__":
    app.run(host="127.0.0.1", port=int(sys.argv[1]), workers=int(sys.argv[2]), access_log=False, motd=False)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tree_memory_mb(pid: int) -> tuple[float, float]:
    """(RSS, PSS) of a process and all its descendants, summed (from /proc). RSS counts a page
    shared by several processes in each of them; PSS splits it between them."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    rss = pss = 0
    todo = [pid]
    while todo:
        p = todo.pop()
        todo.extend(children.get(p, []))
        try:
            rss += _kb(Path(f"/proc/{p}/status"), "VmRSS:")
            pss += _kb(Path(f"/proc/{p}/smaps_rollup"), "Pss:")
        except OSError:
            pass
    return rss / 1024, pss / 1024


def _kb(path: Path, key: str) -> int:
    for line in path.read_text().splitlines():
        if line.startswith(key):
            return int(line.split()[1])
    return 0


class PeakMemory:
    """Samples the server's memory every 0.25 s while a measurement runs."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.rss = self.pss = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            rss, pss = tree_memory_mb(self.pid)
            self.rss, self.pss = max(self.rss, rss), max(self.pss, pss)
            self._stop.wait(0.25)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def wrk_load(
    url: str, concurrency: int, seconds: float, taiwa: bool, rss_pid: int, rate: float | None = None
) -> dict[str, Any]:
    """One wrk run (see wrk_turns.lua): closed loop, or paced at ``rate`` messages/s in all."""
    threads = min(2, concurrency)
    env = {
        **os.environ,
        "TAIWA_WRK_MODE": "taiwa" if taiwa else "bare",
        "TAIWA_WRK_RATE": str(rate / threads if rate else 0),
    }
    cmd = ["wrk", "-t", str(threads), "-c", str(concurrency), "-d", f"{seconds:g}s", "--timeout", "10s"]
    cmd += ["-s", str(WRK_SCRIPT), url]
    with PeakMemory(rss_pid) as memory:
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=seconds + 60, check=True).stdout
    line = next((x for x in out.splitlines() if x.startswith("TAIWA_WRK ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no result:\n{out}")
    r = json.loads(line.split(" ", 1)[1])
    return {
        "requests": r["requests"],
        "errors": r["errors"],
        "rps": round(r["requests"] / r["seconds"]),
        "p50_ms": round(r["p50_ms"], 2),
        "p95_ms": round(r["p95_ms"], 2),
        "p99_ms": round(r["p99_ms"], 2),
        "late_sends": r["late_sends"],
        "peak_rss_mb": round(memory.rss, 1),
        "peak_pss_mb": round(memory.pss, 1),
    }


@contextmanager
def server(
    args: list[str], env: dict[str, str], health: str, timeout: float = 90.0
) -> Iterator[subprocess.Popen[bytes]]:
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            port = int(health.rsplit(":", 1)[1].split("/")[0])
            deadline = time.monotonic() + timeout
            while True:
                if proc.poll() is not None:
                    log.seek(0)
                    raise RuntimeError(f"server exited: {log.read().decode(errors='replace')[-2000:]}")
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                        break
                except OSError:
                    if time.monotonic() > deadline:
                        raise RuntimeError("server did not start") from None
                    time.sleep(0.05)
            yield proc
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


async def aiohttp_load(
    url: str, concurrency: int, seconds: float, taiwa: bool, rss_pid: int, rate: float | None = None
) -> dict[str, Any]:
    """Closed loop (each conversation sends its next message as soon as it has the reply), or,
    with ``rate``, paced: the conversations together send ``rate`` messages per second, as users
    who read and type would (a conversation never sends before it has its reply)."""
    latencies: list[float] = []
    errors = 0
    stop_at = time.perf_counter() + seconds
    connector = aiohttp.TCPConnector(limit=concurrency + 5)
    async with aiohttp.ClientSession(connector=connector) as session:
        interval = concurrency / rate if rate else 0.0
        begin = time.perf_counter()

        async def conversation(n: int) -> None:
            nonlocal errors
            round_ = 0
            next_at = begin + interval * n / concurrency
            while time.perf_counter() < stop_at:
                sender = f"load-{n}-{round_}"
                for text in SCRIPT if taiwa else ["hi"] * len(SCRIPT):
                    if interval:
                        await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
                        next_at += interval
                    if time.perf_counter() >= stop_at:
                        return
                    t0 = time.perf_counter()
                    async with session.post(url, json={"sender": sender, "message": text}) as r:
                        await r.read()
                        if r.status != 200:
                            errors += 1
                    latencies.append((time.perf_counter() - t0) * 1000)
                round_ += 1

        started = time.perf_counter()
        with PeakMemory(rss_pid) as memory:
            await asyncio.gather(*(conversation(n) for n in range(concurrency)))
        elapsed = time.perf_counter() - started
    latencies.sort()

    def q(p: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(p * len(latencies)))], 2) if latencies else 0.0

    return {
        "requests": len(latencies),
        "errors": errors,
        "rps": round(len(latencies) / elapsed),
        "p50_ms": q(0.50),
        "p95_ms": q(0.95),
        "p99_ms": q(0.99),
        "late_sends": None,
        "peak_rss_mb": round(memory.rss, 1),
        "peak_pss_mb": round(memory.pss, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0, help="per measurement (default 5)")
    parser.add_argument("--model", type=Path, help="a trained model of the reference assistant (default: train one)")
    parser.add_argument("--report", type=Path)
    parser.add_argument(
        "--plot",
        type=Path,
        help="draw throughput and latency percentiles as a PNG (default: the report's path with .png)",
    )
    parser.add_argument(
        "--plot-only", type=Path, metavar="REPORT.json", help="only draw the picture of an earlier report"
    )
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 10, 100])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument(
        "--rate",
        type=float,
        nargs="*",
        default=[],
        help="also measure taiwa paced at these total messages/s (at the highest concurrency)",
    )
    parser.add_argument(
        "--client",
        choices=["wrk", "aiohttp"],
        default="wrk" if shutil.which("wrk") else "aiohttp",
        help="the load generator (default: wrk when installed)",
    )
    args = parser.parse_args()
    if args.plot_only is not None:
        earlier = json.loads(args.plot_only.read_text(encoding="utf-8"))
        target = args.plot or args.plot_only.with_suffix(".png")
        plot(earlier["runs"], target)
        print(f"drew {target}")
        return 0
    if args.client == "wrk" and not shutil.which("wrk"):
        parser.error(
            "wrk is not installed (Debian: apt-get install wrk; `make bench` does it); or pass --client aiohttp"
        )
    if args.client == "aiohttp":
        print("load from the aiohttp client: it shares the CPUs with the server (install wrk for lighter load)")

    def load(url: str, c: int, taiwa: bool, pid: int, rate: float | None = None) -> dict[str, Any]:
        if args.client == "wrk":
            result = wrk_load(url, c, args.seconds, taiwa, pid, rate)
        else:
            result = asyncio.run(aiohttp_load(url, c, args.seconds, taiwa, pid, rate))
        # The client stops at its deadline with up to c requests still queued in the server:
        # let them drain, or the next measurement's first requests wait behind them.
        time.sleep(1.5)
        return result

    results: dict[str, Any] = {
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
        "command": " ".join(sys.argv),
        "client": args.client,
        "runs": [],
    }
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        if model is None:
            from engine.nlu.train import train_project

            model = Path(tmp) / "models"
            train_project(ROOT, out=model)
        bare_file = Path(tmp) / "bare_app.py"
        bare_file.write_text(BARE_APP, encoding="utf-8")
        for workers in args.workers:
            port = free_port()
            env = {**os.environ, "TAIWA_CRM_DB": f"{tmp}/crm.sqlite3", "TAIWA_WEBCHAT": "0", "TAIWA_RATE_LIMIT": "off"}
            with server([sys.executable, str(bare_file), str(port), str(workers)], env, f"127.0.0.1:{port}") as proc:
                time.sleep(1.0)
                for c in args.concurrency:
                    r = load(f"http://127.0.0.1:{port}/hello", c, False, proc.pid)
                    results["runs"].append({"server": "bare sanic", "workers": workers, "concurrency": c, **r})
                    print(f"bare sanic  workers={workers} conc={c:3d}: {r}", flush=True)
            port = free_port()
            cmd = [str(TAIWA), "run", "--project", str(ROOT), "--model", str(model), "--port", str(port)]
            cmd += ["--workers", str(workers), "--store", f"sqlite:///{tmp}/tracker-{workers}.sqlite3"]
            env["TAIWA_CRM_DB"] = f"{tmp}/crm-{workers}.sqlite3"
            t0 = time.perf_counter()
            with server(cmd, env, f"127.0.0.1:{port}") as proc:
                cold = _first_turn(port, t0)
                for c in args.concurrency:
                    r = load(f"http://127.0.0.1:{port}/webhooks/rest/webhook", c, True, proc.pid)
                    results["runs"].append(
                        {"server": "taiwa", "workers": workers, "concurrency": c, "cold_start_s": cold, **r}
                    )
                    print(f"taiwa REST  workers={workers} conc={c:3d}: {r} (cold start {cold} s)", flush=True)
                c = max(args.concurrency)
                for rate in args.rate:
                    url = f"http://127.0.0.1:{port}/webhooks/rest/webhook"
                    r = load(url, c, True, proc.pid, rate)
                    results["runs"].append(
                        {"server": f"taiwa @{rate:g}/s", "workers": workers, "concurrency": c, "rate": rate, **r}
                    )
                    print(f"taiwa paced workers={workers} conc={c:3d} rate={rate:g}/s: {r}", flush=True)
    _table(results["runs"])
    if args.report:
        args.report.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    picture = args.plot or (args.report.with_suffix(".png") if args.report else None)
    if picture is not None:
        plot(results["runs"], picture)
        print(f"drew {picture}")
    return 0


def plot(runs: list[dict[str, Any]], path: Path) -> None:
    """Throughput against concurrency (taiwa beside bare Sanic), and the latency percentiles of
    the paced runs against the 25 ms p95 target, as one PNG (matplotlib, a test extra)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5))
    closed = [r for r in runs if r["server"] in ("bare sanic", "taiwa")]
    for (server, workers), style in zip(
        sorted({(r["server"], r["workers"]) for r in closed}), ("o--", "s--", "o-", "s-"), strict=False
    ):
        points = sorted(
            (r["concurrency"], r["rps"]) for r in closed if (r["server"], r["workers"]) == (server, workers)
        )
        left.plot([c for c, _ in points], [v for _, v in points], style, label=f"{server}, {workers} worker(s)")
    left.set(xscale="log", yscale="log", xlabel="concurrent conversations", ylabel="requests / s")
    left.set_title("closed loop: throughput")
    left.grid(True, which="both", alpha=0.3)
    left.legend(fontsize=8)
    paced = sorted((r for r in runs if "rate" in r), key=lambda r: (r["workers"], r["rate"]))
    if paced:
        names = [f"{r['workers']}w @{r['rate']:g}/s" for r in paced]
        width = 0.27
        for i, key in enumerate(("p50_ms", "p95_ms", "p99_ms")):
            right.bar([x + (i - 1) * width for x in range(len(paced))], [r[key] for r in paced], width, label=key[:3])
        for x, r in enumerate(paced):
            if r.get("late_sends"):
                right.annotate(f"{r['late_sends']} late", (x, r["p99_ms"]), ha="center", va="bottom", fontsize=7)
        right.axhline(25, color="red", linestyle=":", label="p95 target 25 ms")
        right.set_xticks(range(len(paced)), names, rotation=30, fontsize=8)
        right.set(yscale="log", ylabel="ms (send -> reply)")
        right.set_title("paced load: latency")
        right.grid(True, axis="y", which="both", alpha=0.3)
        right.legend(fontsize=8)
    else:
        right.axis("off")
    fig.suptitle("taiwa REST turns vs a bare Sanic endpoint (wrk on 127.0.0.1)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _first_turn(port: int, t0: float) -> float:
    """Seconds from starting the process to the first answered turn."""
    import urllib.request

    body = json.dumps({"sender": "cold", "message": "hi"}).encode()
    while True:
        try:
            req = urllib.request.Request(f"http://127.0.0.1:{port}/webhooks/rest/webhook", data=body)
            with urllib.request.urlopen(req, timeout=2) as r:
                if r.status == 200:
                    return round(time.perf_counter() - t0, 2)
        except OSError:
            time.sleep(0.02)


def _table(runs: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="REST turns vs bare Sanic (127.0.0.1)")
    cols = (
        "server",
        "workers",
        "conc",
        "req/s",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "errors",
        "late",
        "RSS MB",
        "PSS MB",
        "vs bare",
    )
    for col in cols:
        table.add_column(col, justify="right")
    bare = {(r["workers"], r["concurrency"]): r["rps"] for r in runs if r["server"] == "bare sanic"}
    for r in runs:
        ratio = r["rps"] / bare[(r["workers"], r["concurrency"])] if (r["workers"], r["concurrency"]) in bare else 0
        table.add_row(
            r["server"], str(r["workers"]), str(r["concurrency"]), f"{r['rps']:,}", str(r["p50_ms"]),
            str(r["p95_ms"]), str(r["p99_ms"]), str(r["errors"]), str(r.get("late_sends", "")),
            str(r["peak_rss_mb"]), str(r["peak_pss_mb"]), f"{ratio:.0%}" if ratio else "",
        )  # fmt: skip
    Console(width=150).print(table)


if __name__ == "__main__":
    raise SystemExit(main())
