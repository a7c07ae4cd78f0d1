"""schemathesis (a tool we did not write) generates requests from the server's own
``/openapi.json`` and checks every answer: no 5xx, every status and body as documented,
schema-violating requests refused, schema-valid ones accepted, 405s that carry ``Allow``."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from server.live import LiveServer, live_server

TOKEN = "fuzz-token-51c2"
SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
SEED = "20261122"
"""Fixed, so a failure reproduces; the run prints the case and a curl line for it."""


@pytest.fixture(scope="module")
def server(reference_models: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    tmp = tmp_path_factory.mktemp("fuzz")
    env = {"TAIWA_API_TOKEN": TOKEN, "TAIWA_RATE_LIMIT": "off", "TAIWA_AUDIT_LOG": str(tmp / "audit.jsonl")}
    with live_server(reference_models, tmp, env, store="memory://") as s:
        yield s


def schemathesis(server: LiveServer, cwd: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    args = [str(SCHEMATHESIS), "run", f"{server.url}/openapi.json", "--checks", "all", "--seed", SEED]
    args += ["--no-color", *extra]
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=240, check=False)


def test_every_operation_answers_as_documented_with_a_token(server: LiveServer, tmp_path: Path) -> None:
    run = schemathesis(server, tmp_path, "--max-examples", "40", "-H", f"Authorization: Bearer {TOKEN}")
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert "No issues found" in run.stdout
    assert "Traceback" not in server.output()


def test_without_credentials_nothing_but_documented_refusals(server: LiveServer, tmp_path: Path) -> None:
    run = schemathesis(server, tmp_path, "--max-examples", "15")
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
