"""NLU benchmark: BANKING77 and CLINC150 (with out-of-scope) through taiwa's own pipeline.

Reads the JSONL files in ../shared/datasets (never copied into the repo), trains the default
pipeline (or the one given with --pipeline), and reports accuracy, train time, cold model
load time (a fresh process), single-utterance parse latency and batched throughput.

    .venv/bin/python benchmarks/bench_nlu.py [--datasets banking77 clinc150] [--report out.json]

CLINC150's out-of-scope threshold is chosen on the validation split only.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.nlu.artifact import load_model, save_model  # noqa: E402
from engine.nlu.model import NluModel  # noqa: E402
from engine.nlu.oos import OOS, apply_threshold, choose_threshold  # noqa: E402
from engine.nlu.pipeline import DEFAULT_COMPONENTS, PipelineConfig, build_pipeline, load_pipeline_file  # noqa: E402
from engine.nlu.train import train_nlu, training_data_from_pairs  # noqa: E402

DATASETS = Path(os.environ.get("TAIWA_DATASETS", ROOT.parent / "shared" / "datasets"))


def read_jsonl(path: Path) -> list[tuple[str, str]]:
    with path.open(encoding="utf-8") as fh:
        return [(row["text"], row["intent"]) for row in map(json.loads, fh)]


def oos_scores(final: list[str], gold: list[str]) -> dict[str, float]:
    """Accuracy, in-scope accuracy and out-of-scope recall of final labels (oos included)."""
    pairs = list(zip(final, gold, strict=True))
    in_scope = [f == g for f, g in pairs if g != OOS]
    oos = [f == OOS for f, g in pairs if g == OOS]
    return {
        "accuracy": round(float(np.mean([f == g for f, g in pairs])), 4) if pairs else float("nan"),
        "in_scope_accuracy": round(float(np.mean(in_scope)), 4) if in_scope else float("nan"),
        "oos_recall": round(float(np.mean(oos)), 4) if oos else float("nan"),
    }


def latency(model: NluModel, texts: list[str], n: int = 2000) -> dict[str, float]:
    for t in texts[:200]:
        model.parse(t)
    times = []
    for t in texts[:n]:
        start = time.perf_counter()
        model.parse(t)
        times.append(time.perf_counter() - start)
    arr = np.asarray(times) * 1000
    return {"p50_ms": round(float(np.percentile(arr, 50)), 3), "p99_ms": round(float(np.percentile(arr, 99)), 3)}


def throughput(model: NluModel, texts: list[str]) -> float:
    model.predict_intents(texts[:500])
    start = time.perf_counter()
    model.predict_intents(texts)
    return len(texts) / (time.perf_counter() - start)


def cold_load_seconds(model_dir: Path) -> float:
    code = (
        "import time; t = time.perf_counter(); from pathlib import Path; "
        f"from engine.nlu.artifact import load_model; m = load_model(Path({str(model_dir)!r})); m.parse('warm up'); "
        "print(time.perf_counter() - t)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def run_dataset(name: str, pipeline: PipelineConfig) -> dict[str, Any]:
    folder = DATASETS / name
    train = read_jsonl(folder / "train.jsonl")
    test = read_jsonl(folder / "test.jsonl")
    val = read_jsonl(folder / "val.jsonl") if (folder / "val.jsonl").exists() else None
    print(f"[{name}] train {len(train)}  test {len(test)}" + (f"  val {len(val)}" if val else ""), flush=True)
    start = time.perf_counter()
    model = train_nlu(training_data_from_pairs(train), pipeline, cross_validate=False)
    train_seconds = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        path = save_model(model, Path(tmp))
        load_s = cold_load_seconds(path)
        model = load_model(path)
    texts = [t for t, _ in test]
    gold = [g for _, g in test]
    predicted, conf = model.predict_intents(texts)
    result: dict[str, Any] = {
        "dataset": name,
        "n_train": len(train),
        "n_test": len(test),
        "train_seconds": round(train_seconds, 2),
        "cold_load_seconds": round(load_s, 3),
        "features": model.featurizer.size,
        "accuracy": round(float(np.mean([p == g for p, g in zip(predicted, gold, strict=True)])), 4),
    }
    if OOS in set(gold):
        assert val is not None, "an oos data set needs val.jsonl to choose the threshold"
        vp, vc = model.predict_intents([t for t, _ in val])
        for key, min_recall in (("best_accuracy", None), ("oos_recall_70", 0.70)):
            choice = choose_threshold(vc, vp, [g for _, g in val], min_oos_recall=min_recall)
            scores = oos_scores(apply_threshold(predicted, conf, choice.threshold), gold)
            result[f"oos_rule_{key}"] = {
                "rule (chosen on val)": choice.rule,
                "threshold": round(choice.threshold, 4),
                "in_scope_accuracy": scores["in_scope_accuracy"],
                "oos_recall": scores["oos_recall"],
                "accuracy_with_threshold": scores["accuracy"],
            }
    result.update(latency(model, texts))
    result["batched_utterances_per_s"] = round(throughput(model, texts))
    print("  " + json.dumps(result), flush=True)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["banking77", "clinc150"])
    parser.add_argument(
        "--pipeline", type=Path, help="a YAML file with a `pipeline:` list (default: the built-in default)"
    )
    parser.add_argument("--report", type=Path, help="write the results as JSON")
    args = parser.parse_args()
    pipeline = load_pipeline_file(args.pipeline) if args.pipeline else build_pipeline(DEFAULT_COMPONENTS)
    if not DATASETS.is_dir():
        print(f"data sets not found in {DATASETS}; set TAIWA_DATASETS", file=sys.stderr)
        return 2
    results = [run_dataset(name, pipeline) for name in args.datasets]
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    report = {
        "pipeline": pipeline.to_dict(),
        "results": results,
        "peak_rss_mb": round(peak_mb, 1),
        "cpus": os.cpu_count(),
    }
    print(f"peak RSS {peak_mb:.0f} MB")
    if args.report:
        args.report.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
