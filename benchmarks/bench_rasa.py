"""Side-by-side NLU benchmark: Rasa 3.6.21 (its default pipeline, DIET) against taiwa, same split.

Rasa is not a dependency of taiwa. It runs in its own interpreter (Rasa 3.6 needs Python 3.10),
given with --rasa-python or TAIWA_RASA_PYTHON; without either this script prints one
"skipped" line and exits 0, so `make bench` stays green on machines without Rasa.

    python3.10 -m venv /work/rasa310 && /work/rasa310/bin/pip install rasa==3.6.21
    .venv/bin/python benchmarks/bench_rasa.py --rasa-python /work/rasa310/bin/python \\
        --dataset banking77|clinc150|reference [--limit-train N] [--epochs N]

Datasets: ../shared/datasets/{banking77,clinc150}/*.jsonl (TAIWA_DATASETS overrides the folder),
or `reference`: the reference assistant's own nlu_data/, split 80/20 stratified (seed 0),
entity annotations, regexes, lookups and synonyms included on both sides.

Rasa side (in a subprocess per phase, so each peak RSS is its own): `rasa.model_training.train_nlu`
with an explicit copy of Rasa's default config (DIET epochs from --epochs, default 100), then
`Agent.load` and `Agent.parse_message` one utterance at a time. taiwa side: the same helpers as
benchmarks/bench_nlu.py (train_nlu, save/load, latency, choose_threshold), default pipeline for
the public data sets and policies/pipeline.yml for `reference`.

Accuracy is top-1 intent accuracy (Rasa's `nlu_fallback` replaced by the top real intent);
Rasa's answer with its FallbackClassifier (0.3) is reported as well. For CLINC150, an utterance
counts as OOS when the prediction is `oos` or `nlu_fallback`; both systems are also scored with a
confidence threshold chosen on val.jsonl (bench_nlu's protocol).

Exit codes: 0 ok or skipped, 2 bad arguments, a broken Rasa interpreter or missing data,
1 a failed Rasa run.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_nlu import DATASETS, ROOT, latency, oos_scores, read_jsonl

from engine.nlu.artifact import load_model, save_model
from engine.nlu.oos import OOS, choose_threshold
from engine.nlu.pipeline import DEFAULT_COMPONENTS, PipelineConfig, build_pipeline
from engine.nlu.train import train_nlu, training_data_from_pairs
from engine.nlu.training_data import Example, TrainingData

RASA_VERSION = "3.6.21"
FALLBACK = "nlu_fallback"
SKIP_MESSAGE = "skipped: pass --rasa-python or set TAIWA_RASA_PYTHON"
RESULTS = Path(__file__).resolve().parent / "results"
SEED = 0
SCORE_KEYS = {"accuracy", "accuracy_with_fallback", "fallback_rate", "in_scope_accuracy", "oos_recall", "threshold"}

# Rasa's own markup inside `examples: |` blocks: [text](entity), [text]{...}, [text][{...}].
RASA_MARKUP = re.compile(r"\[[^\]]+?\](\([^)]*\)|\{[^}]*\}|\[.*?\])")

RASA_PIPELINE: list[dict[str, Any]] = [
    # Rasa 3.6's default config (rasa/engine/recipes/config_files/default_config.yml), written out.
    {"name": "WhitespaceTokenizer"},
    {"name": "RegexFeaturizer"},
    {"name": "LexicalSyntacticFeaturizer"},
    {"name": "CountVectorsFeaturizer"},
    {"name": "CountVectorsFeaturizer", "analyzer": "char_wb", "min_ngram": 1, "max_ngram": 4},
    {"name": "DIETClassifier", "epochs": 100, "constrain_similarities": True},
    {"name": "EntitySynonymMapper"},
    {"name": "ResponseSelector", "epochs": 100, "constrain_similarities": True},
    {"name": "FallbackClassifier", "threshold": 0.3, "ambiguity_threshold": 0.1},
]

PEAK_RSS = r"""
def peak_rss_mb():
    # VmHWM: this process's own peak; ru_maxrss would carry the parent's RSS over fork+exec.
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
"""

DRIVER = r'''
"""Written by taiwa's benchmarks/bench_rasa.py; runs inside the Rasa interpreter."""
import asyncio, inspect, json, logging, os, resource, sys, time
from pathlib import Path


{PEAK_RSS}

def folder_mb(path):
    p = Path(path)
    files = [p] if p.is_file() else [f for f in p.rglob("*") if f.is_file()]
    return round(sum(f.stat().st_size for f in files) / 2**20, 2)


def train(config, nlu, out):
    t = time.perf_counter()
    import rasa
    import rasa.model_training
    import tensorflow as tf
    import_s = time.perf_counter() - t
    t = time.perf_counter()
    model = rasa.model_training.train_nlu(config, nlu, out, fixed_model_name="rasa-nlu")
    train_s = time.perf_counter() - t
    if not model:
        raise SystemExit("train_nlu returned no model")
    return {
        "rasa_version": rasa.__version__,
        "tensorflow_version": tf.__version__,
        "python": sys.version.split()[0],
        "train_import_seconds": round(import_s, 3),
        "train_seconds": round(train_s, 2),
        "model_path": str(model),
        "model_mb": folder_mb(model),
        "train_peak_rss_mb": peak_rss_mb(),
    }


def evaluate(model, texts_file):
    texts = json.loads(Path(texts_file).read_text(encoding="utf-8"))
    t0 = time.perf_counter()
    from rasa.core.agent import Agent
    import_s = time.perf_counter() - t0
    t = time.perf_counter()
    agent = Agent.load(model)
    load_s = time.perf_counter() - t
    loop = asyncio.new_event_loop()

    def parse(text):
        out = agent.parse_message(text)
        return loop.run_until_complete(out) if inspect.isawaitable(out) else out

    t = time.perf_counter()
    parse("warm up")
    first_s = time.perf_counter() - t
    cold_s = time.perf_counter() - t0

    def predict(batch):
        rows = []
        for text in batch:
            r = parse(text)
            final = r["intent"]["name"]
            real = [s for s in r.get("intent_ranking") or [] if s["name"] != "nlu_fallback"]
            top = real[0] if real else r["intent"]
            rows.append([final, top["name"], float(top["confidence"])])
        return rows

    out = {name: predict(batch) for name, batch in texts["sets"].items()}
    sample = texts["latency"]
    times = []
    for text in sample:
        t = time.perf_counter()
        parse(text)
        times.append((time.perf_counter() - t) * 1000)
    times.sort()

    def pct(q):
        return round(times[min(len(times) - 1, int(round(q / 100 * (len(times) - 1))))], 3)

    return {
        "import_seconds": round(import_s, 3),
        "load_seconds": round(load_s, 3),
        "first_parse_seconds": round(first_s, 3),
        "cold_load_seconds": round(cold_s, 3),
        "predictions": out,
        "latency_n": len(times),
        "p50_ms": pct(50),
        "p99_ms": pct(99),
        "serve_peak_rss_mb": peak_rss_mb(),
    }


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    mode = sys.argv[1]
    result = train(*sys.argv[2:5]) if mode == "train" else evaluate(*sys.argv[2:4])
    sys.stdout.flush()
    print("\n" + json.dumps(result), flush=True)
'''

# A fresh taiwa process: import, load, first parse (bench_nlu's cold load), then parse every
# test utterance one by one so the peak RSS is that of a serving process.
TAIWA_SERVE = r"""
import json, resource, sys, time


{PEAK_RSS}

t0 = time.perf_counter()
from pathlib import Path
from engine.nlu.artifact import load_model
import_s = time.perf_counter() - t0
t = time.perf_counter()
m = load_model(Path(sys.argv[1]))
load_s = time.perf_counter() - t
t = time.perf_counter()
m.parse("warm up")
first_s = time.perf_counter() - t
cold_s = time.perf_counter() - t0
for text in json.loads(Path(sys.argv[2]).read_text(encoding="utf-8")):
    m.parse(text)
print(json.dumps({
    "import_seconds": round(import_s, 3), "load_seconds": round(load_s, 3),
    "first_parse_seconds": round(first_s, 3), "cold_load_seconds": round(cold_s, 3),
    "serve_peak_rss_mb": peak_rss_mb(),
}))
"""


_namespace: dict[str, Any] = {"resource": resource}
exec(PEAK_RSS, _namespace)  # the same function the subprocess scripts use
peak_rss_mb = _namespace["peak_rss_mb"]


class BenchError(Exception):
    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


@dataclasses.dataclass
class Split:
    dataset: str
    train: TrainingData
    test: list[tuple[str, str]]
    val: list[tuple[str, str]] | None
    pipeline: PipelineConfig
    entity_names: frozenset[str]
    notes: list[str]


# ---------------------------------------------------------------------------- data


def stratified_subset(items: Sequence[Any], labels: Sequence[str], size: int) -> tuple[list[Any], list[Any]]:
    """(kept, rest): a stratified sample of ``size`` items (seed 0), in the original order."""
    from sklearn.model_selection import train_test_split

    index = np.arange(len(items))
    counts: dict[str, int] = defaultdict(int)
    for label in labels:
        counts[label] += 1
    stratify = list(labels) if min(counts.values()) >= 2 else None
    kept, rest = train_test_split(index, train_size=size, stratify=stratify, random_state=SEED)
    return [items[i] for i in sorted(kept)], [items[i] for i in sorted(rest)]


def load_split(dataset: str, limit_train: int | None, limit_test: int | None) -> Split:
    notes: list[str] = []
    default_pipeline = build_pipeline([(n, dict(o)) for n, o in DEFAULT_COMPONENTS])
    if dataset == "reference":
        from engine.loading.project import load_project

        result = load_project(ROOT, import_actions=False)
        if result.project is None:
            raise BenchError("the reference assistant does not load:\n" + "\n".join(map(str, result.errors)))
        project = result.project
        examples = list(project.nlu.examples)
        n_train = len(examples) - round(len(examples) * 0.2)
        train_ex, test_ex = stratified_subset(examples, [ex.intent for ex in examples], n_train)
        train = dataclasses.replace(project.nlu, examples=tuple(train_ex))
        test = [(ex.text, ex.intent) for ex in test_ex]
        pipeline = build_pipeline([(c.name, c.options) for c in project.policies.pipeline])
        entity_names = frozenset(project.domain.entities)
        notes.append("reference: nlu_data/ split 80/20 stratified (seed 0); taiwa uses policies/pipeline.yml")
        val = None
    else:
        folder = DATASETS / dataset
        if not (folder / "train.jsonl").is_file() or not (folder / "test.jsonl").is_file():
            raise BenchError(f"{folder}/train.jsonl or test.jsonl not found; set TAIWA_DATASETS")
        pairs = read_jsonl(folder / "train.jsonl")
        test = read_jsonl(folder / "test.jsonl")
        val = read_jsonl(folder / "val.jsonl") if (folder / "val.jsonl").is_file() else None
        train = training_data_from_pairs(pairs)
        pipeline = default_pipeline
        entity_names = frozenset()
    if limit_train and limit_train < len(train.examples):
        kept, _ = stratified_subset(list(train.examples), [ex.intent for ex in train.examples], limit_train)
        train = dataclasses.replace(train, examples=tuple(kept))
        notes.append(f"train limited to {limit_train} examples (stratified, seed 0)")
    if limit_test and limit_test < len(test):
        test, _ = stratified_subset(test, [g for _, g in test], limit_test)
        notes.append(f"test limited to {limit_test} utterances (stratified, seed 0)")
    return Split(dataset, train, test, val, pipeline, entity_names, notes)


def rasa_example(ex: Example) -> str:
    """The example in Rasa's markup: entity spans become [text](entity) or [text]{...}."""
    out, pos = [], 0
    for a in sorted(ex.entities, key=lambda a: a.start):
        out.append(ex.text[pos : a.start])
        if a.value == a.text and a.role is None and a.group is None:
            out.append(f"[{a.text}]({a.entity})")
        else:
            spec: dict[str, str] = {"entity": a.entity}
            if a.value != a.text:
                spec["value"] = a.value
            if a.role is not None:
                spec["role"] = a.role
            if a.group is not None:
                spec["group"] = a.group
            out.append(f"[{a.text}]{json.dumps(spec)}")
        pos = a.end
    out.append(ex.text[pos:])
    return " ".join("".join(out).split())  # one line: a newline would start a new example


def write_rasa_project(data: TrainingData, epochs: int | None, folder: Path) -> tuple[Path, Path, int]:
    """nlu.yml and config.yml for Rasa; returns their paths and how many plain texts look like markup."""
    from ruamel.yaml import YAML
    from ruamel.yaml.scalarstring import LiteralScalarString

    def block(lines: Sequence[str]) -> LiteralScalarString:
        return LiteralScalarString("".join(f"- {line}\n" for line in lines))

    by_intent: dict[str, list[str]] = defaultdict(list)
    markup_like = 0
    for ex in data.examples:
        line = rasa_example(ex)
        if not ex.entities and RASA_MARKUP.search(line):
            markup_like += 1
        by_intent[ex.intent].append(line)
    nlu: list[dict[str, Any]] = [{"intent": i, "examples": block(lines)} for i, lines in by_intent.items()]
    synonyms: dict[str, list[str]] = defaultdict(list)
    for surface, canonical in data.synonyms.items():
        if surface != canonical.lower():
            synonyms[canonical].append(surface)
    nlu += [{"synonym": c, "examples": block(s)} for c, s in synonyms.items()]
    nlu += [{"regex": r.name, "examples": block(r.patterns)} for r in data.regexes]
    nlu += [{"lookup": lk.name, "examples": block(lk.elements)} for lk in data.lookups]

    yaml = YAML()
    yaml.width = 4096
    nlu_path = folder / "nlu.yml"
    with nlu_path.open("w", encoding="utf-8") as fh:
        yaml.dump({"version": "3.1", "nlu": nlu}, fh)
    pipeline = [dict(c) for c in RASA_PIPELINE]
    if epochs is not None:
        for c in pipeline:
            if c["name"] == "DIETClassifier":
                c["epochs"] = epochs
    config = {
        "recipe": "default.v1",
        "assistant_id": "taiwa-bench",
        "language": data.language,
        "pipeline": pipeline,
    }
    config_path = folder / "config.yml"
    with config_path.open("w", encoding="utf-8") as fh:
        yaml.dump(config, fh)
    return nlu_path, config_path, markup_like


# ---------------------------------------------------------------------------- Rasa


def resolve_rasa_python(arg: str | None) -> str | None:
    return arg or os.environ.get("TAIWA_RASA_PYTHON") or None


def check_rasa(python: str) -> str:
    """The interpreter's Rasa version; raises BenchError (exit 2) unless it is RASA_VERSION."""
    path = shutil.which(python) if os.sep not in python else python
    if not path or not Path(path).is_file() or not os.access(path, os.X_OK):
        raise BenchError(f"--rasa-python {python!r}: no such executable")
    try:
        out = subprocess.run(
            [path, "-c", "import rasa; print(rasa.__version__)"],
            capture_output=True,
            text=True,
            timeout=300,
            env=rasa_env(),
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BenchError(f"--rasa-python {python!r} did not run: {exc}") from exc
    version = out.stdout.strip().splitlines()[-1] if out.returncode == 0 and out.stdout.strip() else None
    if version is None:
        tail = (out.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise BenchError(f"--rasa-python {python!r} cannot import rasa: {tail}")
    if version != RASA_VERSION:
        raise BenchError(f"--rasa-python {python!r} has rasa {version}; this benchmark needs rasa=={RASA_VERSION}")
    return path


def rasa_env(cache: Path | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        TF_CPP_MIN_LOG_LEVEL="2",
        RASA_TELEMETRY_ENABLED="false",
        SQLALCHEMY_SILENCE_UBER_WARNING="1",
        PYTHONWARNINGS="ignore",
        PYTHONNOUSERSITE="1",
    )
    env.pop("PYTHONPATH", None)
    env.pop("VIRTUAL_ENV", None)
    if cache is not None:  # a fresh cache: no training step is skipped as already done
        env.update(RASA_CACHE_DIRECTORY=str(cache), RASA_MAX_CACHE_SIZE="0")
    return env


def run_driver(python: str, args: list[str], tmp: Path, phase: str, timeout: float | None) -> dict[str, Any]:
    log = tmp / f"rasa-{phase}.log"
    with log.open("w", encoding="utf-8") as err:
        try:
            proc = subprocess.run(
                [python, str(tmp / "rasa_driver.py"), phase, *args],
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                cwd=tmp,
                env=rasa_env(tmp / "rasa-cache"),
                timeout=timeout,
            )
        except subprocess.TimeoutExpired as exc:
            raise BenchError(f"Rasa {phase} ran past --timeout {timeout}s", 1) from exc
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    if proc.returncode != 0 or not lines or not lines[-1].startswith("{"):
        tail = "\n".join(log.read_text(encoding="utf-8", errors="replace").splitlines()[-25:])
        raise BenchError(f"Rasa {phase} failed (exit {proc.returncode}); last lines of {log}:\n{tail}", 1)
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def run_rasa(python: str, split: Split, epochs: int | None, tmp: Path, timeout: float | None) -> dict[str, Any]:
    (tmp / "rasa_driver.py").write_text(DRIVER.replace("{PEAK_RSS}", PEAK_RSS), encoding="utf-8")
    nlu, config, markup_like = write_rasa_project(split.train, epochs, tmp)
    if markup_like:
        split.notes.append(f"{markup_like} plain training texts look like Rasa entity markup")
    print(f"[rasa] training ({len(split.train.examples)} examples) ...", flush=True)
    trained = run_driver(python, [str(config), str(nlu), str(tmp / "rasa-models")], tmp, "train", timeout)
    print(f"[rasa] trained in {trained['train_seconds']} s; parsing ...", flush=True)
    texts = {"sets": {"test": [t for t, _ in split.test]}, "latency": latency_sample(split.test)}
    if split.val is not None:
        texts["sets"]["val"] = [t for t, _ in split.val]
    texts_file = tmp / "texts.json"
    texts_file.write_text(json.dumps(texts), encoding="utf-8")
    served = run_driver(python, [trained["model_path"], str(texts_file)], tmp, "eval", timeout)
    predictions = served.pop("predictions")
    result = {**trained, **served}
    result.pop("model_path")
    test = predictions["test"]
    val = predictions.get("val")
    result.update(
        score(
            split,
            top=[r[1] for r in test],
            conf=np.asarray([r[2] for r in test]),
            final=[r[0] for r in test],
            val_top=[r[1] for r in val] if val else None,
            val_conf=np.asarray([r[2] for r in val]) if val else None,
        )
    )
    return result


# ---------------------------------------------------------------------------- taiwa


def run_taiwa(split: Split, tmp: Path) -> dict[str, Any]:
    print(f"[taiwa] training ({len(split.train.examples)} examples) ...", flush=True)
    start = time.perf_counter()
    model = train_nlu(split.train, split.pipeline, split.entity_names, cross_validate=False)
    train_seconds = time.perf_counter() - start
    train_rss = peak_rss_mb()
    path = save_model(model, tmp / "taiwa-models")
    texts_file = tmp / "taiwa-texts.json"
    texts_file.write_text(json.dumps([t for t, _ in split.test]), encoding="utf-8")
    out = subprocess.run(
        [sys.executable, "-c", TAIWA_SERVE.replace("{PEAK_RSS}", PEAK_RSS), str(path), str(texts_file)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    served = json.loads(out.stdout.strip().splitlines()[-1])
    model = load_model(path)
    texts = [t for t, _ in split.test]
    top, conf = model.predict_intents(texts)
    val_top = val_conf = None
    if split.val is not None:
        val_top, val_conf = model.predict_intents([t for t, _ in split.val])
    sample = latency_sample(split.test)
    result: dict[str, Any] = {
        "python": platform.python_version(),
        "train_seconds": round(train_seconds, 2),
        "train_peak_rss_mb": train_rss,
        "model_mb": round(sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20, 2),
        **served,
        "latency_n": len(sample),
        **latency(model, sample, n=len(sample)),
    }
    result.update(score(split, top=top, conf=conf, final=None, val_top=val_top, val_conf=val_conf))
    return result


# ---------------------------------------------------------------------------- scoring


def latency_sample(test: Sequence[tuple[str, str]], n: int = 500) -> list[str]:
    """The same ``n`` test utterances for both systems (seeded, spread over all intents; a test set
    smaller than ``n`` is repeated)."""
    rng = np.random.default_rng(SEED)
    index = np.resize(rng.permutation(len(test)), n)
    return [test[i][0] for i in index]


def val_threshold(conf: np.ndarray, predicted: list[str], gold: list[str]) -> float:
    """bench_nlu's rule: the threshold with the best accuracy on val."""
    return choose_threshold(conf, predicted, gold).threshold


def _acc(pred: Sequence[str], gold: Sequence[str]) -> float:
    return round(float(np.mean([p == g for p, g in zip(pred, gold, strict=True)])), 4) if gold else float("nan")


def _oos_scores(pred: Sequence[str], gold: Sequence[str]) -> dict[str, float]:
    return oos_scores([OOS if p == FALLBACK else p for p in pred], list(gold))


def score(
    split: Split,
    *,
    top: Sequence[str],
    conf: np.ndarray,
    final: Sequence[str] | None,
    val_top: Sequence[str] | None,
    val_conf: np.ndarray | None,
) -> dict[str, Any]:
    """``top``: best real intent; ``final``: the system's own answer (Rasa: may be nlu_fallback)."""
    gold = [g for _, g in split.test]
    out: dict[str, Any] = {"accuracy": _acc(top, gold)}
    if final is not None:
        out["accuracy_with_fallback"] = _acc([OOS if p == FALLBACK else p for p in final], gold)
        out["fallback_rate"] = round(float(np.mean([p == FALLBACK for p in final])), 4)
    if OOS in set(gold):
        out["oos_no_threshold"] = _oos_scores(top, gold)
        if final is not None:
            out["oos_with_fallback"] = _oos_scores(final, gold)
        if split.val is not None and val_top is not None and val_conf is not None:
            threshold = val_threshold(val_conf, list(val_top), [g for _, g in split.val])
            thresholded = [OOS if round(float(c), 4) < threshold else p for c, p in zip(conf, top, strict=True)]
            out["oos_val_threshold"] = {"threshold": round(threshold, 4), **_oos_scores(thresholded, gold)}
    return out


# ---------------------------------------------------------------------------- report


def table(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    rasa, taiwa = report["rasa"], report["taiwa"]
    t = Table(
        title=f"Rasa {RASA_VERSION} vs taiwa: {report['dataset']}  ({report['n_train']} train / {report['n_test']} test)"
    )
    t.add_column("metric")
    t.add_column("Rasa (DIET)", justify="right")
    t.add_column("taiwa", justify="right")

    def row(label: str, *path: str) -> None:
        def get(d: Any) -> str:
            for key in path:
                d = d.get(key) if isinstance(d, dict) else None
            if d is None:
                return "-"
            return f"{d:.4f}" if path[-1] in SCORE_KEYS else f"{d:,}"

        t.add_row(label, get(rasa), get(taiwa))

    row("accuracy (top-1)", "accuracy")
    row("accuracy, Rasa fallback 0.3 counted", "accuracy_with_fallback")
    row("Rasa fallback rate", "fallback_rate")
    if "oos_no_threshold" in rasa:
        row("in-scope acc (oos class only)", "oos_no_threshold", "in_scope_accuracy")
        row("OOS recall (oos class only)", "oos_no_threshold", "oos_recall")
        row("in-scope acc (Rasa fallback 0.3)", "oos_with_fallback", "in_scope_accuracy")
        row("OOS recall (Rasa fallback 0.3)", "oos_with_fallback", "oos_recall")
        row("val threshold", "oos_val_threshold", "threshold")
        row("in-scope acc (val threshold)", "oos_val_threshold", "in_scope_accuracy")
        row("OOS recall (val threshold)", "oos_val_threshold", "oos_recall")
    row("train s", "train_seconds")
    row("cold load s (import+load+1st parse)", "cold_load_seconds")
    row("  of which model load s", "load_seconds")
    row("parse p50 ms", "p50_ms")
    row("parse p99 ms", "p99_ms")
    row("peak RSS train MB", "train_peak_rss_mb")
    row("peak RSS serve MB", "serve_peak_rss_mb")
    row("model size MB", "model_mb")
    Console().print(t)


def git_revision() -> str | None:
    """HEAD, with "+dirty" when engine/ or benchmarks/ have uncommitted changes (None outside git)."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "engine", "benchmarks"], cwd=ROOT, capture_output=True, text=True
        )
    except OSError:
        return None
    if head.returncode != 0:
        return None
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rasa-python", help="a Python with rasa==3.6.21 (default: $TAIWA_RASA_PYTHON)")
    parser.add_argument("--dataset", choices=["banking77", "clinc150", "reference"], default="reference")
    parser.add_argument("--limit-train", type=int, help="train on a stratified sample of N examples")
    parser.add_argument("--limit-test", type=int, help="test on a stratified sample of N utterances")
    parser.add_argument("--epochs", type=int, help="DIETClassifier epochs (Rasa's default: 100)")
    parser.add_argument("--timeout", type=float, help="seconds allowed per Rasa phase (train, eval)")
    parser.add_argument(
        "--out", type=Path, help="JSON report (default: benchmarks/results/rasa_vs_taiwa_<dataset>.json)"
    )
    parser.add_argument("--keep-tmp", action="store_true", help="keep the work folder (Rasa data, models, logs)")
    args = parser.parse_args(argv)

    python = resolve_rasa_python(args.rasa_python)
    if python is None:
        print(SKIP_MESSAGE)
        return 0
    try:
        python = check_rasa(python)
        split = load_split(args.dataset, args.limit_train, args.limit_test)
        tmp = Path(tempfile.mkdtemp(prefix="bench-rasa-"))
        try:
            print(
                f"[{split.dataset}] train {len(split.train.examples)}  test {len(split.test)}"
                + (f"  val {len(split.val)}" if split.val else "")
                + f"  intents {len(split.train.intents())}",
                flush=True,
            )
            taiwa = run_taiwa(split, tmp)
            rasa = run_rasa(python, split, args.epochs, tmp, args.timeout)
        finally:
            if args.keep_tmp:
                print(f"work folder kept: {tmp}")
            else:
                shutil.rmtree(tmp, ignore_errors=True)
    except BenchError as exc:
        print(f"bench_rasa: {exc}", file=sys.stderr)
        return exc.code

    report = {
        "dataset": split.dataset,
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
        "n_train": len(split.train.examples),
        "n_test": len(split.test),
        "n_val": len(split.val) if split.val else 0,
        "intents": len(split.train.intents()),
        "rasa_pipeline": "Rasa 3.6 default config" + (f", DIET epochs {args.epochs}" if args.epochs else ""),
        "taiwa_pipeline": split.pipeline.to_dict(),
        "notes": split.notes,
        "taiwa_revision": git_revision(),
        "cpus": os.cpu_count(),
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "rasa": rasa,
        "taiwa": taiwa,
    }
    table(report)
    out = args.out or RESULTS / f"rasa_vs_taiwa_{split.dataset}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"report written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
