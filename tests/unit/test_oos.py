"""The out-of-scope threshold is chosen on held-out predictions by a stated rule."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.nlu.oos import OOS, apply_threshold, choose_threshold


def brute_force(conf: list[float], pred: list[str], gold: list[str]) -> tuple[float, float]:
    best_t, best_acc = 0.0, -1.0
    for t in sorted({0.0, 1.0001, *(round(c, 4) for c in conf)}):
        final = apply_threshold(pred, conf, t)
        acc = float(np.mean([f == g for f, g in zip(final, gold, strict=True)]))
        if acc > best_acc:
            best_t, best_acc = t, acc
    return best_t, best_acc


def test_a_low_confidence_oos_utterance_is_cut_off() -> None:
    conf = [0.95, 0.9, 0.3, 0.2, 0.85]
    pred = ["greet", "bye", "greet", "bye", "greet"]
    gold = ["greet", "bye", OOS, OOS, "greet"]
    choice = choose_threshold(conf, pred, gold)
    assert 0.3 < choice.threshold <= 0.85
    assert choice.accuracy == 1.0
    assert choice.oos_recall == 1.0
    assert choice.in_scope_accuracy == 1.0
    assert apply_threshold(pred, conf, choice.threshold) == gold


def test_min_recall_rule_trades_in_scope_accuracy_for_recall() -> None:
    conf = [0.9, 0.8, 0.7, 0.6, 0.5, 0.65]
    pred = ["a", "a", "b", "b", "a", "a"]
    gold = ["a", "a", "b", "b", OOS, OOS]  # the second oos hides above two in-scope answers
    best = choose_threshold(conf, pred, gold)
    strict = choose_threshold(conf, pred, gold, min_oos_recall=1.0)
    assert best.oos_recall == 0.5
    assert strict.oos_recall == 1.0
    assert strict.threshold > best.threshold
    assert strict.in_scope_accuracy < best.in_scope_accuracy
    assert "100%" in strict.rule


def test_a_trained_oos_class_counts_towards_recall() -> None:
    choice = choose_threshold([0.9, 0.9], [OOS, "a"], [OOS, "a"])
    assert choice.threshold == 0.0
    assert choice.oos_recall == 1.0


def test_mismatched_lengths_are_rejected() -> None:
    with pytest.raises(ValueError, match="as many"):
        choose_threshold([0.5], ["a", "b"], ["a", "b"])


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.floats(0, 1), st.sampled_from(["a", "b", OOS]), st.sampled_from(["a", "b", OOS])),
        min_size=1,
        max_size=30,
    )
)
def test_best_accuracy_rule_matches_brute_force(rows: list[tuple[float, str, str]]) -> None:
    conf = [r[0] for r in rows]
    pred = [r[1] for r in rows]
    gold = [r[2] for r in rows]
    choice = choose_threshold(conf, pred, gold)
    t, acc = brute_force(conf, pred, gold)
    assert choice.accuracy == pytest.approx(acc)
    assert choice.threshold == pytest.approx(t)
    final = apply_threshold(pred, conf, choice.threshold)
    assert np.mean([f == g for f, g in zip(final, gold, strict=True)]) == pytest.approx(choice.accuracy)
    oos_final = [f for f, g in zip(final, gold, strict=True) if g == OOS]
    in_scope = [(f, g) for f, g in zip(final, gold, strict=True) if g != OOS]
    if oos_final:
        assert choice.oos_recall == pytest.approx(np.mean([f == OOS for f in oos_final]))
    if in_scope:
        assert choice.in_scope_accuracy == pytest.approx(np.mean([f == g for f, g in in_scope]))


def test_cross_validation_learns_an_oos_threshold_when_the_data_has_oos() -> None:
    from engine.nlu.pipeline import build_pipeline
    from engine.nlu.train import cross_validation, training_data_from_pairs

    greet = ["hi", "hello", "hey there", "good morning", "hello bot", "hi friend"]
    bye = ["bye", "goodbye", "see you", "bye bye", "see you later", "farewell"]
    oos = ["what is the weather on mars", "sing me a song", "how tall is everest", "tell me a joke", "who won", "2+2"]
    pairs = [(t, "greet") for t in greet] + [(t, "bye") for t in bye] + [(t, OOS) for t in oos]
    cv = cross_validation(training_data_from_pairs(pairs), build_pipeline([]), frozenset())
    assert 0.0 <= cv["oos_threshold"] <= 1.0
    assert "held-out folds" in cv["oos_threshold_rule"]
    assert 0.0 <= cv["oos_recall"] <= 1.0
    no_oos = cross_validation(training_data_from_pairs(pairs[:12]), build_pipeline([]), frozenset())
    assert "oos_threshold" not in no_oos
