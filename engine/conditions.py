"""The condition language used by flows (`if:`, `next` branches, rejections), rules and
response variations. Parsed once at load time into a small AST; evaluated without ``eval``.

Grammar (lowest precedence first)::

    expr     := or_expr
    or_expr  := and_expr ("or" and_expr)*
    and_expr := not_expr ("and" not_expr)*
    not_expr := "not" not_expr | test
    test     := operand ( CMP operand | "is" ["not"] "set" | ["not"] "in" operand )?
    CMP      := "==" | "!=" | "<" | "<=" | ">" | ">="
    operand  := STRING | NUMBER | true | false | null | list | name | "(" expr ")"
    list     := "[" [operand ("," operand)*] "]"
    name     := IDENT ("." IDENT)*        # a slot: `priority` or `slots.priority`

Examples: ``priority == 'high'``, ``customer_id is set and not account_found``,
``priority in ['high', 'medium']``, ``amount > 100 or vip``. A bare name is true when the
slot's value is truthy. Comparing different types (e.g. a string with a number) is false,
never an error.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.diagnostics import EngineError, Location

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<number>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
  | (?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
  | (?P<op>==|!=|<=|>=|<|>|\(|\)|\[|\]|,)
  | (?P<name>[A-Za-z_][A-Za-z0-9_\-]*(?:\.[A-Za-z_][A-Za-z0-9_\-]*)*)
    """,
    re.VERBOSE,
)
_KEYWORDS = {"and", "or", "not", "is", "set", "in", "true", "false", "null", "True", "False", "None"}
_LITERALS: dict[str, Any] = {"true": True, "True": True, "false": False, "False": False, "null": None, "None": None}
MAX_DEPTH = 50
"""Deepest nesting of parentheses, lists and ``not`` a condition may have."""


class ConditionSyntaxError(EngineError, ValueError):
    """A condition that does not parse; ``offset`` is the 0-based character position."""

    def __init__(self, message: str, text: str, offset: int) -> None:
        self.message = message
        self.text = text
        self.offset = offset
        super().__init__(f"{message} at character {offset + 1} of {text!r}")


@dataclass(frozen=True, slots=True)
class Literal:
    value: Any
    offset: int = field(default=-1, compare=False)
    """Where the literal starts in the condition text (-1: not from parsed text)."""


@dataclass(frozen=True, slots=True)
class ListExpr:
    items: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class SlotRef:
    name: str
    """The slot's name (without a ``slots.`` prefix)."""
    offset: int
    """Where the reference starts in the condition text."""


@dataclass(frozen=True, slots=True)
class Compare:
    op: str
    left: Expr
    right: Expr


@dataclass(frozen=True, slots=True)
class IsSet:
    operand: Expr
    negated: bool


@dataclass(frozen=True, slots=True)
class In:
    left: Expr
    right: Expr
    negated: bool


@dataclass(frozen=True, slots=True)
class Not:
    operand: Expr


@dataclass(frozen=True, slots=True)
class BoolOp:
    op: str
    """``and`` or ``or``."""
    operands: tuple[Expr, ...]


Expr = Literal | ListExpr | SlotRef | Compare | IsSet | In | Not | BoolOp


@dataclass(frozen=True, slots=True)
class Condition:
    """A parsed condition with its source text."""

    text: str
    tree: Expr
    loc: Location | None = None
    """Where the condition text starts in its file (set by the loader)."""

    def at(self, offset: int) -> Location | None:
        """The file position of character ``offset`` of the condition text."""
        if self.loc is None:
            return None
        if "\n" in self.text[:offset]:
            return self.loc
        return Location(self.loc.path, self.loc.line, self.loc.col + offset)

    def evaluate(self, slots: Mapping[str, Any]) -> bool:
        """True when the condition holds for these slot values."""
        return _truthy(_eval(self.tree, slots))

    def slot_refs(self) -> list[SlotRef]:
        """Every slot the condition reads, in order."""
        return [node for node in _walk(self.tree) if isinstance(node, SlotRef)]

    def compared_literals(self) -> list[tuple[SlotRef, Literal]]:
        """(slot, literal) pairs from ``slot == 'x'`` / ``slot in ['x', 'y']`` tests."""
        pairs: list[tuple[SlotRef, Literal]] = []
        for node in _walk(self.tree):
            if isinstance(node, Compare) and node.op in ("==", "!="):
                for a, b in ((node.left, node.right), (node.right, node.left)):
                    if isinstance(a, SlotRef) and isinstance(b, Literal):
                        pairs.append((a, b))
            elif isinstance(node, In) and isinstance(node.left, SlotRef) and isinstance(node.right, ListExpr):
                pairs.extend((node.left, item) for item in node.right.items if isinstance(item, Literal))
        return pairs


def parse_condition(text: str, loc: Location | None = None) -> Condition:
    """Parse ``text``; raises :class:`ConditionSyntaxError` with the offending position."""
    parser = _Parser(text)
    tree = parser.parse()
    return Condition(text, tree, loc)


def slot_equals_condition(pairs: list[tuple[str, Any]]) -> str:
    """The condition text for Rasa's ``[{type: slot, name, value}]`` form."""
    parts = []
    for name, value in pairs:
        if value is None:
            parts.append(f"{name} is not set")
        else:
            parts.append(f"{name} == {_literal_text(value)}")
    return " and ".join(parts)


def _literal_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


# -- parsing ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Tok:
    kind: str
    text: str
    offset: int


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = list(self._tokenize(text))
        self.pos = 0
        self.depth = 0

    def nest(self, tok: _Tok) -> None:
        """Enter a nested construct; a limit keeps parsing and evaluation off Python's stack limit."""
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ConditionSyntaxError(f"the condition nests more than {MAX_DEPTH} levels deep", self.text, tok.offset)

    def _tokenize(self, text: str) -> Iterator[_Tok]:
        i = 0
        while i < len(text):
            m = _TOKEN.match(text, i)
            if m is None:
                hint = " (use == to compare)" if text[i] == "=" else ""
                raise ConditionSyntaxError(f"unexpected character {text[i]!r}{hint}", text, i)
            kind = m.lastgroup or ""
            if kind != "ws":
                value = m.group()
                if kind == "name" and value in _KEYWORDS:
                    kind = "kw"
                yield _Tok(kind, value, i)
            i = m.end()
        yield _Tok("end", "", len(text))

    def peek(self) -> _Tok:
        return self.tokens[self.pos]

    def take(self) -> _Tok:
        tok = self.tokens[self.pos]
        self.pos += 1
        return tok

    def accept(self, text: str) -> bool:
        tok = self.peek()
        if tok.kind in ("kw", "op") and tok.text == text:
            self.pos += 1
            return True
        return False

    def expect(self, text: str, what: str) -> None:
        if not self.accept(text):
            tok = self.peek()
            got = repr(tok.text) if tok.kind != "end" else "the end"
            raise ConditionSyntaxError(f"expected {what}, got {got}", self.text, tok.offset)

    def parse(self) -> Expr:
        if self.peek().kind == "end":
            raise ConditionSyntaxError("the condition is empty", self.text, 0)
        tree = self.or_expr()
        tok = self.peek()
        if tok.kind != "end":
            raise ConditionSyntaxError(f"unexpected {tok.text!r} (missing 'and'/'or'?)", self.text, tok.offset)
        return tree

    def or_expr(self) -> Expr:
        items = [self.and_expr()]
        while self.accept("or"):
            items.append(self.and_expr())
        return items[0] if len(items) == 1 else BoolOp("or", tuple(items))

    def and_expr(self) -> Expr:
        items = [self.not_expr()]
        while self.accept("and"):
            items.append(self.not_expr())
        return items[0] if len(items) == 1 else BoolOp("and", tuple(items))

    def not_expr(self) -> Expr:
        tok = self.peek()
        if self.accept("not"):
            self.nest(tok)
            inner = self.not_expr()
            self.depth -= 1
            return Not(inner)
        return self.test()

    def test(self) -> Expr:
        left = self.operand()
        tok = self.peek()
        if tok.kind == "op" and tok.text in ("==", "!=", "<", "<=", ">", ">="):
            self.take()
            return Compare(tok.text, left, self.operand())
        if self.accept("is"):
            negated = self.accept("not")
            self.expect("set", "'set' after 'is'")
            return IsSet(left, negated)
        if tok.kind == "kw" and tok.text == "not" and self.tokens[self.pos + 1].text == "in":
            self.pos += 2
            return In(left, self.operand(), True)
        if self.accept("in"):
            return In(left, self.operand(), False)
        return left

    def operand(self) -> Expr:
        tok = self.take()
        if tok.kind == "number":
            is_float = any(c in tok.text for c in ".eE")
            try:
                return Literal(float(tok.text) if is_float else int(tok.text), tok.offset)
            except ValueError:  # more digits than int() converts
                raise ConditionSyntaxError("the number is too long", self.text, tok.offset) from None
        if tok.kind == "string":
            return Literal(_unquote(tok.text), tok.offset)
        if tok.kind == "kw" and tok.text in _LITERALS:
            return Literal(_LITERALS[tok.text], tok.offset)
        if tok.kind == "name":
            name = tok.text[len("slots.") :] if tok.text.startswith("slots.") else tok.text
            if "." in name:
                raise ConditionSyntaxError(
                    f"{tok.text!r} is not a slot reference (use `name` or `slots.name`)", self.text, tok.offset
                )
            return SlotRef(name, tok.offset)
        if tok.kind == "op" and tok.text == "(":
            self.nest(tok)
            inner = self.or_expr()
            self.expect(")", "')'")
            self.depth -= 1
            return inner
        if tok.kind == "op" and tok.text == "[":
            self.nest(tok)
            items: list[Expr] = []
            if not self.accept("]"):
                items.append(self.operand())
                while self.accept(","):
                    items.append(self.operand())
                self.expect("]", "',' or ']'")
            self.depth -= 1
            return ListExpr(tuple(items))
        got = "the end of the condition" if tok.kind == "end" else repr(tok.text)
        raise ConditionSyntaxError(f"expected a slot name or a value, got {got}", self.text, tok.offset)


def _unquote(text: str) -> str:
    body = text[1:-1]
    return re.sub(r"\\(.)", r"\1", body)


# -- evaluation ---------------------------------------------------------------------------


def _walk(node: Expr) -> Iterator[Expr]:
    yield node
    children: tuple[Expr, ...] = ()
    if isinstance(node, ListExpr):
        children = node.items
    elif isinstance(node, Compare):
        children = (node.left, node.right)
    elif isinstance(node, IsSet | Not):
        children = (node.operand,)
    elif isinstance(node, In):
        children = (node.left, node.right)
    elif isinstance(node, BoolOp):
        children = node.operands
    for child in children:
        yield from _walk(child)


def _truthy(value: Any) -> bool:
    return bool(value) if value is not None else False


def _eval(node: Expr, slots: Mapping[str, Any]) -> Any:
    if isinstance(node, Literal):
        return node.value
    if isinstance(node, SlotRef):
        return slots.get(node.name)
    if isinstance(node, ListExpr):
        return [_eval(item, slots) for item in node.items]
    if isinstance(node, Not):
        return not _truthy(_eval(node.operand, slots))
    if isinstance(node, BoolOp):
        if node.op == "and":
            return all(_truthy(_eval(o, slots)) for o in node.operands)
        return any(_truthy(_eval(o, slots)) for o in node.operands)
    if isinstance(node, IsSet):
        is_set = _eval(node.operand, slots) is not None
        return not is_set if node.negated else is_set
    if isinstance(node, In):
        container = _eval(node.right, slots)
        item = _eval(node.left, slots)
        try:
            found = item in container if isinstance(container, list | str | dict) else False
        except TypeError:
            found = False
        return not found if node.negated else found
    return _compare(node.op, _eval(node.left, slots), _eval(node.right, slots))


def _compare(op: str, left: Any, right: Any) -> bool:
    if op == "==":
        return bool(_same_kind(left, right) and left == right)
    if op == "!=":
        return not (_same_kind(left, right) and left == right)
    numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (left, right))
    if not (numeric or (isinstance(left, str) and isinstance(right, str))):
        return False
    if op == "<":
        return bool(left < right)
    if op == "<=":
        return bool(left <= right)
    if op == ">":
        return bool(left > right)
    return bool(left >= right)


def _same_kind(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool)
    if isinstance(a, int | float) and isinstance(b, int | float):
        return True
    return type(a) is type(b) or a is None or b is None
