"""The `taiwa` command line, run in-process (plus one run of the installed script)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from cli.main import main
from engine import __version__
from engine.flows.diagram import step_label
from engine.loading.project import load_project
from engine.loading.schema_check import SCHEMA_KINDS
from engine.loading.yaml_reader import parse_text

ROOT = Path(__file__).resolve().parents[2]
DOT = shutil.which("dot")


pytestmark = pytest.mark.usefixtures("isolated_actions")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def usage_exit(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """Run a command line that argparse rejects; return stderr."""
    with pytest.raises(SystemExit) as info:
        main(list(argv))
    assert info.value.code == 2
    return capsys.readouterr().err


# -- validate ---------------------------------------------------------------------------


def test_validate_reference_assistant(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    code, out, err = run(capsys, "validate")
    assert code == 0, out + err
    last = out.strip().splitlines()[-1]
    assert last.startswith("✓ valid: ")
    assert "flows" in last and "examples (en)" in last


def test_validate_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "validate", "--project", str(ROOT), "--json", "--no-actions")
    assert code == 0
    report = json.loads(out)
    assert report["valid"] is True
    assert report["errors"] == []
    summary = report["summary"]
    assert summary["flows"] >= 1 and summary["intents"] >= 1 and summary["examples"] >= 1
    assert set(summary["files"]) == set(SCHEMA_KINDS)
    assert set(summary["revisions"]) >= {"domain", "flows", "config"}


def test_validate_broken_project(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    for kind in ("domain", "flows", "nlu_data"):
        shutil.copytree(ROOT / kind, tmp_path / kind)
    (tmp_path / "flows" / "broken.yml").write_text(
        "flows:\n  x:\n    description: d\n    steps:\n      - utter: nope\n"
    )
    code, out, _ = run(capsys, "validate", "--project", str(tmp_path))
    assert code == 1
    assert "flows/broken.yml:5:" in out and "error[E302]" in out
    assert out.strip().splitlines()[-1].startswith("✗ ")
    code, out, _ = run(capsys, "validate", "--project", str(tmp_path), "--json")
    report = json.loads(out)
    assert code == 1 and report["valid"] is False
    assert {e["code"] for e in report["errors"]} == {"E302"}


@pytest.mark.parametrize("command", ["validate", "visualize"])
def test_missing_project_dir(capsys: pytest.CaptureFixture[str], command: str) -> None:
    code, out, err = run(capsys, command, "--project", "/nonexistent/taiwa-project")
    assert code == 2
    assert "does not exist" in err and out == ""


def test_project_that_is_a_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    code, _, err = run(capsys, "validate", "--project", str(tmp_path / "f"))
    assert code == 2 and "not a folder" in err


# -- init -------------------------------------------------------------------------------


def test_init_creates_a_valid_project(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    target = tmp_path / "bot"
    code, out, _ = run(capsys, "init", str(target))
    assert code == 0
    assert "Created a new assistant" in out and "taiwa validate" in out
    yaml_files = [p for kind in SCHEMA_KINDS for p in sorted((target / kind).rglob("*.yml"))]
    assert {p.parent.name for p in yaml_files} == set(SCHEMA_KINDS)
    for path in yaml_files:
        kind = path.parent.name
        first = path.read_text("utf-8").splitlines()[0]
        assert first == f"# yaml-language-server: $schema=../.schemas/{kind}.schema.json", path
        schema = path.parent / f"../.schemas/{kind}.schema.json"
        assert schema.resolve().is_file(), schema
        json.loads(schema.read_text("utf-8"))
    code, out, err = run(capsys, "validate", "--project", str(target))
    assert code == 0, out + err
    assert "✓ valid" in out


def test_init_refuses_a_non_empty_dir(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    code, out, err = run(capsys, "init", str(tmp_path))
    assert code == 2
    assert "not empty" in err and "--force" in err
    assert out == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]

    code, _, _ = run(capsys, "init", str(tmp_path), "--force")
    assert code == 0
    assert (tmp_path / "notes.txt").read_text() == "mine"
    assert (tmp_path / "flows").is_dir()
    code, out, err = run(capsys, "validate", "--project", str(tmp_path), "--no-actions")
    assert code == 0, out + err


def test_init_into_a_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    code, _, err = run(capsys, "init", str(tmp_path / "f"))
    assert code == 2 and "not a folder" in err


# -- schema export ----------------------------------------------------------------------


def test_schema_export(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, _ = run(capsys, "schema", "export", str(tmp_path / "schemas"))
    assert code == 0
    written = sorted((tmp_path / "schemas").iterdir())
    assert [p.name for p in written] == sorted(f"{kind}.schema.json" for kind in SCHEMA_KINDS)
    assert out.count("wrote ") == 4
    for kind in SCHEMA_KINDS:
        schema = json.loads((tmp_path / "schemas" / f"{kind}.schema.json").read_text("utf-8"))
        Draft202012Validator.check_schema(schema)
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        validator = Draft202012Validator(schema)
        files = sorted((ROOT / kind).rglob("*.yml"))
        assert files
        for path in files:
            source, diags = parse_text(path.read_text("utf-8"), path.name, kind)
            assert source is not None, diags
            errors = [e.message for e in validator.iter_errors(source.data)]
            assert errors == [], f"{path}: {errors}"


def test_schema_export_rejects_a_file_and_a_missing_action(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    code, _, err = run(capsys, "schema", "export", str(tmp_path / "f"))
    assert code == 2 and "not a folder" in err
    code, _, err = run(capsys, "schema")
    assert code == 2 and "schema export" in err


# -- visualize --------------------------------------------------------------------------


def mermaid_text(text: str) -> str:
    return text.replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;")


def test_visualize_all_flows(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "visualize", "--project", str(ROOT))
    assert code == 0
    assert out.startswith("flowchart TD\n")
    project = load_project(ROOT, import_actions=False).project
    assert project is not None
    for fid, graph in project.graphs.items():
        assert f"{fid} ({graph.flow.mode})" in out
        for step in graph.flow.steps:
            assert mermaid_text(step_label(step)) in out, (fid, step.id)


def test_visualize_one_flow(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "visualize", "create_ticket", "--project", str(ROOT))
    assert code == 0
    assert out.startswith("flowchart TD\n")
    assert "account_lookup (" not in out
    project = load_project(ROOT, import_actions=False).project
    assert project is not None
    graph = project.graphs["create_ticket"]
    for step in graph.flow.steps:
        assert mermaid_text(step_label(step)) in out, step.id
    labels = {e.label for edges in graph.edges.values() for e in edges if e.label}
    assert {"confirm_ticket == true", "else", "on failure"} <= labels
    for label in labels:
        assert mermaid_text(label) in out, label
    assert "collect ticket_priority" in out and "action create_ticket" in out


def test_visualize_unknown_flow(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "visualize", "create_tiket", "--project", str(ROOT))
    assert code == 2 and out == ""
    assert "there is no flow 'create_tiket'" in err
    assert "did you mean 'create_ticket'?" in err


def test_visualize_dot(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, _ = run(capsys, "visualize", "--project", str(ROOT), "--format", "dot")
    assert code == 0
    assert out.startswith("digraph flows {") and out.rstrip().endswith("}")
    assert "confirm_ticket == true" in out
    if DOT is None:
        pytest.skip("Graphviz `dot` is not installed: the DOT text was not checked by Graphviz")
    proc = subprocess.run([DOT, "-Tsvg"], input=out.encode(), capture_output=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr.decode()
    assert b"<svg" in proc.stdout


def test_visualize_dot_to_a_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    target = tmp_path / "flows.dot"
    code, out, _ = run(capsys, "visualize", "faq", "--project", str(ROOT), "--format", "dot", "-o", str(target))
    assert code == 0 and out == f"wrote {target}\n"
    assert target.read_text("utf-8").startswith("digraph flows {")


def test_visualize_png(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run(capsys, "visualize", "--project", str(ROOT), "--format", "png")
    assert code == 2 and "--output" in err
    if DOT is None:
        pytest.skip("Graphviz `dot` is not installed: PNG output cannot be produced")
    target = tmp_path / "x.png"
    code, out, err = run(capsys, "visualize", "--project", str(ROOT), "--format", "png", "--output", str(target))
    assert code == 0, err
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"wrote {target}" in out


def test_visualize_broken_project(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "flows").mkdir()
    code, out, err = run(capsys, "visualize", "--project", str(tmp_path))
    assert code == 1 and out == ""
    assert "E005" in err and "taiwa validate" in err


# -- errors -----------------------------------------------------------------------------


@pytest.mark.parametrize("code_arg", ["E307", "e307"])
def test_errors_one_code(capsys: pytest.CaptureFixture[str], code_arg: str) -> None:
    code, out, _ = run(capsys, "errors", code_arg)
    assert code == 0
    assert out.startswith("E307  error")
    assert "Fix: " in out
    assert out.count("\n") == 2


def test_errors_unknown_code(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "errors", "E999")
    assert code == 2 and out == ""
    assert "E999" in err


def test_errors_list_and_markdown(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "errors")
    assert code == 0 and "E001" in out and "W001" in out
    code, out, _ = run(capsys, "errors", "--markdown")
    assert code == 0 and out.startswith("# taiwa diagnostics\n")


# -- usage ------------------------------------------------------------------------------


def test_no_command_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys)
    assert code == 2
    assert "validate" in out and "visualize" in out


@pytest.mark.parametrize(
    "argv",
    [["--bogus"], ["validate", "--bogus"], ["nonsense"], ["visualize", "--format", "svg"], ["init"]],
)
def test_bad_options_exit_2(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    err = usage_exit(capsys, *argv)
    assert "error:" in err and "--help" in err


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["validate", "--help"])
    assert info.value.code == 0
    assert "--project" in capsys.readouterr().out


def test_installed_script_version() -> None:
    script = shutil.which("taiwa") or str(Path(sys.executable).parent / "taiwa")
    if not Path(script).is_file():
        pytest.skip("the `taiwa` console script is not installed (run `pip install -e .`)")
    proc = subprocess.run([script, "--version"], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"taiwa {__version__}"
