"""Save and load trained NLU models as versioned, content-addressed artifacts.

A model lives in ``models/<model_id>/``: ``card.json`` (the model card), ``meta.json``
(vocabularies, classes, options, patterns, synonyms) and ``weights.npz``. The id is the
fingerprint of the training data and the pipeline configuration, so unchanged input maps to
an existing model and training is skipped. ``models/latest`` names the newest model.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from engine.diagnostics import EngineError
from engine.nlu.classify import LinearIntentModel
from engine.nlu.entities import LookupExtractor, RegexExtractor, TaggerModel
from engine.nlu.featurize import Block, Featurizer, PatternFlags, TfidfOptions
from engine.nlu.model import NluModel
from engine.nlu.pipeline import PipelineConfig
from engine.nlu.tokenize import Tokenizer
from engine.nlu.training_data import TrainingData

if TYPE_CHECKING:
    from engine.nlu.embeddings import DenseBlock

ARTIFACT_FORMAT = 1
"""Bump when the files' layout changes; old models then refuse to load with a clear error."""
LATEST = "latest"


class ModelNotFoundError(EngineError, FileNotFoundError):
    """No trained model where one was expected."""


def fingerprint(data: TrainingData, pipeline: PipelineConfig, entity_names: frozenset[str]) -> str:
    """sha256 of everything that determines the trained model."""
    payload = {
        "format": ARTIFACT_FORMAT,
        "language": data.language,
        "examples": [
            [ex.text, ex.intent, [[a.start, a.end, a.entity, a.value, a.role, a.group] for a in ex.entities]]
            for ex in data.examples
        ],
        "synonyms": sorted(data.synonyms.items()),
        "regexes": [[r.name, list(r.patterns)] for r in data.regexes],
        "lookups": [[lk.name, list(lk.elements)] for lk in data.lookups],
        "pipeline": pipeline.to_dict(),
        "entities": sorted(entity_names),
    }
    text = json.dumps(payload, sort_keys=True, ensure_ascii=False, default=list)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def model_id_for(fp: str) -> str:
    return f"nlu-{fp[:16]}"


def save_model(model: NluModel, models_dir: Path) -> Path:
    """Write the model atomically into ``models_dir/<model_id>`` and point ``latest`` at it."""
    models_dir.mkdir(parents=True, exist_ok=True)
    target = models_dir / model.model_id
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=models_dir))
    fz = model.featurizer
    meta: dict[str, Any] = {
        "format": ARTIFACT_FORMAT,
        "model_id": model.model_id,
        "language": model.language,
        "tokenizer_model": model.tokenizer.model,
        "tfidf": {**asdict(fz.options)},
        "word_vocab": fz.word.vocab,
        "char_vocab": fz.char.vocab,
        "char_weight": fz.char.weight,
        "pattern_regexes": [[n, p.pattern] for n, p in fz.patterns.regexes],
        "pattern_lookups": [[n, sorted(e)] for n, e in fz.patterns.lookups],
        "pattern_weight": fz.patterns.weight,
        "pattern_word_boundaries": fz.patterns.word_boundaries,
        "embeddings": {**asdict(fz.dense.encoder.options), "dim": fz.dense.size} if fz.dense else None,
        "classes": list(model.classifier.classes),
        "temperature": model.classifier.temperature,
        "regex_entities": [[n, p.pattern] for n, p in model.regex.patterns] if model.regex else None,
        "lookup_entities": [[n, p.pattern] for n, p in model.lookup.patterns] if model.lookup else None,
        "synonyms": dict(model.synonyms),
        "tagger": {"vocab": model.tagger.vocab, "tags": list(model.tagger.tags)} if model.tagger else None,
    }
    arrays: dict[str, np.ndarray[Any, Any]] = {
        "word_idf": fz.word.idf,
        "char_idf": fz.char.idf,
        "weights": model.classifier.weights,
        "bias": model.classifier.bias,
    }
    if model.tagger is not None:
        arrays["tagger_weights"] = model.tagger.weights
        arrays["tagger_bias"] = model.tagger.bias
    (tmp / "meta.json").write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
    (tmp / "card.json").write_text(
        json.dumps(model.card, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8"
    )
    np.savez(tmp / "weights.npz", **arrays)  # type: ignore[arg-type]
    if target.exists():
        shutil.rmtree(target)
    tmp.rename(target)
    (models_dir / LATEST).write_text(model.model_id + "\n", encoding="utf-8")
    return target


def resolve_model_dir(path: str | Path) -> Path:
    """A model folder, or a ``models/`` folder whose ``latest`` names one."""
    path = Path(path)
    if (path / "meta.json").is_file():
        return path
    latest = path / LATEST
    if latest.is_file():
        candidate = path / latest.read_text(encoding="utf-8").strip()
        if (candidate / "meta.json").is_file():
            return candidate
    raise ModelNotFoundError(f"no trained model in {path}. Fix: run `taiwa train` first.")


def _dense_block(meta: dict[str, Any], patterns: PatternFlags) -> DenseBlock | None:
    spec = meta.get("embeddings")
    if not spec:
        return None
    from engine.nlu.embeddings import DenseBlock, EmbeddingOptions, SentenceEncoder

    dim = int(spec.pop("dim"))
    encoder = SentenceEncoder(EmbeddingOptions.from_dict(spec))
    if encoder.dim != dim:
        raise EngineError(
            f"the embedding model {encoder.options.model!r} gives {encoder.dim} dimensions, the model was trained with {dim}. "
            "Fix: install the model it was trained with, or run `taiwa train --force`."
        )
    return DenseBlock(encoder, patterns.offset + patterns.size, encoder.options.weight)


def load_model(path: str | Path) -> NluModel:
    """Load a model folder (or ``models/`` with ``latest``)."""
    folder = resolve_model_dir(path)
    meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
    if meta.get("format") != ARTIFACT_FORMAT:
        raise EngineError(
            f"model {folder} has format {meta.get('format')}, this engine reads {ARTIFACT_FORMAT}. Fix: run `taiwa train --force`."
        )
    card = json.loads((folder / "card.json").read_text(encoding="utf-8"))
    with np.load(folder / "weights.npz") as npz:
        arrays = {k: npz[k] for k in npz.files}
    options = TfidfOptions.from_dict(meta["tfidf"])
    word = Block("word", meta["word_vocab"], arrays["word_idf"], 0, 1.0)
    char = Block("char", meta["char_vocab"], arrays["char_idf"], word.size, float(meta["char_weight"]))
    patterns = PatternFlags(
        regexes=tuple((n, re.compile(p)) for n, p in meta["pattern_regexes"]),
        lookups=tuple((n, frozenset(e)) for n, e in meta["pattern_lookups"]),
        offset=word.size + char.size,
        weight=float(meta["pattern_weight"]),
        word_boundaries=bool(meta.get("pattern_word_boundaries", True)),
    )
    classifier = LinearIntentModel(
        tuple(meta["classes"]), arrays["weights"], arrays["bias"], float(meta["temperature"])
    )
    tagger = None
    if meta.get("tagger"):
        tagger = TaggerModel(
            meta["tagger"]["vocab"], arrays["tagger_weights"], arrays["tagger_bias"], tuple(meta["tagger"]["tags"])
        )
    return NluModel(
        model_id=meta["model_id"],
        language=meta["language"],
        tokenizer=Tokenizer(meta["language"], meta.get("tokenizer_model")),
        featurizer=Featurizer(options, word, char, patterns, _dense_block(meta, patterns)),
        classifier=classifier,
        regex=RegexExtractor(tuple((n, re.compile(p)) for n, p in meta["regex_entities"]))
        if meta.get("regex_entities")
        else None,
        lookup=LookupExtractor(tuple((n, re.compile(p, re.IGNORECASE)) for n, p in meta["lookup_entities"]))
        if meta.get("lookup_entities")
        else None,
        tagger=tagger,
        synonyms=meta.get("synonyms") or {},
        card=card,
    )
