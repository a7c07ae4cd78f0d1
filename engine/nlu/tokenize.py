"""Tokenisation with spaCy, made cheap for single utterances.

spaCy's tokenizer splits text on whitespace and tokenizes each chunk on its own (prefix,
suffix, infix rules and exceptions apply inside a chunk). Building a ``Doc`` per utterance
costs ~140 µs here; caching the tokens of each whitespace chunk gives exactly the same
tokens for ~2 µs (checked against whole-text tokenization on every CLINC150 and BANKING77
utterance in ``tests/unit/test_tokenize.py``).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

from engine.diagnostics import EngineError

CACHE_SIZE = 200_000

UNSPACED_LANGUAGES = frozenset({"ja", "zh", "th"})
"""Languages written without spaces between words: tokenized whole, and lookup tables
match inside words (there are no word boundaries to respect)."""


def uses_spaces(lang: str) -> bool:
    """Whether words of ``lang`` are separated by spaces (so word boundaries mean something)."""
    return lang.split("_")[0].split("-")[0].lower() not in UNSPACED_LANGUAGES


class TokenizerError(EngineError, ValueError):
    """The configured language or spaCy pipeline is not available."""


def load_spacy(lang: str, model: str | None = None) -> Any:
    """``spacy.load(model)`` when a pipeline is configured, else ``spacy.blank(lang)``."""
    import spacy

    try:
        if model:
            return spacy.load(model, exclude=["parser", "ner", "tagger", "lemmatizer", "textcat"])
        return spacy.blank(lang)
    except (OSError, ImportError, ValueError) as exc:
        what = f"spaCy pipeline {model!r}" if model else f"spaCy language {lang!r}"
        fix = (
            "install the pipeline package, or remove `model:` from the tokenizer in policies/pipeline.yml"
            if model
            else "use a language code spaCy supports (en, ja, de, fr, ...); Japanese needs `sudachipy` and `sudachidict-core`"
        )
        raise TokenizerError(f"cannot load {what}: {str(exc).rstrip('.')}. Fix: {fix}") from exc


class Tokenizer:
    """spaCy tokens of a text (surface forms, not lower-cased), with a chunk cache."""

    def __init__(self, lang: str, model: str | None = None) -> None:
        self.lang = lang
        self.model = model
        self._nlp = load_spacy(lang, model)
        # Languages without spaces between words must be tokenized whole.
        self._chunked = uses_spaces(lang)
        self._cache: OrderedDict[str, tuple[str, ...]] = OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, text: str) -> list[str]:
        if not self._chunked:
            return [t.text for t in self._nlp.tokenizer(text) if not t.is_space]
        out: list[str] = []
        cache = self._cache
        for chunk in text.split():
            toks = cache.get(chunk)
            if toks is None:
                toks = tuple(t.text for t in self._nlp.tokenizer(chunk))
                with self._lock:
                    cache[chunk] = toks
                    if len(cache) > CACHE_SIZE:
                        cache.popitem(last=False)
            out.extend(toks)
        return out

    def spans(self, text: str) -> list[tuple[str, int, int]]:
        """Tokens with character offsets (for entity extraction)."""
        doc = self._nlp.tokenizer(text)
        return [(t.text, t.idx, t.idx + len(t.text)) for t in doc if not t.is_space]
