"""Every registered component, imported in one explicit place (spaCy's lesson: this
avoids circular imports and makes the registry's content easy to review).
"""

from __future__ import annotations

import engine.nlu.components  # noqa: F401  (registers the NLU components)
from engine.nlu.pipeline import nlu_components

REGISTERED_NLU_COMPONENTS = (
    "classifier.linear.v1",
    "entities.lookup.v1",
    "entities.regex.v1",
    "entities.synonyms.v1",
    "entities.tagger.v1",
    "featurizer.embeddings.v1",
    "featurizer.tfidf.v1",
    "tokenizer.spacy.v1",
)
"""The checked-in list; a test compares it with the registry."""

OPTIONAL_NLU_COMPONENTS = ("featurizer.embeddings.v1",)
"""Registered but not in the default pipeline (they need an optional extra)."""

__all__ = ["OPTIONAL_NLU_COMPONENTS", "REGISTERED_NLU_COMPONENTS", "nlu_components"]
