"""Where golden cases run does not change their results: lockstep chunks vs one case at a time,
any chunking, and Ray workers vs this process (one short-lived local Ray cluster per session)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cli.main import main
from engine.evaluation.generate import generate_cases
from engine.evaluation.golden_load import load_golden
from engine.evaluation.golden_report import SerialExecutor, comparable, run_golden
from engine.evaluation.golden_run import (
    EventListStore,
    GoldenContext,
    evaluate_cases,
    evaluate_in_chunks,
    golden_context,
)
from engine.evaluation.parallel import (
    MIN_CASES,
    RayExecutor,
    RayRunError,
    bundle_for,
    chunk_size,
    min_cases_from_env,
    unpack,
)
from engine.evaluation.templates import load_templates
from engine.events import SessionStarted, SlotSet
from engine.stores.base import ConcurrentWriteError

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.usefixtures("isolated_actions_module")


@pytest.fixture(scope="module")
def context(reference_models: Path, isolated_actions_module: None) -> Iterator[GoldenContext]:
    yield golden_context(REPO, reference_models)


@pytest.fixture(scope="module")
def cases(context: GoldenContext) -> list[dict[str, Any]]:
    """The reference golden set and 60 generated cases (file default stubs merged as the loader does)."""
    templates = load_templates(REPO / "benchmarks" / "golden_templates.yml")
    generated = [
        {**c, "stubs": {**(templates.stubs or {}), **c.get("stubs", {})}}
        for c in generate_cases(templates, 60, seed=11)
    ]
    return [*load_golden(context.project).cases, *generated]


def results_only(results: list[dict[str, Any]]) -> dict[str, Any]:
    return comparable({"cases": results})


def test_lockstep_gives_the_results_of_one_case_at_a_time(context: GoldenContext, cases: list[dict[str, Any]]) -> None:
    alone = asyncio.run(evaluate_cases(context, cases, lockstep=False))
    together = asyncio.run(evaluate_cases(context, cases))
    assert results_only(together) == results_only(alone)
    assert all(r["passed"] for r in together), [r["case_id"] for r in together if not r["passed"]]
    # The turns really went through the batched path: every NLU-parsed turn has a confidence.
    assert sum(len(r["turns"]) for r in together) > 2 * len(cases)


def test_results_do_not_depend_on_the_chunking(context: GoldenContext, cases: list[dict[str, Any]]) -> None:
    seen: list[str] = []
    big = asyncio.run(evaluate_in_chunks(context, cases, lambda r: seen.append(r["case_id"]), chunk_size=500))
    small = asyncio.run(evaluate_in_chunks(context, cases[::-1], chunk_size=7))[::-1]
    assert results_only(small) == results_only(big)
    assert sorted(seen) == sorted(c["case_id"] for c in cases)  # on_result saw every case once


def test_a_chunk_with_a_case_id_twice_is_refused(context: GoldenContext, cases: list[dict[str, Any]]) -> None:
    with pytest.raises(ValueError, match="case_id twice"):
        asyncio.run(evaluate_cases(context, [cases[0], cases[0]]))


async def test_the_event_list_store_keeps_appends_in_order_and_checks_lengths() -> None:
    store = EventListStore()
    assert await store.append("c", [SessionStarted({}, 1.0)], expected_length=0) == 1
    assert await store.append("c", [SlotSet("a", 1), SlotSet("b", None)]) == 3
    with pytest.raises(ConcurrentWriteError):
        await store.append("c", [SlotSet("a", 2)], expected_length=1)
    assert [type(e).__name__ for e in await store.load("c", since=1)] == ["SlotSet", "SlotSet"]
    async with store.lock("c"):
        assert await store.length("c") == 3 and await store.conversations() == ["c"]
    await store.delete("c")
    assert await store.load("c") == []


def test_a_worker_loads_the_same_assistant_from_the_bundle(context: GoldenContext, tmp_path: Path) -> None:
    bundle = bundle_for(context)
    assert "meta.json" in bundle.model
    assert any(path.startswith("flows/") for path in bundle.project)
    assert not any("__pycache__" in path for path in bundle.project)
    loaded = unpack(bundle, tmp_path)
    assert loaded.nlu.model_id == context.nlu.model_id
    assert loaded.project.revisions == context.project.revisions
    assert loaded.tools == context.tools and loaded.smalltalk == context.smalltalk


def test_chunks_and_the_serial_threshold() -> None:
    assert chunk_size(100, 2) == 50 and chunk_size(20_000, 2) == 500 and chunk_size(4_000, 2) == 250
    assert min_cases_from_env({}) == MIN_CASES and min_cases_from_env({"TAIWA_RAY_MIN_CASES": "0"}) == 0
    with pytest.raises(ValueError, match="TAIWA_RAY_MIN_CASES"):
        min_cases_from_env({"TAIWA_RAY_MIN_CASES": "few"})


def test_a_small_set_stays_serial_and_says_so(reference_models: Path) -> None:
    executor = RayExecutor(2)  # the reference set is far below MIN_CASES
    report = run_golden(REPO, model=reference_models, executor=executor)
    run = report["run"]
    assert run["ray"] is False and run["workers"] == 1 and "startup_seconds" not in run
    assert run["note"].startswith(
        f"{report['n_cases']} cases ran serially: a local Ray cluster pays off from {MIN_CASES:,} cases"
    )


# -- Ray: one local cluster, started once for the module and shut down after the run --------


@pytest.fixture(scope="module")
def ray_run(reference_models: Path, isolated_actions_module: None) -> dict[str, Any]:
    seen: list[str] = []
    executor = RayExecutor(2, min_cases=0)
    report = run_golden(REPO, model=reference_models, executor=executor, on_result=lambda r: seen.append(r["case_id"]))
    return {"report": report, "seen": seen}


def test_ray_and_serial_runs_give_identical_reports(ray_run: dict[str, Any], reference_models: Path) -> None:
    report = ray_run["report"]
    serial = run_golden(REPO, model=reference_models, executor=SerialExecutor())
    assert comparable(report) == comparable(serial)
    assert report["n_passed"] == report["n_cases"] >= 60
    run = report["run"]
    assert run["ray"] is True and run["workers"] == 2
    assert 0 < run["startup_seconds"] <= run["seconds"] and "2 Ray workers" in run["note"]
    assert sorted(ray_run["seen"]) == sorted(c["case_id"] for c in report["cases"])  # streamed, each once
    import ray

    assert not ray.is_initialized()  # the local cluster was shut down


def test_an_unreachable_cluster_fails_at_once_with_a_fix(context: GoldenContext, cases: list[dict[str, Any]]) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    executor = RayExecutor(2, address=f"ray://127.0.0.1:{port}")
    with pytest.raises(RayRunError, match=r"cannot reach the Ray cluster at ray://127\.0\.0\.1:\d+.*Fix: "):
        executor.run(context, cases[:3], None)


def test_cli_usage_errors_for_workers_and_addresses(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, reference_models: Path
) -> None:
    base = ["eval", "--project", str(REPO), "--model", str(reference_models)]
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    for argv, message in [
        (["--workers", "0"], "--workers must be 1 or more, got 0"),
        (["--workers", "2", "--address", "not an address"], "--address 'not an address' is not a Ray cluster address"),
        (["--workers", "2", "--address", "ray://head"], "is not a Ray cluster address"),
        (["--address", "ray://head:10001"], "--address runs the cases on a Ray cluster, but --workers is 1"),
    ]:
        assert main([*base, *argv]) == 2, argv
        assert message in capsys.readouterr().err, argv
    monkeypatch.setenv("RAY_ADDRESS", "nowhere")
    assert main([*base, "--workers", "2"]) == 2
    assert "RAY_ADDRESS 'nowhere' is not a Ray cluster address" in capsys.readouterr().err
    monkeypatch.delenv("RAY_ADDRESS")
    monkeypatch.setenv("TAIWA_RAY_MIN_CASES", "-1")
    assert main([*base, "--workers", "2"]) == 2
    assert "TAIWA_RAY_MIN_CASES must be a whole number" in capsys.readouterr().err


def test_cli_workers_on_a_small_set_runs_serially_and_says_so(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, reference_models: Path
) -> None:
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.delenv("TAIWA_RAY_MIN_CASES", raising=False)
    code = main(["eval", "--project", str(REPO), "--model", str(reference_models), "--workers", "2"])
    out = capsys.readouterr().out
    assert code == 0 and f"cases ran serially: a local Ray cluster pays off from {MIN_CASES:,}" in out
    assert "1 worker(s)" in out
