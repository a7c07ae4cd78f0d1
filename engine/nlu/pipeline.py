"""The NLU pipeline configuration, assembled from registered components.

``policies/pipeline.yml`` lists components by versioned name; each registered factory
turns its options into its part of :class:`PipelineConfig`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from engine.nlu.classify import ClassifierOptions
from engine.nlu.embeddings import EmbeddingOptions
from engine.nlu.featurize import TfidfOptions
from engine.policies.config import DEFAULT_PIPELINE
from engine.registry import Registry

nlu_components: Registry[Any] = Registry("NLU component")


@dataclass(frozen=True)
class PipelineConfig:
    tokenizer_model: str | None = None
    """An installed spaCy pipeline to tokenize with (default: ``spacy.blank(language)``)."""
    tfidf: TfidfOptions = field(default_factory=TfidfOptions)
    embeddings: EmbeddingOptions | None = None
    """Dense sentence-embedding features (the optional ``featurizer.embeddings.v1``)."""
    classifier: ClassifierOptions = field(default_factory=ClassifierOptions)
    regex_entities: bool = False
    lookup_entities: bool = False
    synonyms: bool = False
    tagger: bool = False

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = value.__dict__ if hasattr(value, "__dataclass_fields__") else value
        return out


DEFAULT_COMPONENTS: tuple[tuple[str, Mapping[str, Any]], ...] = tuple((name, {}) for name in DEFAULT_PIPELINE)


def build_pipeline(components: Sequence[tuple[str, Mapping[str, Any]]]) -> PipelineConfig:
    """Assemble the config; an unknown name raises ``UnknownComponentError``."""
    import engine.registrations  # noqa: F401  (fills the registry)

    parts: dict[str, Any] = {}
    for name, options in components:
        parts.update(nlu_components.get(name)(dict(options)))
    return PipelineConfig(**parts)


def load_pipeline_file(path: Path) -> PipelineConfig:
    """The ``pipeline:`` list of a YAML file (``--pipeline`` of ``taiwa train --data`` and the benchmarks)."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    try:
        spec = YAML(typ="safe").load(path.read_text(encoding="utf-8"))
    except (OSError, YAMLError) as exc:
        raise ValueError(f"--pipeline {path}: cannot read it: {exc}") from exc
    items = spec.get("pipeline") if isinstance(spec, dict) else None
    if not isinstance(items, list) or not all(isinstance(c, dict) and "name" in c for c in items):
        raise ValueError(f"--pipeline {path}: expected `pipeline:` with a list of `- name: component` entries")
    return build_pipeline([(str(c["name"]), {k: v for k, v in c.items() if k != "name"}) for c in items])
