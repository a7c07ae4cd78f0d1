"""What `taiwa eval` does with a report: baseline comparison, quality gates, JUnit XML, HTML.

Reports are built by hand (``make_report``), so every expected number below follows from
the cases given, not from a run of the engine.
"""

from __future__ import annotations

import argparse
import io
import json
import re
import shutil
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from cli.eval_outputs import add_output_arguments, apply_outputs, check_output_arguments
from engine.diagnostics import Location
from engine.evaluation.baseline import REPORT_METRICS, ReportError, compare, load_report
from engine.evaluation.gates import check_gates, violated
from engine.evaluation.html_report import NO_MATPLOTLIB, render_html
from engine.evaluation.junit import build_junit
from engine.loading.build_policies import build_policies
from engine.loading.project import Project, load_project
from engine.loading.schema_check import check_source
from engine.loading.yaml_reader import read_source
from engine.policies.config import FailureGate, Gate, GateBound, MetricGate

TINY = Path(__file__).resolve().parent.parent / "fixtures" / "tiny"
REPO = Path(__file__).resolve().parent.parent.parent
HERE = Location("policies/gates.yml", 1, 1)

Case = tuple[str, bool, str, str | None]
"""case_id, passed, priority, cause (None when it passed)."""


def make_report(
    cases: list[Case], *, model_id: str = "nlu-1", metrics: Mapping[str, float] | None = None
) -> dict[str, Any]:
    """A schema_version 1 report whose counts follow from ``cases``; ``metrics`` (dotted names) override scalars."""
    failed = [c for c in cases if not c[1]]
    causes = {
        cause: sum(1 for c in failed if c[3] == cause) for cause in ("IR", "mode", "slot", "exec", "policy", "NLG")
    }
    report: dict[str, Any] = {
        "schema_version": 1,
        "task_success_rate": (len(cases) - len(failed)) / len(cases),
        "response_accuracy": 1.0,
        "intent_accuracy": 0.95,
        "intent_accuracy_by_group": {"in_scope": 0.95, "oos": None, "smalltalk": 1.0},
        "slot_precision": 1.0,
        "slot_recall": 1.0,
        "slot_f1": 1.0,
        "fallback_rate": 0.0,
        "handoff_rate": 0.0,
        "latency_ms": {"p50": 1.0, "p95": 2.0, "mean": 1.2},
        "n_cases": len(cases),
        "n_turns": 2 * len(cases),
        "n_passed": len(cases) - len(failed),
        "failed_cases": [
            {
                "case_id": cid,
                "cause": cause,
                "turn": 2,
                "expected": {"intent": "check_account"},
                "got": {"intent": "greet"},
                "message": f"{cause} went wrong",
                "priority": priority,
                "tags": {"use_case": cid.split("_")[0], "priority": priority},
            }
            for cid, _, priority, cause in failed
        ],
        "cause_counts": causes,
        "cases": [
            {
                "case_id": cid,
                "passed": passed,
                "priority": priority,
                # half the cases carry list tags: both forms must work
                "tags": [cid.split("_")[0], priority]
                if i % 2
                else {"use_case": cid.split("_")[0], "priority": priority},
                "cause": cause,
                "turn": None if passed else 2,
                "latencies_ms": [1.0, 2.0],
                "turns": [],
            }
            for i, (cid, passed, priority, cause) in enumerate(cases)
        ],
        "confusion": {"labels": ["greet", "check_account"], "matrix": [[3, 1], [0, 4]]},
        "versions": {"engine_version": "0.1.0", "model_id": model_id, "revisions": {"flows": "abc"}, "git_sha": None},
        "run": {"workers": 1, "ray": False, "seconds": 0.5, "cases_per_second": 8.0},
    }
    for name, value in (metrics or {}).items():
        head, _, tail = name.partition(".")
        if tail:
            report[head][tail] = value
        else:
            report[head] = value
    return report


BASE_CASES: list[Case] = [
    ("account_a", True, "P0", None),
    ("account_b", True, "P1", None),
    ("ticket_a", False, "P0", "exec"),
    ("faq_a", True, "P1", None),
]


# -- baseline comparison ------------------------------------------------------------------


def test_compare_reports_metric_deltas_and_trends() -> None:
    baseline = make_report(BASE_CASES, metrics={"intent_accuracy": 0.95, "latency_ms.p95": 2.0})
    current = make_report(BASE_CASES, metrics={"intent_accuracy": 0.90, "latency_ms.p95": 1.5})
    comparison = compare(current, baseline)
    intent = comparison.metric("intent_accuracy")
    p95 = comparison.metric("latency_ms.p95")
    assert intent is not None and p95 is not None
    assert intent.delta == pytest.approx(0.90 - 0.95)
    assert intent.trend == "worse"
    assert p95.delta == pytest.approx(-0.5)
    assert p95.trend == "better"  # lower latency is better
    same = comparison.metric("slot_f1")
    assert same is not None and same.trend == "same"


def test_compare_lists_newly_failing_passing_and_unmatched_cases() -> None:
    baseline = make_report([*BASE_CASES, ("old_a", True, "P1", None)])
    current = make_report(
        [
            ("account_a", False, "P0", "IR"),  # newly failing
            ("account_b", True, "P1", None),
            ("ticket_a", True, "P0", None),  # newly passing
            ("faq_a", False, "P1", "NLG"),  # newly failing
            ("new_a", False, "P0", "slot"),  # only in current
        ],
        model_id="nlu-2",
    )
    comparison = compare(current, baseline)
    assert [(c.case_id, c.cause, c.priority) for c in comparison.newly_failing] == [
        ("account_a", "IR", "P0"),
        ("faq_a", "NLG", "P1"),
    ]
    assert [(c.case_id, c.cause) for c in comparison.newly_passing] == [("ticket_a", "exec")]
    assert [c.case_id for c in comparison.only_in_current] == ["new_a"]
    assert [c.case_id for c in comparison.only_in_baseline] == ["old_a"]
    deltas = {c.cause: c.delta for c in comparison.causes}
    assert deltas == {"IR": 1, "mode": 0, "slot": 1, "exec": -1, "policy": 0, "NLG": 1}
    assert comparison.versions_differ
    assert [(v.field, v.baseline, v.current) for v in comparison.version_changes] == [("model_id", "nlu-1", "nlu-2")]


def test_rendered_comparison_names_the_newly_failing_case() -> None:
    from engine.evaluation.baseline import render_comparison

    baseline = make_report(BASE_CASES)
    current = make_report([("account_a", False, "P0", "IR"), *BASE_CASES[1:]], model_id="nlu-2")
    out = io.StringIO()
    render_comparison(Console(file=out, width=160), compare(current, baseline))
    text = out.getvalue()
    assert "Newly failing (1)" in text and "account_a" in text
    assert "model_id nlu-1 → nlu-2" in text


# -- gates --------------------------------------------------------------------------------


def metric_gate(metric: str, bound: GateBound, threshold: float, *, optional: bool = False) -> MetricGate:
    return MetricGate(metric, bound, threshold, HERE, optional)


@pytest.mark.parametrize(
    ("bound", "threshold", "value", "passes"),
    [
        ("min", 0.95, 0.95, True),
        ("min", 0.95, 0.9499, False),
        ("max", 50.0, 50.0, True),
        ("max", 50.0, 50.01, False),
    ],
)
def test_absolute_gates_hold_at_the_boundary(bound: GateBound, threshold: float, value: float, passes: bool) -> None:
    metric = "task_success_rate" if bound == "min" else "latency_ms.p95"
    report = make_report(BASE_CASES, metrics={metric: value})
    (result,) = check_gates([metric_gate(metric, bound, threshold)], report, None)
    assert result.passed is passes
    assert result.measured == value and result.threshold == threshold
    assert result.message.startswith(f"{metric} {value:g} ")
    assert f"({bound})" in result.message


@pytest.mark.parametrize(
    ("bound", "before", "after", "passes"),
    [
        ("max_drop", 0.95, 0.94, True),  # exactly one point down: allowed
        ("max_drop", 0.95, 0.9399, False),
        ("max_drop", 0.95, 0.99, True),  # a rise never breaks a drop limit
        ("max_rise", 0.95, 0.96, True),
        ("max_rise", 0.95, 0.9601, False),
    ],
)
def test_baseline_gates_hold_at_the_boundary(bound: GateBound, before: float, after: float, passes: bool) -> None:
    gate = metric_gate("intent_accuracy", bound, 0.01)
    (result,) = check_gates(
        [gate],
        make_report(BASE_CASES, metrics={"intent_accuracy": after}),
        make_report(BASE_CASES, metrics={"intent_accuracy": before}),
    )
    assert result.passed is passes
    expected_change = before - after if bound == "max_drop" else after - before
    assert result.measured == pytest.approx(expected_change)


def test_no_new_failures_counts_newly_failing_and_new_failing_cases_of_its_priority() -> None:
    baseline = make_report(BASE_CASES)
    gate = FailureGate("no_new_failures", ("P0",), HERE)
    assert check_gates([gate], make_report(BASE_CASES), baseline)[0].passed  # ticket_a failed before too
    current = make_report(
        [
            ("account_a", False, "P0", "IR"),
            ("account_b", False, "P1", "slot"),  # P1: not this gate's business
            ("ticket_a", False, "P0", "exec"),
            ("brand_new", False, "P0", "mode"),
        ]
    )
    (result,) = check_gates([gate], current, baseline)
    assert not result.passed
    assert [c.case_id for c in result.cases] == ["account_a", "brand_new"]
    assert result.measured == 2
    assert "brand_new [mode at turn 2] (new case)" in result.message
    any_priority = FailureGate("no_new_failures", (), HERE)
    assert check_gates([any_priority], current, baseline)[0].measured == 3


def test_no_failures_needs_no_baseline() -> None:
    gate = FailureGate("no_failures", ("P1",), HERE)
    assert check_gates([gate], make_report(BASE_CASES), None)[0].passed  # the failing case is P0
    (result,) = check_gates([FailureGate("no_failures", ("P0",), HERE)], make_report(BASE_CASES), None)
    assert not result.passed and [c.case_id for c in result.cases] == ["ticket_a"]


def test_a_baseline_gate_without_baseline_fails_unless_optional() -> None:
    report = make_report(BASE_CASES)
    required: list[Gate] = [
        metric_gate("intent_accuracy", "max_drop", 0.01),
        FailureGate("no_new_failures", ("P0",), HERE),
    ]
    results = check_gates(required, report, None)
    assert violated(results) == results
    assert all("--baseline REPORT.json" in r.message for r in results)
    optional = [metric_gate("intent_accuracy", "max_drop", 0.01, optional=True)]
    (skipped,) = check_gates(optional, report, None)
    assert skipped.passed and skipped.skipped and violated([skipped]) == []


def test_a_gate_on_an_unmeasured_metric_fails() -> None:
    (result,) = check_gates([metric_gate("intent_accuracy_by_group.oos", "min", 0.5)], make_report(BASE_CASES), None)
    assert not result.passed and "not in the report" in result.message


# -- gates.yml: schema and loader ---------------------------------------------------------


def project_with_gates(tmp_path: Path, text: str) -> Path:
    project = tmp_path / "project"
    shutil.copytree(TINY, project)
    (project / "policies" / "gates.yml").write_text(text, encoding="utf-8")
    return project


def position(text: str, needle: str, start: int = 0) -> tuple[int, int]:
    """1-based line and column where ``needle`` first starts in ``text`` after ``start``."""
    index = text.index(needle, start)
    return text.count("\n", 0, index) + 1, index - (text.rfind("\n", 0, index) + 1) + 1


def test_gates_yml_builds_one_gate_per_bound(tmp_path: Path) -> None:
    text = (
        "gates:\n"
        "  - metric: intent_accuracy\n    min: 0.9\n    max_drop: 0.01\n    when_baseline: optional\n"
        "  - no_new_failures: [P0, P1]\n"
        "  - no_failures: any\n"
    )
    result = load_project(project_with_gates(tmp_path, text), import_actions=False)
    assert result.project is not None, [d.format() for d in result.diagnostics]
    gates: tuple[Gate, ...] = result.project.policies.gates
    assert [g.label for g in gates] == [
        "intent_accuracy (min)",
        "intent_accuracy (max_drop)",
        "no_new_failures: P0/P1",
        "no_failures: any",
    ]
    assert [g.needs_baseline for g in gates] == [False, True, True, False]
    assert gates[1].baseline_optional
    assert (gates[1].loc.line, gates[1].loc.col) == position(text, "0.01")


@pytest.mark.parametrize(
    ("item", "code", "at"),
    [
        ("  - metric: task_sucess_rate\n    min: 0.95\n", "E104", "task_sucess_rate"),
        ("  - metric: intent_accuracy\n    min: 95\n", "E106", "95"),
        ("  - metric: slot_f1\n    maximum: 0.5\n", "E101", "maximum"),
        ("  - no_new_failures: P7\n", "E104", "P7"),
        ("  - metric: latency_ms.p95\n    max: 50\n    when_baseline: optional\n", "E109", "when_baseline"),
        ("  - no_failures: P0\n    min: 0.5\n", "E109", "min"),
    ],
)
def test_broken_gates_yml_is_reported_at_file_line_col(tmp_path: Path, item: str, code: str, at: str) -> None:
    valid = "gates:\n  - metric: task_success_rate\n    min: 0.9\n"
    text = valid + item
    result = load_project(project_with_gates(tmp_path, text), import_actions=False)
    assert result.project is None
    found = [d for d in result.errors if d.code == code]
    assert found, [d.format() for d in result.errors]
    location = found[0].location
    assert location is not None and location.path == "policies/gates.yml"
    line, col = position(text, at, start=len(valid))
    assert (location.line, location.col) == (line, col)
    assert found[0].format().startswith(f"policies/gates.yml:{line}:{col}: error[{code}]")


def test_unknown_metric_suggests_the_closest_name(tmp_path: Path) -> None:
    text = "gates:\n  - metric: task_sucess_rate\n    min: 0.95\n"
    result = load_project(project_with_gates(tmp_path, text), import_actions=False)
    (diag,) = result.errors
    assert diag.suggestion == "task_success_rate"


def test_schema_names_exactly_the_report_metrics() -> None:
    schema = json.loads(resources.files("engine.schemas").joinpath("policies.schema.json").read_text("utf-8"))
    assert set(schema["$defs"]["gate_metric"]["enum"]) == set(REPORT_METRICS)
    fractions = {name for name, spec in REPORT_METRICS.items() if spec.unit == "fraction"}
    assert set(schema["$defs"]["gate_fraction_metric"]["enum"]) == fractions


def test_reference_assistant_gates_are_valid() -> None:
    source, diags = read_source(REPO, REPO / "policies" / "gates.yml", "policies")
    assert source is not None and not diags
    assert check_source(source) == []
    config, build_diags = build_policies([source])
    assert not build_diags
    labels = {g.label for g in config.gates}
    assert {
        "task_success_rate (min)",
        "no_new_failures: P0",
        "intent_accuracy (max_drop)",
        "latency_ms.p95 (max)",
    } <= labels


# -- JUnit XML ----------------------------------------------------------------------------


def test_junit_has_one_testcase_per_case_and_failure_details() -> None:
    report = make_report([*BASE_CASES, ("faq_\x01odd", False, "P1", "NLG")])
    xml = ET.tostring(build_junit(report), encoding="unicode")
    root = ET.fromstring(xml)  # parses: the control character was made printable
    (suite,) = root.findall("testsuite")
    cases = suite.findall("testcase")
    assert suite.get("tests") == str(len(cases)) == "5"
    assert suite.get("failures") == "2" and suite.get("errors") == "0"
    assert {c.get("classname") for c in cases} == {"golden.account", "golden.ticket", "golden.faq"}
    failures = {c.get("name"): c.find("failure") for c in cases if c.find("failure") is not None}
    assert set(failures) == {"ticket_a", "faq_\\x01odd"}
    ticket = failures["ticket_a"]
    assert ticket is not None and ticket.get("type") == "exec"
    assert ticket.get("message") == 'exec at turn 2: expected {"intent": "check_account"}, got {"intent": "greet"}'
    assert "priority: P0" in (ticket.text or "")
    properties = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert properties["task_success_rate"] == str(report["task_success_rate"])
    assert properties["versions.model_id"] == "nlu-1"


# -- HTML ---------------------------------------------------------------------------------


def hostile_report() -> dict[str, Any]:
    return make_report([*BASE_CASES, ("<script>alert(1)</script>", False, "P0", "IR")])


def test_html_is_self_contained_and_escapes_report_text() -> None:
    page = render_html(hostile_report(), comparison=compare(hostile_report(), make_report(BASE_CASES)), images=False)
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page)
    assert "<script" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert NO_MATPLOTLIB in page
    assert '<table class="cm">' in page  # the confusion matrix as a table instead of an image


def test_html_embeds_images_as_data_uris_with_matplotlib() -> None:
    pytest.importorskip("matplotlib")
    page = render_html(hostile_report())
    images = re.findall(r'<img [^>]*src="([^"]+)"', page)
    assert len(images) == 2 and all(src.startswith("data:image/png;base64,") for src in images)
    assert NO_MATPLOTLIB not in page


# -- the CLI glue -------------------------------------------------------------------------

GATES_YML = (
    "gates:\n  - metric: task_success_rate\n    min: 0.7\n  - no_new_failures: P0\n    when_baseline: optional\n"
)


@pytest.fixture(scope="module")
def gated_project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    result = load_project(project_with_gates(tmp_path_factory.mktemp("gated"), GATES_YML), import_actions=False)
    assert result.project is not None
    return result.project


def parse_outputs(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_output_arguments(parser)
    return parser.parse_args(list(argv))


def run_outputs(project: Project | Path, report: dict[str, Any], *argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = apply_outputs(parse_outputs(*argv), report, Console(file=out, width=200), project)
    return code, out.getvalue()


def test_apply_outputs_exit_codes_follow_the_gates(gated_project: Project, tmp_path: Path) -> None:
    assert run_outputs(gated_project, make_report(BASE_CASES))[0] == 0  # no --gate: nothing to fail
    code, text = run_outputs(gated_project, make_report(BASE_CASES), "--gate")
    assert code == 0 and "skipped" in text  # 0.75 >= 0.7; the baseline gate is optional
    failing = make_report([("account_a", False, "P0", "IR"), *BASE_CASES[1:]])
    code, text = run_outputs(gated_project, failing, "--gate")
    assert code == 1 and "task_success_rate 0.5 < 0.7 (min)" in text
    baseline = tmp_path / "baseline.json"
    baseline.write_text(json.dumps(make_report(BASE_CASES)), encoding="utf-8")
    code, text = run_outputs(
        gated_project,
        make_report([*BASE_CASES[:1], ("account_b", False, "P0", "IR"), *BASE_CASES[2:]]),
        "--gate",
        "--baseline",
        str(baseline),
    )
    assert code == 1 and "1 P0 case(s) newly failing: account_b" in text


def test_apply_outputs_writes_junit_and_html(gated_project: Project, tmp_path: Path) -> None:
    junit, page = tmp_path / "junit.xml", tmp_path / "report.html"
    code, _ = run_outputs(gated_project, make_report(BASE_CASES), "--junit", str(junit), "--html", str(page))
    assert code == 0
    assert ET.parse(junit).getroot().tag == "testsuites"
    assert page.read_text("utf-8").startswith("<!DOCTYPE html>")


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (None, "no such file"),
        ("{not json", "is not JSON"),
        (json.dumps({"schema_version": 99}), "schema_version 99"),
        (json.dumps([1, 2]), "is not a report"),
    ],
)
def test_a_bad_baseline_is_a_usage_error(
    gated_project: Project, tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | None, problem: str
) -> None:
    path = tmp_path / "baseline.json"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(ReportError, match=re.escape(problem)):
        load_report(path)
    assert check_output_arguments(parse_outputs("--baseline", str(path))) == 2
    code, _ = run_outputs(gated_project, make_report(BASE_CASES), "--baseline", str(path))
    assert code == 2
    assert problem in capsys.readouterr().err


def test_apply_outputs_takes_the_project_folder(gated_project: Project) -> None:
    failing = make_report([("account_a", False, "P0", "IR"), *BASE_CASES[1:]])
    assert run_outputs(gated_project.root, failing, "--gate")[0] == 1
    assert check_output_arguments(parse_outputs("--gate")) is None


def test_gate_without_declared_gates_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    project = load_project(TINY, import_actions=False).project
    assert project is not None and not project.policies.gates
    assert run_outputs(project, make_report(BASE_CASES), "--gate")[0] == 2
    assert "declares no quality gates" in capsys.readouterr().err
