"""The trained NLU model at run time: ``parse`` one utterance or ``parse_batch`` many.

Holds only what inference needs (vocabularies, weights, the tokenizer); loading it needs
neither scikit-learn's training code nor the training data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from engine.nlu.classify import LinearIntentModel
from engine.nlu.entities import (
    ExtractedEntity,
    LookupExtractor,
    RegexExtractor,
    TaggerModel,
    apply_synonyms,
    merge_entities,
)
from engine.nlu.featurize import Featurizer
from engine.nlu.tokenize import Tokenizer

RANKING_SIZE = 10


class IntentScore(NamedTuple):
    name: str
    confidence: float


@dataclass(frozen=True)
class ParseResult:
    """What the NLU understood of one message."""

    text: str
    intent: IntentScore
    ranking: tuple[IntentScore, ...]
    entities: tuple[ExtractedEntity, ...] = ()
    extras: Mapping[str, Any] = field(default_factory=dict)
    """e.g. ``llm_fallback`` details."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "intent": {"name": self.intent.name, "confidence": round(self.intent.confidence, 4)},
            "intent_ranking": [{"name": s.name, "confidence": round(s.confidence, 4)} for s in self.ranking],
            "entities": [e.to_dict() for e in self.entities],
            **dict(self.extras),
        }


@dataclass
class NluModel:
    model_id: str
    language: str
    tokenizer: Tokenizer
    featurizer: Featurizer
    classifier: LinearIntentModel
    regex: RegexExtractor | None = None
    lookup: LookupExtractor | None = None
    tagger: TaggerModel | None = None
    synonyms: Mapping[str, str] = field(default_factory=dict)
    card: Mapping[str, Any] = field(default_factory=dict)

    @property
    def intents(self) -> tuple[str, ...]:
        return self.classifier.classes

    def parse(self, text: str) -> ParseResult:
        """Intent ranking and entities of one utterance (the lean single-message path)."""
        tokens = self.tokenizer(text)
        idx, val = self.featurizer.transform_one(tokens, text)
        return self._result(text, tokens, self.classifier.proba_one(idx, val))

    def parse_batch(self, texts: Sequence[str]) -> list[ParseResult]:
        """Parse many utterances with one matrix product for the intents."""
        if not texts:
            return []
        token_lists, proba = self._proba(texts)
        tagged = self.tagger.extract_many(texts, token_lists) if self.tagger is not None else [None] * len(texts)
        return [
            self._result(t, toks, p, tags) for t, toks, p, tags in zip(texts, token_lists, proba, tagged, strict=True)
        ]

    def predict_intents(self, texts: Sequence[str]) -> tuple[list[str], npt.NDArray[np.float64]]:
        """Top intent and its confidence for many texts (no entities, no ranking)."""
        _, proba = self._proba(texts)
        top = proba.argmax(axis=1)
        classes = self.classifier.classes
        return [classes[i] for i in top], proba[np.arange(len(texts)), top]

    def _proba(self, texts: Sequence[str]) -> tuple[list[list[str]], npt.NDArray[np.float64]]:
        token_lists = [self.tokenizer(t) for t in texts]
        return token_lists, self.classifier.proba(self.featurizer.transform(token_lists, texts))

    def _result(
        self,
        text: str,
        tokens: Sequence[str],
        proba: npt.NDArray[np.float64],
        tagged: list[ExtractedEntity] | None = None,
    ) -> ParseResult:
        p: list[float] = proba.tolist()
        # A few dozen intents: sorting Python floats beats NumPy's calls on so short an array.
        order = sorted(range(len(p)), key=p.__getitem__, reverse=True)[:RANKING_SIZE]
        classes = self.classifier.classes
        ranking = tuple([IntentScore(classes[i], p[i]) for i in order])
        return ParseResult(text, ranking[0], ranking, tuple(self.extract_entities(text, tokens, tagged)))

    def extract_entities(
        self, text: str, tokens: Sequence[str], tagged: list[ExtractedEntity] | None = None
    ) -> list[ExtractedEntity]:
        """``tagged``: the tagger's entities of ``text`` when the caller has them (a batch)."""
        groups: list[list[ExtractedEntity]] = []
        if self.tagger is not None:
            groups.append(tagged if tagged is not None else self.tagger.extract(text, tokens))
        if self.regex is not None:
            groups.append(self.regex.extract(text))
        if self.lookup is not None:
            groups.append(self.lookup.extract(text))
        if not groups:
            return []
        merged = merge_entities(groups)
        return apply_synonyms(merged, self.synonyms) if self.synonyms else merged
