"""Build :class:`~engine.nlu.training_data.TrainingData` from ``nlu_data/`` files.

Accepts both Rasa's block form (``examples: |`` with ``- `` lines) and a YAML list.
Each example keeps its own line, so annotation errors point at the right place.
"""

from __future__ import annotations

import re
from typing import Any

from ruamel.yaml.scalarstring import FoldedScalarString, LiteralScalarString

from engine.diagnostics import Diagnostic, Location
from engine.errors import Errors
from engine.loading.yaml_reader import PathPart, SourceFile
from engine.nlu.training_data import (
    AnnotationError,
    Example,
    LookupTable,
    RegexFeature,
    TrainingData,
    parse_annotated,
    split_block_examples,
)

DEFAULT_LANGUAGE = "en"


def build_nlu(files: list[SourceFile]) -> tuple[TrainingData, list[Diagnostic]]:
    diags: list[Diagnostic] = []
    language: tuple[str, Location] | None = None
    examples: list[Example] = []
    synonyms: dict[str, str] = {}
    regexes: list[RegexFeature] = []
    lookups: list[LookupTable] = []
    for src in files:
        if "language" in src.data:
            loc = src.loc(["language"])
            lang = src.data["language"]
            if language is None:
                language = (lang, loc)
            elif language[0] != lang:
                diags.append(
                    Errors.E202.at(
                        loc,
                        f"language {lang!r} differs from {language[0]!r} set at {language[1]}",
                        related=[language[1]],
                    )
                )
        for i, entry in enumerate(src.data.get("nlu", [])):
            items = list(_examples(src, ["nlu", i, "examples"], entry["examples"]))
            if "intent" in entry:
                for loc, raw in items:
                    try:
                        text, spans = parse_annotated(raw)
                    except AnnotationError as exc:
                        diags.append(
                            Errors.E318.at(
                                Location(loc.path, loc.line, loc.col + exc.offset),
                                f"in an example of intent {entry['intent']!r}: {exc.message}",
                                expected='[text](entity) or [text]{"entity": "name", "value": "canonical", "role": "r"}',
                            )
                        )
                        continue
                    examples.append(Example(text, entry["intent"], spans, loc))
            elif "synonym" in entry:
                for _, raw in items:
                    synonyms[raw.lower()] = entry["synonym"]
            elif "regex" in entry:
                patterns = []
                for loc, raw in items:
                    try:
                        re.compile(raw)
                    except re.error as exc:
                        diags.append(
                            Errors.E319.at(
                                loc, f"the pattern {raw!r} of regex {entry['regex']!r} does not compile: {exc.msg}"
                            )
                        )
                        continue
                    patterns.append(raw)
                regexes.append(RegexFeature(entry["regex"], tuple(patterns), src.loc(["nlu", i, "regex"])))
            else:
                lookups.append(
                    LookupTable(entry["lookup"], tuple(raw for _, raw in items), src.loc(["nlu", i, "lookup"]))
                )
    lang = language[0] if language else DEFAULT_LANGUAGE
    return TrainingData(lang, tuple(examples), synonyms, tuple(regexes), tuple(lookups)), diags


def _examples(src: SourceFile, path: list[PathPart], raw: Any) -> list[tuple[Location, str]]:
    if isinstance(raw, list):
        return [(src.loc([*path, i]), str(text)) for i, text in enumerate(raw)]
    start = src.loc(path)
    text = str(raw)
    block = _is_block(src, path)
    key_line = src.loc(path, key=True).line
    out = []
    for offset, item in split_block_examples(text):
        if block:
            line = key_line + 1 + offset
            col = _item_column(src, line)
        else:
            line, col = start.line, start.col
        out.append((Location(src.path, line, col), item))
    return out


def _is_block(src: SourceFile, path: list[PathPart]) -> bool:
    node = src.tree
    for part in path:
        node = node[part]
    return isinstance(node, LiteralScalarString | FoldedScalarString)


def _item_column(src: SourceFile, line: int) -> int:
    """Column of the example text on a ``- text`` line of a block (1-based)."""
    lines = src.text.splitlines()
    if 0 < line <= len(lines):
        raw = lines[line - 1]
        stripped = raw.lstrip()
        indent = len(raw) - len(stripped)
        return indent + (3 if stripped.startswith("- ") else 1)
    return 1
