"""Reading and checking golden sets: every mistake located at file:line:col with a fix."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.evaluation.golden import case_from_dict
from engine.evaluation.golden_load import GoldenSet, load_golden
from engine.loading.project import Project, load_project_or_raise

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def project(isolated_actions_module: None) -> Iterator[Project]:
    yield load_project_or_raise(REPO)


def golden_dir(tmp_path: Path, **files: str) -> Path:
    folder = tmp_path / "golden"
    folder.mkdir()
    for name, text in files.items():
        (folder / f"{name}.yml").write_text(text, encoding="utf-8")
    return folder


def first_lines(golden: GoldenSet) -> list[str]:
    return [d.format().splitlines()[0] for d in golden.diagnostics]


def test_the_reference_golden_set_is_valid_and_covers_every_use_case(project: Project) -> None:
    golden = load_golden(project)
    assert golden.diagnostics == ()
    assert len(golden.cases) >= 60
    cases = [case_from_dict(c) for c in golden.cases]
    assert {c.use_case for c in cases} >= {
        "faq",
        "account_lookup",
        "create_ticket",
        "human_handoff",
        "smalltalk",
        "out_of_scope",
        "fallback",
        "guardrail",
    }
    labels = {label for c in cases for label in c.labels}
    assert labels >= {"interruption", "cancel", "correction", "fallback", "tool_failure"}
    assert {c.priority for c in cases} == {"P0", "P1"}
    stubbed = {a.kind for c in cases for answers in c.stubs.values() for a in answers}
    assert stubbed == {"result", "timeout", "4xx", "5xx", "raise"}
    assert all(c.source.startswith("tests/golden/") for c in cases)


def test_schema_errors_point_at_the_line_and_column(project: Project, tmp_path: Path) -> None:
    folder = golden_dir(
        tmp_path,
        broken="""cases:
  - case_id: greet
    tags: {use_case: smalltalk, priority: P2}
    turns:
      - user: hi
        expect: {intnet: greet}
""",
    )
    golden = load_golden(project, folder)
    assert golden.cases == ()
    path = f"{folder.as_posix()}/broken.yml"
    assert first_lines(golden) == [
        f'{path}:3:43: error[E104] in `cases[0].tags.priority`: "P2" is not allowed',
        f"{path}:6:18: error[E101] unknown key `intnet` in `cases[0].turns[0].expect`",
    ]
    unknown_key = golden.diagnostics[1]
    assert unknown_key.suggestion == "intent"
    assert unknown_key.fix


def test_names_are_checked_against_the_assistant(project: Project, tmp_path: Path) -> None:
    folder = golden_dir(
        tmp_path,
        names="""cases:
  - case_id: typos
    tags: {use_case: faq, priority: P0}
    stubs:
      kb_serch: {result: {kb_answer: x}}
    turns:
      - intent: greett
        expect: {bot: [utter_gret], active_flow: faqq, slots: {ticket_priority: extreme}}
""",
    )
    golden = load_golden(project, folder)
    by_code = {d.code: d for d in golden.diagnostics}
    assert sorted(by_code) == ["E302", "E303", "E304", "E306", "E314"]
    assert by_code["E303"].suggestion == "kb_search" and str(by_code["E303"].location).endswith("names.yml:5:7")
    assert by_code["E304"].suggestion == "greet" and str(by_code["E304"].location).endswith("names.yml:7:17")
    assert by_code["E302"].suggestion == "utter_greet"
    assert by_code["E306"].suggestion == "faq"
    assert "can never pass" in by_code["E314"].message and by_code["E314"].valid == ("high", "low", "medium")


def test_duplicate_case_ids_across_files_name_both_places(project: Project, tmp_path: Path) -> None:
    case = "cases:\n  - case_id: same\n    tags: {use_case: faq, priority: P1}\n    turns: [{user: hi}]\n"
    folder = golden_dir(tmp_path, a=case, b=case)
    (diag,) = load_golden(project, folder).diagnostics
    assert diag.code == "E401"
    assert str(diag.location) == f"{folder.as_posix()}/b.yml:2:14"
    assert [str(r) for r in diag.related] == [f"{folder.as_posix()}/a.yml:2:14"]


def test_turn_and_stub_kinds_and_shortcuts(project: Project, tmp_path: Path) -> None:
    folder = golden_dir(
        tmp_path,
        kinds="""cases:
  - case_id: kinds
    tags: {use_case: faq, priority: P1}
    stubs:
      kb_search: {timeout: true, error: 4xx}
    turns:
      - user: hi
        intent: greet
      - entities: {priority: high}
      - user: '/inform{"priority": '
""",
    )
    lines = first_lines(load_golden(project, folder))
    assert [line.split(": ", 1)[1].split("]")[0] for line in lines] == [
        "error[E108",
        "error[E108",
        "error[E108",
        "error[E109",
        "error[E403",
    ]
    assert "this stub has several (timeout, error)" in lines[0]
    assert "both `user` and `intent`" in lines[1]


def test_a_missing_golden_folder_is_reported(project: Project, tmp_path: Path) -> None:
    (diag,) = load_golden(project, tmp_path / "nowhere").diagnostics
    assert diag.code == "E402" and "does not exist" in diag.message


def test_file_default_stubs_are_merged_under_the_case_stubs(project: Project, tmp_path: Path) -> None:
    folder = golden_dir(
        tmp_path,
        stubs="""stubs:
  kb_search: {error: 5xx}
  crm_lookup: {timeout: true}
cases:
  - case_id: own
    tags: {use_case: faq, priority: P1}
    stubs:
      kb_search: {result: {kb_answer: yes}}
    turns: [{intent: inform, entities: {priority: high}}]
""",
    )
    (case,) = [case_from_dict(c) for c in load_golden(project, folder).cases]
    assert {name: [a.kind for a in answers] for name, answers in case.stubs.items()} == {
        "kb_search": ["result"],
        "crm_lookup": ["timeout"],
    }
    assert case.turns[0].message == '/inform{"priority": "high"}'


def test_the_fast_reader_gives_the_round_trip_readers_data_and_positions() -> None:
    """Golden files are read with the C parser (generated sets are large); its values and every
    position an error could point at must be those of the reader the project files use."""
    from engine.loading.yaml_reader import parse_text

    def paths(value: object, path: tuple[str | int, ...] = ()) -> Iterator[tuple[str | int, ...]]:
        yield path
        if isinstance(value, dict):
            for k, v in value.items():
                yield from paths(v, (*path, k))
        elif isinstance(value, list):
            for i, v in enumerate(value):
                yield from paths(v, (*path, i))

    checked = 0
    for file in sorted((REPO / "tests" / "golden").glob("*.yml")):
        text = file.read_text(encoding="utf-8")
        text += "\nquoted: {a: \"x\", b: 'y', c: plain}\n"
        fast, _ = parse_text(text, file.name, "golden", fast=True)
        slow, _ = parse_text(text, file.name, "golden")
        assert fast is not None and slow is not None
        assert fast.data == slow.data
        for path in paths(slow.data):
            for key in (False, True):
                assert fast.loc(path, key=key) == slow.loc(path, key=key), (file.name, path, key)
            assert fast.value_column_offset(path) == slow.value_column_offset(path), (file.name, path)
            checked += 1
    assert checked > 1000
