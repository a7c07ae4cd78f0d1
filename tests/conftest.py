"""Shared fixtures."""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn
from urllib.parse import urlsplit

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


# -- services (PostgreSQL, Redis): tests marked `services` skip without them, unless
#    TAIWA_REQUIRE_SERVICES=1 (CI), where a missing server is an error.


def _service_missing(service: str, detail: str) -> NoReturn:
    """Skip the test, or fail it when TAIWA_REQUIRE_SERVICES=1."""
    if os.environ.get("TAIWA_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{service} is required (TAIWA_REQUIRE_SERVICES=1) but {detail}", pytrace=False)
    pytest.skip(f"{service} not available: {detail} (TAIWA_REQUIRE_SERVICES=1 makes this an error)")


def _reachable_url(service: str, env: str, default: str, default_port: int) -> str:
    url = os.environ.get(env, default)
    parts = urlsplit(url)
    address = (parts.hostname or "127.0.0.1", parts.port or default_port)
    try:
        socket.create_connection(address, timeout=1.0).close()
    except OSError as exc:
        error = exc
    else:
        return url
    _service_missing(service, f"{address[0]}:{address[1]} is unreachable ({error}); set {env} to point elsewhere")


@pytest.fixture(scope="session")
def redis_url() -> str:
    """A reachable Redis (TAIWA_TEST_REDIS_URL, default redis://127.0.0.1:6379/0)."""
    return _reachable_url("Redis", "TAIWA_TEST_REDIS_URL", "redis://127.0.0.1:6379/0", 6379)


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """A reachable PostgreSQL (TAIWA_TEST_POSTGRES_URL, default postgresql://postgres@127.0.0.1:5432/test)."""
    return _reachable_url("PostgreSQL", "TAIWA_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test", 5432)


# -- the reference assistant, trained once per test session


REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def reference_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The reference assistant's NLU, trained into a temporary models/ folder."""
    from engine.nlu.train import train_project

    out = tmp_path_factory.mktemp("reference-models")
    with _restored_actions_import():
        train_project(REPO, out=out)
    return out
