"""Read YAML files with ruamel.yaml, keeping the line and column of every node.

The round-trip tree is kept for positions; a plain copy (dict/list/str/int/float/bool/None)
is what the schema check and the model builders see. Nothing here raises on bad input:
problems come back as diagnostics.
"""

from __future__ import annotations

import datetime as _dt
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.constructor import DuplicateKeyError
from ruamel.yaml.error import MarkedYAMLError, YAMLError, YAMLFutureWarning, YAMLWarning
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from ruamel.yaml.scalarstring import DoubleQuotedScalarString, SingleQuotedScalarString

from engine.diagnostics import Diagnostic, Location
from engine.errors import Errors

PathPart = str | int
MAX_NODES = 200_000
"""Plain-copy node budget: guards against alias bombs ("billion laughs")."""
MAX_BYTES = 5_000_000


@dataclass(frozen=True)
class SourceFile:
    """One parsed YAML file of a project."""

    path: str
    """Path relative to the project directory, with '/' separators."""
    kind: str
    """The folder it came from: domain, flows, policies or nlu_data."""
    data: dict[str, Any]
    """Plain data (JSON types only)."""
    tree: Any
    """The ruamel.yaml round-trip tree, for positions."""
    text: str = ""
    """The file's text."""

    def loc(self, path: Sequence[PathPart] = (), *, key: bool = False) -> Location:
        """Where the node at ``path`` starts; ``key=True`` gives its key's position."""
        line, col = position(self.tree, path, key=key)
        return Location(self.path, line, col)

    def value_column_offset(self, path: Sequence[PathPart]) -> int:
        """1 when the scalar at ``path`` was written quoted, so columns inside it shift."""
        if isinstance(self.tree, Node):
            found: Node = self.tree
            for part in path:
                step = _node_step(found, part)
                if step is None:
                    return 0
                found = step[1]
            return 1 if isinstance(found, ScalarNode) and found.style in ("'", '"') else 0
        node = self.tree
        try:
            for part in path:
                node = node[_lookup_key(node, part)] if isinstance(node, dict) else node[part]
        except (KeyError, IndexError, TypeError):
            return 0
        return 1 if isinstance(node, DoubleQuotedScalarString | SingleQuotedScalarString) else 0


def _lookup_key(mapping: dict[Any, Any], part: PathPart) -> Any:
    if part in mapping:
        return part
    for k in mapping:
        if _plain_key(k) == str(part):
            return k
    raise KeyError(part)


def _node_step(node: Node, part: PathPart) -> tuple[Node | None, Node] | None:
    """One step down a composed node tree: (the key's node, or None in a list; the child)."""
    if isinstance(node, MappingNode):
        return next(
            ((k, v) for k, v in node.value if isinstance(k, ScalarNode) and k.value == str(part)),
            None,
        )
    if isinstance(node, SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
        return None, node.value[part]
    return None


def _node_position(tree: Node, path: Sequence[PathPart], *, key: bool) -> tuple[int, int]:
    """:func:`position` in a composed node tree (the fast reader's)."""
    line, col = 0, 0  # the file's start, as in the round-trip tree, until a node is found
    node: Node = tree
    for i, part in enumerate(path):
        step = _node_step(node, part)
        if step is None:
            break
        key_node, node = step
        mark = node.start_mark
        if key_node is not None:
            # As ruamel's round-trip tree reports it: an empty `[]`/`{}` counts as a block.
            block = isinstance(node, MappingNode | SequenceNode) and (not node.flow_style or not node.value)
            if (key and i == len(path) - 1) or block:
                mark = key_node.start_mark
        line, col = mark.line, mark.column
    return line + 1, col + 1


def position(tree: Any, path: Sequence[PathPart], *, key: bool = False) -> tuple[int, int]:
    """1-based (line, col) of the node at ``path``; the nearest known ancestor if lost."""
    if isinstance(tree, Node):
        return _node_position(tree, path, key=key)
    line, col = 0, 0
    node = tree
    for i, part in enumerate(path):
        last = i == len(path) - 1
        try:
            if isinstance(node, CommentedMap):
                k = _lookup_key(node, part)
                pos = node.lc.key(k) if (key and last) or _is_block_collection(node[k]) else node.lc.value(k)
                node = node[k]
            elif isinstance(node, CommentedSeq) and isinstance(part, int):
                pos = node.lc.item(part)
                node = node[part]
            else:
                break
        except (KeyError, IndexError, TypeError, AttributeError):
            break
        if pos is None:
            break
        line, col = pos[0], pos[1]
    return line + 1, col + 1


def _is_block_collection(node: Any) -> bool:
    # For a block mapping/list, ruamel's value position is its first child; the key
    # ("slots:") is the more useful place to point at.
    if isinstance(node, CommentedMap | CommentedSeq):
        return not node.fa.flow_style()
    return False


class _Budget:
    def __init__(self) -> None:
        self.left = MAX_NODES


def to_plain(node: Any, budget: _Budget | None = None) -> Any:
    """A JSON-typed copy of a ruamel node (dates become ISO strings, keys strings)."""
    budget = budget or _Budget()
    budget.left -= 1
    if budget.left < 0:
        raise _TooLargeError
    if isinstance(node, dict):
        return {_plain_key(k): to_plain(v, budget) for k, v in node.items()}
    if isinstance(node, list | tuple):
        return [to_plain(v, budget) for v in node]
    if isinstance(node, bool) or node is None:
        return node
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    if isinstance(node, str):
        return _text(node)
    if isinstance(node, _dt.datetime | _dt.date):
        return node.isoformat()
    if isinstance(node, bytes):
        return node.decode("utf-8", "replace")
    return str(node)


def _text(value: str) -> str:
    """A plain ``str`` that encodes as UTF-8.

    YAML's ``"\\ud83d\\ude00"`` escapes give UTF-16 surrogates: a pair becomes the character it
    encodes, a lone one U+FFFD (so messages, JSON and stores never meet unencodable text).
    """
    text = str(value)
    if _SURROGATE.search(text) is None:
        return text
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


_SURROGATE = re.compile("[\ud800-\udfff]")


def _plain_key(key: Any) -> str:
    if isinstance(key, str):
        return _text(key)
    if isinstance(key, bool):
        return "true" if key else "false"
    if key is None:
        return "null"
    return str(to_plain(key))


class _TooLargeError(Exception):
    pass


def _yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.allow_duplicate_keys = False
    return yaml


def read_source(project_dir: Path, file: Path, kind: str) -> tuple[SourceFile | None, list[Diagnostic]]:
    """Parse one YAML file; on failure return ``None`` and the diagnostics."""
    rel = file.relative_to(project_dir).as_posix()
    try:
        raw = file.read_bytes()
    except OSError as exc:
        return None, [Errors.E003.at(Location(rel), f"cannot read the file: {exc.strerror or exc}")]
    if len(raw) > MAX_BYTES:
        return None, [Errors.E006.at(Location(rel), f"the file is {len(raw):,} bytes; the limit is {MAX_BYTES:,}")]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        col = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        return None, [Errors.E003.at(Location(rel, line, col), f"byte 0x{raw[exc.start]:02x} is not valid UTF-8")]
    return parse_text(text, rel, kind)


def _fast_yaml() -> YAML:
    yaml = YAML(typ="safe", pure=False)  # libyaml through ruamel.yaml.clib when installed
    yaml.allow_duplicate_keys = False
    return yaml


def _fast_load(text: str) -> tuple[Node | None, Any]:
    """Composed nodes (they carry positions) and the values built from them."""
    yaml = _fast_yaml()
    node = yaml.compose(text)
    return node, (None if node is None else yaml.constructor.construct_document(node))


def parse_text(text: str, rel: str, kind: str, *, fast: bool = False) -> tuple[SourceFile | None, list[Diagnostic]]:
    """Parse YAML text that claims to be the file ``rel`` of folder ``kind``.

    ``fast``: compose with the C parser and keep the nodes for positions instead of the
    round-trip tree, about 7x faster; for large generated files (golden sets). The data and
    the positions are the same; quoting is known, comments are not kept.
    """
    raw: Any = None
    try:
        with warnings.catch_warnings():
            # ruamel.yaml warns, rather than fails, on legal YAML such as a reused anchor
            # or a YAML 1.1 float; neither is a problem of the project.
            warnings.simplefilter("ignore", YAMLWarning)
            warnings.simplefilter("ignore", YAMLFutureWarning)
            if fast:
                try:
                    tree, raw = _fast_load(text)
                except YAMLError:
                    # libyaml is YAML 1.1 and stricter in places (a `?` in a flow mapping's
                    # plain scalar): the round-trip reader decides, and words the error.
                    return parse_text(text, rel, kind)
            else:
                tree = raw = _yaml().load(text)
    except DuplicateKeyError as exc:
        return None, [_duplicate_key(exc, rel)]
    except MarkedYAMLError as exc:
        return None, [_syntax_error(exc, rel, text)]
    except RecursionError:
        return None, [Errors.E006.at(Location(rel), "the YAML nests too deeply to read")]
    except YAMLError as exc:
        return None, [Errors.E001.at(Location(rel), _one_line(str(exc)))]
    except (ValueError, TypeError, AttributeError, IndexError, KeyError, OverflowError, AssertionError) as exc:
        # ruamel.yaml raises these on some malformed inputs (e.g. odd tags or anchors, or an
        # `!!omap` with a repeated key, which trips an assert).
        detail = _one_line(str(exc)) or (
            "a key is repeated in an `!!omap`" if isinstance(exc, AssertionError) else type(exc).__name__
        )
        return None, [Errors.E001.at(Location(rel), f"the YAML could not be read: {detail}")]
    if tree is None:
        return None, [Errors.W001.at(Location(rel), "the file is empty")]
    try:
        data = to_plain(raw)
    except _TooLargeError:
        return None, [Errors.E006.at(Location(rel), f"the file expands to more than {MAX_NODES:,} nodes (aliases?)")]
    except RecursionError:
        return None, [Errors.E006.at(Location(rel), "the YAML nests too deeply to read")]
    if not isinstance(data, dict):
        got = yaml_type_name(data)
        return None, [
            Errors.E004.at(
                Location(rel),
                f"the top level of a {kind} file must be a mapping, got {got}",
                expected=f"a mapping of keys, e.g. {_TOP_KEYS.get(kind, '`version:`')}",
                fix=f"Start the file with its top-level keys, e.g. {_TOP_KEYS.get(kind, '`version:`')}, "
                "and put lists under one of them.",
            )
        ]
    return SourceFile(rel, kind, data, tree, text), []


_TOP_KEYS = {
    "domain": "`intents:`, `slots:` or `responses:`",
    "flows": "`flows:`",
    "policies": "`rules:` or `policies:`",
    "nlu_data": "`nlu:`",
}
"""Example top-level keys of each folder's files, for E004."""


def _mark(mark: Any) -> tuple[int, int]:
    if mark is None:
        return 1, 1
    return int(mark.line) + 1, int(mark.column) + 1


_SYNTAX_HINTS = (
    ("found character '\\t'", "a tab character: indent YAML with spaces only"),
    (
        "mapping values are not allowed here",
        "unexpected ':' here: quote a value that contains ': ', and indent each key like the keys beside it",
    ),
    ("but found '<block sequence start>'", "this list item is not lined up with the lines above it"),
    ("but found '<block mapping start>'", "this key is not lined up with the keys above it"),
)
"""Plain words for ruamel.yaml's commonest parser messages (matched on a fragment)."""


def _syntax_error(exc: MarkedYAMLError, rel: str, text: str) -> Diagnostic:
    line, col = _mark(exc.problem_mark or exc.context_mark)
    problem = _one_line(exc.problem or "invalid YAML")
    context = _one_line(exc.context or "")
    parser = f"{problem}, {context}" if context else problem
    if "end of stream" in problem and "quoted scalar" in context and exc.context_mark is not None:
        line, col = _mark(exc.context_mark)
        return Errors.E001.at(
            Location(rel, line, col),
            f"invalid YAML: the quoted string that starts here is never closed (the parser says: {parser})",
        )
    hint = next((words for fragment, words in _SYNTAX_HINTS if fragment in problem), None)
    lines = text.splitlines()
    before = lines[line - 1][col - 2] if 0 < line <= len(lines) and 1 < col <= len(lines[line - 1]) + 1 else ""
    if hint is None and "but found" in problem and before in ("'", '"'):
        hint = (
            "a quoted string ends just before this point: a closing quote may be missing on an earlier line, "
            "or a quote inside the string is not escaped (\\\" inside \"...\", '' inside '...')"
        )
    plain = f"{hint} (the parser says: {parser})" if hint else (f"{problem} ({context})" if context else problem)
    return Errors.E001.at(Location(rel, line, col), f"invalid YAML: {plain}")


def _duplicate_key(exc: DuplicateKeyError, rel: str) -> Diagnostic:
    line, col = _mark(exc.problem_mark)
    first = _mark(exc.context_mark)
    problem = _one_line(exc.problem or "")
    key = problem.split('"')[1] if problem.count('"') >= 2 else "?"
    return Errors.E002.at(
        Location(rel, line, col),
        f"the key {key!r} appears twice in the same mapping",
        related=[Location(rel, *first)],
        fix="Remove one of the two keys, or merge their contents into one.",
    )


def _one_line(text: str) -> str:
    return " ".join(text.split())


def yaml_type_name(value: Any) -> str:
    """How a YAML author would call the type of ``value``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__
