"""`taiwa eval nlu` on CLINC150 and BANKING77: accuracy, macro F1, out-of-scope figures and time.

Runs the real command (a fresh process per run) on the JSONL files in ../shared/datasets (never
copied into the repo) and collects the top of each JSON report into
benchmarks/results/eval_nlu.json.

    .venv/bin/python benchmarks/bench_eval_nlu.py [--datasets clinc150 banking77] [--out FILE]

CLINC150 is run twice: with `oos` as a trained class only, and with the out-of-scope
threshold chosen on its validation split (never on the test split). BANKING77 has no
validation split and no out-of-scope class.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DATASETS = Path(os.environ.get("TAIWA_DATASETS", ROOT.parent / "shared" / "datasets"))
RESULTS = ROOT / "benchmarks" / "results" / "eval_nlu.json"
KEPT = (
    "accuracy",
    "macro_f1",
    "in_scope_accuracy",
    "oos_recall",
    "n_train",
    "n_test",
    "n_intents",
    "train_seconds",
    "predict_seconds",
    "utterances_per_second",
)


def runs_for(name: str) -> list[tuple[str, list[str]]]:
    """(run name, command-line arguments) for one data set."""
    folder = DATASETS / name
    files = ["--train", str(folder / "train.jsonl"), "--test", str(folder / "test.jsonl")]
    if not (folder / "val.jsonl").is_file():
        return [(name, files)]
    return [
        (f"{name} (oos as a trained class)", files),
        (f"{name} (+ threshold chosen on val)", [*files, "--val", str(folder / "val.jsonl")]),
    ]


def evaluate(arguments: list[str]) -> dict[str, Any]:
    """Run `taiwa eval nlu` in a fresh process and keep the headline figures of its report."""
    with tempfile.TemporaryDirectory() as tmp:
        report_path = Path(tmp) / "report.json"
        command = [sys.executable, "-m", "cli.main", "eval", "nlu", *arguments, "--report", str(report_path)]
        started = time.perf_counter()
        subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - started
        report = json.loads(report_path.read_text(encoding="utf-8"))
    kept: dict[str, Any] = {key: report[key] for key in KEPT if key in report}
    if "oos" in report:
        kept["oos_thresholds"] = report["oos"]["thresholds"]
        kept["oos_threshold_rule"] = report["oos"]["threshold_rule"]
    kept["command_wall_seconds"] = round(wall, 2)
    kept["data"] = report["data"]
    kept["engine_version"] = report["engine_version"]
    kept["command"] = "taiwa eval nlu " + " ".join(arguments)
    return kept


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["clinc150", "banking77"])
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"where to write the results (default: {RESULTS})")
    args = parser.parse_args()
    missing = [name for name in args.datasets if not (DATASETS / name / "train.jsonl").is_file()]
    if missing:
        print(f"data sets not found in {DATASETS}: {', '.join(missing)}; set TAIWA_DATASETS", file=sys.stderr)
        return 2
    results: dict[str, Any] = {}
    for name in args.datasets:
        for run_name, arguments in runs_for(name):
            print(f"== {run_name}", flush=True)
            results[run_name] = evaluate(arguments)
            figures = {k: results[run_name][k] for k in KEPT if k in results[run_name]}
            print("   " + json.dumps(figures), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    summary = {"cpus": os.cpu_count(), "results": results}
    args.out.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
