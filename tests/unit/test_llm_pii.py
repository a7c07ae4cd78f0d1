"""PII masking: what is masked, what is left alone, and putting values back."""

from __future__ import annotations

import subprocess
import sys

import pytest

from engine.llm.pii import iban_valid, luhn_valid, mask_pii


@pytest.mark.parametrize(
    ("text", "expected", "kinds"),
    [
        ("mail me at john.doe+x@example.co.uk.", "mail me at <EMAIL>.", ("email",)),
        ("call +44 20 7946 0958 now", "call <PHONE> now", ("phone",)),
        ("call +1 (555) 123-4567", "call <PHONE>", ("phone",)),
        ("or (555) 123-4567 / 555.123.4567", "or <PHONE> / <PHONE>", ("phone", "phone")),
        ("tel 06 12 34 56 78 or 020 7946 0958", "tel <PHONE> or <PHONE>", ("phone", "phone")),
        ("mobile +4915112345678", "mobile <PHONE>", ("phone",)),
        ("card 4111 1111 1111 1111 ok", "card <CARD> ok", ("card",)),
        ("card 5500-0000-0000-0004", "card <CARD>", ("card",)),
        ("pay with 4111111111111111!", "pay with <CARD>!", ("card",)),
        ("iban DE89 3704 0044 0532 0130 00 please", "iban <IBAN> please", ("iban",)),
        ("GB82WEST12345698765432", "<IBAN>", ("iban",)),
        ("my ip is 192.168.1.100.", "my ip is <IP>.", ("ip",)),
        ("order 12345678 arrived", "order <ID> arrived", ("id",)),
        ("account AC1234567", "account AC<ID>", ("id",)),
    ],
)
def test_masks_each_kind(text: str, expected: str, kinds: tuple[str, ...]) -> None:
    masked = mask_pii(text)
    assert masked.text == expected
    assert masked.kinds == kinds


@pytest.mark.parametrize(
    "text",
    [
        "hello there",
        "order A-1234 and customer C12345",  # short business ids stay for the LLM to extract
        "on 2024-01-15 or 01.02.2024 at 10:30",
        "version 1.2.3 and 256.1.1.1",
        "4111 1111 1111 1112",  # fails the Luhn check
        "I want 3 pizzas for 20 dollars",
    ],
)
def test_leaves_non_pii_alone(text: str) -> None:
    masked = mask_pii(text)
    assert masked.text == text
    assert masked.spans == ()


def test_an_iban_failing_mod97_is_not_an_iban() -> None:
    assert "iban" not in mask_pii("DE00 3704 0044 0532 0130 00").kinds


def test_spans_point_into_the_original_text() -> None:
    text = "write to a@b.io or call 555-123-4567"
    masked = mask_pii(text)
    assert [(s.kind, text[s.start : s.end]) for s in masked.spans] == [("email", "a@b.io"), ("phone", "555-123-4567")]
    assert masked.text == "write to <EMAIL> or call <PHONE>"


def test_a_card_number_is_not_also_a_phone_or_an_id() -> None:
    assert mask_pii("4111111111111111").kinds == ("card",)


def test_repr_does_not_leak_the_original() -> None:
    masked = mask_pii("mail a@b.io")
    assert "a@b.io" not in repr(masked)
    assert masked.original == "mail a@b.io"


def test_unmask_restores_unambiguous_placeholders_only() -> None:
    one = mask_pii("from a@b.io to 555-123-4567")
    assert one.unmask("<EMAIL>") == "a@b.io"
    assert one.unmask("x <PHONE> y") == "x 555-123-4567 y"
    assert one.unmask("plain") == "plain"
    assert one.unmask("<CARD>") is None  # nothing of that kind was masked
    two = mask_pii("a@b.io or c@d.io")
    assert two.unmask("<EMAIL>") is None  # which one?
    same_twice = mask_pii("a@b.io, again a@b.io")
    assert same_twice.unmask("<EMAIL>") == "a@b.io"


def test_checksums() -> None:
    assert luhn_valid("4111 1111 1111 1111")
    assert not luhn_valid("4111 1111 1111 1112")
    assert not luhn_valid("")
    assert iban_valid("DE89 3704 0044 0532 0130 00")
    assert iban_valid("no9386011117947")
    assert not iban_valid("DE89 3704 0044 0532 0130 01")
    assert not iban_valid("DE89 3704")


def test_importing_the_masking_stays_light() -> None:
    """Logging will import engine.llm.pii: it must not pull in aiohttp or the NLU (numpy)."""
    code = "import sys, engine.llm.pii; print(sorted({'aiohttp', 'numpy', 'tenacity'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_package_exports_match_all() -> None:
    import engine.llm

    assert sorted(engine.llm.__all__) == sorted(engine.llm._EXPORTS)
    for name in engine.llm.__all__:
        assert getattr(engine.llm, name).__name__ == name
