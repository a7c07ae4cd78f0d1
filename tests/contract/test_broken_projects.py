"""Broken-project fixtures: each case breaks the tiny project one way and snapshots
the full text `taiwa validate` prints, plus its exit code.

A case is ``tests/fixtures/broken/<name>.yml``, a patch over ``tests/fixtures/tiny/``::

    description: what is broken
    files:            # written over (or added to) a copy of tiny/
      flows/order.yml: |
        ...the full new text...
    binary_files:     # optional: path -> base64 of the exact bytes (e.g. non-UTF-8)
      nlu_data/latin1.yml: bGFuZ3VhZ2U6IGVuCg==
    delete: [policies/rules.yml]   # optional: files or folders to remove
    exit_code: 1

and ``<name>.expected.txt`` next to it is the exact stdout (paths are relative to the
project, so the snapshot does not depend on where the copy lives).

To (re)write the snapshots after a deliberate change of a message, run

    TAIWA_UPDATE_SNAPSHOTS=1 .venv/bin/pytest tests/contract/test_broken_projects.py

then review every changed ``.expected.txt`` by eye (location, code, message, Fix line)
before committing it.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from cli.main import main

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
TINY = FIXTURES / "tiny"
BROKEN = FIXTURES / "broken"
UPDATE = os.environ.get("TAIWA_UPDATE_SNAPSHOTS") == "1"
CASE_KEYS = {"description", "files", "binary_files", "delete", "exit_code"}
CASES = sorted(p.stem for p in BROKEN.glob("*.yml"))


def load_case(name: str) -> dict[str, Any]:
    case: dict[str, Any] = YAML(typ="safe", pure=True).load((BROKEN / f"{name}.yml").read_text("utf-8"))
    assert isinstance(case, dict), f"{name}.yml: a case is a mapping"
    unknown = set(case) - CASE_KEYS
    assert not unknown, f"{name}.yml: unknown keys {sorted(unknown)}"
    assert isinstance(case.get("description"), str), f"{name}.yml: needs a `description`"
    assert case.get("exit_code") in (0, 1), f"{name}.yml: `exit_code` must be 0 or 1"
    return case


def make_project(tmp_path: Path, case: dict[str, Any]) -> Path:
    """A copy of tiny/ with the case's patch applied."""
    project = tmp_path / "project"
    shutil.copytree(TINY, project)
    for rel in case.get("delete", []):
        target = project / rel
        assert target.exists(), f"`delete` names {rel}, which tiny/ does not have"
        if target.is_dir():
            shutil.rmtree(target)
        else:
            target.unlink()
    for rel, text in (case.get("files") or {}).items():
        target = project / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    for rel, encoded in (case.get("binary_files") or {}).items():
        target = project / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(base64.b64decode(encoded))
    return project


def run_validate(project: Path, *extra: str) -> int:
    return main(["validate", "--project", str(project), *extra])


def test_tiny_project_is_valid_without_warnings(capsys: pytest.CaptureFixture[str]) -> None:
    code = run_validate(TINY)
    out = capsys.readouterr().out
    assert code == 0
    assert out.startswith("✓ valid:"), out
    assert "warning" not in out
    assert out.count("\n") == 1


def test_there_are_enough_cases() -> None:
    assert len(CASES) >= 30
    for name in CASES:
        assert (BROKEN / f"{name}.expected.txt").is_file() or UPDATE, f"{name}: no snapshot"


@pytest.mark.parametrize("name", CASES)
def test_broken_project(name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    case = load_case(name)
    project = make_project(tmp_path, case)
    code = run_validate(project)
    captured = capsys.readouterr()
    assert str(tmp_path) not in captured.out, "the output must use project-relative paths"
    assert captured.err == ""
    snapshot = BROKEN / f"{name}.expected.txt"
    if UPDATE:
        snapshot.write_text(captured.out, encoding="utf-8")
    assert captured.out == snapshot.read_text("utf-8")
    assert code == case["exit_code"]
    code_in_name = name.split("_", 1)[0].upper()
    if code_in_name[0] in "EW" and code_in_name[1:].isdigit():
        assert f"[{code_in_name}]" in captured.out, f"a {name} case must report {code_in_name}"
    if code == 0:
        assert "warning[" in captured.out, "an exit-0 case exists to show warnings"
    else:
        assert captured.out.rstrip().splitlines()[-1].startswith("✗ ")


def test_every_error_is_located_and_has_a_fix(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Via --json: each diagnostic of the multi-error case has a path, a line and a fix."""
    project = make_project(tmp_path, load_case("multi_error_several_files"))
    code = run_validate(project, "--json")
    report = json.loads(capsys.readouterr().out)
    assert code == 1
    assert report["valid"] is False
    assert len(report["errors"]) >= 4
    assert {e["path"].split("/")[0] for e in report["errors"]} >= {"domain", "flows", "nlu_data"}
    for error in report["errors"]:
        assert error["severity"] == "error"
        assert error["code"].startswith("E")
        assert error["line"] >= 1 and error["col"] >= 1
        assert error["fix"]
    keys = [(e["path"], e["line"], e["col"]) for e in report["errors"]]
    assert keys == sorted(keys)


def test_json_report_of_a_dangling_next(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    project = make_project(tmp_path, load_case("e307_next_to_missing_step"))
    code = run_validate(project, "--json")
    report = json.loads(capsys.readouterr().out)
    assert code == 1
    assert report["valid"] is False
    assert report["warnings"] == []
    [error] = report["errors"]
    assert error["code"] == "E307"
    assert error["path"] == "flows/order.yml"
    assert (error["line"], error["col"]) == (12, 19)
    assert error["suggestion"] == "place"
    assert "END" in error["valid"]
    assert "place" in error["valid"]
    assert error["fix"].startswith("Add a step with `id: plase`")
    assert "intents" not in report["summary"]


def test_missing_project_folder_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code = run_validate(Path("/nonexistent/taiwa-project"))
    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == ""
    assert "does not exist" in captured.err
    assert "Fix:" in captured.err


def test_project_path_that_is_a_file_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    file = tmp_path / "project.yml"
    file.write_text("intents: []\n", encoding="utf-8")
    code = run_validate(file)
    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == ""
    assert "is not a folder" in captured.err
