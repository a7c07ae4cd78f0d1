"""The NLU component registry: its content is the checked-in list, every factory returns
``PipelineConfig`` fields, and an unknown name is explained.

A saved model's pipeline names its components by versioned name, so removing or renaming a
registered name breaks old models: this test makes that a deliberate, reviewed change.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields

import pytest

from engine.diagnostics import EngineError
from engine.nlu.classify import ClassifierOptions
from engine.nlu.featurize import TfidfOptions
from engine.nlu.pipeline import DEFAULT_COMPONENTS, PipelineConfig, build_pipeline
from engine.registrations import OPTIONAL_NLU_COMPONENTS, REGISTERED_NLU_COMPONENTS, nlu_components
from engine.registry import Registry, UnknownComponentError

CONFIG_FIELDS = {f.name for f in fields(PipelineConfig)}


def test_registry_equals_the_checked_in_list() -> None:
    assert nlu_components.names() == list(REGISTERED_NLU_COMPONENTS)
    assert list(REGISTERED_NLU_COMPONENTS) == sorted(REGISTERED_NLU_COMPONENTS)


def test_names_are_versioned() -> None:
    for name in nlu_components.names():
        kind, _, version = name.rpartition(".")
        assert kind.count(".") == 1 and version.startswith("v") and version[1:].isdigit(), name


@pytest.mark.parametrize("name", REGISTERED_NLU_COMPONENTS)
def test_every_factory_returns_pipeline_config_fields(name: str) -> None:
    factory = nlu_components.get(name)
    assert factory.__doc__, f"{name} needs a docstring (it is the component's description)"
    parts = factory({})
    assert isinstance(parts, dict) and parts
    assert set(parts) <= CONFIG_FIELDS, set(parts) - CONFIG_FIELDS
    PipelineConfig(**parts)  # the values fit the fields


def test_factories_read_their_options() -> None:
    assert nlu_components.get("tokenizer.spacy.v1")({"model": "en_core_web_sm"}) == {
        "tokenizer_model": "en_core_web_sm"
    }
    assert nlu_components.get("featurizer.tfidf.v1")({"char_ngrams": [3, 4]}) == {
        "tfidf": TfidfOptions(char_ngrams=(3, 4))
    }
    assert nlu_components.get("classifier.linear.v1")({"model": "logreg", "C": 2.0}) == {
        "classifier": ClassifierOptions(model="logreg", C=2.0)
    }


def test_default_components_build_the_full_pipeline() -> None:
    assert {name for name, _ in DEFAULT_COMPONENTS} == set(REGISTERED_NLU_COMPONENTS) - set(OPTIONAL_NLU_COMPONENTS)
    config = build_pipeline(DEFAULT_COMPONENTS)
    assert config == PipelineConfig(regex_entities=True, lookup_entities=True, synonyms=True, tagger=True)
    assert build_pipeline([]) == PipelineConfig()


def test_unknown_component_lists_names_and_suggests_one() -> None:
    with pytest.raises(UnknownComponentError) as info:
        build_pipeline([("tokenizer.spacy.v1", {}), ("classifier.linaer.v1", {})])
    err = info.value
    assert err.name == "classifier.linaer.v1"
    assert err.available == list(REGISTERED_NLU_COMPONENTS)
    message = str(err)
    assert "Did you mean 'classifier.linear.v1'?" in message
    assert "Available: " + ", ".join(REGISTERED_NLU_COMPONENTS) in message
    assert isinstance(err, EngineError) and isinstance(err, KeyError)


def test_unknown_component_without_a_close_name_still_lists_names() -> None:
    with pytest.raises(UnknownComponentError) as info:
        nlu_components.get("zzz")
    assert "Did you mean" not in str(info.value)
    assert "Available: classifier.linear.v1" in str(info.value)


def test_registering_a_name_twice_is_an_error() -> None:
    reg: Registry[Callable[[], None]] = Registry("test component")

    def a() -> None:
        """A."""

    def b() -> None:
        """B."""

    reg("x.a.v1")(a)
    reg("x.a.v1")(a)  # the same function again (a module re-import) is fine
    with pytest.raises(EngineError, match="registered twice"):
        reg("x.a.v1")(b)
    assert "x.a.v1" in reg and "x.b.v1" not in reg
