"""``taiwa golden generate``: templates x values -> golden cases that pass the schema and the
reference assistant; deterministic samples; every mistake in a templates file located."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cli.main import main
from engine.evaluation.generate import GENERATED_MARK, GenerateError, generate_cases, shares, write_golden
from engine.evaluation.golden import case_from_dict
from engine.evaluation.golden_load import load_golden
from engine.evaluation.golden_report import run_golden
from engine.evaluation.templates import TemplateSet, TemplateSetError, load_templates
from engine.loading.project import Project, load_project_or_raise

REPO = Path(__file__).resolve().parents[2]
REFERENCE_TEMPLATES = REPO / "benchmarks" / "golden_templates.yml"

SMALL = """\
templates:
  - case_id: greet
    values:
      hello: [hi, hello, hey]
      closing: [bye, goodbye]
      answer:
        - {intent: greet, response: utter_greet}
        - {intent: greet, response: "{{literal}}"}
    tags: {use_case: smalltalk, priority: P1}
    turns:
      - user: "{hello} there"
        expect: {intent: "{intent}", bot: ["{response}"]}
      - user: "{closing} {{name}}"
  - case_id: typed
    values:
      amount: [40, 12.5]
      flag: [true, null]
    tags: {use_case: typed, priority: P0}
    slots: {amount: "{amount}", flag: "{flag}"}
    turns:
      - user: "send {amount} ({flag})"
"""


@pytest.fixture(scope="module")
def project(isolated_actions_module: None) -> Iterator[Project]:
    yield load_project_or_raise(REPO)


def templates_file(tmp_path: Path, text: str, name: str = "templates.yml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def small(tmp_path: Path) -> TemplateSet:
    return load_templates(templates_file(tmp_path, SMALL))


# -- expansion --------------------------------------------------------------------------------


def test_a_template_makes_the_product_of_its_lists_and_table_rows(tmp_path: Path) -> None:
    templates = small(tmp_path)
    assert [t.size for t in templates.templates] == [3 * 2 * 2, 2 * 2]
    cases = generate_cases(templates)
    assert len(cases) == templates.size == 16
    greet = [c for c in cases if c["case_id"].startswith("greet-")]
    # Every combination once; a table row's values stay together.
    combos = {(c["turns"][0]["user"], c["turns"][1]["user"], c["turns"][0]["expect"]["bot"][0]) for c in greet}
    assert len(combos) == 12
    assert ("hey there", "goodbye {name}", "utter_greet") in combos
    assert {c["case_id"] for c in greet} == {f"greet-{i:02d}" for i in range(12)}
    assert all(c["turns"][0]["expect"]["intent"] == "greet" for c in greet)


def test_whole_placeholders_keep_their_type_and_escaped_braces_stay_literal(tmp_path: Path) -> None:
    cases = {c["case_id"]: c for c in generate_cases(small(tmp_path))}
    typed = [c for c in cases.values() if c["case_id"].startswith("typed-")]
    assert {(c["slots"]["amount"], c["slots"]["flag"]) for c in typed} == {
        (40, True),
        (40, None),
        (12.5, True),
        (12.5, None),
    }
    assert {c["turns"][0]["user"] for c in typed} == {
        "send 40 (true)",
        "send 40 (null)",
        "send 12.5 (true)",
        "send 12.5 (null)",
    }
    greet = [c for c in cases.values() if c["case_id"].startswith("greet-")]
    # {{name}} in the template is a literal {name}; a value is taken as it is written.
    assert {c["turns"][1]["user"] for c in greet} == {"bye {name}", "goodbye {name}"}
    assert sum(c["turns"][0]["expect"]["bot"] == ["{{literal}}"] for c in greet) == 6


def test_a_sample_is_deterministic_for_a_seed_and_has_distinct_cases(tmp_path: Path) -> None:
    templates = load_templates(REFERENCE_TEMPLATES)
    first = generate_cases(templates, 300, seed=7)
    assert first == generate_cases(templates, 300, seed=7)
    assert first != generate_cases(templates, 300, seed=8)
    assert len(first) == 300 and len({c["case_id"] for c in first}) == 300
    # Shares follow the weights: a weight-3 template gets three times a weight-1 one (give or
    # take the rounding), once the templates with fewer combinations than their share are full.
    per_template = Counter(c["case_id"].rsplit("-", 1)[0] for c in first)
    assert per_template["gen-smalltalk"] == 11  # all 11 of its combinations
    assert abs(per_template["gen-account"] - 3 * per_template["gen-ticket-denied"]) <= 3


def test_shares_follow_weights_without_exceeding_a_templates_product() -> None:
    assert shares([100, 100, 100], [1, 2, 1], 40) == [10, 20, 10]
    assert shares([5, 1000], [1, 1], 100) == [5, 95]  # the small template is capped, the rest goes on
    assert sum(shares([7, 3, 50], [3, 1, 1], 59)) == 59
    with pytest.raises(GenerateError, match="more than the 60 distinct cases"):
        shares([10, 50], [1, 1], 61)


# -- output -----------------------------------------------------------------------------------


def test_written_files_pass_the_golden_schema_and_the_assistant_checks(tmp_path: Path, project: Project) -> None:
    templates = load_templates(REFERENCE_TEMPLATES)
    cases = generate_cases(templates, 120, seed=3)
    files = write_golden(cases, tmp_path / "out", per_file=50, stubs=templates.stubs, note=" (test)")
    assert [f.name for f in files] == ["golden-0001.yml", "golden-0002.yml", "golden-0003.yml"]
    assert files[0].read_text("utf-8").startswith(GENERATED_MARK)
    golden = load_golden(project, tmp_path / "out")
    assert golden.diagnostics == ()
    assert [c["case_id"] for c in golden.cases] == [c["case_id"] for c in cases]
    # The file's default stubs are merged into each case; the case's own stubs win.
    loaded = {c["case_id"]: c for c in golden.cases}
    for case in cases:
        stubs = loaded[case["case_id"]]["stubs"]
        assert set(stubs) >= set(templates.stubs or {}) | set(case.get("stubs", {}))
        assert case_from_dict(loaded[case["case_id"]]).turns  # rebuilds


def test_a_generated_set_passes_on_the_reference_assistant(tmp_path: Path, reference_models: Path) -> None:
    code = main(["golden", "generate", str(REFERENCE_TEMPLATES), "--out", str(tmp_path / "g"), "--count", "50"])
    assert code == 0
    report = run_golden(REPO, model=reference_models, golden=tmp_path / "g")
    failures = [f"{f['case_id']}: {f['cause']} {f['message']}" for f in report["failed_cases"]]
    assert report["n_cases"] == 50 and not failures, "\n".join(failures)
    use_cases = {c["tags"]["use_case"] for c in report["cases"]}
    assert use_cases >= {"faq", "account_lookup", "create_ticket", "human_handoff", "cancel", "smalltalk"}
    assert any("interruption" in c["tags"]["labels"] for c in report["cases"])


def test_the_folder_is_not_overwritten_without_force(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    args = ["golden", "generate", str(templates_file(tmp_path, SMALL)), "--out", str(out)]
    assert main([*args, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["cases"] == 16 and summary["possible"] == 16 and len(summary["files"]) == 1
    assert main(args) == 2
    assert "already holds 1 generated file(s)" in capsys.readouterr().err
    assert main([*args, "--force", "--per-file", "10"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["golden-0001.yml", "golden-0002.yml"]
    (out / "mine.yml").write_text("cases: []\n", encoding="utf-8")
    assert main([*args, "--force"]) == 2
    err = capsys.readouterr().err
    assert "not written by `taiwa golden generate`: mine.yml" in err and (out / "mine.yml").exists()


def test_usage_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = str(templates_file(tmp_path, SMALL))
    out = str(tmp_path / "o")
    cases: list[tuple[list[str], str]] = [
        (["golden", "generate", str(tmp_path / "nope.yml"), "--out", out], "does not exist"),
        (["golden", "generate", path, "--out", out, "--count", "17"], "--count 17 is more than the 16 distinct cases"),
        (["golden", "generate", path, "--out", out, "--count", "0"], "--count must be 1 or more"),
        (["golden", "generate", path, "--out", out, "--per-file", "0"], "--per-file must be 1 or more"),
        (["golden"], "taiwa golden generate TEMPLATES --out DIR"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        assert message in capsys.readouterr().err, argv
    assert not (tmp_path / "o").exists()


# -- mistakes in a templates file ----------------------------------------------------------------

BROKEN = """\
templates:
  - case_id: ticket
    values:
      opener: [open a ticket]
      summry: [the app is slow]
      prio:
        - {said: high please, level: high}
        - {said: whenever}
    tags: {use_case: create_ticket, priority: P1}
    turns:
      - user: "{opener}"
      - user: "{summary}"
        expect: {intnt: open_ticket}
  - case_id: ticket
    tags: {use_case: create_ticket, priority: P3}
    turns:
      - user: hello
"""


def test_every_mistake_is_reported_at_its_line_with_a_fix(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = templates_file(tmp_path, BROKEN)
    with pytest.raises(TemplateSetError) as caught:
        load_templates(path, "t.yml")
    lines = [d.format().splitlines()[0] for d in caught.value.diagnostics]
    assert lines == [
        "t.yml:5:7: error[E101] template 'ticket' gives values for `summry` but never uses {summry}",
        "t.yml:8:11: error[E102] row 2 of table `prio` lacks `level`",
        "t.yml:12:15: error[E102] template 'ticket' uses {summary} but its `values:` do not give `summary`",
        "t.yml:13:18: error[E101] unknown key `intnt` in `templates[0].turns[1].expect`",
        "t.yml:14:14: error[E201] two templates have the case_id 'ticket': their cases would get the same ids",
        't.yml:15:47: error[E104] in `templates[1].tags.priority`: "P3" is not allowed',
    ]
    unknown = next(d for d in caught.value.diagnostics if "{summary}" in d.message)
    assert unknown.suggestion == "summry" and "write {{summary}} for a literal {summary}" in (unknown.fix or "")
    intnt = next(d for d in caught.value.diagnostics if "intnt" in d.message)
    assert intnt.suggestion == "intent"
    assert main(["golden", "generate", str(path), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert f"{path.as_posix()}:12:15: error[E102]" in err and "6 error(s) in the templates" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("text", "first_line"),
    [
        ("templates: [\n", "t.yml:2:1: error[E001]"),
        ("cases: []\n", "t.yml:1:1: error[E101] unknown top-level key `cases`"),
        ("templates:\n  - 3\n", "t.yml:2:5: error[E103] template 1 must be a mapping"),
        (
            "templates:\n  - case_id: a\n    values: {x: []}\n    tags: {use_case: a, priority: P0}\n    turns: [{user: '{x}'}]\n",
            "t.yml:3:14: error[E107] `values.x` must be a non-empty list",
        ),
        (
            "templates:\n  - case_id: a\n    weight: 0\n    tags: {use_case: a, priority: P0}\n    turns: [{user: hi}]\n",
            "t.yml:3:13: error[E103] `weight` must be a whole number of 1 or more, got 0",
        ),
    ],
)
def test_the_shape_of_the_file_is_checked(tmp_path: Path, text: str, first_line: str) -> None:
    with pytest.raises(TemplateSetError) as caught:
        load_templates(templates_file(tmp_path, text), "t.yml")
    assert caught.value.diagnostics[0].format().splitlines()[0].startswith(first_line)
    assert all(d.fix for d in caught.value.diagnostics)


def test_the_reference_templates_load(tmp_path: Path) -> None:
    templates = load_templates(REFERENCE_TEMPLATES)
    assert templates.size > 20_000
    assert {t.prefix for t in templates.templates} >= {"gen-faq", "gen-account", "gen-ticket", "gen-handoff"}
    data: Any = templates.stubs
    assert set(data) == {"crm_lookup", "create_ticket"}
