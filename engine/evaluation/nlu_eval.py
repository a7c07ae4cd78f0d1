"""NLU evaluation on held-out data, behind ``taiwa eval nlu``.

A model is trained with the project's own training code (:func:`engine.nlu.train.train_nlu`)
for each :class:`Split` (a train/test file pair, one stratified hold-out, or the folds of a
k-fold cross-validation), the test examples are predicted in batches, and the predictions of
every split are scored together with scikit-learn's metrics. Out-of-scope detection is the
model's own mechanism (:mod:`engine.nlu.oos`): ``oos`` as a trained class, plus a confidence
threshold chosen on validation data (or given) when asked for; the threshold is never tuned
on the test data.
"""

from __future__ import annotations

import difflib
import hashlib
import math
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from engine import __version__
from engine.diagnostics import EngineError
from engine.nlu.model import NluModel
from engine.nlu.oos import OOS, apply_threshold, choose_threshold
from engine.nlu.pipeline import PipelineConfig
from engine.nlu.tokenize import Tokenizer
from engine.nlu.train import read_jsonl_pairs, train_nlu, training_data_from_pairs
from engine.nlu.training_data import Example, TrainingData

EvalProgress = Callable[[str, int, int], None]
"""``progress(phase, done, total)``: called while models train and predict."""

SpanKey = tuple[int, int, int, str, str]
"""An entity occurrence: (example number, start, end, entity, lower-cased canonical value)."""

PREDICT_BATCH = 1024
"""Test texts per call of the batched prediction path (one progress step each)."""

_NO_ENTITY = ""  # the "not there" side of an entity span in score_entities (names are never empty)


class EvalDataError(EngineError, ValueError):
    """Data that cannot be evaluated as asked: too few examples to split, or labels the model never saw."""


@dataclass(frozen=True)
class Split:
    """One model to train, and the examples it is tested on."""

    train: TrainingData
    test: tuple[Example, ...]


@dataclass(frozen=True)
class EvalSettings:
    pipeline: PipelineConfig
    entity_names: frozenset[str] = frozenset()
    """Entities the regex and lookup extractors may produce (the project's domain entities)."""
    val: tuple[tuple[str, str], ...] = ()
    """Validation (text, intent) pairs the out-of-scope threshold is chosen on (empty: none)."""
    threshold: float | None = None
    """A fixed out-of-scope threshold, used when there is no validation data."""
    min_oos_recall: float | None = None
    """Threshold rule on the validation data: best accuracy among thresholds reaching this recall."""
    oos_label: str = OOS


@dataclass
class EvalRun:
    """The predictions of every split, in test order, and what they cost."""

    gold: list[str] = field(default_factory=list)
    predicted: list[str] = field(default_factory=list)
    gold_spans: set[SpanKey] = field(default_factory=set)
    predicted_spans: set[SpanKey] = field(default_factory=set)
    with_entities: bool = False
    """True when the test examples carry entity annotations (then entities are scored)."""
    train_sizes: list[int] = field(default_factory=list)
    thresholds: list[float] = field(default_factory=list)
    threshold_rule: str = ""
    """How the out-of-scope threshold was set (or that there is none)."""
    train_seconds: float = 0.0
    """Wall-clock time of every model's training (data loading and splitting excluded)."""
    predict_seconds: float = 0.0
    """Wall-clock time of the batched test predictions (the validation predictions excluded)."""


@dataclass(frozen=True)
class LabelScore:
    precision: float
    recall: float
    f1: float
    support: int

    def to_dict(self) -> dict[str, float | int]:
        return {
            "precision": round(self.precision, 4),
            "recall": round(self.recall, 4),
            "f1": round(self.f1, 4),
            "support": self.support,
        }


@dataclass(frozen=True)
class IntentScores:
    accuracy: float
    macro_f1: float
    """Unweighted mean F1 over every label seen in the gold or the predicted intents."""
    per_intent: dict[str, LabelScore]
    labels: tuple[str, ...]
    confusion: list[list[int]]
    """``confusion[i][j]``: examples of gold ``labels[i]`` predicted as ``labels[j]``."""
    in_scope_accuracy: float | None
    """Accuracy over the examples whose gold label is not out-of-scope (None without oos)."""
    oos_recall: float | None
    """Share of the gold out-of-scope examples predicted as out-of-scope (None without oos)."""


@dataclass(frozen=True)
class EntityScores:
    precision: float
    recall: float
    f1: float
    support: int
    per_entity: dict[str, LabelScore]


# -- data and splits


def load_jsonl(path: Path, language: str = "en") -> TrainingData:
    """A JSONL benchmark file (one ``{"text", "intent"}`` per line) as training data."""
    return training_data_from_pairs(read_jsonl_pairs(path), language)


def _subset(data: TrainingData, examples: Iterable[Example]) -> TrainingData:
    return TrainingData(data.language, tuple(examples), data.synonyms, data.regexes, data.lookups)


def _require_per_intent(labels: Sequence[str], minimum: int, purpose: str) -> None:
    small = sorted(name for name, n in Counter(labels).items() if n < minimum)
    if small:
        shown = ", ".join(small[:10]) + (f" (and {len(small) - 10} more)" if len(small) > 10 else "")
        raise EvalDataError(
            f"{purpose} needs at least {minimum} examples of every intent; too few: {shown}. "
            "Fix: add examples to these intents, or ask for fewer folds / another split"
        )


def holdout_split(data: TrainingData, fraction: float, seed: int = 0) -> list[Split]:
    """One stratified split: ``fraction`` of every intent's examples held out for the test."""
    from sklearn.model_selection import train_test_split

    labels = [ex.intent for ex in data.examples]
    _require_per_intent(labels, 2, f"a stratified {fraction:.0%} hold-out")
    n_test = math.ceil(fraction * len(labels))
    n_intents = len(set(labels))
    if n_test < n_intents or len(labels) - n_test < n_intents:
        raise EvalDataError(
            f"a {fraction:.0%} hold-out of {len(labels)} examples leaves {n_test} to test and "
            f"{len(labels) - n_test} to train, fewer than the {n_intents} intents. "
            "Fix: choose a --holdout that leaves at least one example of every intent on each side"
        )
    train_idx, test_idx = train_test_split(
        np.arange(len(labels)), test_size=fraction, random_state=seed, stratify=labels
    )
    examples = data.examples
    return [Split(_subset(data, (examples[i] for i in train_idx)), tuple(examples[i] for i in test_idx))]


def kfold_splits(data: TrainingData, folds: int, seed: int = 0) -> list[Split]:
    """Stratified k-fold cross-validation: every example is tested once, by the model of its fold."""
    from sklearn.model_selection import StratifiedKFold

    if folds < 2:
        raise EvalDataError(f"k-fold cross-validation needs at least 2 folds, got {folds}. Fix: pass --folds 2 or more")
    labels = [ex.intent for ex in data.examples]
    _require_per_intent(labels, folds, f"{folds}-fold cross-validation")
    examples = data.examples
    splitter = StratifiedKFold(folds, shuffle=True, random_state=seed)
    return [
        Split(_subset(data, (examples[i] for i in train_idx)), tuple(examples[i] for i in test_idx))
        for train_idx, test_idx in splitter.split(np.zeros(len(labels)), labels)
    ]


def check_labels(
    train: Iterable[str], other: Iterable[str], what: str, *, oos_label: str, oos_by_threshold: bool
) -> None:
    """Raise :class:`EvalDataError` if ``other`` (test or validation) has labels no model can predict."""
    known = set(train)
    if len(known) < 2:
        raise EvalDataError(
            f"the training data has {len(known)} intent(s); a classifier needs at least 2. Fix: train on more intents"
        )
    unseen = sorted(set(other) - known - ({oos_label} if oos_by_threshold else set()))
    if not unseen:
        return
    if unseen == [oos_label]:
        raise EvalDataError(
            f"the {what} data has out-of-scope examples ({oos_label!r}) but the training data has none and no "
            "threshold is set, so none can be predicted. Fix: pass --val FILE to choose a threshold, "
            f"or --threshold T, or add {oos_label!r} examples to the training data"
        )
    hints = []
    for label in unseen[:10]:
        close = difflib.get_close_matches(label, sorted(known), n=1)
        hints.append(f"{label!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    more = f" and {len(unseen) - 10} more" if len(unseen) > 10 else ""
    raise EvalDataError(
        f"the {what} data has {len(unseen)} intent(s) the training data does not: {', '.join(hints)}{more}. "
        "Fix: use matching train and test files, or correct the labels"
    )


# -- training and prediction


def _silent(phase: str, done: int, total: int) -> None:
    return None


def _phase(progress: EvalProgress, prefix: str) -> Callable[[str, int, int], None]:
    def report(stage: str, done: int, total: int) -> None:
        progress(f"{prefix}: {stage}", done, total)

    return report


def evaluate(splits: Sequence[Split], settings: EvalSettings, progress: EvalProgress = _silent) -> EvalRun:
    """Train a model per split, predict its test examples, and collect every prediction."""
    run = EvalRun(with_entities=any(ex.entities for split in splits for ex in split.test))
    run.threshold_rule = f"none: {settings.oos_label!r} is only predicted as a trained class"
    tokenizer: Tokenizer | None = None
    for number, split in enumerate(splits, 1):
        tag = f"fold {number}/{len(splits)}" if len(splits) > 1 else "model"
        started = time.perf_counter()
        model = train_nlu(
            split.train,
            settings.pipeline,
            settings.entity_names,
            _phase(progress, f"training {tag}"),
            cross_validate=False,
            tokenizer=tokenizer,
        )
        run.train_seconds += time.perf_counter() - started
        run.train_sizes.append(len(split.train.examples))
        tokenizer = model.tokenizer
        threshold = _oos_threshold(model, settings, run)
        offset = len(run.gold)
        started = time.perf_counter()
        predicted, confidences = _predict(model, split.test, offset, run, _phase(progress, f"predicting {tag}"))
        run.predict_seconds += time.perf_counter() - started
        run.predicted.extend(_mark_oos(predicted, confidences, threshold, settings.oos_label))
        run.gold.extend(ex.intent for ex in split.test)
        if run.with_entities:
            run.gold_spans.update(_gold_spans(split.test, offset, split.train.synonyms))
    return run


def _oos_threshold(model: NluModel, settings: EvalSettings, run: EvalRun) -> float | None:
    if settings.val:
        predicted, confidences = model.predict_intents([text for text, _ in settings.val])
        choice = choose_threshold(
            confidences,
            predicted,
            [intent for _, intent in settings.val],
            min_oos_recall=settings.min_oos_recall,
            oos_label=settings.oos_label,
        )
        run.thresholds.append(choice.threshold)
        run.threshold_rule = f"{choice.rule} on the validation data"
        return choice.threshold
    if settings.threshold is not None:
        run.thresholds.append(settings.threshold)
        run.threshold_rule = "fixed (--threshold)"
    return settings.threshold


def _predict(
    model: NluModel, examples: Sequence[Example], offset: int, run: EvalRun, progress: EvalProgress
) -> tuple[list[str], list[float]]:
    """Top intents and confidences in batches; entities too (into ``run``) when they are scored."""
    texts = [ex.text for ex in examples]
    labels: list[str] = []
    confidences: list[float] = []
    for start in range(0, len(texts), PREDICT_BATCH):
        chunk = texts[start : start + PREDICT_BATCH]
        if run.with_entities:
            for number, result in enumerate(model.parse_batch(chunk), offset + start):
                labels.append(result.intent.name)
                confidences.append(result.intent.confidence)
                run.predicted_spans.update((number, e.start, e.end, e.entity, e.value.lower()) for e in result.entities)
        else:
            names, top = model.predict_intents(chunk)
            labels.extend(names)
            confidences.extend(float(c) for c in top)
        progress("batches", start + len(chunk), len(texts))
    return labels, confidences


def _mark_oos(predicted: list[str], confidences: list[float], threshold: float | None, oos_label: str) -> list[str]:
    if threshold is None:
        return predicted
    marked = apply_threshold(predicted, confidences, threshold)
    return [oos_label if new != old else old for old, new in zip(predicted, marked, strict=True)]


def _gold_spans(examples: Sequence[Example], offset: int, synonyms: Mapping[str, str]) -> set[SpanKey]:
    """The annotated entities, their values mapped through the synonyms as the model maps its own."""
    spans: set[SpanKey] = set()
    for number, ex in enumerate(examples, offset):
        for a in ex.entities:
            value = synonyms.get(a.value.lower(), a.value)
            spans.add((number, a.start, a.end, a.entity, value.lower()))
    return spans


# -- scores (scikit-learn's metrics)


def score_intents(gold: Sequence[str], predicted: Sequence[str], oos_label: str = OOS) -> IntentScores:
    """Accuracy, macro F1, per-intent scores, the confusion matrix and the out-of-scope figures."""
    from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

    if len(gold) != len(predicted) or not gold:
        raise ValueError("score_intents needs as many predictions as gold labels, at least one")
    labels = sorted(set(gold) | set(predicted))
    precision, recall, f1, support = precision_recall_fscore_support(gold, predicted, labels=labels, zero_division=0)
    per_intent = _label_scores(labels, precision, recall, f1, support)
    in_scope_gold = [g for g in gold if g != oos_label]
    in_scope_predicted = [p for g, p in zip(gold, predicted, strict=True) if g != oos_label]
    has_oos = len(in_scope_gold) < len(gold)
    return IntentScores(
        accuracy=float(accuracy_score(gold, predicted)),
        macro_f1=float(np.mean(f1)),
        per_intent=per_intent,
        labels=tuple(labels),
        confusion=confusion_matrix(gold, predicted, labels=labels).tolist(),
        in_scope_accuracy=(
            float(accuracy_score(in_scope_gold, in_scope_predicted)) if has_oos and in_scope_gold else None
        ),
        oos_recall=per_intent[oos_label].recall if has_oos else None,
    )


def _label_scores(labels: Sequence[str], *columns: Any) -> dict[str, LabelScore]:
    """Per-label scores from the (precision, recall, f1, support) arrays of scikit-learn."""
    precision, recall, f1, support = columns
    return {
        label: LabelScore(float(p), float(r), float(f), int(s))
        for label, p, r, f, s in zip(labels, precision, recall, f1, support, strict=True)
    }


def score_entities(gold: set[SpanKey], predicted: set[SpanKey]) -> EntityScores:
    """Exact-match entity scores: a predicted entity counts when span, name and value all match.

    Every span found on either side becomes one sample, labelled with its entity name on the
    side(s) that have it, so scikit-learn counts the true positives, misses and false alarms.
    """
    from sklearn.metrics import precision_recall_fscore_support

    spans = sorted(gold | predicted)
    names = sorted({span[3] for span in spans})
    if not names:
        return EntityScores(0.0, 0.0, 0.0, 0, {})
    y_true = [span[3] if span in gold else _NO_ENTITY for span in spans]
    y_pred = [span[3] if span in predicted else _NO_ENTITY for span in spans]
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=names, zero_division=0)
    micro = precision_recall_fscore_support(y_true, y_pred, labels=names, average="micro", zero_division=0)
    return EntityScores(
        precision=float(micro[0]),
        recall=float(micro[1]),
        f1=float(micro[2]),
        support=len(gold),
        per_entity=_label_scores(names, p, r, f, s),
    )


def worst_intents(scores: IntentScores, n: int = 10) -> list[str]:
    """The ``n`` gold intents with the lowest F1 (larger support first among equals)."""
    tested = [(s.f1, -s.support, label) for label, s in scores.per_intent.items() if s.support]
    return [label for _, _, label in sorted(tested)[:n]]


def confused_pairs(scores: IntentScores, n: int = 10) -> list[tuple[str, str, int]]:
    """The ``n`` most frequent (gold, predicted, count) mistakes."""
    pairs = [
        (count, gold, predicted)
        for gold, row in zip(scores.labels, scores.confusion, strict=True)
        for predicted, count in zip(scores.labels, row, strict=True)
        if count and gold != predicted
    ]
    return [(g, p, c) for c, g, p in sorted(pairs, key=lambda t: (-t[0], t[1], t[2]))[:n]]


# -- the report


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def describe_file(path: Path) -> dict[str, str]:
    return {"path": str(path), "sha256": file_sha256(path)}


def describe_project_data(root: Path) -> dict[str, Any]:
    """The project folder and every ``nlu_data`` file with its hash."""
    from engine.loading.project import project_files

    return {"project": str(root), "files": [describe_file(p) for p in project_files(root, "nlu_data")]}


def build_report(
    run: EvalRun, *, data: dict[str, Any], split: dict[str, Any], pipeline: PipelineConfig, oos_label: str = OOS
) -> dict[str, Any]:
    """The JSON report: top-level figures first, then the per-intent detail."""
    scores = score_intents(run.gold, run.predicted, oos_label)
    report: dict[str, Any] = {
        "accuracy": round(scores.accuracy, 4),
        "macro_f1": round(scores.macro_f1, 4),
        "n_train": round(float(np.mean(run.train_sizes))),
        "n_test": len(run.gold),
        "n_intents": len({*run.gold}),
        "train_seconds": round(run.train_seconds, 3),
        "predict_seconds": round(run.predict_seconds, 3),
        "utterances_per_second": round(len(run.gold) / run.predict_seconds) if run.predict_seconds else None,
    }
    if scores.oos_recall is not None:
        in_scope = scores.in_scope_accuracy
        report["in_scope_accuracy"] = round(in_scope, 4) if in_scope is not None else None
        report["oos_recall"] = round(scores.oos_recall, 4)
        report["oos"] = {
            "label": oos_label,
            "threshold_rule": run.threshold_rule,
            "thresholds": [round(t, 4) for t in run.thresholds],
        }
    if run.with_entities:
        entities = score_entities(run.gold_spans, run.predicted_spans)
        report["entity_f1"] = round(entities.f1, 4)
        report["entities"] = {
            "precision": round(entities.precision, 4),
            "recall": round(entities.recall, 4),
            "f1": round(entities.f1, 4),
            "support": entities.support,
            "per_entity": {name: s.to_dict() for name, s in entities.per_entity.items()},
        }
    report.update(
        engine_version=__version__,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        data=data,
        split=split,
        models=len(run.train_sizes),
        pipeline=pipeline.to_dict(),
        worst_intents=worst_intents(scores),
        confused_pairs=[{"gold": g, "predicted": p, "count": c} for g, p, c in confused_pairs(scores)],
        per_intent={label: s.to_dict() for label, s in scores.per_intent.items()},
        confusion={"labels": list(scores.labels), "matrix": scores.confusion},
    )
    return report
