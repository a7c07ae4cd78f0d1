"""Shared fixtures."""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import sys
import time
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


@pytest.fixture(scope="session")
def redis_cluster_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real three-node Redis Cluster on 127.0.0.1, started for the session from the machine's
    ``redis-server`` (each node its own hash slots, so a script touching two slots fails here
    as it would in production); ``redis+cluster://`` URL of one node."""
    server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if server is None or cli is None:
        _service_missing("Redis Cluster", "redis-server and redis-cli are not installed (Debian: redis-server)")
    folder = tmp_path_factory.mktemp("redis-cluster")
    ports = _cluster_ports(3)
    settings = [
        "--bind",
        "127.0.0.1",
        "--cluster-enabled",
        "yes",
        "--dir",
        str(folder),
        "--save",
        "",
        "--appendonly",
        "no",
    ]
    nodes = [
        subprocess.Popen(
            [server, "--port", str(port), "--cluster-config-file", f"nodes-{port}.conf", *settings],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for port in ports
    ]
    try:
        deadline = time.monotonic() + 20
        for port in ports:
            while (
                subprocess.run([cli, "-p", str(port), "ping"], capture_output=True, text=True).stdout.strip() != "PONG"
            ):
                if time.monotonic() > deadline:
                    _service_missing("Redis Cluster", f"a node on port {port} did not start")
                time.sleep(0.05)
        addresses = [f"127.0.0.1:{port}" for port in ports]
        subprocess.run(
            [cli, "--cluster", "create", *addresses, "--cluster-replicas", "0", "--cluster-yes"],
            check=True,
            capture_output=True,
            timeout=60,
        )
        while (
            "cluster_state:ok"
            not in subprocess.run([cli, "-p", str(ports[0]), "cluster", "info"], capture_output=True, text=True).stdout
        ):
            if time.monotonic() > deadline + 20:
                _service_missing("Redis Cluster", "the nodes did not agree on the slots")
            time.sleep(0.1)
        yield f"redis+cluster://127.0.0.1:{ports[0]}"
    finally:
        for node in nodes:
            node.terminate()
        for node in nodes:
            node.wait(timeout=10)


def _cluster_ports(count: int) -> list[int]:
    """Free ports whose cluster bus ports (port + 10000) are free too."""
    chosen: list[int] = []
    rng = random.Random()
    while len(chosen) < count:
        port = rng.randrange(20000, 45000)
        if port in chosen:
            continue
        try:
            for candidate in (port, port + 10000):
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                    sock.bind(("127.0.0.1", candidate))
        except OSError:
            continue
        chosen.append(port)
    return chosen


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
