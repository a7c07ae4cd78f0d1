"""The reference assistant's NLU on sentences written without looking at its training data.

benchmarks/data/reference_heldout.jsonl: 20 sentences per intent, written from domain/,
flows/ and the knowledge base only. Short ones ("yes", "bye") are also training examples, so
the figures are given twice: on all 260, and on the "unseen" ones, those the training data
does not contain (compared lower-cased, without punctuation). Also 5-fold cross-validation on
the training data itself, for comparison.

Usage: .venv/bin/python benchmarks/bench_reference_nlu.py [--report benchmarks/results/reference_nlu.json]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.loading.project import load_project_or_raise  # noqa: E402
from engine.nlu.artifact import load_model  # noqa: E402
from engine.nlu.pipeline import build_pipeline  # noqa: E402
from engine.nlu.train import cross_validation, train_project  # noqa: E402

HELDOUT = ROOT / "benchmarks" / "data" / "reference_heldout.jsonl"
RESULTS = ROOT / "benchmarks" / "results" / "reference_nlu.json"


def plain(text: str) -> str:
    return re.sub(r"[^a-z0-9 ]", "", text.lower()).strip()


def score(rows: list[dict[str, str]], predicted: list[str]) -> dict[str, Any]:
    right = Counter(r["intent"] for r, p in zip(rows, predicted, strict=True) if p == r["intent"])
    total = Counter(r["intent"] for r in rows)
    return {
        "sentences": len(rows),
        "accuracy": round(sum(right.values()) / len(rows), 4),
        "per_intent_recall": {i: round(right[i] / n, 3) for i, n in sorted(total.items())},
        "misses": [
            {"text": r["text"], "intent": r["intent"], "predicted": p}
            for r, p in zip(rows, predicted, strict=True)
            if p != r["intent"]
        ],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--report", type=Path, default=RESULTS)
    args = parser.parse_args()
    project = load_project_or_raise(ROOT)
    trained_on = {plain(e.text) for e in project.nlu.examples}
    rows = [json.loads(line) for line in HELDOUT.read_text(encoding="utf-8").splitlines() if line.strip()]
    unseen = [r for r in rows if plain(r["text"]) not in trained_on]
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        model = load_model(train_project(ROOT, out=Path(tmp)).model_dir)
        train_seconds = time.perf_counter() - started
    predicted = {
        r["text"]: r2.intent.name for r, r2 in zip(rows, model.parse_batch([r["text"] for r in rows]), strict=True)
    }
    pipeline = build_pipeline([(c.name, c.options) for c in project.policies.pipeline])
    cv = cross_validation(project.nlu, pipeline, frozenset(project.domain.entities), folds=5)
    report = {
        "command": "python benchmarks/bench_reference_nlu.py",
        "training_examples": len(project.nlu.examples),
        "intents": len({e.intent for e in project.nlu.examples}),
        "train_seconds": round(train_seconds, 2),
        "cross_validation_5_fold": {k: cv[k] for k in ("intent_accuracy", "intent_macro_f1", "entity_f1") if k in cv},
        "heldout_all": score(rows, [predicted[r["text"]] for r in rows]),
        "heldout_unseen": score(unseen, [predicted[r["text"]] for r in unseen]),
    }
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(
        f"{report['training_examples']} training examples, {report['intents']} intents; "
        f"5-fold CV accuracy {cv['intent_accuracy']:.1%}; held-out: all {report['heldout_all']['accuracy']:.1%} "
        f"({len(rows)}), unseen {report['heldout_unseen']['accuracy']:.1%} ({len(unseen)}); wrote {args.report}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
