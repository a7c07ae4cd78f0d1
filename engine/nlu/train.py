"""Train the NLU: tokenize, fit features, fit the intent classifier and the entity tagger,
cross-validate small data sets, and write a model card.

``train_project`` is what ``taiwa train`` runs: it fingerprints the project's training data
and pipeline, and skips training when a model with that fingerprint already exists.
"""

from __future__ import annotations

import platform
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from engine import __version__
from engine.diagnostics import EngineError
from engine.nlu.artifact import fingerprint, model_id_for, resolve_model_dir, save_model
from engine.nlu.classify import fit_classifier
from engine.nlu.entities import LookupExtractor, RegexExtractor, fit_tagger
from engine.nlu.featurize import fit_featurizer
from engine.nlu.model import NluModel
from engine.nlu.oos import choose_threshold
from engine.nlu.pipeline import PipelineConfig
from engine.nlu.tokenize import Tokenizer, uses_spaces
from engine.nlu.training_data import Example, TrainingData, compile_any
from engine.policies.config import OUT_OF_SCOPE_INTENTS

Progress = Callable[[str, int, int], None]
"""``progress(stage, done, total)``: called as training advances."""

CV_MAX_EXAMPLES = 3000
"""Above this many examples, the model card skips cross-validation (use `taiwa eval nlu`)."""


def _no_progress(stage: str, done: int, total: int) -> None:
    return None


def train_nlu(
    data: TrainingData,
    pipeline: PipelineConfig,
    entity_names: frozenset[str] = frozenset(),
    progress: Progress = _no_progress,
    *,
    cross_validate: bool = True,
    tokenizer: Tokenizer | None = None,
) -> NluModel:
    """Fit every component of the pipeline on ``data``."""
    if not data.examples:
        raise ValueError("there are no training examples. Fix: add `- intent: ...` entries with examples in nlu_data/.")
    started = time.perf_counter()
    steps = 5
    progress("tokenizer", 0, steps)
    if tokenizer is None or tokenizer.lang != data.language or tokenizer.model != pipeline.tokenizer_model:
        tokenizer = Tokenizer(data.language, pipeline.tokenizer_model)
    texts = [ex.text for ex in data.examples]
    labels = [ex.intent for ex in data.examples]
    token_lists = [tokenizer(t) for t in texts]
    progress("features", 1, steps)
    regexes = [(r.name, r.patterns) for r in data.regexes]
    lookups = [(lk.name, lk.elements) for lk in data.lookups]
    spaced = uses_spaces(data.language)
    featurizer = fit_featurizer(
        token_lists, pipeline.tfidf, regexes, lookups, word_boundaries=spaced, embeddings=pipeline.embeddings
    )
    x = featurizer.transform(token_lists, texts)
    progress("intent classifier", 2, steps)
    classifier = fit_classifier(x, labels, pipeline.classifier)
    progress("entities", 3, steps)
    tagger = fit_tagger(data.examples, tokenizer) if pipeline.tagger else None
    regex = None
    if pipeline.regex_entities:
        pats = [(r.name, compile_any(r.patterns)) for r in data.regexes if r.name in entity_names and r.patterns]
        regex = RegexExtractor(tuple(pats)) if pats else None
    lookup = None
    if pipeline.lookup_entities:
        tables = [(lk.name, lk.elements) for lk in data.lookups if lk.name in entity_names]
        lookup = LookupExtractor.build(tables, word_boundaries=spaced) if tables else None
    fp = fingerprint(data, pipeline, entity_names)
    train_seconds = time.perf_counter() - started
    model = NluModel(
        model_id=model_id_for(fp),
        language=data.language,
        tokenizer=tokenizer,
        featurizer=featurizer,
        classifier=classifier,
        regex=regex,
        lookup=lookup,
        tagger=tagger,
        synonyms=dict(data.synonyms) if pipeline.synonyms else {},
    )
    progress("cross-validation", 4, steps)
    cv: dict[str, Any]
    if cross_validate and len(data.examples) <= CV_MAX_EXAMPLES:
        cv = cross_validation(data, pipeline, entity_names, tokenizer=tokenizer)
    else:
        cv = {"skipped": f"more than {CV_MAX_EXAMPLES} examples; run `taiwa eval nlu` for held-out scores"}
    model.card = model_card(model, data, pipeline, fp, train_seconds, cv)
    progress("done", steps, steps)
    return model


def model_card(
    model: NluModel, data: TrainingData, pipeline: PipelineConfig, fp: str, train_seconds: float, cv: dict[str, Any]
) -> dict[str, Any]:
    import scipy
    import sklearn
    import spacy

    counts = Counter(ex.intent for ex in data.examples)
    entity_counts = Counter(a.entity for ex in data.examples for a in ex.entities)
    return {
        "model_id": model.model_id,
        "fingerprint": fp,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "engine_version": __version__,
        "language": data.language,
        "pipeline": pipeline.to_dict(),
        "data": {
            "examples": len(data.examples),
            "intents": len(counts),
            "examples_per_intent": dict(sorted(counts.items())),
            "entity_annotations": dict(sorted(entity_counts.items())),
            "synonyms": len(data.synonyms),
            "regexes": len(data.regexes),
            "lookups": len(data.lookups),
        },
        "features": model.featurizer.size,
        "temperature": round(model.classifier.temperature, 4),
        "train_seconds": round(train_seconds, 3),
        "cross_validation": cv,
        "versions": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "scipy": scipy.__version__,
            "scikit-learn": sklearn.__version__,
            "spacy": str(getattr(spacy, "__version__", "?")),
            **_tokenizer_versions(data.language),
        },
    }


def _tokenizer_versions(language: str) -> dict[str, str]:
    """Versions of the word segmenter and dictionary behind spaCy's ``ja`` tokenizer."""
    if language != "ja":
        return {}
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for dist in ("sudachipy", "sudachidict-core"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            continue
    return out


def cross_validation(
    data: TrainingData,
    pipeline: PipelineConfig,
    entity_names: frozenset[str],
    folds: int = 3,
    tokenizer: Tokenizer | None = None,
) -> dict[str, Any]:
    """Stratified k-fold intent accuracy / macro F1 and entity F1 (exact span + value)."""
    from sklearn.metrics import f1_score
    from sklearn.model_selection import StratifiedKFold

    examples = list(data.examples)
    labels = [ex.intent for ex in examples]
    counts = Counter(labels)
    if len(counts) < 2 or min(counts.values()) < folds:
        return {"skipped": f"each intent needs at least {folds} examples for {folds}-fold cross-validation"}
    y_true: list[str] = []
    y_pred: list[str] = []
    y_conf: list[float] = []
    tp = fp_ = fn = 0
    splitter = StratifiedKFold(folds, shuffle=True, random_state=0)
    for train_idx, test_idx in splitter.split(np.zeros(len(labels)), labels):
        sub = TrainingData(
            data.language, tuple(examples[i] for i in train_idx), data.synonyms, data.regexes, data.lookups
        )
        fold_model = train_nlu(sub, pipeline, entity_names, cross_validate=False, tokenizer=tokenizer)
        test = [examples[i] for i in test_idx]
        for ex, result in zip(test, fold_model.parse_batch([e.text for e in test]), strict=True):
            y_true.append(ex.intent)
            y_pred.append(result.intent.name)
            y_conf.append(result.intent.confidence)
            gold = _entity_set(ex, data.synonyms)
            got = {(e.start, e.end, e.entity, e.value.lower()) for e in result.entities}
            tp += len(gold & got)
            fp_ += len(got - gold)
            fn += len(gold - got)
    precision = tp / (tp + fp_) if tp + fp_ else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    oos: dict[str, Any] = {}
    label = next((name for name in OUT_OF_SCOPE_INTENTS if name in counts), None)
    if label is not None:
        choice = choose_threshold(y_conf, y_pred, y_true, oos_label=label)
        oos = {
            "oos_label": label,
            "oos_threshold": round(choice.threshold, 4),
            "oos_threshold_rule": choice.rule + " on the held-out folds",
            "oos_recall": round(choice.oos_recall, 4),
            "in_scope_accuracy": round(choice.in_scope_accuracy, 4),
        }
    return {
        "folds": folds,
        "intent_accuracy": round(float(np.mean([a == b for a, b in zip(y_true, y_pred, strict=True)])), 4),
        "intent_macro_f1": round(float(f1_score(y_true, y_pred, average="macro")), 4),
        "entity_precision": round(precision, 4),
        "entity_recall": round(recall, 4),
        "entity_f1": round(f1, 4),
        "entity_support": tp + fn,
        **oos,
    }


def _entity_set(example: Example, synonyms: dict[str, str] | Any) -> set[tuple[int, int, str, str]]:
    out = set()
    for a in example.entities:
        value = synonyms.get(a.value.lower(), a.value) if synonyms else a.value
        out.add((a.start, a.end, a.entity, value.lower()))
    return out


@dataclass(frozen=True)
class TrainOutcome:
    model_dir: Path
    model_id: str
    skipped: bool
    """True when an identical model already existed."""
    card: dict[str, Any]


def _reuse(models_dir: Path, model_id: str) -> TrainOutcome | None:
    """The existing model with this id (pointed to by ``latest`` again), if there is one."""
    import json

    existing = models_dir / model_id
    if not (existing / "meta.json").is_file():
        return None
    (models_dir / "latest").write_text(model_id + "\n", encoding="utf-8")
    card = json.loads((existing / "card.json").read_text(encoding="utf-8"))
    return TrainOutcome(resolve_model_dir(existing), model_id, True, card)


def train_project(
    project_dir: Path,
    *,
    force: bool = False,
    out: Path | None = None,
    progress: Progress = _no_progress,
) -> TrainOutcome:
    """Load, check and train the project in ``project_dir`` (raises ``ProjectError``)."""

    from engine.loading.project import load_project_or_raise
    from engine.nlu.pipeline import build_pipeline

    project = load_project_or_raise(project_dir)
    pipeline = build_pipeline([(c.name, c.options) for c in project.policies.pipeline])
    entity_names = frozenset(project.domain.entities)
    models_dir = out or project_dir / "models"
    fp = fingerprint(project.nlu, pipeline, entity_names)
    model_id = model_id_for(fp)
    reused = None if force else _reuse(models_dir, model_id)
    if reused is not None:
        return reused
    model = train_nlu(project.nlu, pipeline, entity_names, progress)
    path = save_model(model, models_dir)
    return TrainOutcome(path, model.model_id, False, dict(model.card))


def training_data_from_pairs(pairs: Sequence[tuple[str, str]], language: str = "en") -> TrainingData:
    """TrainingData from (text, intent) pairs, e.g. a benchmark's JSONL file."""
    from engine.diagnostics import Location

    loc = Location("<data>")
    return TrainingData(language, tuple(Example(t, i, (), loc) for t, i in pairs), {}, (), ())


class DataFileError(EngineError, ValueError):
    """A JSONL training file that cannot be read."""


def read_jsonl_pairs(path: Path) -> list[tuple[str, str]]:
    """(text, intent) pairs of a JSONL file with one ``{"text": ..., "intent": ...}`` per line."""
    import json

    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataFileError(f"{path}: cannot read the file: {exc}. Fix: pass a UTF-8 JSONL file") from exc
    pairs: list[tuple[str, str]] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataFileError(
                f"{path}:{number}:{exc.colno}: error: not valid JSON ({exc.msg}). "
                'Fix: write one object per line, like {"text": "hi", "intent": "greet"}'
            ) from exc
        text = row.get("text") if isinstance(row, dict) else None
        intent = row.get("intent") if isinstance(row, dict) else None
        if not isinstance(text, str) or not isinstance(intent, str) or not text.strip() or not intent.strip():
            raise DataFileError(
                f'{path}:{number}:1: error: expected an object with non-empty string "text" and "intent". '
                f"Fix: this line is {line[:80]!r}"
            )
        pairs.append((text, intent))
    if not pairs:
        raise DataFileError(f"{path}: no examples. Fix: add lines like " + '{"text": "hi", "intent": "greet"}')
    return pairs


def train_data_file(
    path: Path,
    *,
    language: str = "en",
    pipeline: PipelineConfig | None = None,
    out: Path,
    force: bool = False,
    progress: Progress = _no_progress,
) -> TrainOutcome:
    """Train an NLU model from a JSONL file of (text, intent) rows (e.g. BANKING77)."""

    from engine.nlu.pipeline import build_pipeline

    data = training_data_from_pairs(read_jsonl_pairs(path), language)
    config = pipeline or build_pipeline([])
    model_id = model_id_for(fingerprint(data, config, frozenset()))
    reused = None if force else _reuse(out, model_id)
    if reused is not None:
        return reused
    model = train_nlu(data, config, frozenset(), progress)
    return TrainOutcome(save_model(model, out), model.model_id, False, dict(model.card))
