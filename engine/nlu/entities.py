"""Entity extraction: regexes, lookup tables, synonyms, and a tagger trained from the
inline annotations of the training data.

Every extractor returns :class:`ExtractedEntity` values with character offsets; the
synonym map then turns surface forms into canonical values ("urgent" -> "high").
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt

from engine.nlu.classify import binary_to_two_columns
from engine.nlu.training_data import Example


@dataclass(frozen=True, slots=True)
class ExtractedEntity:
    entity: str
    value: str
    start: int
    end: int
    text: str
    extractor: str
    role: str | None = None
    group: str | None = None
    confidence: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "entity": self.entity,
            "value": self.value,
            "start": self.start,
            "end": self.end,
            "text": self.text,
            "extractor": self.extractor,
            "confidence": round(self.confidence, 4),
        }
        if self.role is not None:
            out["role"] = self.role
        if self.group is not None:
            out["group"] = self.group
        return out


def token_offsets(text: str, tokens: Sequence[str]) -> list[tuple[str, int, int]]:
    """Character offsets of tokens that are substrings of ``text``, in order."""
    out: list[tuple[str, int, int]] = []
    pos = 0
    for tok in tokens:
        at = text.find(tok, pos)
        if at < 0:
            continue
        out.append((tok, at, at + len(tok)))
        pos = at + len(tok)
    return out


@dataclass(frozen=True)
class RegexExtractor:
    """``regex:`` entries of nlu_data whose name is an entity."""

    patterns: tuple[tuple[str, re.Pattern[str]], ...]

    def extract(self, text: str) -> list[ExtractedEntity]:
        out = []
        for entity, pattern in self.patterns:
            for m in pattern.finditer(text):
                if m.end() > m.start():
                    out.append(ExtractedEntity(entity, m.group(), m.start(), m.end(), m.group(), "regex"))
        return out


@dataclass(frozen=True)
class LookupExtractor:
    """``lookup:`` tables whose name is an entity; case-insensitive, whole words in languages
    written with spaces (anywhere in the text in Japanese or Chinese)."""

    patterns: tuple[tuple[str, re.Pattern[str]], ...]

    @classmethod
    def build(cls, tables: Iterable[tuple[str, Sequence[str]]], *, word_boundaries: bool = True) -> LookupExtractor:
        compiled = []
        for entity, elements in tables:
            words = sorted({e for e in elements if e.strip()}, key=len, reverse=True)
            if words:
                alternation = "|".join(re.escape(w) for w in words)
                pattern = rf"(?<!\w)(?:{alternation})(?!\w)" if word_boundaries else f"(?:{alternation})"
                compiled.append((entity, re.compile(pattern, re.IGNORECASE)))
        return cls(tuple(compiled))

    def extract(self, text: str) -> list[ExtractedEntity]:
        out = []
        for entity, pattern in self.patterns:
            for m in pattern.finditer(text):
                out.append(ExtractedEntity(entity, m.group(), m.start(), m.end(), m.group(), "lookup"))
        return out


def apply_synonyms(entities: Iterable[ExtractedEntity], synonyms: Mapping[str, str]) -> list[ExtractedEntity]:
    """Replace surface values by their canonical value (case-insensitive)."""
    out = []
    for e in entities:
        canonical = synonyms.get(e.value.lower())
        out.append(replace(e, value=canonical) if canonical is not None else e)
    return out


def merge_entities(groups: Iterable[Iterable[ExtractedEntity]]) -> list[ExtractedEntity]:
    """Union of several extractors' results; on overlap, the longer (then earlier) wins."""
    everything = sorted((e for g in groups for e in g), key=lambda e: (-(e.end - e.start), e.start))
    kept: list[ExtractedEntity] = []
    for e in everything:
        if all(e.end <= k.start or e.start >= k.end or (e.entity != k.entity) for k in kept):
            kept.append(e)
    return sorted(kept, key=lambda e: e.start)


# -- the trained tagger -------------------------------------------------------------------

_SHAPE = str.maketrans(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
    "XXXXXXXXXXXXXXXXXXXXXXXXXXxxxxxxxxxxxxxxxxxxxxxxxxxxdddddddddd",
)


@lru_cache(maxsize=65536)
def _shape(tok: str) -> str:
    s = tok.translate(_SHAPE)
    return re.sub(r"(.)\1{2,}", r"\1\1", s)


@lru_cache(maxsize=65536)
def _own_features(w: str) -> tuple[str, ...]:
    """The features a word has wherever it stands (cached: words repeat, formatting them does not
    need to)."""
    low = w.lower()
    feats = (
        "b",
        f"w={low}",
        f"p2={low[:2]}",
        f"p3={low[:3]}",
        f"s2={low[-2:]}",
        f"s3={low[-3:]}",
        f"sh={_shape(w)}",
        f"len={min(len(w), 8)}",
    )
    return (*feats, "has_digit") if any(c.isdigit() for c in w) else feats


def token_features(tokens: Sequence[str], i: int) -> list[str]:
    """Features of token ``i`` for the tagger: the word, its affixes and shape, its context."""
    feats = list(_own_features(tokens[i]))
    n = len(tokens)
    for d in (-2, -1, 1, 2):
        j = i + d
        feats.append(_neighbour_word(d, tokens[j] if 0 <= j < n else None))
    if i - 1 >= 0:
        feats.append(_neighbour_shape(-1, tokens[i - 1]))
    if i + 1 < n:
        feats.append(_neighbour_shape(1, tokens[i + 1]))
    return feats


def _neighbour_word(d: int, word: str | None) -> str:
    """The feature a token gets from the word ``d`` places away (``None``: past either end)."""
    return f"w{d}={word.lower() if word is not None else ('<s>' if d < 0 else '</s>')}"


def _neighbour_shape(d: int, word: str) -> str:
    """The feature a token gets from the shape of the word next to it (``d`` is -1 or 1)."""
    return f"sh{d:+d}={_shape(word)}"


def _label(entity: str, role: str | None, group: str | None) -> str:
    return entity + (f"#{role}" if role else "") + (f"@{group}" if group else "")


def _unlabel(label: str) -> tuple[str, str | None, str | None]:
    entity, _, rest = label.partition("#")
    group = None
    if "@" in (rest or entity):
        if rest:
            rest, _, group = rest.partition("@")
        else:
            entity, _, group = entity.partition("@")
    return entity, (rest or None), group


def bio_tags(text: str, tokens: Sequence[str], example: Example) -> list[str]:
    """BIO tags of the tokens of an annotated example."""
    spans = token_offsets(text, tokens)
    tags = ["O"] * len(spans)
    for ann in example.entities:
        first = True
        for k, (_, start, end) in enumerate(spans):
            if start >= ann.start and end <= ann.end:
                tags[k] = ("B-" if first else "I-") + _label(ann.entity, ann.role, ann.group)
                first = False
    return tags


_CONTEXT = (-2, -1, 1, 2)
"""Where the neighbours whose words are features of a token stand (see token_features)."""
PART_CACHE_SIZE = 100_000
"""Cached per-word score parts of the tagger (cleared when full)."""


@dataclass(frozen=True)
class TaggerModel:
    """A per-token linear classifier over BIO tags (runtime side)."""

    vocab: dict[str, int]
    weights: npt.NDArray[np.float32]
    """(n_features, n_tags)."""
    bias: npt.NDArray[np.float32]
    tags: tuple[str, ...]
    _parts: dict[tuple[int, str | None], npt.NDArray[np.float32]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def extract(self, text: str, tokens: Sequence[str]) -> list[ExtractedEntity]:
        return self.extract_many([text], [tokens])[0]

    def extract_many(self, texts: Sequence[str], token_lists: Sequence[Sequence[str]]) -> list[list[ExtractedEntity]]:
        """The entities of many texts, every token of all of them scored in one pass.

        A token's score is the bias plus the weights of its features (:func:`token_features`),
        and each feature comes from one word: the token's own (its form, affixes, shape) or a
        neighbour's within two places. So the score is a sum of five per-word parts, each
        cached the first time that word is seen in that position (:meth:`_part`); scoring a
        text is then a handful of look-ups and one array sum, not a feature string per
        feature and token.
        """
        all_spans = [token_offsets(text, tokens) for text, tokens in zip(texts, token_lists, strict=True)]
        part = self._part
        parts: list[npt.NDArray[np.float32]] = []
        for spans in all_spans:
            words = [s[0] for s in spans]
            n = len(words)
            for i, word in enumerate(words):
                parts.append(part(0, word))
                for d in _CONTEXT:
                    j = i + d
                    parts.append(part(d, words[j] if 0 <= j < n else None))
        if not parts:
            return [[] for _ in texts]
        scores = np.stack(parts).reshape(-1, 1 + len(_CONTEXT), len(self.tags)).sum(axis=1) + self.bias
        best = scores.argmax(axis=1)
        # The softmax's largest probability, exp(0) / sum(exp(scores - max)).
        conf = 1.0 / np.exp(scores - scores[np.arange(len(best)), best][:, None]).sum(axis=1)
        tags = self.tags
        predicted_all = [(tags[b], c) for b, c in zip(best.tolist(), conf.tolist(), strict=True)]
        out: list[list[ExtractedEntity]] = []
        at = 0
        for text, spans in zip(texts, all_spans, strict=True):
            k = len(spans)
            out.append(self._spans(text, spans, predicted_all[at : at + k]))
            at += k
        return out

    def _part(self, where: int, word: str | None) -> npt.NDArray[np.float32]:
        """The summed weights of the features that ``word``, standing ``where`` places from a
        token (0: the token itself, -1: just before it), gives that token. ``None``: the
        place is before the start (``where`` < 0) or past the end of the text."""
        key = (where, word)
        vec = self._parts.get(key)
        if vec is not None:
            return vec
        if where == 0:
            assert word is not None
            feats: Sequence[str] = _own_features(word)
        elif word is not None and where in (-1, 1):
            feats = (_neighbour_word(where, word), _neighbour_shape(where, word))
        else:
            feats = (_neighbour_word(where, word),)
        rows = [self.vocab[f] for f in feats if f in self.vocab]
        vec = self.weights[rows].sum(axis=0) if rows else np.zeros(len(self.tags), dtype=self.weights.dtype)
        if len(self._parts) >= PART_CACHE_SIZE:
            self._parts.clear()
        self._parts[key] = vec
        return vec

    def _spans(
        self, text: str, spans: Sequence[tuple[str, int, int]], predicted: Sequence[tuple[str, float]]
    ) -> list[ExtractedEntity]:
        out: list[ExtractedEntity] = []
        current: list[int] = []
        label = ""

        def close() -> None:
            if current:
                start, end = spans[current[0]][1], spans[current[-1]][2]
                conf = float(np.mean([predicted[c][1] for c in current]))
                entity, role, group = _unlabel(label)
                surface = text[start:end]
                out.append(ExtractedEntity(entity, surface, start, end, surface, "tagger", role, group, conf))

        for i, (tag, _) in enumerate(predicted):
            if tag == "O":
                close()
                current = []
                continue
            prefix, name = tag[:2], tag[2:]
            if prefix == "B-" or name != label or not current:
                close()
                current = [i]
                label = name
            else:
                current.append(i)
        close()
        return out


def fit_tagger(examples: Sequence[Example], tokenize: Any, random_state: int = 0) -> TaggerModel | None:
    """Train the tagger from annotated examples; None when there are no annotations."""
    annotated = [ex for ex in examples if ex.entities]
    if not annotated:
        return None
    from scipy import sparse
    from sklearn.linear_model import LogisticRegression

    rows: list[list[str]] = []
    labels: list[str] = []
    # Unannotated examples teach the tagger what is *not* an entity (capped for speed).
    plain = [ex for ex in examples if not ex.entities][: 3 * len(annotated)]
    for ex in [*annotated, *plain]:
        tokens = tokenize(ex.text)
        words = [s[0] for s in token_offsets(ex.text, tokens)]
        tags = bio_tags(ex.text, tokens, ex)
        for i in range(len(words)):
            rows.append(token_features(words, i))
            labels.append(tags[i])
    vocab: dict[str, int] = {}
    for feats in rows:
        for f in feats:
            vocab.setdefault(f, len(vocab))
    indptr: list[int] = [0]
    indices: list[int] = []
    for feats in rows:
        indices.extend(vocab[f] for f in feats)
        indptr.append(len(indices))
    x = sparse.csr_matrix((np.ones(len(indices), dtype=np.float32), indices, indptr), shape=(len(rows), len(vocab)))
    tag_names = tuple(sorted(set(labels)))
    if len(tag_names) < 2:
        return None
    y = np.asarray([tag_names.index(t) for t in labels])
    clf = LogisticRegression(C=5.0, max_iter=2000, random_state=random_state).fit(x, y)
    coef, bias = binary_to_two_columns(clf.coef_, clf.intercept_, len(tag_names))
    return TaggerModel(vocab, np.ascontiguousarray(coef.T), bias, tag_names)
