"""``taiwa eval`` end to end on the reference assistant's golden set, and its exit codes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cli.main import main
from engine.evaluation.golden_load import load_golden
from engine.evaluation.golden_report import comparable, run_golden
from engine.evaluation.golden_run import evaluate_chunk, golden_context

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.usefixtures("isolated_actions_module")

REPORT_KEYS = {
    "schema_version", "task_success_rate", "response_accuracy", "intent_accuracy", "intent_accuracy_by_group",
    "slot_precision", "slot_recall", "slot_f1", "fallback_rate", "handoff_rate", "latency_ms", "n_cases",
    "n_turns", "n_passed", "failed_cases", "cause_counts", "cases", "confusion", "versions", "run",
}  # fmt: skip


def taiwa(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def report(reference_models: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    path = tmp_path_factory.mktemp("eval") / "golden.json"
    code = main(["eval", "--project", str(REPO), "--model", str(reference_models), "--report", str(path)])
    assert code == 0
    yield json.loads(path.read_text("utf-8"))


def test_the_reference_assistant_passes_its_golden_set(report: dict[str, Any]) -> None:
    assert set(report) == REPORT_KEYS and report["schema_version"] == 1
    assert report["n_cases"] >= 60
    failures = [f"{f['case_id']}: {f['cause']} {f['message']}" for f in report["failed_cases"]]
    assert report["n_passed"] == report["n_cases"], "\n".join(failures)
    assert report["task_success_rate"] == 1.0 and report["response_accuracy"] == 1.0
    assert report["intent_accuracy_by_group"]["oos"] == 1.0
    assert report["cause_counts"] == {"IR": 0, "mode": 0, "slot": 0, "exec": 0, "policy": 0, "NLG": 0}
    assert 0 < report["fallback_rate"] < 1 and 0 < report["handoff_rate"] < 1
    assert report["run"]["workers"] == 1 and report["run"]["ray"] is False


def test_the_report_records_what_it_ran_against(report: dict[str, Any], reference_models: Path) -> None:
    versions = report["versions"]
    assert versions["model_id"] == (reference_models / "latest").read_text("utf-8").strip()
    assert set(versions["revisions"]) >= {"domain", "flows", "policies", "nlu_data", "actions", "config", "golden"}
    assert versions["git_sha"] is None or len(versions["git_sha"]) == 40
    labels = report["confusion"]["labels"]
    assert len(report["confusion"]["matrix"]) == len(labels) and "out_of_scope" in labels


def test_the_same_cases_give_the_same_results_however_they_are_chunked(
    report: dict[str, Any], reference_models: Path
) -> None:
    again = run_golden(REPO, model=reference_models)
    assert comparable(again) == comparable(report)
    cases = list(load_golden(golden_context(REPO, reference_models).project).cases)
    half = len(cases) // 2
    # Reversed, in two chunks: each case's result does not depend on what ran before it.
    chunks = evaluate_chunk(reference_models, REPO, cases[half:][::-1]) + evaluate_chunk(
        reference_models, REPO, cases[:half][::-1]
    )
    by_id = {r["case_id"]: r for r in comparable({**report, "cases": chunks})["cases"]}
    assert [by_id[c["case_id"]] for c in comparable(report)["cases"]] == comparable(report)["cases"]
    json.dumps(chunks)  # plain, JSON-serialisable results


def test_filter_keeps_matching_cases(
    capsys: pytest.CaptureFixture[str], reference_models: Path, tmp_path: Path
) -> None:
    path = tmp_path / "r.json"
    code, out, _ = taiwa(
        capsys, "eval", "--project", str(REPO), "--model", str(reference_models),
        "--filter", "faq-kb-*", "--filter", "guardrail", "--report", str(path),
    )  # fmt: skip
    assert code == 0 and "golden set" in out
    ids = [c["case_id"] for c in json.loads(path.read_text("utf-8"))["cases"]]
    assert ids and all(i.startswith(("faq-kb-", "guardrail-")) for i in ids)
    code, _, err = taiwa(capsys, "eval", "--project", str(REPO), "--model", str(reference_models), "--filter", "nope")
    assert code == 2 and "no golden case matches --filter nope" in err


def test_a_broken_golden_set_exits_1_with_located_errors(
    capsys: pytest.CaptureFixture[str], reference_models: Path, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text(
        "cases:\n  - case_id: x\n    tags: {use_case: faq, priority: P0}\n    turns: [{intent: greett}]\n", "utf-8"
    )
    code, out, err = taiwa(
        capsys, "eval", "--project", str(REPO), "--model", str(reference_models), "--golden", str(bad)
    )
    assert code == 1 and out == ""
    assert f"{bad.as_posix()}:4:22: error[E304] unknown intent 'greett' in the golden set" in err
    assert "did you mean: 'greet'?" in err and "1 error(s) in the golden set" in err


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = taiwa(capsys, "eval", "--project", str(REPO), "--model", str(tmp_path))
    assert code == 2 and "run `taiwa train`" in err
    code, _, err = taiwa(capsys, "eval", "--project", str(REPO), "--workers", "0")
    assert code == 2 and "--workers" in err
    code, _, err = taiwa(capsys, "eval", "--project", str(tmp_path / "missing"))
    assert code == 2 and "does not exist" in err


def test_eval_nlu_is_dispatched_to_its_own_command(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = taiwa(capsys, "eval", "nlu", "--project", str(REPO), "--folds", "1")
    assert code == 2 and "--folds 1" in err
