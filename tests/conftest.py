"""Shared fixtures."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from engine.actions import registry


@contextmanager
def _restored_actions_import() -> Iterator[None]:
    """Loading a project imports its actions/ package and registers its actions: undo that."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys, "path", list(sys.path))
        modules = {k: v for k, v in sys.modules.items() if k == "actions" or k.startswith("actions.")}
        saved = dict(registry._REGISTRY)
        yield
        for key in [k for k in sys.modules if k == "actions" or k.startswith("actions.")]:
            del sys.modules[key]
        sys.modules.update(modules)
        registry._REGISTRY.clear()
        registry._REGISTRY.update(saved)


@pytest.fixture
def isolated_actions() -> Iterator[None]:
    with _restored_actions_import():
        yield


@pytest.fixture(scope="module")
def isolated_actions_module() -> Iterator[None]:
    with _restored_actions_import():
        yield
