"""The diagnostic catalogue: stable, documented, and exactly the codes the engine uses."""

from __future__ import annotations

import re
from pathlib import Path

from engine.diagnostics import Location, ProjectError
from engine.errors import Errors, ErrorSpec, catalogue, catalogue_markdown

ROOT = Path(__file__).resolve().parents[2]
USE = re.compile(r"\bErrors\.([EW]\d{3})\b")


def engine_uses() -> dict[str, list[str]]:
    """Catalogue codes used in engine/ (outside the catalogue itself), with the files using them."""
    used: dict[str, list[str]] = {}
    for path in sorted((ROOT / "engine").rglob("*.py")):
        if path == ROOT / "engine" / "errors.py":
            continue
        for code in USE.findall(path.read_text("utf-8")):
            used.setdefault(code, []).append(path.relative_to(ROOT).as_posix())
    return used


def test_codes_are_well_formed_unique_and_ordered() -> None:
    declared = [(name, value) for name, value in vars(Errors).items() if isinstance(value, ErrorSpec)]
    assert declared, "the catalogue is empty"
    for name, spec in declared:
        assert name == spec.code, f"Errors.{name} holds the spec of {spec.code}"
        assert re.fullmatch(r"[EW]\d{3}", spec.code), spec.code
    codes = [spec.code for _, spec in declared]
    assert len(codes) == len(set(codes)), "a code is declared twice"
    errors = [c for c in codes if c.startswith("E")]
    warnings = [c for c in codes if c.startswith("W")]
    assert codes == errors + warnings, "errors first, then warnings"
    assert errors == sorted(errors) and warnings == sorted(warnings), "codes are declared in order"
    assert [s.code for s in catalogue()] == sorted(codes)


def test_every_spec_has_a_title_and_a_fix() -> None:
    for spec in catalogue():
        assert spec.title.strip() and spec.title.rstrip().endswith("."), spec.code
        assert spec.fix.strip() and len(spec.fix) > 10, spec.code
        assert spec.severity == ("error" if spec.code.startswith("E") else "warning")


def test_docs_match_the_catalogue() -> None:
    docs = ROOT / "docs" / "errors.md"
    assert docs.is_file(), "run `taiwa errors --markdown > docs/errors.md`"
    assert docs.read_text("utf-8") == catalogue_markdown(), (
        "docs/errors.md is out of date: run `taiwa errors --markdown > docs/errors.md`"
    )


def test_markdown_lists_every_code_once() -> None:
    rows = [line for line in catalogue_markdown().splitlines() if line.startswith("| ") and line[2] in "EW"]
    assert [row.split(" | ")[0][2:] for row in rows] == [s.code for s in catalogue()]
    assert all(row.count(" | ") == 3 for row in rows), "a `|` inside a cell is not escaped"


def test_every_code_used_in_the_engine_exists() -> None:
    known = {spec.code for spec in catalogue()}
    unknown = {code: files for code, files in engine_uses().items() if code not in known}
    assert not unknown, f"codes used but not in the catalogue: {unknown}"


def test_every_catalogue_code_is_used_in_the_engine() -> None:
    used = engine_uses()
    unused = [spec.code for spec in catalogue() if spec.code not in used]
    assert not unused, f"catalogue codes that nothing in engine/ reports: {unused}"


def test_at_builds_a_diagnostic_with_did_you_mean() -> None:
    loc = Location("flows/a.yml", 3, 7)
    diag = Errors.E301.at(loc, "unknown slot 'prioity'", valid=["priority", "name", "priority"], name="prioity")
    assert diag.code == "E301" and diag.severity == "error"
    assert diag.location == loc
    assert diag.valid == ("name", "priority")
    assert diag.suggestion == "priority"
    assert diag.fix == Errors.E301.fix
    text = diag.format()
    assert text.splitlines()[0] == "flows/a.yml:3:7: error[E301] unknown slot 'prioity'"
    assert "did you mean: 'priority'?" in text
    assert f"Fix: {Errors.E301.fix}" in text


def test_at_without_a_close_name_and_with_a_custom_fix() -> None:
    diag = Errors.W002.at(Location("domain/a.yml"), "m", valid=["alpha"], name="zzz", fix="Do this.")
    assert diag.severity == "warning"
    assert diag.suggestion is None
    assert diag.fix == "Do this."
    assert diag.to_dict()["fix"] == "Do this."
    assert diag.to_dict()["line"] == 1


def test_many_valid_names_are_shortened() -> None:
    diag = Errors.E304.at(Location("a.yml"), "m", valid=[f"n{i:02}" for i in range(25)])
    assert "(and 5 more)" in diag.format()


def test_project_error_lists_the_errors_only() -> None:
    error = Errors.E307.at(Location("flows/a.yml", 2, 3), "bad next")
    warning = Errors.W001.at(Location("flows/b.yml"), "empty")
    exc = ProjectError([error, warning])
    assert exc.errors == (error,)
    assert exc.diagnostics == (error, warning)
    assert str(exc).startswith("1 error(s) in the project\n")
    assert "E307" in str(exc) and "W001" not in str(exc)
    assert isinstance(exc, ValueError)
