"""The pure parts of the LLM fallback: prompt, answer shape, domain checks, costs, ledger, cache."""

from __future__ import annotations

import json
import re

import pytest
from fakes.llm_domain import PRICES, make_domain

from engine.llm.answer import AnswerEntity, InvalidAnswerError, LlmAnswer, parse_answer, validate_answer
from engine.llm.cache import LruCache
from engine.llm.pii import mask_pii
from engine.llm.prompt import build_system_prompt
from engine.llm.usage import Usage, UsageLedger, compute_cost

# -- prompt ------------------------------------------------------------------------------


def test_system_prompt_lists_intents_descriptions_and_entity_types() -> None:
    prompt = build_system_prompt(make_domain())
    assert "- check_order: The user asks where an order is." in prompt
    assert "- book_trip\n" in prompt  # no description
    assert "- city [roles: origin, destination] [groups: outbound, return]" in prompt
    assert "- order_id: An order number such as A-1234." in prompt
    assert '"intent"' in prompt and '"confidence"' in prompt and "JSON" in prompt
    assert "<EMAIL>" in prompt


# -- answer shape ------------------------------------------------------------------------


def test_parse_answer_reads_a_well_formed_answer() -> None:
    text = json.dumps(
        {
            "intent": "book_trip",
            "entities": [{"entity": "city", "value": "Paris", "role": "destination"}, {"entity": "n", "value": 3}],
            "confidence": 0.8,
        }
    )
    answer = parse_answer(text)
    assert answer == LlmAnswer(
        "book_trip", 0.8, (AnswerEntity("city", "Paris", "destination"), AnswerEntity("n", "3")), ()
    )


@pytest.mark.parametrize(
    ("text", "confidence"),
    [
        ('```json\n{"intent": "greet", "confidence": 2}\n```', 1.0),
        ('Here it is: {"intent": "greet", "entities": null, "confidence": -1} Hope it helps.', 0.0),
    ],
)
def test_parse_answer_tolerates_fences_and_clamps_confidence(text: str, confidence: float) -> None:
    answer = parse_answer(text)
    assert answer.intent == "greet"
    assert answer.confidence == confidence
    assert answer.entities == ()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("I think the user says hello", "not JSON"),
        ('{"intent": "greet", "confidence": 0.9', "not JSON"),
        ('["greet", 0.9]', "expected an object"),
        ('{"intent": 3, "confidence": 0.9}', "'intent' is a number"),
        ('{"intent": "greet"}', "'confidence' is null"),
        ('{"intent": "greet", "confidence": "high"}', "'confidence' is \"high\""),
        ('{"intent": "greet", "confidence": true}', "'confidence' is true"),
        ('{"intent": "greet", "confidence": NaN}', "'confidence' is NaN"),
        ('{"intent": "greet", "confidence": 0.9, "entities": {"entity": "x"}}', "'entities' is an object"),
    ],
)
def test_parse_answer_rejects_wrong_shapes(text: str, message: str) -> None:
    with pytest.raises(InvalidAnswerError, match=re.escape(message)) as info:
        parse_answer(text)
    assert info.value.kind == "invalid_answer"


def test_parse_answer_drops_malformed_entity_items_only() -> None:
    text = json.dumps(
        {
            "intent": "greet",
            "confidence": 0.9,
            "entities": [
                "x",
                {"value": "a"},
                {"entity": "city", "value": ""},
                {"entity": "city", "value": "Rome", "role": 5},
                {"entity": "city", "value": "Oslo"},
            ],
        }
    )
    answer = parse_answer(text)
    assert answer.entities == (AnswerEntity("city", "Oslo"),)
    assert len(answer.dropped) == 4


# -- domain checks -----------------------------------------------------------------------


def test_validate_keeps_known_intent_and_locates_entities() -> None:
    domain = make_domain()
    masked = mask_pii("fly from Oslo to paris")
    answer = LlmAnswer(
        "book_trip",
        0.7,
        (AnswerEntity("city", "Oslo", "origin", "outbound"), AnswerEntity("city", "Paris", "destination")),
    )
    verdict = validate_answer(answer, domain, masked)
    assert verdict.intent == "book_trip" and verdict.reason is None
    assert [(e.entity, e.value, e.start, e.end, e.text, e.role, e.group, e.extractor) for e in verdict.entities] == [
        ("city", "Oslo", 9, 13, "Oslo", "origin", "outbound", "llm"),
        ("city", "Paris", 17, 22, "paris", "destination", None, "llm"),
    ]
    assert verdict.entities[0].confidence == 0.7


def test_validate_drops_unknown_entity_types_roles_and_groups() -> None:
    answer = LlmAnswer(
        "book_trip",
        0.7,
        (
            AnswerEntity("airport", "CDG"),
            AnswerEntity("city", "Rome", role="stopover"),
            AnswerEntity("city", "Rome", group="weekend"),
            AnswerEntity("city", "Rome"),
            AnswerEntity("city", "Rome"),  # duplicate
        ),
    )
    verdict = validate_answer(answer, make_domain(), mask_pii("to Rome"))
    assert [e.value for e in verdict.entities] == ["Rome"]
    assert verdict.dropped == (
        "airport: unknown entity type",
        "city: unknown role 'stopover'",
        "city: unknown group 'weekend'",
    )


@pytest.mark.parametrize(
    ("intent", "reason"), [("cancel_account", "unknown_intent"), (None, "no_intent"), ("null", "no_intent")]
)
def test_validate_refuses_unknown_or_missing_intents(intent: str | None, reason: str) -> None:
    verdict = validate_answer(LlmAnswer(intent, 0.9), make_domain(), mask_pii("hm"))
    assert verdict.intent is None
    assert verdict.reason == reason


def test_validate_puts_masked_values_back_and_drops_unresolvable_ones() -> None:
    masked = mask_pii("change my email to new@example.org")
    assert masked.text == "change my email to <EMAIL>"
    answer = LlmAnswer("update_email", 0.9, (AnswerEntity("email", "<EMAIL>"), AnswerEntity("order_id", "<ID>")))
    verdict = validate_answer(answer, make_domain(), masked)
    assert [(e.entity, e.value, e.start) for e in verdict.entities] == [("email", "new@example.org", 19)]
    assert verdict.dropped == ("order_id: the value refers to masked data that cannot be restored",)


def test_entity_value_not_in_text_has_no_position() -> None:
    verdict = validate_answer(
        LlmAnswer("check_order", 0.9, (AnswerEntity("order_id", "A-1234"),)), make_domain(), mask_pii("order a 1234")
    )
    entity = verdict.entities[0]
    assert (entity.start, entity.end, entity.text) == (-1, -1, "A-1234")


# -- cost and ledger ---------------------------------------------------------------------


def test_compute_cost_uses_prices_per_thousand_tokens() -> None:
    assert compute_cost(PRICES, "gpt-4o-mini", 1000, 500) == pytest.approx(0.15 + 0.3)
    assert compute_cost(PRICES, "claude-3-5-haiku", 200, 100) == pytest.approx(0.16 + 0.4)
    assert compute_cost(PRICES, "unknown-model", 1000, 1000) is None


def test_ledger_totals_per_conversation_and_user() -> None:
    ledger = UsageLedger()
    ledger.record(conversation_id="c1", user_id="u1", input_tokens=100, output_tokens=10, cost_usd=0.5)
    ledger.record(conversation_id="c2", user_id="u1", input_tokens=50, output_tokens=5, cost_usd=0.25)
    ledger.record(conversation_id="c3", user_id=None, input_tokens=7, output_tokens=1, cost_usd=None)
    assert ledger.for_conversation("c1") == Usage(1, 100, 10, 0.5, 0)
    assert ledger.for_user("u1") == Usage(2, 150, 15, 0.75, 0)
    assert ledger.total == Usage(3, 157, 16, 0.75, 1)
    assert ledger.for_user("nobody") == Usage()
    assert set(ledger.conversations()) == {"c1", "c2", "c3"}
    assert ledger.forget_conversation("c1") == Usage(1, 100, 10, 0.5, 0)
    assert ledger.for_conversation("c1") == Usage()
    assert ledger.for_user("u1").requests == 2


# -- cache -------------------------------------------------------------------------------


def test_lru_cache_evicts_the_least_recently_used() -> None:
    cache: LruCache[str, int] = LruCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # "b" is now the oldest
    cache.put("c", 3)
    assert "b" not in cache and cache.get("a") == 1 and cache.get("c") == 3
    assert len(cache) == 2
    assert (cache.hits, cache.misses) == (3, 0)


def test_lru_cache_of_size_zero_keeps_nothing() -> None:
    cache: LruCache[str, int] = LruCache(0)
    cache.put("a", 1)
    assert cache.get("a") is None
    with pytest.raises(ValueError, match=">= 0"):
        LruCache(-1)
