"""Golden cases on Ray: ``taiwa eval --workers N`` (N > 1) and ``--address`` / ``RAY_ADDRESS``.

The cluster is local by default: started for the run with ``num_cpus=N``, a small object
store, no dashboard and no usage statistics, and shut down when the run ends, even when it
fails (a local Ray listens on every interface; Ray 2.60's token authentication, on by
default, is left as the environment sets it). ``address`` connects to an existing cluster
instead (its nodes need this version of taiwa installed).

The assistant travels once: the model folder's files and the project's files
(``domain/``, ``flows/``, ``policies/``, ``nlu_data/``, ``actions/``) go into the object
store as bytes with one ``ray.put``, and each of the N workers (a Ray actor) writes them to
a temporary folder and loads the project and the model once. Cases travel in chunks (a Ray
task costs about a millisecond; a case a few), each worker runs its chunks in lockstep
exactly as :class:`~engine.evaluation.golden_report.SerialExecutor` does, and results
stream back in completion order into ``on_result`` while the returned list keeps the
cases' order. A worker checks that it loaded the same assistant (content hashes and model
id) as this process before it runs anything.

Below ``min_cases`` cases a local run stays in this process. On the 2-core machine this was
built on, a local cluster costs about 7 s to start (``ray.init`` and the workers loading the
assistant) and 2 s to shut down, and two workers evaluate about 1.6x as many cases per
second as one process (650 -> 1,050; ``benchmarks/results/eval_golden.json``): those 9 s
are won back only from about 16,000 cases. With more cores the break-even comes sooner:
tune it with ``TAIWA_RAY_MIN_CASES``. An existing cluster (``address``) is always used.
"""

from __future__ import annotations

import asyncio
import gc
import math
import os
import shutil
import socket
import tempfile
import time
import weakref
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.diagnostics import EngineError
from engine.evaluation.gc_pause import gc_paused
from engine.evaluation.golden_report import OnResult, SerialExecutor
from engine.evaluation.golden_run import GoldenContext, evaluate_in_chunks, golden_context
from engine.loading.schema_check import SCHEMA_KINDS

MIN_CASES = 16_000
"""Golden sets smaller than this run serially unless an address is given (a local cluster's
start-up and shut-down would cost more than its workers save; see the module docstring)."""

MIN_CASES_ENV = "TAIWA_RAY_MIN_CASES"
"""Overrides :data:`MIN_CASES` (``0``: always use Ray when asked for workers)."""

OBJECT_STORE_BYTES = 150 * 1024 * 1024
"""The local cluster's object store: the assistant, chunks of cases and their results."""

CHUNK_BOUNDS = (50, 500)
"""Cases per task: at least enough to make a task's ~1 ms negligible, at most what keeps
results streaming (about eight chunks per worker in between)."""

IN_FLIGHT = 2
"""Chunks queued per worker, so that a worker never waits for the next one."""

PROJECT_FOLDERS = (*SCHEMA_KINDS, "actions")
"""The project's files a worker needs (the ones its content hashes cover)."""


class RayRunError(EngineError, RuntimeError):
    """Ray could not be started or reached, or a worker failed."""


def chunk_size(n_cases: int, workers: int) -> int:
    """Cases per Ray task: about eight tasks per worker, within :data:`CHUNK_BOUNDS`."""
    lo, hi = CHUNK_BOUNDS
    return max(lo, min(hi, math.ceil(n_cases / (workers * 8))))


def min_cases_from_env(env: Mapping[str, str] | None = None) -> int:
    """:data:`MIN_CASES`, or ``TAIWA_RAY_MIN_CASES`` when set (a non-negative integer)."""
    raw = (env if env is not None else os.environ).get(MIN_CASES_ENV, "").strip()
    if not raw:
        return MIN_CASES
    if not raw.isdigit():
        raise ValueError(f"{MIN_CASES_ENV} must be a whole number of 0 or more, got {raw!r}")
    return int(raw)


# -- what travels: the assistant's files as bytes ------------------------------------------


@dataclass(frozen=True)
class Bundle:
    """The files a worker needs, relative path -> content; put into the object store once."""

    project: Mapping[str, bytes]
    """``domain/``, ``flows/``, ``policies/``, ``nlu_data/`` and ``actions/``."""
    model: Mapping[str, bytes]
    """The model folder's files (``meta.json``, ``weights.npz``, ...)."""


def _files(root: Path, folders: Sequence[str] | None = None) -> dict[str, bytes]:
    tops = [root / f for f in folders] if folders is not None else [root]
    out: dict[str, bytes] = {}
    for top in tops:
        if not top.is_dir():
            continue
        for path in sorted(top.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                out[path.relative_to(root).as_posix()] = path.read_bytes()
    return out


def bundle_for(context: GoldenContext) -> Bundle:
    """The project's and the model's files, as this process loaded them."""
    if context.model_dir is None:
        raise RayRunError(
            "Ray workers load the model from its folder, but this run's model was handed over already loaded. "
            "Fix: pass the model folder (--model DIR), or run with --workers 1."
        )
    return Bundle(_files(context.project.root, PROJECT_FOLDERS), _files(context.model_dir))


def unpack(bundle: Bundle, folder: Path) -> GoldenContext:
    """Write ``bundle`` under ``folder`` and load the assistant from there (once per worker)."""
    for base, files in (("project", bundle.project), ("model", bundle.model)):
        for rel, data in files.items():
            path = folder / base / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
    return golden_context(folder / "project", folder / "model")


class GoldenWorker:
    """One worker process (a Ray actor): loads the assistant once, then runs chunks of cases."""

    def __init__(self, bundle: Bundle) -> None:
        self._folder = Path(tempfile.mkdtemp(prefix="taiwa-golden-"))
        # Removed on a clean exit too, when the run fails before close() is called.
        weakref.finalize(self, shutil.rmtree, self._folder, ignore_errors=True)
        self.context = unpack(bundle, self._folder)
        # The assistant lives as long as the worker: keep the collector from rescanning it.
        gc.freeze()

    def identity(self) -> tuple[str, dict[str, str]]:
        """The model id and the project's content hashes this worker loaded."""
        return self.context.nlu.model_id, dict(self.context.project.revisions)

    def run(self, cases: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        return asyncio.run(evaluate_in_chunks(self.context, cases, chunk_size=len(cases) or 1))

    def close(self) -> None:
        shutil.rmtree(self._folder, ignore_errors=True)


# -- the executor ---------------------------------------------------------------------------


class RayExecutor:
    """Runs golden cases on ``workers`` Ray workers (see the module docstring)."""

    uses_ray = False

    def __init__(
        self,
        workers: int,
        *,
        address: str | None = None,
        min_cases: int = MIN_CASES,
        object_store_bytes: int = OBJECT_STORE_BYTES,
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be 1 or more, got {workers}")
        self.requested = workers
        self.workers = workers
        self.address = address
        self.min_cases = min_cases
        self.object_store_bytes = object_store_bytes
        self.startup_seconds: float | None = None
        """ray.init and the workers loading the assistant (of the last run)."""
        self.shutdown_seconds: float | None = None
        self.note: str | None = None

    def run(
        self, context: GoldenContext, cases: Sequence[dict[str, Any]], on_result: OnResult | None
    ) -> list[dict[str, Any]]:
        if self.address is None and len(cases) < self.min_cases:
            self.workers, self.uses_ray, self.startup_seconds, self.shutdown_seconds = 1, False, None, None
            self.note = (
                f"{len(cases):,} cases ran serially: a local Ray cluster pays off from {self.min_cases:,} cases "
                f"(starting and stopping it takes seconds; {MIN_CASES_ENV}=0 forces it)"
            )
            return SerialExecutor().run(context, cases, on_result)
        self.workers, self.uses_ray = self.requested, True
        started = time.perf_counter()
        bundle = bundle_for(context)
        ray = _import_ray()
        try:
            self._start(ray)
            actors = self._workers(ray, context, bundle)
            self.startup_seconds = time.perf_counter() - started
            results = self._stream(ray, actors, cases, on_result)
            ray.get([a.close.remote() for a in actors])
        finally:
            stopping = time.perf_counter()
            ray.shutdown()
            self.shutdown_seconds = time.perf_counter() - stopping
        where = self.address or "a local Ray cluster"
        self.note = (
            f"{len(cases):,} cases on {self.workers} Ray workers ({where}); "
            f"start-up {self.startup_seconds:.1f} s, shut-down {self.shutdown_seconds:.1f} s"
        )
        return results

    def _start(self, ray: Any) -> None:
        where = f"connect to the Ray cluster at {self.address}" if self.address else "start a local Ray cluster"
        if self.address is not None:
            _check_reachable(self.address)
        try:
            if self.address is not None:
                ray.init(address=self.address, log_to_driver=False, configure_logging=False)
            else:
                ray.init(
                    address="local",  # a new cluster even when RAY_ADDRESS is set (--address uses one)
                    num_cpus=self.workers,
                    object_store_memory=self.object_store_bytes,
                    include_dashboard=False,
                    log_to_driver=False,
                    configure_logging=False,
                    _node_ip_address="127.0.0.1",
                )
        except (ConnectionError, RuntimeError, ValueError, TimeoutError) as exc:
            raise RayRunError(
                f"could not {where}: {_first_line(exc)}. Fix: check the address, or use --workers 1"
            ) from exc
        free = ray.available_resources().get("CPU", 0.0)
        if free < self.workers:
            raise RayRunError(
                f"the Ray cluster has {free:g} free CPU(s) but --workers {self.workers} needs {self.workers}. "
                "Fix: lower --workers, or free CPUs on the cluster."
            )

    def _workers(self, ray: Any, context: GoldenContext, bundle: Bundle) -> list[Any]:
        """Start the workers with the assistant (put into the object store once) and check them."""
        shared = ray.put(bundle)
        remote = ray.remote(num_cpus=1)(GoldenWorker)
        actors = [remote.remote(shared) for _ in range(self.workers)]
        expected = (context.nlu.model_id, dict(context.project.revisions))
        try:
            identities = ray.get([a.identity.remote() for a in actors])
        except ray.exceptions.RayError as exc:
            raise RayRunError(f"a Ray worker could not load the assistant: {_first_line(exc)}") from exc
        for got in identities:
            if tuple(got) != expected:
                raise RayRunError(f"a Ray worker loaded another assistant: {got} instead of {expected}")
        return actors

    def _stream(
        self, ray: Any, actors: Sequence[Any], cases: Sequence[dict[str, Any]], on_result: OnResult | None
    ) -> list[dict[str, Any]]:
        size = chunk_size(len(cases), len(actors))
        chunks = [cases[i : i + size] for i in range(0, len(cases), size)]
        todo = deque(range(len(chunks)))
        pending: dict[Any, tuple[int, Any]] = {}

        def submit(actor: Any) -> None:
            if todo:
                index = todo.popleft()
                pending[actor.run.remote(chunks[index])] = (index, actor)

        for actor in actors:
            for _ in range(IN_FLIGHT):
                submit(actor)
        done: list[list[dict[str, Any]] | None] = [None] * len(chunks)
        # Unpickling thousands of results is mostly the collector's time: paused meanwhile.
        with gc_paused():
            try:
                while pending:
                    ready, _ = ray.wait(list(pending), num_returns=1)
                    index, actor = pending.pop(ready[0])
                    submit(actor)
                    results: list[dict[str, Any]] = ray.get(ready[0])
                    done[index] = results
                    if on_result is not None:
                        for result in results:
                            on_result(result)
            except ray.exceptions.RayError as exc:
                raise RayRunError(f"a Ray worker failed: {_first_line(exc)}") from exc
        return [result for chunk in done if chunk is not None for result in chunk]


REACH_TIMEOUT = 3.0
"""Seconds to wait for a cluster's port before giving up (Ray itself retries for minutes)."""


def _check_reachable(address: str) -> None:
    """A TCP connection to ``HOST:PORT`` of a cluster address, or :class:`RayRunError` at once."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return  # "auto" and the like: Ray finds the cluster itself
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=REACH_TIMEOUT).close()
    except OSError as exc:
        raise RayRunError(
            f"cannot reach the Ray cluster at {address}: {exc.strerror or exc}. "
            "Fix: check the address and that the cluster is up (`ray status` on its head node), or use --workers 1."
        ) from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _import_ray() -> Any:
    """Ray, imported on first use with usage statistics off (``taiwa eval`` without it never imports it)."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    return ray
