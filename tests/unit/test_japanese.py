"""Japanese: spaCy's ``ja`` tokenizer (SudachiPy) and a small ``language: ja`` project that
trains and parses, entities included."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.nlu.artifact import load_model
from engine.nlu.entities import LookupExtractor
from engine.nlu.featurize import PatternFlags
from engine.nlu.model import NluModel
from engine.nlu.tokenize import Tokenizer, uses_spaces
from engine.nlu.train import train_project

JA_PROJECT = Path(__file__).parent.parent / "fixtures" / "ja"


@pytest.fixture(scope="module")
def ja_model(tmp_path_factory: pytest.TempPathFactory) -> NluModel:
    out = tmp_path_factory.mktemp("ja-models")
    outcome = train_project(JA_PROJECT, out=out)
    return load_model(outcome.model_dir)


def test_japanese_is_split_into_words_not_characters_or_sentences() -> None:
    tok = Tokenizer("ja")
    assert tok("東京から大阪までの新幹線を予約したい") == [
        "東京",
        "から",
        "大阪",
        "まで",
        "の",
        "新幹線",
        "を",
        "予約",
        "し",
        "たい",
    ]


def test_japanese_token_spans_point_into_the_text() -> None:
    text = "注文番号は A1234 です"
    spans = Tokenizer("ja").spans(text)
    assert all(text[start:end] == tok for tok, start, end in spans)
    assert ("注文", 0, 2) in spans
    assert "".join(tok for tok, _, _ in spans) == text.replace(" ", "")


def test_languages_without_spaces_are_known() -> None:
    assert not uses_spaces("ja")
    assert not uses_spaces("zh-Hans")
    assert uses_spaces("en")
    assert uses_spaces("de")


def test_lookup_matches_inside_a_japanese_word_but_not_inside_an_english_one() -> None:
    ja = LookupExtractor.build([("topping", ["メンマ"])], word_boundaries=False)
    assert [e.text for e in ja.extract("メンマラーメンをください")] == ["メンマ"]
    en = LookupExtractor.build([("topping", ["egg"])])
    assert en.extract("eggplant please") == []
    assert [e.text for e in en.extract("an egg please")] == ["egg"]


def test_lookup_feature_fires_inside_a_japanese_word() -> None:
    flags = PatternFlags(lookups=(("topping", frozenset({"メンマ"})),), word_boundaries=False)
    assert flags.active("メンマラーメン", ["メンマラーメン"]) == [0]
    assert flags.active("醤油ラーメン", ["醤油", "ラーメン"]) == []


@pytest.mark.parametrize(
    ("text", "intent"),
    [
        ("大盛りのラーメンを一つください", "order_ramen"),
        ("メンマラーメンをお願いします", "order_ramen"),
        ("A4321の注文はまだですか", "check_order"),
        ("何時まで営業していますか", "store_hours"),
        ("注文をキャンセルしたい", "cancel_order"),
        ("こんにちは、どうも", "greet"),
        ("ありがとう、またね", "goodbye"),
    ],
)
def test_japanese_project_understands_unseen_utterances(ja_model: NluModel, text: str, intent: str) -> None:
    assert ja_model.language == "ja"
    assert ja_model.parse(text).intent.name == intent


def test_japanese_entities_regex_lookup_synonym(ja_model: NluModel) -> None:
    got = {(e.entity, e.value, e.text) for e in ja_model.parse("大盛りでメンマをのせて、注文番号はA4321です").entities}
    assert ("size", "large", "大盛り") in got  # synonym -> canonical value
    assert ("topping", "メンマ", "メンマ") in got  # lookup table
    assert ("order_id", "A4321", "A4321") in got  # regex / tagger


def test_japanese_model_card_and_round_trip(ja_model: NluModel, tmp_path: Path) -> None:
    from engine.nlu.artifact import save_model

    folder = save_model(ja_model, tmp_path)
    again = load_model(folder)
    text = "並盛りでチャーシューラーメンをください"
    assert again.parse(text).to_dict() == ja_model.parse(text).to_dict()
    assert ja_model.card["language"] == "ja"
    assert ja_model.card["versions"]["sudachipy"]
