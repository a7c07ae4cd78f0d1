"""Entity extraction: regexes, lookup tables, synonyms, merging, and the trained tagger."""

from __future__ import annotations

import re

import pytest

from engine.diagnostics import Location
from engine.nlu.entities import (
    ExtractedEntity,
    LookupExtractor,
    RegexExtractor,
    TaggerModel,
    _label,
    _unlabel,
    apply_synonyms,
    bio_tags,
    fit_tagger,
    merge_entities,
    token_offsets,
)
from engine.nlu.tokenize import Tokenizer
from engine.nlu.training_data import Example, parse_annotated


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    return Tokenizer("en")


def example(raw: str, intent: str = "inform") -> Example:
    text, spans = parse_annotated(raw)
    return Example(text, intent, spans, Location("nlu_data/test.yml"))


def ent(entity: str, start: int, end: int, text: str = "x", extractor: str = "test") -> ExtractedEntity:
    return ExtractedEntity(entity, text, start, end, text, extractor)


def spans(found: list[ExtractedEntity]) -> list[tuple[str, str, int, int]]:
    return [(e.entity, e.value, e.start, e.end) for e in found]


# -- regex and lookup -------------------------------------------------------------------------


def test_regex_extractor_offsets() -> None:
    rx = RegexExtractor((("customer_id", re.compile(r"C\d{5}")), ("empty", re.compile(r"x*"))))
    text = "ids C12345 and C67890."
    found = rx.extract(text)
    assert spans(found) == [("customer_id", "C12345", 4, 10), ("customer_id", "C67890", 15, 21)]
    for e in found:
        assert text[e.start : e.end] == e.text == e.value
        assert e.extractor == "regex"


def test_lookup_matches_whole_words_only() -> None:
    lk = LookupExtractor.build([("priority", ["high", "low"])])
    assert lk.extract("take the highway, it's lower") == []
    assert lk.extract("thigh") == []
    assert spans(lk.extract("high priority")) == [("priority", "high", 0, 4)]
    assert spans(lk.extract("make it (low).")) == [("priority", "low", 9, 12)]


def test_lookup_is_case_insensitive_and_keeps_the_surface_text() -> None:
    lk = LookupExtractor.build([("city", ["Paris", "new york"])])
    found = lk.extract("from PARIS to New York")
    assert spans(found) == [("city", "PARIS", 5, 10), ("city", "New York", 14, 22)]
    assert all(e.extractor == "lookup" for e in found)


def test_lookup_prefers_the_longest_element() -> None:
    lk = LookupExtractor.build([("priority", ["urgent", "not urgent", " "])])
    assert spans(lk.extract("this is not urgent")) == [("priority", "not urgent", 8, 18)]


def test_lookup_escapes_regex_characters() -> None:
    lk = LookupExtractor.build([("language", ["c++", "c#", "a.b"])])
    assert spans(lk.extract("I write c++ and c#")) == [("language", "c++", 8, 11), ("language", "c#", 16, 18)]
    assert lk.extract("axb") == []


def test_lookup_with_no_elements_has_no_pattern() -> None:
    assert LookupExtractor.build([("empty", []), ("blank", ["  "])]).patterns == ()


# -- synonyms and merging ----------------------------------------------------------------------


def test_apply_synonyms_maps_case_insensitively() -> None:
    found = [
        ExtractedEntity("priority", "URGENT", 0, 6, "URGENT", "lookup"),
        ExtractedEntity("priority", "Asap", 7, 11, "Asap", "tagger"),
        ExtractedEntity("priority", "medium", 12, 18, "medium", "lookup"),
    ]
    mapped = apply_synonyms(found, {"urgent": "high", "asap": "high"})
    assert [e.value for e in mapped] == ["high", "high", "medium"]
    assert [e.text for e in mapped] == ["URGENT", "Asap", "medium"]  # the surface form is kept
    assert [(e.start, e.end) for e in mapped] == [(0, 6), (7, 11), (12, 18)]


def test_merge_keeps_the_longer_span_on_overlap() -> None:
    short = ent("priority", 8, 14, "urgent", "lookup")
    long = ent("priority", 4, 14, "not urgent", "tagger")
    apart = ent("priority", 20, 24, "high", "lookup")
    merged = merge_entities([[short, apart], [long]])
    assert merged == [long, apart]


def test_merge_collapses_duplicates_and_prefers_the_first_extractor() -> None:
    tagger = ent("customer_id", 4, 10, "C12345", "tagger")
    regex = ent("customer_id", 4, 10, "C12345", "regex")
    assert merge_entities([[tagger], [regex]]) == [tagger]


def test_merge_on_equal_length_keeps_the_earlier() -> None:
    a = ent("city", 0, 5)
    b = ent("city", 3, 8)
    assert merge_entities([[b], [a]]) == [a]


def test_merge_sorts_by_position() -> None:
    found = [ent("a", 10, 12), ent("b", 0, 3), ent("c", 5, 7)]
    assert [e.entity for e in merge_entities([found])] == ["b", "c", "a"]


def test_entity_to_dict_includes_role_and_group_only_when_set() -> None:
    plain = ExtractedEntity("city", "Paris", 0, 5, "Paris", "tagger", confidence=0.123456)
    assert plain.to_dict() == {
        "entity": "city",
        "value": "Paris",
        "start": 0,
        "end": 5,
        "text": "Paris",
        "extractor": "tagger",
        "confidence": 0.1235,
    }
    both = ExtractedEntity("city", "Paris", 0, 5, "Paris", "tagger", role="from", group="g1")
    assert both.to_dict()["role"] == "from" and both.to_dict()["group"] == "g1"


# -- the tagger --------------------------------------------------------------------------------


def test_token_offsets_skip_tokens_not_in_the_text() -> None:
    assert token_offsets("a b a", ["a", "zz", "a"]) == [("a", 0, 1), ("a", 4, 5)]


def test_bio_tags_of_an_annotated_example(tok: Tokenizer) -> None:
    ex = example('open an [urgent]{"entity": "priority", "value": "high"} ticket for [New York](city)')
    assert ex.text == "open an urgent ticket for New York"
    assert bio_tags(ex.text, tok(ex.text), ex) == ["O", "O", "B-priority", "O", "O", "B-city", "I-city"]


def test_bio_tags_carry_roles_and_groups(tok: Tokenizer) -> None:
    ex = example(
        'from [Berlin]{"entity": "city", "role": "from", "group": "1"} to [Rome]{"entity": "city", "role": "to"}'
    )
    assert bio_tags(ex.text, tok(ex.text), ex) == ["O", "B-city#from@1", "O", "B-city#to"]


@pytest.mark.parametrize(
    ("entity", "role", "group"),
    [("city", None, None), ("city", "from", None), ("city", None, "g1"), ("city", "to", "g2"), ("a_b-c", "r", "1")],
)
def test_label_round_trip(entity: str, role: str | None, group: str | None) -> None:
    assert _unlabel(_label(entity, role, group)) == (entity, role, group)


IDS = ["C12345", "C48213", "C20481", "C90210", "C11111", "C31415", "C27182", "C55501", "C60606", "C70007"]
TEMPLATES = [
    "my id is [{id}](customer_id)",
    "my customer id is [{id}](customer_id)",
    "check account [{id}](customer_id)",
    "look up customer [{id}](customer_id) please",
    "the account number is [{id}](customer_id), thanks",
    "[{id}](customer_id)",
    "it's [{id}](customer_id)",
    "status of account [{id}](customer_id) please",
    "can you check [{id}](customer_id) for me",
    "I am customer [{id}](customer_id)",
]
PLAIN = [
    "hello there",
    "I want to open a ticket",
    "check my account",
    "what plan am I on",
    "thanks a lot",
    "my account is broken",
    "can you check my invoice",
    "goodbye",
    "the number is wrong",
    "I need help with my id card",
]


@pytest.fixture(scope="module")
def id_tagger(tok: Tokenizer) -> TaggerModel:
    examples = [example(t.format(id=IDS[(i * 3 + j) % len(IDS)])) for i, t in enumerate(TEMPLATES) for j in range(3)]
    examples += [example(p, "other") for p in PLAIN]
    tagger = fit_tagger(examples, tok)
    assert tagger is not None
    return tagger


@pytest.mark.parametrize(
    "text",
    ["please look into account C99887 today", "C24680", "my customer number is C13579, can you check it?"],
)
def test_tagger_finds_an_unseen_id(id_tagger: TaggerModel, tok: Tokenizer, text: str) -> None:
    found = id_tagger.extract(text, tok(text))
    ids = [e for e in found if e.entity == "customer_id"]
    assert len(ids) == 1, found
    (e,) = ids
    expected = re.search(r"C\d{5}", text)
    assert expected is not None
    assert (e.start, e.end, e.value, e.text) == (expected.start(), expected.end(), expected.group(), expected.group())
    assert e.extractor == "tagger"
    assert 0.0 < e.confidence <= 1.0
    assert e.role is None and e.group is None


def test_tagger_finds_nothing_in_plain_text(id_tagger: TaggerModel, tok: Tokenizer) -> None:
    text = "hello, can you help me with my plan"
    assert id_tagger.extract(text, tok(text)) == []
    assert id_tagger.extract("", tok("")) == []


def test_tagger_learns_roles(tok: Tokenizer) -> None:
    cities = ["Berlin", "Paris", "Rome", "Madrid", "Vienna", "Oslo", "Lisbon", "Prague"]
    examples = []
    for i, a in enumerate(cities):
        b = cities[(i + 3) % len(cities)]
        c = cities[(i + 5) % len(cities)]
        examples.append(
            example(f'fly from [{a}]{{"entity": "city", "role": "from"}} to [{b}]{{"entity": "city", "role": "to"}}')
        )
        examples.append(example(f'a flight to [{c}]{{"entity": "city", "role": "to"}} please'))
        examples.append(example(f'leaving from [{b}]{{"entity": "city", "role": "from"}} tomorrow'))
    tagger = fit_tagger(examples, tok)
    assert tagger is not None
    text = "fly from Athens to Dublin"
    found = tagger.extract(text, tok(text))
    assert [(e.entity, e.value, e.role, e.start, e.end) for e in found] == [
        ("city", "Athens", "from", 9, 15),
        ("city", "Dublin", "to", 19, 25),
    ]


def test_tagger_joins_multi_token_entities(tok: Tokenizer) -> None:
    places = ["New York", "Los Angeles", "San Francisco", "Las Vegas", "New Orleans", "San Diego"]
    examples = [example(f"I live in [{p}](city)") for p in places]
    examples += [example(f"send it to [{p}](city) please") for p in places]
    examples += [example(p, "other") for p in PLAIN]
    tagger = fit_tagger(examples, tok)
    assert tagger is not None
    text = "I live in San Jose"
    assert spans(tagger.extract(text, tok(text))) == [("city", "San Jose", 10, 18)]


def test_no_annotations_means_no_tagger(tok: Tokenizer) -> None:
    assert fit_tagger([example(p, "other") for p in PLAIN], tok) is None
    assert fit_tagger([], tok) is None


def test_tagger_scores_are_the_sum_of_each_tokens_features(id_tagger: TaggerModel, tok: Tokenizer) -> None:
    # The tagger scores a token from cached per-word parts; they must add up to exactly the
    # features it was trained on (token_features), boundaries and shapes included.
    import numpy as np

    from engine.nlu.entities import token_features

    texts = [t.format(id="C55555") for t in TEMPLATES] + PLAIN + ["C1", "a", "Hi THERE, id C12345 ok?", "<s> </s>"]
    for text in texts:
        words = [s[0] for s in token_offsets(text, tok(text))]
        for i in range(len(words)):
            rows = [id_tagger.vocab[f] for f in token_features(words, i) if f in id_tagger.vocab]
            expected = id_tagger.weights[rows].sum(axis=0)
            parts = [id_tagger._part(0, words[i])]
            parts += [id_tagger._part(d, words[i + d] if 0 <= i + d < len(words) else None) for d in (-2, -1, 1, 2)]
            np.testing.assert_allclose(np.sum(parts, axis=0), expected, atol=1e-5, err_msg=f"{text!r} token {i}")


def test_tagger_batch_equals_one_by_one(id_tagger: TaggerModel, tok: Tokenizer) -> None:
    texts = [t.format(id=IDS[i % len(IDS)]) for i, t in enumerate(TEMPLATES)] + PLAIN + [""]
    batch = id_tagger.extract_many(texts, [tok(t) for t in texts])
    assert batch == [id_tagger.extract(t, tok(t)) for t in texts]
