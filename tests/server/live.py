"""Start the real ``taiwa run`` on a free localhost port, for tests that talk HTTP to it."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TAIWA = Path(sys.executable).parent / "taiwa"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LiveServer:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


def copy_reference_project(tmp_path: Path) -> Path:
    """A copy of the reference assistant's files, for tests that change one of them."""
    project = tmp_path / "project"
    for folder in ("domain", "flows", "policies", "nlu_data", "actions"):
        shutil.copytree(REPO / folder, project / folder, ignore=shutil.ignore_patterns("__pycache__"))
    return project


@contextmanager
def live_server(
    models: Path,
    tmp_path: Path,
    env: Mapping[str, str] | None = None,
    *,
    workers: int = 1,
    store: str | None = None,
    project: Path = REPO,
    startup_timeout: float = 60.0,
) -> Iterator[LiveServer]:
    """``taiwa run`` in a subprocess; yields once /health answers; stopped with SIGTERM."""
    port = free_port()
    tmp_path.mkdir(parents=True, exist_ok=True)
    log = tmp_path / f"server-{port}.log"
    full_env = {
        **os.environ,
        "TAIWA_CRM_DB": str(tmp_path / "crm.sqlite3"),
        **(env or {}),
    }
    args = [str(TAIWA), "run", "--project", str(project), "--model", str(models), "--port", str(port)]
    args += ["--workers", str(workers), "--store", store or f"sqlite:///{tmp_path / 'tracker.sqlite3'}"]
    with log.open("wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=full_env, start_new_session=True)
    server = LiveServer(f"http://127.0.0.1:{port}", proc, log)
    try:
        deadline = time.monotonic() + startup_timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"taiwa run exited with {proc.returncode}:\n{server.output()}")
            try:
                with urllib.request.urlopen(server.url + "/health", timeout=1) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"taiwa run did not become healthy in {startup_timeout} s:\n{server.output()}")
            time.sleep(0.1)
        yield server
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)


__all__ = ["LiveServer", "copy_reference_project", "free_port", "live_server"]
