"""Masking of personal data before text leaves the process (LLM calls, later logs).

:func:`mask_pii` replaces e-mail addresses, phone numbers, payment card numbers (Luhn
checked), IBANs (mod-97 checked), IPv4 addresses and long digit runs (account and order
numbers) with placeholders such as ``<EMAIL>``. It is pure and cheap: the regexes are compiled
once, and a text with neither a digit nor an ``@`` is returned at once.

Checksums keep the false positives down: a 16-digit number that fails the Luhn check is not a
card, and an IBAN-shaped word that fails mod-97 is not an IBAN. When two patterns overlap, the
earlier kind in :data:`PII_KINDS` wins (a card number is not also reported as a long id).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

PiiKind = Literal["email", "iban", "card", "ip", "phone", "id"]

PII_KINDS: tuple[PiiKind, ...] = ("email", "iban", "card", "ip", "phone", "id")
"""Every kind, in order of precedence."""

PLACEHOLDERS: dict[PiiKind, str] = {
    "email": "<EMAIL>",
    "iban": "<IBAN>",
    "card": "<CARD>",
    "ip": "<IP>",
    "phone": "<PHONE>",
    "id": "<ID>",
}
"""The text that replaces each kind."""

MIN_ID_DIGITS = 6
"""Digit runs at least this long are masked as ids (account, order, customer numbers)."""

_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_PATTERNS: dict[PiiKind, re.Pattern[str]] = {
    "email": re.compile(r"(?<![\w.+-])[\w.+-]+@[\w-]+(?:\.[\w-]+)*\.[A-Za-z]{2,}(?![\w-])"),
    "iban": re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b", re.IGNORECASE),
    "card": re.compile(r"(?<![\d+])\d(?:[ -]?\d){12,18}(?!\d)"),
    "ip": re.compile(rf"(?<![\d.]){_OCTET}(?:\.{_OCTET}){{3}}(?!\.?\d)"),
    "phone": re.compile(
        r"(?<![\w+])(?:"
        # international: +44 20 7946 0958, +1 (555) 123-4567, +4915112345678
        r"\+\d{1,3}(?:[ .-]?\(?\d{1,4}\)?){2,6}"
        # North American: (555) 123-4567, 555-123-4567, 1-800-555-1234
        r"|(?:1[ .-])?(?:\(\d{3}\)[ .-]?|\d{3}[ .-])\d{3}[ .-]\d{4}"
        # with a trunk 0: 020 7946 0958, 06 12 34 56 78, (030) 1234567, 0044 20 7946 0958
        r"|(?:\(0\d{1,4}\)|0\d{1,4})(?:[ .-]?\d{2,4}){2,4}"
        r")(?!\w)"
    ),
    "id": re.compile(rf"(?<!\d)\d{{{MIN_ID_DIGITS},}}(?!\d)"),
}
_MAYBE_PII = re.compile(r"[\d@]")
_DATE = re.compile(r"\d{1,4}([./-])\d{1,2}\1\d{1,4}")
_NON_DIGIT = re.compile(r"\D")
_PLACEHOLDER = re.compile("|".join(re.escape(p) for p in PLACEHOLDERS.values()))
_KIND_OF_PLACEHOLDER: dict[str, PiiKind] = {p: k for k, p in PLACEHOLDERS.items()}


@dataclass(frozen=True, slots=True)
class PiiSpan:
    kind: PiiKind
    start: int
    """Offset in the original text."""
    end: int


@dataclass(frozen=True, slots=True)
class MaskedText:
    """A text with its personal data replaced by placeholders."""

    text: str
    """The masked text: safe to send or log."""
    spans: tuple[PiiSpan, ...]
    """What was masked, by kind and position in the original text (no values)."""
    original: str = field(repr=False)
    """The unmasked text; kept out of ``repr`` so that logging the object leaks nothing."""

    @property
    def kinds(self) -> tuple[PiiKind, ...]:
        """The kinds found, in order of appearance."""
        return tuple(s.kind for s in self.spans)

    def unmask(self, value: str) -> str | None:
        """Put the original data back into a value derived from the masked text.

        An LLM that read ``<EMAIL>`` answers with ``<EMAIL>`` as an entity value; the local
        engine needs the real address. None when a placeholder cannot be resolved: no data of
        that kind was masked, or several different values were (which one is meant is unknown).
        """
        if "<" not in value:
            return value
        unresolved = False

        def restore(match: re.Match[str]) -> str:
            nonlocal unresolved
            kind = _KIND_OF_PLACEHOLDER[match.group(0)]
            values = {self.original[s.start : s.end] for s in self.spans if s.kind == kind}
            if len(values) != 1:
                unresolved = True
                return match.group(0)
            return values.pop()

        restored = _PLACEHOLDER.sub(restore, value)
        return None if unresolved else restored


def mask_pii(text: str) -> MaskedText:
    """Replace personal data in ``text`` with placeholders (see the module docstring)."""
    if not _MAYBE_PII.search(text):
        return MaskedText(text, (), text)
    taken: list[PiiSpan] = []
    for kind in PII_KINDS:
        check = _CHECKS.get(kind)
        for match in _PATTERNS[kind].finditer(text):
            start, end = match.span()
            if check is not None and not check(match.group(0)):
                continue
            if any(start < s.end and s.start < end for s in taken):
                continue
            taken.append(PiiSpan(kind, start, end))
    if not taken:
        return MaskedText(text, (), text)
    taken.sort(key=lambda s: s.start)
    parts: list[str] = []
    pos = 0
    for span in taken:
        parts.append(text[pos : span.start])
        parts.append(PLACEHOLDERS[span.kind])
        pos = span.end
    parts.append(text[pos:])
    return MaskedText("".join(parts), tuple(taken), text)


def luhn_valid(number: str) -> bool:
    """The Luhn checksum of the digits of ``number`` (separators ignored)."""
    digits = [int(c) for c in number if c.isdigit()]
    if not digits:
        return False
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def iban_valid(candidate: str) -> bool:
    """ISO 13616 check: length 15-34 and the mod-97 remainder of the rearranged number is 1."""
    iban = candidate.replace(" ", "").upper()
    if not 15 <= len(iban) <= 34:
        return False
    rearranged = iban[4:] + iban[:4]
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1


def _card_valid(candidate: str) -> bool:
    digits = _NON_DIGIT.sub("", candidate)
    return 13 <= len(digits) <= 19 and luhn_valid(digits)


def _phone_valid(candidate: str) -> bool:
    if _DATE.fullmatch(candidate):
        return False
    return 8 <= len(_NON_DIGIT.sub("", candidate)) <= 15


_CHECKS: dict[PiiKind, Callable[[str], bool]] = {
    "iban": iban_valid,
    "card": _card_valid,
    "phone": _phone_valid,
}
