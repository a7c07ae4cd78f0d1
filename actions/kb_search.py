"""``kb_search``: find the help-center article that best answers the ``question`` slot.

Articles are read from ``data/kb.yml``. Matching is plain token overlap: a one-word keyword
found in the question scores twice its rarity across articles (inverse document frequency),
a multi-word keyword scores the same for each of its words but only when the whole phrase
occurs, and a question word found only in the title scores its rarity once. An article
needs at least one keyword hit to count, so unrelated questions return no answer.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from ruamel.yaml import YAML

from engine.actions import ActionContext, action
from engine.events import Event, SlotSet

KB_FILE = Path(__file__).resolve().parent / "data" / "kb.yml"

MIN_SCORE = 2.0
"""Below this score no article is returned."""

_STOPWORDS = frozenset(
    (
        "a", "about", "all", "am", "an", "and", "any", "are", "as", "at", "be", "been", "being", "but",
        "by", "can", "could", "d", "did", "do", "does", "doing", "for", "from", "get", "got", "had",
        "has", "have", "how", "i", "if", "in", "into", "is", "it", "its", "just", "ll", "m", "me",
        "my", "need", "of", "on", "or", "our", "please", "re", "s", "should", "so", "some", "t",
        "tell", "than", "that", "the", "their", "them", "then", "there", "these", "they", "this",
        "those", "to", "us", "ve", "want", "was", "we", "were", "what", "whats", "when", "where",
        "which", "who", "why", "will", "with", "would", "you", "your", "hi", "hello", "hey", "thanks",
        "thank", "know", "like",
    )
)  # fmt: skip


@dataclass(frozen=True)
class Article:
    """One knowledge-base article, with its pre-tokenised keywords and title."""

    id: str
    title: str
    answer: str
    keyword_tokens: frozenset[str]
    """Tokens of the one-word keywords."""
    phrases: tuple[tuple[str, ...], ...]
    """Token sequences of the multi-word keywords."""
    title_tokens: frozenset[str]


def _stem(word: str) -> str:
    """A tiny plural stemmer: ``limits`` -> ``limit``, ``policies`` -> ``policy``."""
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def tokenize(text: str) -> list[str]:
    """Lower-cased, stemmed word tokens of ``text`` without stop words."""
    return [_stem(w) for w in re.findall(r"[a-z0-9]+", text.lower()) if w not in _STOPWORDS]


def _contains(seq: Sequence[str], phrase: Sequence[str]) -> bool:
    """Whether ``phrase`` occurs as a contiguous run in ``seq``."""
    n = len(phrase)
    return any(tuple(seq[i : i + n]) == tuple(phrase) for i in range(len(seq) - n + 1))


def load_articles(path: Path = KB_FILE) -> tuple[Article, ...]:
    """Read and tokenise the articles of a knowledge-base file."""
    data = YAML(typ="safe").load(path.read_text(encoding="utf-8"))
    articles: list[Article] = []
    for raw in data["articles"]:
        keywords = [str(k) for k in raw.get("keywords", [])]
        tokenized = [tokenize(k) for k in keywords]
        articles.append(
            Article(
                id=str(raw["id"]),
                title=str(raw["title"]),
                answer=" ".join(str(raw["answer"]).split()),
                keyword_tokens=frozenset(toks[0] for toks in tokenized if len(toks) == 1),
                phrases=tuple(tuple(toks) for toks in tokenized if len(toks) > 1),
                title_tokens=frozenset(tokenize(str(raw["title"]))),
            )
        )
    return tuple(articles)


@lru_cache(maxsize=1)
def _index() -> tuple[tuple[Article, ...], dict[str, float]]:
    """The articles of ``data/kb.yml`` and each token's rarity weight (inverse document frequency)."""
    articles = load_articles()
    df: dict[str, int] = {}
    for art in articles:
        phrase_tokens = {t for phrase in art.phrases for t in phrase}
        for tok in art.keyword_tokens | phrase_tokens | art.title_tokens:
            df[tok] = df.get(tok, 0) + 1
    n = len(articles)
    return articles, {tok: math.log(1 + n / count) for tok, count in df.items()}


def score(question: str, article: Article, idf: dict[str, float]) -> float:
    """How well ``article`` matches ``question`` (0 when no keyword matches)."""
    return _score(tokenize(question), article, idf)


def _score(seq: Sequence[str], article: Article, idf: dict[str, float]) -> float:
    """:func:`score` of the question's tokens ``seq``."""
    tokens = set(seq)
    hits = tokens & article.keyword_tokens
    for phrase in article.phrases:
        if _contains(seq, phrase):
            hits |= set(phrase)
    if not hits:
        return 0.0
    total = sum(2 * idf.get(t, 1.0) for t in hits)
    total += sum(idf.get(t, 1.0) for t in (tokens & article.title_tokens) - hits)
    return total


def search(question: str) -> Article | None:
    """The best matching article, or ``None`` when nothing scores ``MIN_SCORE``."""
    articles, idf = _index()
    seq = tokenize(question)  # once, not once per article
    best: Article | None = None
    best_score = MIN_SCORE - 1e-9
    for art in articles:  # ties go to the earlier article
        s = _score(seq, art, idf)
        if s > best_score:
            best, best_score = art, s
    return best


# inline: an in-memory search (tens of microseconds) runs on the event loop, without a thread.
@action("kb_search", timeout=2.0, idempotent=True, inline=True)
def kb_search(ctx: ActionContext) -> list[Event]:
    """Set ``kb_answer`` / ``kb_article_id`` from the best article, or clear them."""
    question = ctx.slots.get("question")
    article = search(question) if isinstance(question, str) and question.strip() else None
    if article is None:
        return [SlotSet("kb_answer", None), SlotSet("kb_article_id", None)]
    return [SlotSet("kb_answer", article.answer), SlotSet("kb_article_id", article.id)]
