"""Fuzz the project loader: whatever is in the YAML files, `load_project` returns a
LoadResult whose every diagnostic is located, and `load_project_or_raise` raises only
ProjectError.

Four sources of input: arbitrary bytes, arbitrary (YAML-flavoured) text, structured
documents that follow the schemas closely enough to reach the builders and cross-checks
(with random values mixed in), and mutations of the reference assistant's own files.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest
from fuzz_projects import DOCS, KINDS, MINIMAL, UNDER_KEYS, dump_yaml, mostly
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.diagnostics import ProjectError
from engine.errors import catalogue
from engine.loading.project import LoadResult, Project, load_project, load_project_or_raise

ROOT = Path(__file__).resolve().parents[2]
CODES = {spec.code for spec in catalogue()}
SCALE = float(os.environ.get("TAIWA_FUZZ_SCALE", "1"))
"""Multiply every example count (e.g. TAIWA_FUZZ_SCALE=20 for a long local run)."""


def fuzz(examples: int) -> settings:
    return settings(
        max_examples=max(1, int(examples * SCALE)),
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


def check_loads(root: Path, *, or_raise: bool = True) -> LoadResult:
    """Load ``root`` and check the loader's contract; ``or_raise`` also via load_project_or_raise."""
    result = load_project(root)
    if or_raise:
        try:
            project = load_project_or_raise(root)
        except ProjectError as exc:
            assert result.project is None
            assert [d.code for d in exc.errors] == [d.code for d in result.errors]
        else:
            assert isinstance(project, Project)
            assert result.project is not None
    assert isinstance(result, LoadResult)
    assert (result.project is None) == bool(result.errors)
    for diag in result.diagnostics:
        assert diag.code in CODES, diag.format()
        loc = diag.location
        assert loc is not None, diag.format()
        assert loc.path and loc.path.split("/")[0] in (*KINDS, "actions"), diag.format()
        assert loc.line >= 1 and loc.col >= 1, diag.format()
        for other in diag.related:
            assert other.line >= 1 and other.col >= 1, diag.format()
        diag.format().encode("utf-8")  # printable: no lone surrogates from YAML escapes
        json.dumps(diag.to_dict(), ensure_ascii=False).encode("utf-8")
    return result


def write_project(root: Path, files: dict[str, str | bytes]) -> None:
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")


def load_files(files: dict[str, str | bytes], *, or_raise: bool = True) -> LoadResult:
    # A fresh folder per example: function-scoped fixtures are shared by all examples.
    with tempfile.TemporaryDirectory() as tmp:
        write_project(Path(tmp), files)
        return check_loads(Path(tmp), or_raise=or_raise)


def minimal_with(rel: str, content: str | bytes, *, replace: bool) -> dict[str, str | bytes]:
    files: dict[str, str | bytes] = dict(MINIMAL)
    kind = rel.split("/")[0]
    if replace:
        for key in [k for k in files if k.startswith(kind + "/")]:
            del files[key]
    files[rel] = content
    return files


def test_minimal_project_loads_clean() -> None:
    result = load_files(dict(MINIMAL))
    assert result.project is not None, "\n".join(d.format() for d in result.diagnostics)
    assert not result.diagnostics, "\n".join(d.format() for d in result.diagnostics)


# -- (a) bytes and (b) text --------------------------------------------------------------


@fuzz(60)
@given(kind=st.sampled_from(KINDS), raw=st.binary(max_size=600), replace=st.booleans())
def test_arbitrary_bytes(kind: str, raw: bytes, replace: bool) -> None:
    load_files(minimal_with(f"{kind}/fuzz.yml", raw, replace=replace))


YAML_BITS = [
    "\n", "\n  ", "\n    ", " ", ": ", "- ", "? ", "[", "]", "{", "}", ", ", "&a ", "*a", "!!str ", "!!map ",
    "!!omap ", "!!set ", "!tag ", "'", '"', "# c", "|", "|-", ">", "---", "...", "%YAML 1.1\n", "<<: ", "~",
    "null", "true", "1e3", "0x1F", "-.inf", ".nan", "2001-12-14", "\t", "\\", "\u00e9", "\ufeff", "\x00",
    "flows", "steps", "collect", "next", "if", "then", "else", "intents", "slots", "type", "nlu", "examples",
    "rules", "when", "intent", "utter_greet", "END", "greet", "name", '"\\ud800"', '"\\ud83d\\ude00"',
]  # fmt: skip


@fuzz(60)
@given(
    kind=st.sampled_from(KINDS),
    text=st.one_of(st.text(max_size=300), st.lists(st.sampled_from(YAML_BITS), max_size=60).map("".join)),
    replace=st.booleans(),
)
def test_arbitrary_text(kind: str, text: str, replace: bool) -> None:
    load_files(minimal_with(f"{kind}/fuzz.yml", text.encode("utf-8", "surrogatepass"), replace=replace))


# -- (c) structured documents (strategies in fuzz_projects.py) ------------------------


@fuzz(100)
@given(data=st.data(), style=st.sampled_from(["block", "flow", "json"]))
def test_structured_documents(data: st.DataObject, style: str) -> None:
    files: dict[str, str | bytes] = dict(MINIMAL)
    for kind in data.draw(st.lists(st.sampled_from(KINDS), min_size=1, max_size=4, unique=True), label="kinds"):
        doc = data.draw(mostly(DOCS[kind]) if kind != "policies" else DOCS[kind], label=kind)
        rel = next(k for k in MINIMAL if k.startswith(kind + "/"))
        files[rel] = dump_yaml(doc, style)
    if data.draw(st.booleans(), label="under real keys"):
        doc = data.draw(UNDER_KEYS, label="extra")
        folder = {"flows": "flows", "slots": "domain", "responses": "domain", "nlu": "nlu_data", "rules": "policies"}
        files[f"{folder[next(iter(doc))]}/extra.yml"] = dump_yaml(doc, style)
    load_files(files)


# -- (d) mutations of the reference assistant -------------------------------------------


def _reference_files() -> dict[str, str]:
    out = {}
    for kind in KINDS:
        for path in sorted((ROOT / kind).rglob("*.yml")):
            out[path.relative_to(ROOT).as_posix()] = path.read_text("utf-8")
    return out


REFERENCE = _reference_files()


def mutate(text: str, op: str, i: int, j: int, junk: str) -> str:
    lines = text.splitlines(keepends=True)
    i, j = i % len(lines), j % len(lines)
    if op == "delete":
        del lines[i]
    elif op == "duplicate":
        lines.insert(i, lines[i])
    elif op == "swap":
        lines[i], lines[j] = lines[j], lines[i]
    else:
        pos = j % (len(lines[i]) + 1)
        lines[i] = lines[i][:pos] + junk + lines[i][pos:]
    return "".join(lines)


@fuzz(30)
@given(
    rel=st.sampled_from(sorted(REFERENCE)),
    op=st.sampled_from(["delete", "duplicate", "swap", "insert"]),
    i=st.integers(0, 10_000),
    j=st.integers(0, 10_000),
    junk=st.sampled_from([":", "- ", "  ", "\t", "'", "{", "x", "#", "&a ", "*a", "\n"]) | st.text(max_size=4),
)
def test_mutated_reference_files(rel: str, op: str, i: int, j: int, junk: str) -> None:
    files: dict[str, str | bytes] = dict(REFERENCE)
    files[rel] = mutate(REFERENCE[rel], op, i, j, junk)
    load_files(files, or_raise=False)  # the reference is slow to parse: once per example


def test_reference_copy_loads_clean() -> None:
    result = load_files(dict(REFERENCE), or_raise=False)
    assert result.project is not None, "\n".join(d.format() for d in result.errors)


# -- regressions found by the fuzzer ---------------------------------------------------------


@pytest.mark.parametrize(
    ("rel", "content", "code"),
    [
        ("domain/extra.yml", "a: &x 1\nb: &x 2\n", "E101"),  # reused anchor: a ruamel warning, not a crash
        ("domain/extra.yml", "%YAML 1.1\n---\nversion: 1e2\n", "E103"),  # YAML 1.1 float warning
        ("domain/extra.yml", "x: !!omap [a: 1, a: 2]\n", "E001"),  # ruamel asserts on the repeated key
        ("flows/extra.yml", 'flows:\n  f:\n    description: d\n    steps:\n      - utter: utter_greet\n'
         '        "\\ud800x": 1\n', "E101"),  # a lone surrogate in a message: UnicodeEncodeError when printed
        ("flows/extra.yml", "flows:\n  f:\n    description: d\n    if: '" + "(" * 300 + "x" + ")" * 300 + "'\n"
         "    steps:\n      - utter: utter_greet\n", "E315"),  # deep nesting: RecursionError
        ("flows/extra.yml", "flows:\n  f:\n    description: d\n    if: x == " + "9" * 5000 + "\n"
         "    steps:\n      - utter: utter_greet\n", "E315"),  # int() digit limit: ValueError
        ("nlu_data/extra.yml", "nlu:\n  - intent: greet\n    examples:\n      - '[a]{\"entity\": " + "[" * 5000
         + "]" * 5000 + "}'\n", "E318"),  # json.loads RecursionError
        ("nlu_data/extra.yml", "nlu:\n  - intent: greet\n    examples:\n      - '[a]{\"entity\": \"city\", "
         "\"value\": " + "9" * 5000 + "}'\n", "E318"),  # json.loads digit limit
    ],
)  # fmt: skip
def test_regressions(rel: str, content: str, code: str) -> None:
    files: dict[str, str | bytes] = dict(MINIMAL)
    files[rel] = content
    result = load_files(files)
    assert code in {d.code for d in result.diagnostics}, "\n".join(d.format() for d in result.diagnostics)


@pytest.mark.parametrize("step", ["7", "null", "[a, b]", "some text"])
def test_a_step_of_the_wrong_type_is_one_e103(step: str) -> None:
    # Found by the structured fuzzer: besides E103, a non-mapping step also "failed" the
    # kind-of-step rule (E109 "is valid under each of ...") and the link step's "no next"
    # rule (E109 "a `link` step ends the flow"), since `required` holds for non-objects.
    files: dict[str, str | bytes] = dict(MINIMAL)
    files["flows/extra.yml"] = f"flows:\n  f2:\n    description: d\n    steps:\n      - {step}\n"
    result = load_files(files)
    assert [(d.code, str(d.location)) for d in result.diagnostics] == [("E103", "flows/extra.yml:5:9")]
