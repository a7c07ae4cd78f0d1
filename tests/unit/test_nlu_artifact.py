"""Trained NLU models: save/load round trip, model card, fingerprint, ``models/latest``."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from engine.diagnostics import EngineError, Location
from engine.nlu.artifact import (
    ARTIFACT_FORMAT,
    LATEST,
    ModelNotFoundError,
    fingerprint,
    load_model,
    model_id_for,
    save_model,
)
from engine.nlu.classify import ClassifierOptions
from engine.nlu.model import NluModel, ParseResult
from engine.nlu.pipeline import DEFAULT_COMPONENTS, PipelineConfig, build_pipeline
from engine.nlu.train import train_nlu
from engine.nlu.training_data import Example, LookupTable, RegexFeature, TrainingData, parse_annotated

LOC = Location("nlu_data/test.yml")
RAW = {
    "greet": ["hi", "hello", "hey there", "good morning", "hello bot", "hi there"],
    "open_ticket": [
        "open a ticket",
        "create a support ticket",
        'open an [urgent]{"entity": "priority", "value": "high"} ticket',
        "create a [low](priority) priority ticket",
        "I need to report a problem",
        'raise a ticket [asap]{"entity": "priority", "value": "high"}',
    ],
    "inform": [
        "my id is [C12345](customer_id)",
        "customer [C48213](customer_id)",
        "it's [C20481](customer_id)",
        "my customer id is [C90210](customer_id)",
        "account [C11111](customer_id) please",
        "the id is [C31415](customer_id)",
    ],
}
ENTITIES = frozenset({"priority", "customer_id"})
TEXTS = [
    "hello there",
    "please open an urgent ticket",
    "my customer id is C77777",
    "open a LOW priority ticket for C12345",
    "something completely different",
    "",
]


def example(raw: str, intent: str) -> Example:
    text, spans = parse_annotated(raw)
    return Example(text, intent, spans, LOC)


def tiny_data(extra: tuple[Example, ...] = (), synonyms: dict[str, str] | None = None) -> TrainingData:
    examples = tuple(example(r, intent) for intent, raws in RAW.items() for r in raws) + extra
    return TrainingData(
        "en",
        examples,
        {"urgent": "high", "asap": "high"} if synonyms is None else synonyms,
        (RegexFeature("customer_id", (r"C\d{5}",), LOC),),
        (LookupTable("priority", ("low", "medium", "high", "urgent", "asap"), LOC),),
    )


def default_pipeline(**classifier: object) -> PipelineConfig:
    components = [(n, dict(classifier) if n == "classifier.linear.v1" else o) for n, o in DEFAULT_COMPONENTS]
    return build_pipeline(components)


@pytest.fixture(scope="module")
def model() -> NluModel:
    return train_nlu(tiny_data(), default_pipeline(), ENTITIES)


def assert_same_parse(a: ParseResult, b: ParseResult) -> None:
    assert [s.name for s in a.ranking] == [s.name for s in b.ranking]
    for x, y in zip(a.ranking, b.ranking, strict=True):
        assert x.confidence == pytest.approx(y.confidence, abs=1e-6)
    assert a.entities == b.entities


def test_trained_model_understands_its_training_data(model: NluModel) -> None:
    assert model.intents == ("greet", "inform", "open_ticket")
    assert model.parse("hello there").intent.name == "greet"
    result = model.parse("please open an urgent ticket")
    assert result.intent.name == "open_ticket"
    assert [(e.entity, e.value, e.text) for e in result.entities] == [("priority", "high", "urgent")]
    result = model.parse("my customer id is C77777")
    assert result.intent.name == "inform"
    assert [(e.entity, e.value, e.start, e.end) for e in result.entities] == [("customer_id", "C77777", 18, 24)]


def test_parse_batch_and_predict_intents_equal_parse(model: NluModel) -> None:
    batch = model.parse_batch(TEXTS)
    for text, b in zip(TEXTS, batch, strict=True):
        assert_same_parse(model.parse(text), b)
    names, confidences = model.predict_intents(TEXTS)
    assert names == [b.intent.name for b in batch]
    assert confidences.tolist() == pytest.approx([b.intent.confidence for b in batch], abs=1e-6)
    assert model.parse_batch([]) == []


def test_ranking_is_sorted_and_sums_to_one(model: NluModel) -> None:
    for text in TEXTS:
        r = model.parse(text)
        confidences = [s.confidence for s in r.ranking]
        assert confidences == sorted(confidences, reverse=True)
        assert sum(confidences) == pytest.approx(1.0)
        assert r.intent == r.ranking[0]
        d = r.to_dict()
        assert d["intent"]["name"] == r.intent.name and len(d["intent_ranking"]) == 3


def test_save_load_round_trip_gives_identical_parses(model: NluModel, tmp_path: Path) -> None:
    folder = save_model(model, tmp_path / "models")
    assert folder == tmp_path / "models" / model.model_id
    assert {p.name for p in folder.iterdir()} == {"meta.json", "card.json", "weights.npz"}
    loaded = load_model(folder)
    assert loaded.model_id == model.model_id
    assert loaded.card == json.loads(json.dumps(dict(model.card), default=str))
    for text in TEXTS:
        assert_same_parse(model.parse(text), loaded.parse(text))
    # The models/ folder resolves through `latest` too.
    assert load_model(tmp_path / "models").model_id == model.model_id


def test_round_trip_without_optional_components(tmp_path: Path) -> None:
    pipeline = build_pipeline(
        [("tokenizer.spacy.v1", {}), ("featurizer.tfidf.v1", {"char_weight": 0.5}), ("classifier.linear.v1", {})]
    )
    bare = train_nlu(tiny_data(), pipeline, ENTITIES, cross_validate=False)
    assert bare.tagger is None and bare.regex is None and bare.lookup is None and not bare.synonyms
    loaded = load_model(save_model(bare, tmp_path))
    assert loaded.tagger is None and loaded.regex is None and loaded.lookup is None
    for text in TEXTS:
        assert_same_parse(bare.parse(text), loaded.parse(text))
        assert loaded.parse(text).entities == ()


def test_model_card(model: NluModel) -> None:
    card = model.card
    assert card["model_id"] == model.model_id
    assert model.model_id == model_id_for(card["fingerprint"])
    assert card["language"] == "en"
    assert card["data"]["examples"] == 18
    assert card["data"]["intents"] == 3
    assert card["data"]["examples_per_intent"] == {"greet": 6, "inform": 6, "open_ticket": 6}
    assert card["data"]["entity_annotations"] == {"customer_id": 6, "priority": 3}
    assert (card["data"]["synonyms"], card["data"]["regexes"], card["data"]["lookups"]) == (2, 1, 1)
    assert card["pipeline"]["classifier"]["model"] == "svm"
    assert card["pipeline"]["tagger"] is True
    assert set(card["versions"]) == {"python", "numpy", "scipy", "scikit-learn", "spacy"}
    assert card["train_seconds"] >= 0
    assert card["features"] == model.featurizer.size
    cv = card["cross_validation"]
    assert cv["folds"] == 3
    assert 0.0 <= cv["intent_accuracy"] <= 1.0 and 0.0 <= cv["entity_f1"] <= 1.0
    assert cv["entity_support"] == 9


def test_cross_validation_is_skipped_with_too_few_examples() -> None:
    data = tiny_data()
    few = dataclasses.replace(data, examples=data.examples[:8])  # 6 greet, 2 open_ticket
    card = train_nlu(few, default_pipeline()).card
    assert card["cross_validation"] == {"skipped": "each intent needs at least 3 examples for 3-fold cross-validation"}


def test_training_without_examples_raises_with_a_fix() -> None:
    empty = dataclasses.replace(tiny_data(), examples=())
    with pytest.raises(ValueError, match="Fix:"):
        train_nlu(empty, default_pipeline())


def test_many_intents_with_few_examples_train() -> None:
    """12 intents x 4 examples: the calibration hold-out needs one example per intent."""
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa", "lambda", "mu"]
    examples = tuple(Example(f"{w} request number {i}", f"intent_{w}", (), LOC) for w in words for i in range(4))
    data = TrainingData("en", examples, {}, (), ())
    trained = train_nlu(data, default_pipeline(), cross_validate=False)
    assert trained.parse("kappa request number 9").intent.name == "intent_kappa"


# -- fingerprint -------------------------------------------------------------------------------


def test_fingerprint_is_stable_for_identical_input() -> None:
    assert fingerprint(tiny_data(), default_pipeline(), ENTITIES) == fingerprint(
        tiny_data(), default_pipeline(), ENTITIES
    )
    assert model_id_for("ab" * 32) == "nlu-" + "ab" * 8


def test_fingerprint_changes_with_data_and_pipeline() -> None:
    base = fingerprint(tiny_data(), default_pipeline(), ENTITIES)
    changed = {
        "one more example": fingerprint(tiny_data((example("yo", "greet"),)), default_pipeline(), ENTITIES),
        "a synonym": fingerprint(tiny_data(synonyms={"urgent": "high"}), default_pipeline(), ENTITIES),
        "a pipeline option": fingerprint(tiny_data(), default_pipeline(model="logreg"), ENTITIES),
        "the entities": fingerprint(tiny_data(), default_pipeline(), ENTITIES | {"city"}),
    }
    data = tiny_data()
    edited = (dataclasses.replace(data.examples[0], text="hi!"), *data.examples[1:])
    changed["an edited example"] = fingerprint(dataclasses.replace(data, examples=edited), default_pipeline(), ENTITIES)
    relabeled = (dataclasses.replace(data.examples[0], intent="inform"), *data.examples[1:])
    changed["a relabelled example"] = fingerprint(
        dataclasses.replace(data, examples=relabeled), default_pipeline(), ENTITIES
    )
    for what, fp in changed.items():
        assert fp != base, what
    assert len(set(changed.values())) == len(changed)


def test_fingerprint_sees_classifier_options() -> None:
    a = PipelineConfig(classifier=ClassifierOptions(C=1.0))
    b = PipelineConfig(classifier=ClassifierOptions(C=2.0))
    assert fingerprint(tiny_data(), a, ENTITIES) != fingerprint(tiny_data(), b, ENTITIES)


# -- models/ folder ----------------------------------------------------------------------------


def test_latest_points_at_the_newest_model(model: NluModel, tmp_path: Path) -> None:
    models = tmp_path / "models"
    save_model(model, models)
    other = train_nlu(tiny_data((example("yo", "greet"),)), default_pipeline(), ENTITIES, cross_validate=False)
    assert other.model_id != model.model_id
    save_model(other, models)
    assert (models / LATEST).read_text(encoding="utf-8").strip() == other.model_id
    assert load_model(models).model_id == other.model_id
    assert load_model(models / model.model_id).model_id == model.model_id
    # Saving the same model again replaces it in place and leaves no temporary folders.
    save_model(model, models)
    assert (models / LATEST).read_text(encoding="utf-8").strip() == model.model_id
    assert sorted(p.name for p in models.iterdir()) == sorted([LATEST, model.model_id, other.model_id])


def test_load_from_an_empty_folder_raises_with_a_fix(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match=r"Fix: run `taiwa train`"):
        load_model(tmp_path)
    assert issubclass(ModelNotFoundError, FileNotFoundError)


def test_latest_naming_a_missing_model_raises(tmp_path: Path) -> None:
    (tmp_path / LATEST).write_text("nlu-0000000000000000\n", encoding="utf-8")
    with pytest.raises(ModelNotFoundError):
        load_model(tmp_path)


def test_a_model_of_another_format_asks_for_force(model: NluModel, tmp_path: Path) -> None:
    folder = save_model(model, tmp_path)
    meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
    meta["format"] = ARTIFACT_FORMAT + 1
    (folder / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
    with pytest.raises(EngineError, match=r"taiwa train --force") as info:
        load_model(folder)
    assert str(ARTIFACT_FORMAT + 1) in str(info.value)
