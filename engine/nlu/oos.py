"""Out-of-scope: the confidence threshold below which an utterance counts as ``oos``.

Chosen on held-out predictions only (a validation set, or cross-validation folds), by one of
two rules: the threshold with the best overall accuracy, or, when a minimum out-of-scope
recall is asked for, the best accuracy among thresholds that reach it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

OOS = "oos"


@dataclass(frozen=True, slots=True)
class ThresholdChoice:
    threshold: float
    accuracy: float
    """Overall accuracy on the held-out data with this threshold (oos counted as a class)."""
    oos_recall: float
    in_scope_accuracy: float
    rule: str


def choose_threshold(
    confidences: Sequence[float] | npt.NDArray[np.float64],
    predicted: Sequence[str],
    gold: Sequence[str],
    *,
    min_oos_recall: float | None = None,
    oos_label: str = OOS,
) -> ThresholdChoice:
    """The threshold to use, from held-out predictions (predictions below it become oos)."""
    conf = np.round(np.asarray(confidences, dtype=np.float64), 4)
    pred = np.asarray(predicted, dtype=object)
    gold_arr = np.asarray(gold, dtype=object)
    if not (len(conf) == len(pred) == len(gold_arr)) or len(conf) == 0:
        raise ValueError("choose_threshold needs as many confidences, predictions and gold labels, at least one")
    is_oos = gold_arr == oos_label
    right = pred == gold_arr
    pred_oos = pred == oos_label
    order = np.argsort(conf, kind="stable")
    sorted_conf = conf[order]
    # Prefix counts over the examples sorted by confidence: those below a threshold become oos.
    oos_below = np.concatenate([[0], np.cumsum(is_oos[order])])
    right_below = np.concatenate([[0], np.cumsum(right[order])])
    oos_and_pred_oos_below = np.concatenate([[0], np.cumsum((is_oos & pred_oos)[order])])
    candidates = np.unique(np.concatenate([[0.0], sorted_conf, [1.0001]]))
    below = np.searchsorted(sorted_conf, candidates, side="left")
    n = len(conf)
    n_oos = int(is_oos.sum())
    n_in = n - n_oos
    correct = oos_below[below] + (right_below[-1] - right_below[below])
    accuracy = correct / n
    recall = (
        (oos_below[below] + (oos_and_pred_oos_below[-1] - oos_and_pred_oos_below[below])) / n_oos
        if n_oos
        else np.zeros(len(candidates))
    )
    in_right_above = (right_below[-1] - right_below[below]) - (
        oos_and_pred_oos_below[-1] - oos_and_pred_oos_below[below]
    )
    in_scope = in_right_above / n_in if n_in else np.zeros(len(candidates))
    allowed = np.ones(len(candidates), dtype=bool)
    rule = "best accuracy"
    if min_oos_recall is not None and n_oos:
        rule = f"best accuracy with oos recall >= {min_oos_recall:.0%}"
        allowed = recall >= min_oos_recall - 1e-12
        if not allowed.any():
            allowed = recall == recall.max()
    score = np.where(allowed, accuracy, -1.0)
    best = int(np.argmax(score))  # the lowest threshold among equals
    return ThresholdChoice(
        threshold=float(candidates[best]),
        accuracy=float(accuracy[best]),
        oos_recall=float(recall[best]),
        in_scope_accuracy=float(in_scope[best]),
        rule=rule,
    )


def apply_threshold(
    predicted: Sequence[str], confidences: Sequence[float] | npt.NDArray[np.float64], threshold: float
) -> list[str]:
    """Predictions with those below ``threshold`` replaced by ``oos``."""
    return [OOS if round(float(c), 4) < threshold else p for p, c in zip(predicted, confidences, strict=True)]
