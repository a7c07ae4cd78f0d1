"""`taiwa eval` on a generated golden set: serial vs Ray workers, cases/s and the speed-up.

Generates N conversations (default 20,000) from benchmarks/golden_templates.yml with
`taiwa golden generate`'s engine into a temporary folder, reads and checks them once with the
golden-set loader (timed on its own), then evaluates them alternately in this process
(SerialExecutor, lockstep chunks with batched NLU) and on W Ray workers (RayExecutor, a local
cluster started and shut down for each run), --repeats times each. For every run: seconds,
cases/s and turns/s; for Ray also the start-up (ray.init + workers loading the assistant)
and the shut-down, and the figures with and without them. The medians give the speed-up, and every Ray report
must equal the serial one apart from latencies and run fields (`comparable`).

This machine's own ceiling for two processes is measured first: a pure-Python loop run in
one process, then in two at once (the two vCPUs here do not always give twice the work).

Usage: .venv/bin/python benchmarks/bench_eval_golden.py [--cases 20000] [--seed 1] [--workers 2]
       [--repeats 2] [--model DIR] [--out FILE]
Writes benchmarks/results/eval_golden.json. Run it when the machine is otherwise idle: the
load average before and after each run is recorded.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine import __version__  # noqa: E402
from engine.evaluation.generate import generate_cases, write_golden  # noqa: E402
from engine.evaluation.golden_load import load_golden_or_raise  # noqa: E402
from engine.evaluation.golden_report import SerialExecutor, build_report, comparable  # noqa: E402
from engine.evaluation.golden_run import golden_context  # noqa: E402
from engine.evaluation.parallel import RayExecutor  # noqa: E402
from engine.evaluation.templates import load_templates  # noqa: E402
from engine.nlu.train import train_project  # noqa: E402

TEMPLATES = ROOT / "benchmarks" / "golden_templates.yml"
RESULTS = ROOT / "benchmarks" / "results" / "eval_golden.json"
TARGET_CASES_PER_SECOND = 1000.0
TARGET_SPEEDUP = 1.7

SPIN = "import time\nt=time.perf_counter()\ns=0\nfor i in range(20_000_000): s+=i*i\nprint(time.perf_counter()-t)"


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def two_process_ceiling(rounds: int = 2) -> dict[str, Any]:
    """Seconds of a fixed pure-Python loop alone, and of two copies at once (best of ``rounds``
    each); ``ceiling`` = 2 x alone / both, the most two processes can gain here."""
    command = [sys.executable, "-c", SPIN]
    alone = min(
        float(subprocess.run(command, capture_output=True, text=True, check=True).stdout) for _ in range(rounds)
    )
    both = math.inf
    for _ in range(rounds):
        pair = [subprocess.Popen(command, stdout=subprocess.PIPE, text=True) for _ in range(2)]
        both = min(both, max(float(p.communicate()[0]) for p in pair))
    return {
        "one_seconds": round(alone, 2),
        "two_at_once_seconds": round(both, 2),
        "ceiling": round(2 * alone / both, 2),
    }


def timed_run(
    executor: SerialExecutor | RayExecutor, context: Any, cases: list[dict[str, Any]], n_turns: int
) -> dict[str, Any]:
    """One run: ``seconds`` from start to end; ``evaluation_seconds`` without Ray's start-up
    (ray.init, the workers loading the assistant) and shut-down (ray.shutdown)."""
    before = load()
    started = time.perf_counter()
    results = executor.run(context, cases, None)
    seconds = time.perf_counter() - started
    startup = executor.startup_seconds or 0.0
    shutdown = (executor.shutdown_seconds or 0.0) if isinstance(executor, RayExecutor) else 0.0
    run = seconds - startup - shutdown
    report = build_report(results, versions={}, seconds=seconds, workers=executor.workers, ray=executor.uses_ray)
    return {
        "ray": executor.uses_ray,
        "workers": executor.workers,
        "seconds": round(seconds, 2),
        "startup_seconds": round(startup, 2),
        "shutdown_seconds": round(shutdown, 2),
        "evaluation_seconds": round(run, 2),
        "cases_per_second": round(len(cases) / seconds, 1),
        "cases_per_second_evaluation": round(len(cases) / run, 1),
        "turns_per_second": round(n_turns / seconds, 1),
        "turns_per_second_evaluation": round(n_turns / run, 1),
        "passed": report["n_passed"],
        "load_before": before,
        "load_after": load(),
        "_comparable": comparable(report),
    }


def median(runs: list[dict[str, Any]], key: str) -> float:
    return round(float(statistics.median(r[key] for r in runs)), 2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2, help="serial and Ray runs each, alternating (default 2)")
    parser.add_argument("--model", type=Path, help="a trained model folder (default: train the reference assistant)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    logging.getLogger("taiwa").setLevel(logging.ERROR)  # stubbed tool failures are the point of some cases
    say: Callable[[str], None] = lambda text: print(text, flush=True)  # noqa: E731

    say(f"load average {load()}; measuring this machine's two-process ceiling ...")
    ceiling = two_process_ceiling()
    say(f"  pure-Python loop: {ceiling['one_seconds']} s alone, {ceiling['two_at_once_seconds']} s two at once "
        f"-> at most {ceiling['ceiling']}x from two processes")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="bench-eval-golden-") as tmp:
        model = args.model
        if model is None:
            say("training the reference assistant ...")
            model = train_project(ROOT, out=Path(tmp) / "models").model_dir
        context = golden_context(ROOT, model)

        started = time.perf_counter()
        templates = load_templates(TEMPLATES)
        generated = generate_cases(templates, args.cases, args.seed)
        files = write_golden(generated, Path(tmp) / "golden", stubs=templates.stubs, note=f" (seed {args.seed})")
        generate_seconds = time.perf_counter() - started
        say(f"generated {len(generated):,} cases into {len(files)} files in {generate_seconds:.1f} s; reading them ...")

        started = time.perf_counter()
        golden = load_golden_or_raise(context.project, Path(tmp) / "golden")
        load_seconds = time.perf_counter() - started
        cases = list(golden.cases)
        n_turns = sum(len(c["turns"]) for c in cases)
        texts = [t["user"] for c in cases for t in c["turns"] if "user" in t and not str(t["user"]).startswith("/")]
        say(f"read and checked in {load_seconds:.1f} s: {len(cases):,} cases, {n_turns:,} turns")

        serial_runs: list[dict[str, Any]] = []
        ray_runs: list[dict[str, Any]] = []
        for i in range(args.repeats):
            for runs, executor in (
                (serial_runs, SerialExecutor()),
                (ray_runs, RayExecutor(args.workers, min_cases=0)),
            ):
                run = timed_run(executor, context, cases, n_turns)
                runs.append(run)
                kind = f"Ray x{run['workers']}" if run["ray"] else "serial"
                extra = (
                    f" (start-up {run['startup_seconds']} s, shut-down {run['shutdown_seconds']} s; "
                    f"{run['cases_per_second_evaluation']} cases/s without them)"
                )
                say(
                    f"  run {i + 1} {kind:>7}: {run['seconds']} s, {run['cases_per_second']} cases/s, "
                    f"{run['turns_per_second']} turns/s{extra if run['ray'] else ''}; load {run['load_before']}"
                )

    reference = serial_runs[0]["_comparable"]
    agree = all(r["_comparable"] == reference for r in serial_runs + ray_runs)
    for r in serial_runs + ray_runs:
        del r["_comparable"]
    serial_s = median(serial_runs, "seconds")
    ray_s = median(ray_runs, "seconds")
    ray_eval_s = median(ray_runs, "evaluation_seconds")
    summary = {
        "serial_seconds": serial_s,
        "serial_cases_per_second": round(len(cases) / serial_s, 1),
        "serial_turns_per_second": round(n_turns / serial_s, 1),
        "ray_seconds": ray_s,
        "ray_cases_per_second": round(len(cases) / ray_s, 1),
        "ray_turns_per_second": round(n_turns / ray_s, 1),
        "ray_evaluation_seconds": ray_eval_s,
        "ray_cases_per_second_evaluation": round(len(cases) / ray_eval_s, 1),
        "ray_turns_per_second_evaluation": round(n_turns / ray_eval_s, 1),
        "ray_startup_seconds": median(ray_runs, "startup_seconds"),
        "ray_shutdown_seconds": median(ray_runs, "shutdown_seconds"),
        "speedup": round(serial_s / ray_s, 2),
        "speedup_evaluation": round(serial_s / ray_eval_s, 2),
        "reports_agree": agree,
        "all_passed": all(r["passed"] == len(cases) for r in serial_runs + ray_runs),
        "targets": {
            "cases_per_second": TARGET_CASES_PER_SECOND,
            "speedup": TARGET_SPEEDUP,
            "met_cases_per_second_evaluation": len(cases) / ray_eval_s >= TARGET_CASES_PER_SECOND,
            "met_cases_per_second_end_to_end": len(cases) / ray_s >= TARGET_CASES_PER_SECOND,
            "met_speedup_evaluation": serial_s / ray_eval_s >= TARGET_SPEEDUP,
            "met_speedup_end_to_end": serial_s / ray_s >= TARGET_SPEEDUP,
        },
    }
    result = {
        "machine": {
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "taiwa": __version__,
            "ray": metadata.version("ray"),
            "command": shlex.join([Path(sys.executable).name, *sys.argv]),
            "two_process_ceiling": ceiling,
        },
        "golden_set": {
            "templates": TEMPLATES.relative_to(ROOT).as_posix(),
            "cases": len(cases),
            "turns": n_turns,
            "seed": args.seed,
            "nlu_texts": len(texts),
            "distinct_nlu_texts": len(set(texts)),
            "generate_seconds": round(generate_seconds, 2),
            "load_and_check_seconds": round(load_seconds, 2),
        },
        "summary": summary,
        "serial_runs": serial_runs,
        "ray_runs": ray_runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    say(json.dumps(summary, indent=2))
    say(f"wrote {args.out}")
    return 0 if agree else 1


if __name__ == "__main__":
    raise SystemExit(main())
