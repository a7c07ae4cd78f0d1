"""The registered NLU components (imported by :mod:`engine.registrations`)."""

from __future__ import annotations

from typing import Any

from engine.nlu.classify import ClassifierOptions
from engine.nlu.embeddings import EmbeddingOptions
from engine.nlu.featurize import TfidfOptions
from engine.nlu.pipeline import nlu_components


@nlu_components("tokenizer.spacy.v1")
def tokenizer_spacy(options: dict[str, Any]) -> dict[str, Any]:
    """spaCy tokenisation: ``spacy.blank(language)``, or ``model: <installed pipeline>``."""
    return {"tokenizer_model": options.get("model")}


@nlu_components("featurizer.tfidf.v1")
def featurizer_tfidf(options: dict[str, Any]) -> dict[str, Any]:
    """TF-IDF over word and character n-grams, plus regex / lookup flags."""
    return {"tfidf": TfidfOptions.from_dict(options)}


@nlu_components("featurizer.embeddings.v1")
def featurizer_embeddings(options: dict[str, Any]) -> dict[str, Any]:
    """Sentence embeddings from an offline sentence-transformers model (optional extra)."""
    return {"embeddings": EmbeddingOptions.from_dict(options)}


@nlu_components("classifier.linear.v1")
def classifier_linear(options: dict[str, Any]) -> dict[str, Any]:
    """A linear intent classifier with temperature-calibrated confidences."""
    return {"classifier": ClassifierOptions.from_dict(options)}


@nlu_components("entities.regex.v1")
def entities_regex(options: dict[str, Any]) -> dict[str, Any]:
    """Entities from ``regex:`` entries named after an entity."""
    return {"regex_entities": True}


@nlu_components("entities.lookup.v1")
def entities_lookup(options: dict[str, Any]) -> dict[str, Any]:
    """Entities from ``lookup:`` tables named after an entity."""
    return {"lookup_entities": True}


@nlu_components("entities.synonyms.v1")
def entities_synonyms(options: dict[str, Any]) -> dict[str, Any]:
    """Map extracted values to canonical values with ``synonym:`` entries."""
    return {"synonyms": True}


@nlu_components("entities.tagger.v1")
def entities_tagger(options: dict[str, Any]) -> dict[str, Any]:
    """A token tagger (BIO, linear) trained from the inline annotations."""
    return {"tagger": True}
