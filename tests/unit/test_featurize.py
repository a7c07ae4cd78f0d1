"""TF-IDF features: the lean inference path equals scikit-learn's vectorizer.

The model is fitted with ``TfidfVectorizer`` but applied with ``Featurizer.transform_one``;
a mismatch would silently change every prediction between training and serving.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer

from engine.nlu.featurize import (
    Block,
    Featurizer,
    TfidfOptions,
    char_grams,
    fit_featurizer,
    normalize,
    word_grams,
)
from engine.nlu.tokenize import Tokenizer

CORPUS = [
    "I want to open a support ticket",
    "open a ticket, it's urgent",
    "create a high priority ticket please",
    "check my account C12345",
    "my customer id is C48213",
    "what plan am I on?",
    "hello there",
    "hi, good morning!",
    "bye bye, see you later",
    "Thanks a lot 😀",
    "I need to talk to a human",
    "agent please, this is urgent urgent urgent",
]
UNSEEN = [
    "open a ticket",
    "my id is C99999, check the account",
    "completely novel zyzzyva words",
    "urgent urgent ticket ticket ticket",
    "HELLO THERE",
    "",
]


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    return Tokenizer("en")


def dense(fz: Featurizer, tokens: Sequence[str], text: str) -> npt.NDArray[np.float64]:
    idx, val = fz.transform_one(tokens, text)
    out = np.zeros(fz.size)
    np.add.at(out, idx, val)
    return out


def sklearn_block(
    train: list[list[str]], test: list[list[str]], analyzer: object, opts: TfidfOptions
) -> tuple[TfidfVectorizer, npt.NDArray[np.float64]]:
    vec = TfidfVectorizer(analyzer=analyzer, sublinear_tf=opts.sublinear_tf, binary=opts.binary, min_df=opts.min_df)
    vec.fit(train)
    return vec, np.asarray(vec.transform(test).toarray())


def block_slice(v: npt.NDArray[np.float64], block: Block) -> npt.NDArray[np.float64]:
    return v[block.offset : block.offset + block.size]


@pytest.mark.parametrize(
    "opts",
    [
        TfidfOptions(),
        TfidfOptions(word_ngrams=(1, 3), char_ngrams=(1, 4)),
        TfidfOptions(word_ngrams=(1, 1), char_ngrams=(3, 3), normalize_digits=True),
        TfidfOptions(min_df=2),
        TfidfOptions(binary=False),
        TfidfOptions(binary=False, sublinear_tf=False),
    ],
)
def test_transform_one_equals_sklearn(tok: Tokenizer, opts: TfidfOptions) -> None:
    train = [normalize(tok(t), opts.normalize_digits) for t in CORPUS]
    test_texts = CORPUS + UNSEEN
    test = [normalize(tok(t), opts.normalize_digits) for t in test_texts]
    fz = fit_featurizer([tok(t) for t in CORPUS], opts)
    word_vec, word_expected = sklearn_block(train, test, lambda ts: word_grams(ts, *opts.word_ngrams), opts)
    char_vec, char_expected = sklearn_block(train, test, lambda ts: char_grams(ts, *opts.char_ngrams), opts)
    assert fz.word.vocab == word_vec.vocabulary_
    assert fz.char.vocab == char_vec.vocabulary_
    for i, text in enumerate(test_texts):
        got = dense(fz, tok(text), text)
        assert np.allclose(block_slice(got, fz.word), word_expected[i], atol=1e-6), text
        assert np.allclose(block_slice(got, fz.char), char_expected[i], atol=1e-6), text


def test_char_grams_are_sklearns_char_wb(tok: Tokenizer) -> None:
    analyzer = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5)).build_analyzer()
    for text in CORPUS + UNSEEN:
        tokens = normalize(tok(text), False)
        assert char_grams(tokens, 2, 5) == analyzer(" ".join(tokens)), text


def test_word_grams_order_and_content() -> None:
    assert word_grams(["a", "b", "c"], 1, 2) == ["a", "b", "c", "a b", "b c"]
    assert word_grams(["a", "b"], 2, 3) == ["a b"]
    assert word_grams([], 1, 2) == []


def test_batch_transform_equals_stacked_transform_one(tok: Tokenizer) -> None:
    fz = fit_featurizer([tok(t) for t in CORPUS], TfidfOptions(), regexes=[("cid", ["C\\d{5}"])])
    texts = CORPUS + UNSEEN
    token_lists = [tok(t) for t in texts]
    x = fz.transform(token_lists, texts)
    assert x.shape == (len(texts), fz.size)
    assert x.dtype == np.float32
    stacked = np.vstack([dense(fz, toks, t) for toks, t in zip(token_lists, texts, strict=True)])
    assert np.allclose(x.toarray(), stacked)


@pytest.mark.parametrize("opts", [TfidfOptions(binary=False), TfidfOptions(binary=False, sublinear_tf=False)])
def test_batch_transform_equals_stacked_transform_one_with_counts(tok: Tokenizer, opts: TfidfOptions) -> None:
    texts = [*CORPUS, "ticket ticket ticket please", "open open a ticket ticket"]
    token_lists = [tok(t) for t in texts]
    fz = fit_featurizer(token_lists, opts)
    stacked = np.vstack([dense(fz, toks, t) for toks, t in zip(token_lists, texts, strict=True)])
    assert np.allclose(fz.transform(token_lists, texts).toarray(), stacked)


def test_token_cache_eviction_does_not_change_vectors(tok: Tokenizer, monkeypatch: pytest.MonkeyPatch) -> None:
    import engine.nlu.featurize as featurize

    fz = fit_featurizer([tok(t) for t in CORPUS], TfidfOptions())
    texts = CORPUS + UNSEEN
    token_lists = [tok(t) for t in texts]
    before = fz.transform(token_lists, texts).toarray()
    monkeypatch.setattr(featurize, "TOKEN_CACHE_SIZE", 3)
    fresh = fit_featurizer([tok(t) for t in CORPUS], TfidfOptions())
    after = fresh.transform(token_lists, texts).toarray()
    assert len(fresh._token_columns) <= 3
    assert np.allclose(before, after)


def test_batch_transform_of_nothing(tok: Tokenizer) -> None:
    fz = fit_featurizer([tok(t) for t in CORPUS], TfidfOptions())
    assert fz.transform([], []).shape == (0, fz.size)


def test_unseen_ngrams_are_ignored(tok: Tokenizer) -> None:
    fz = fit_featurizer([tok(t) for t in CORPUS], TfidfOptions(char_ngrams=(3, 3)))
    idx, val = fz.transform_one(["qqq"], "qqq")
    assert len(idx) == 0 and len(val) == 0
    # A known word next to an unknown one gives the same word-block vector as the known word alone.
    known = dense(fz, ["ticket"], "ticket")
    mixed = dense(fz, ["ticket", "zzzz"], "ticket zzzz")
    assert np.allclose(block_slice(known, fz.word), block_slice(mixed, fz.word))


def test_each_block_has_unit_norm_and_indices_in_range(tok: Tokenizer) -> None:
    fz = fit_featurizer([tok(t) for t in CORPUS], TfidfOptions())
    for text in CORPUS:
        idx, _ = fz.transform_one(tok(text), text)
        assert idx.min() >= 0 and idx.max() < fz.size
        v = dense(fz, tok(text), text)
        assert np.linalg.norm(block_slice(v, fz.word)) == pytest.approx(1.0, abs=1e-5)
        assert np.linalg.norm(block_slice(v, fz.char)) == pytest.approx(1.0, abs=1e-5)


def test_char_weight_scales_the_char_block(tok: Tokenizer) -> None:
    tokens = [tok(t) for t in CORPUS]
    plain = fit_featurizer(tokens, TfidfOptions())
    heavy = fit_featurizer(tokens, TfidfOptions(char_weight=0.25))
    text = "open a ticket please"
    a, b = dense(plain, tok(text), text), dense(heavy, tok(text), text)
    assert np.linalg.norm(block_slice(b, heavy.char)) == pytest.approx(0.25, abs=1e-5)
    assert np.allclose(block_slice(b, heavy.char), 0.25 * block_slice(a, plain.char), atol=1e-6)
    assert np.allclose(block_slice(a, plain.word), block_slice(b, heavy.word))


def test_normalize_digits_maps_digits_to_zero(tok: Tokenizer) -> None:
    assert normalize(["C12345", "Abc", "9"], True) == ["c00000", "abc", "0"]
    assert normalize(["C12345"], False) == ["c12345"]
    fz = fit_featurizer([tok(t) for t in CORPUS], TfidfOptions(normalize_digits=True))
    assert "c00000" in fz.word.vocab
    assert not any(ch.isdigit() and ch != "0" for gram in fz.word.vocab for ch in gram)
    # Two ids of the same shape get identical features.
    assert np.allclose(dense(fz, ["C12345"], "C12345"), dense(fz, ["C98765"], "C98765"))


def test_regex_flags_fire(tok: Tokenizer) -> None:
    fz = fit_featurizer(
        [tok(t) for t in CORPUS],
        TfidfOptions(pattern_weight=2.0),
        regexes=[("customer_id", ["C\\d{5}"]), ("email", ["\\S+@\\S+", "mail"]), ("empty", [])],
    )
    assert [n for n, _ in fz.patterns.regexes] == ["customer_id", "email"]  # no patterns: no flag
    off = fz.patterns.offset
    assert off == fz.word.size + fz.char.size
    text = "my id is C55555"
    idx, val = fz.transform_one(tok(text), text)
    assert off in idx.tolist() and off + 1 not in idx.tolist()
    assert val[idx.tolist().index(off)] == pytest.approx(2.0)
    text = "write to a@b.org with C11111"
    assert {off, off + 1} <= set(fz.transform_one(tok(text), text)[0].tolist())


def test_lookup_flags_fire_on_whole_tokens(tok: Tokenizer) -> None:
    fz = fit_featurizer(
        [tok(t) for t in CORPUS],
        TfidfOptions(),
        lookups=[("priority", ["High", "urgent", "not urgent"]), ("city", ["Paris"])],
    )
    off = fz.patterns.offset

    def flags(text: str) -> set[int]:
        return {i - off for i in fz.transform_one(tok(text), text)[0].tolist() if i >= off}

    assert flags("this is HIGH priority") == {0}
    assert flags("it is not urgent at all") == {0}
    assert flags("fly me to paris") == {1}
    assert flags("take the highway") == set()
    assert flags("the urgently needed parisian") == set()


def test_multiword_lookup_flag_needs_word_boundaries(tok: Tokenizer) -> None:
    fz = fit_featurizer([tok(t) for t in CORPUS], TfidfOptions(), lookups=[("priority", ["no rush"])])
    off = fz.patterns.offset
    assert off in fz.transform_one(tok("no rush, really"), "no rush, really")[0].tolist()
    text = "the piano rushed in"
    assert off not in fz.transform_one(tok(text), text)[0].tolist()


def test_options_from_dict_tuples_ranges() -> None:
    opts = TfidfOptions.from_dict({"word_ngrams": [1, 3], "char_ngrams": [2, 4], "char_weight": 0.5})
    assert opts == TfidfOptions(word_ngrams=(1, 3), char_ngrams=(2, 4), char_weight=0.5)


def test_options_from_dict_rejects_a_misspelt_option() -> None:
    with pytest.raises(ValueError, match=r"no option 'char_wieght'.*did you mean 'char_weight'"):
        TfidfOptions.from_dict({"char_wieght": 0.5})
