"""The chunk-cached tokenizer gives exactly spaCy's whole-text tokens.

``Tokenizer.__call__`` tokenizes each whitespace chunk on its own and caches the result;
the NLU's features (and so every trained model) depend on it matching
``spacy.blank(lang).tokenizer(text)`` token for token.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import spacy

from engine.nlu import tokenize
from engine.nlu.tokenize import Tokenizer, TokenizerError

DATASETS = Path(__file__).resolve().parents[3] / "shared" / "datasets"
DATASET_FILES = sorted(DATASETS.glob("*/*.jsonl")) if DATASETS.is_dir() else []

HANDWRITTEN = [
    "I want to open a ticket, it's urgent!",
    "my customer id is C12345.",
    "Don't you think we can't, won't or shouldn't?",
    "I'm here; you're there; they'd've gone.",
    "Visit https://example.com/path?q=1&x=2#frag, or www.example.org.",
    "mail me at jane.doe+bot@example.co.uk!",
    "It costs $1,234.56 (about €1.100,00) — or 12% off.",
    "Call +1 (555) 123-4567 ext. 89 before 10:30am on 2024-05-01.",
    "pizza 🍕🍕 please!!! 😀👍🏽",
    "🇯🇵 flags and 👩‍👩‍👧 families",
    "multiple    spaces   between words",
    "tabs\tbetween\t\twords",
    "new\nlines\n\nand\r\nwindows line ends",
    "  leading and trailing spaces  ",
    "\t\n mixed \t whitespace \n ",
    "",
    "   ",
    "U.S.A. vs. U.K. e.g. i.e. etc. Mr. Smith",
    "well...maybe?!? (or not) [sure] {ok} <tag>",
    "\"quoted\" 'single' `back` «guillemets» “curly”",
    "hyphen-ated, slash/separated, under_score, dot.separated",
    "3rd 21st 100km 5kg 2x 10-20 1/2 3.14 -5 +7 1e10",
    "#hashtag @mention :) :-( <3 ;)",
    "naïve café résumé Straße ÆØÅ",
    "ca\u00a0nbsp\u2003em\u3000ideographic spaces",
    "o'clock rock'n'roll y'all gonna gotta",
    "C12345 c-12345 ID:C12345 (C12345)",
    "What's the status of ticket #4521?",
    "hello,world;foo:bar!baz?qux",
    "...",
    "'",
    "a",
]

_WORD_TEXT = """
hello I want to open a ticket it's urgent don't can't we'll C12345 $5 10% 3.14 1,000 2024-01-02
https://x.io/a?b=c foo@bar.com 😀 🍕🍕 👍🏽 café U.S. e.g. (hi) [ok] "yes" 'no' well... hey! why? ok,
end. -- — #42 @bot :) <3 a/b x-y snake_case ÅSA über 1st 5km +44 O'Neil rock'n'roll y'all gonna Mr. vs. !!!
"""
_WORDS = _WORD_TEXT.split()
_SEPARATORS = [" ", " ", " ", "  ", "\t", "\n", " \t ", "\r\n", "\u00a0", "   "]


def generated_sentences(n: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        words = [rng.choice(_WORDS) for _ in range(rng.randint(1, 12))]
        text = words[0]
        for w in words[1:]:
            text += rng.choice(_SEPARATORS) + w
        if rng.random() < 0.2:
            text = rng.choice(_SEPARATORS) + text
        if rng.random() < 0.2:
            text += rng.choice(_SEPARATORS)
        out.append(text)
    return out


SENTENCES = HANDWRITTEN + generated_sentences(300)


@pytest.fixture(scope="module")
def nlp() -> Any:
    return spacy.blank("en")


def spacy_tokens(nlp: Any, text: str) -> list[str]:
    return [t.text for t in nlp.tokenizer(text) if not t.is_space]


def test_cached_tokens_equal_whole_text_tokens(nlp: Any) -> None:
    tok = Tokenizer("en")
    for text in SENTENCES:
        assert tok(text) == spacy_tokens(nlp, text), repr(text)
    # The second pass is served from the cache and must not change anything.
    for text in SENTENCES:
        assert tok(text) == spacy_tokens(nlp, text), repr(text)


def test_tokens_keep_surface_case(nlp: Any) -> None:
    assert Tokenizer("en")("Hello WORLD, I'm Bob") == ["Hello", "WORLD", ",", "I", "'m", "Bob"]


def test_spans_are_offsets_into_the_text(nlp: Any) -> None:
    tok = Tokenizer("en")
    for text in SENTENCES:
        spans = tok.spans(text)
        assert [s[0] for s in spans] == tok(text), repr(text)
        for word, start, end in spans:
            assert text[start:end] == word


def test_cache_eviction_keeps_results_correct(nlp: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tokenize, "CACHE_SIZE", 5)
    tok = Tokenizer("en")
    for _ in range(2):
        for text in SENTENCES[:80]:
            assert tok(text) == spacy_tokens(nlp, text), repr(text)
            assert len(tok._cache) <= 5


def test_cache_is_bounded_and_evicts_oldest(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tokenize, "CACHE_SIZE", 3)
    tok = Tokenizer("en")
    tok("one two three four")
    assert list(tok._cache) == ["two", "three", "four"]


def test_unknown_language_raises_with_a_fix() -> None:
    with pytest.raises(TokenizerError) as info:
        Tokenizer("qq")
    message = str(info.value)
    assert "'qq'" in message
    assert "Fix:" in message


def test_missing_spacy_pipeline_raises_with_a_fix() -> None:
    with pytest.raises(TokenizerError) as info:
        Tokenizer("en", "no_such_pipeline_installed")
    assert "no_such_pipeline_installed" in str(info.value)
    assert "Fix:" in str(info.value)


def test_tokenizer_error_is_a_value_error() -> None:
    assert issubclass(TokenizerError, ValueError)


def test_language_without_spaces_is_tokenized_whole() -> None:
    nlp_zh = spacy.blank("zh")
    tok = Tokenizer("zh")
    for text in ["我想订披萨。", "我想 订 披萨", "hello 世界!"]:
        assert tok(text) == [t.text for t in nlp_zh.tokenizer(text) if not t.is_space]


def dataset_utterances() -> Iterator[str]:
    for path in DATASET_FILES:
        with path.open(encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    yield json.loads(line)["text"]


@pytest.mark.skipif(
    not any(p.parent.name in ("banking77", "clinc150") for p in DATASET_FILES),
    reason=f"the BANKING77 / CLINC150 JSONL files are not in {DATASETS}",
)
def test_every_dataset_utterance_matches_spacy(nlp: Any) -> None:
    tok = Tokenizer("en")
    n = 0
    mismatches = []
    for text in dataset_utterances():
        n += 1
        if tok(text) != spacy_tokens(nlp, text):
            mismatches.append(text)
    assert n > 10_000
    assert mismatches == []
