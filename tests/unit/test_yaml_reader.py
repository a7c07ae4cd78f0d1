"""The YAML reader: positions of keys, values and list items, and every read error as a
located diagnostic (never an exception)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from engine.diagnostics import Diagnostic, Location
from engine.loading import yaml_reader
from engine.loading.yaml_reader import SourceFile, parse_text, read_source, to_plain, yaml_type_name

DOC = """\
# a comment
intents:
  - greet
  - bye:
      description: x
slots:
  name:
    type: text
    initial_value: "quoted"
    values: [a, 'b']
flow: {a: 1, b: [x, y]}
block: |
  line
"""


def parse(text: str, kind: str = "domain") -> SourceFile:
    source, diags = parse_text(text, f"{kind}/a.yml", kind)
    assert source is not None, [d.format() for d in diags]
    assert diags == []
    return source


def parse_error(text: str, kind: str = "domain") -> Diagnostic:
    source, diags = parse_text(text, f"{kind}/a.yml", kind)
    assert source is None
    assert len(diags) == 1
    return diags[0]


def at(line: int, col: int) -> Location:
    return Location("domain/a.yml", line, col)


@pytest.mark.parametrize(
    ("path", "key", "where"),
    [
        ((), False, at(1, 1)),
        (("intents",), False, at(2, 1)),  # a block list: its key, not its first item
        (("intents", 0), False, at(3, 5)),
        (("intents", 1), False, at(4, 5)),
        (("intents", 1, "bye"), True, at(4, 5)),
        (("intents", 1, "bye", "description"), False, at(5, 20)),
        (("slots", "name", "type"), False, at(8, 11)),
        (("slots", "name", "type"), True, at(8, 5)),
        (("slots", "name", "initial_value"), False, at(9, 20)),
        (("slots", "name", "values"), False, at(10, 13)),  # a flow list: where it starts
        (("slots", "name", "values", 0), False, at(10, 14)),
        (("slots", "name", "values", 1), False, at(10, 17)),
        (("flow",), False, at(11, 7)),
        (("flow", "b", 1), False, at(11, 21)),
        (("block",), False, at(12, 8)),
        (("missing",), False, at(1, 1)),  # lost: the nearest known ancestor
        (("slots", "name", "missing"), False, at(7, 3)),
        (("intents", 99), False, at(2, 1)),
    ],
)
def test_positions(path: tuple[str | int, ...], key: bool, where: Location) -> None:
    assert parse(DOC).loc(list(path), key=key) == where


@pytest.mark.parametrize(
    ("path", "offset"),
    [
        (("slots", "name", "initial_value"), 1),  # "quoted"
        (("slots", "name", "values", 1), 1),  # 'b'
        (("slots", "name", "values", 0), 0),  # a
        (("slots", "name", "type"), 0),
        (("block",), 0),
        (("nope", 3), 0),
    ],
)
def test_quoted_scalars_shift_columns_by_one(path: tuple[str | int, ...], offset: int) -> None:
    assert parse(DOC).value_column_offset(list(path)) == offset


def test_plain_data_and_text_are_kept() -> None:
    source = parse(DOC)
    assert source.data["intents"] == ["greet", {"bye": {"description": "x"}}]
    assert source.data["slots"]["name"]["values"] == ["a", "b"]
    assert source.data["block"] == "line\n"
    assert source.text == DOC
    assert source.kind == "domain" and source.path == "domain/a.yml"


def test_to_plain_makes_json_types() -> None:
    source = parse("d: 2024-01-02\nt: 2024-01-02 03:04:05\nb: !!binary aGk=\ntrue: 1\nnull: 2\n3: 3\nf: 1.5\n")
    assert source.data == {
        "d": "2024-01-02",
        "t": "2024-01-02T03:04:05",
        "b": "hi",
        "true": 1,
        "null": 2,
        "3": 3,
        "f": 1.5,
    }
    assert type(source.data["f"]) is float
    assert to_plain((1, [2])) == [1, [2]]


def test_positions_of_non_string_keys() -> None:
    source = parse("a: 1\ntrue:\n  x: 1\nnull: 2\n")
    assert source.loc(["true", "x"]) == at(3, 6)
    assert source.loc(["null"]) == at(4, 7)


def test_duplicate_key_is_e002_with_both_places() -> None:
    diag = parse_error("intents: [a]\nslots: {}\nintents: [b]\n")
    assert diag.code == "E002"
    assert diag.location == at(3, 1)
    assert diag.related == (at(1, 1),)
    assert "'intents'" in diag.message


def test_nested_duplicate_key() -> None:
    diag = parse_error("slots:\n  a:\n    type: text\n    type: bool\n")
    assert diag.code == "E002"
    assert diag.location == at(4, 5)
    assert diag.related == (at(3, 5),)


def test_syntax_error_is_e001_at_its_position() -> None:
    diag = parse_error("intents:\n  - greet\n  bad: [\n")
    assert diag.code == "E001"
    assert diag.location is not None and diag.location.line >= 3


def test_tab_indentation_is_explained() -> None:
    diag = parse_error("intents:\n\t- greet\n")
    assert diag.code == "E001"
    assert diag.location == at(2, 1)
    assert "tab" in diag.message


ALIAS_BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]\n" for i in range(8)
)


def test_alias_bomb_is_e006_not_a_hang() -> None:
    started = time.monotonic()
    diag = parse_error(ALIAS_BOMB)
    assert diag.code == "E006"
    assert "200,000" in diag.message
    assert time.monotonic() - started < 10


def test_deep_nesting_is_e006() -> None:
    diag = parse_error("a: " + "[" * 500 + "]" * 500 + "\n")
    assert diag.code == "E006"


def test_non_utf8_is_e003_with_position(tmp_path: Path) -> None:
    (tmp_path / "domain").mkdir()
    path = tmp_path / "domain" / "bad.yml"
    path.write_bytes(b"intents:\n  - gr\xe9et\n")
    source, diags = read_source(tmp_path, path, "domain")
    assert source is None
    [diag] = diags
    assert diag.code == "E003"
    assert diag.location == Location("domain/bad.yml", 2, 7)
    assert "0xe9" in diag.message


def test_non_utf8_on_the_first_line(tmp_path: Path) -> None:
    (tmp_path / "flows").mkdir()
    path = tmp_path / "flows" / "bad.yml"
    path.write_bytes(b"\xff\xfe")
    _, [diag] = read_source(tmp_path, path, "flows")
    assert (diag.code, diag.location) == ("E003", Location("flows/bad.yml", 1, 1))


def test_too_large_file_is_e006(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(yaml_reader, "MAX_BYTES", 10)
    (tmp_path / "domain").mkdir()
    path = tmp_path / "domain" / "big.yml"
    path.write_text("intents: [a, b, c]\n")
    _, [diag] = read_source(tmp_path, path, "domain")
    assert diag.code == "E006"
    assert diag.location == Location("domain/big.yml", 1, 1)


def test_reads_a_good_file(tmp_path: Path) -> None:
    (tmp_path / "nlu_data" / "sub").mkdir(parents=True)
    path = tmp_path / "nlu_data" / "sub" / "x.yml"
    path.write_text("nlu: []\n", encoding="utf-8")
    source, diags = read_source(tmp_path, path, "nlu_data")
    assert diags == [] and source is not None
    assert source.path == "nlu_data/sub/x.yml"


@pytest.mark.parametrize(("text", "got"), [("- a\n", "a list"), ("just text\n", "a string"), ("3\n", "an integer")])
def test_top_level_must_be_a_mapping(text: str, got: str) -> None:
    diag = parse_error(text, "flows")
    assert diag.code == "E004"
    assert got in diag.message
    assert "`flows:`" in (diag.expected or "")


@pytest.mark.parametrize("text", ["", "# only a comment\n", "---\n"])
def test_empty_file_is_w001(text: str) -> None:
    diag = parse_error(text)
    assert (diag.code, diag.severity) == ("W001", "warning")


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("a: &x 1\nb: &x 2\n", None),  # a reused anchor is legal YAML (ruamel only warns)
        ("%YAML 1.1\n---\na: 1e2\n", None),  # so is a YAML 1.1 float without a dot
        ("a: !!omap [x: 1, x: 2]\n", "E001"),  # ruamel trips an assert on the repeated key
        ("a: !!int nope\n", "E001"),
        ("a: " + "9" * 5000 + "\n", "E001"),  # beyond int()'s digit limit
        ("a: 2001-13-45\n", "E001"),
    ],
)
def test_odd_yaml_never_raises(text: str, code: str | None) -> None:
    source, diags = parse_text(text, "domain/a.yml", "domain")
    assert [d.code for d in diags] == ([code] if code else [])
    assert (source is None) == (code is not None)


def test_surrogate_escapes_become_valid_text() -> None:
    source = parse('a: "\\ud83d\\ude00 \\ud800"\n"\\udc00": 1\n')
    assert source.data["a"] == "\U0001f600 \ufffd"
    assert "\ufffd" in source.data
    assert source.loc(["\ufffd"], key=True) == at(2, 1)
    for value in (*source.data, source.data["a"]):
        value.encode("utf-8")


@pytest.mark.parametrize(
    ("value", "name"),
    [
        (None, "null"),
        (True, "a boolean"),
        (1, "an integer"),
        (1.5, "a number"),
        ("s", "a string"),
        ([], "a list"),
        ({}, "a mapping"),
        (object(), "object"),
    ],
)
def test_yaml_type_name(value: object, name: str) -> None:
    assert yaml_type_name(value) == name
