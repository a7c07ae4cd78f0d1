"""Intent classification: a linear model over the sparse features.

scikit-learn fits the weights; inference only needs the weight matrix: the score of an
utterance is the sum of the weight rows of its active features (a gather over ~200 rows),
then a softmax with a fitted temperature gives calibrated confidences.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import sparse

AUTO_CV_MAX_EXAMPLES = 5000


@dataclass(frozen=True)
class ClassifierOptions:
    """Settings of ``classifier.linear.v1``."""

    model: str = "svm"
    """``svm`` (LinearSVC), ``logreg`` (multinomial LogisticRegression) or ``sgd``."""
    C: float = 0.6
    """Measured best for LinearSVC on BANKING77/CLINC150 (benchmarks/README.md)."""
    calibration: str = "auto"
    """How the softmax temperature is fitted: ``cv`` (3-fold out-of-fold scores), ``holdout``
    (10 %), ``none``, or ``auto``: cv up to 5,000 examples (a small holdout is often all
    correct, which drives the temperature to its bound and confidences to 1.0), else holdout."""
    max_iter: int = 2000
    random_state: int = 0

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ClassifierOptions:
        check_option_names("classifier.linear.v1", data, cls.__dataclass_fields__)
        return cls(**data)


@dataclass(frozen=True)
class LinearIntentModel:
    """Weights of a fitted linear intent classifier (runtime side)."""

    classes: tuple[str, ...]
    weights: npt.NDArray[np.float32]
    """Shape (n_features, n_classes): one row per feature, for a cheap gather."""
    bias: npt.NDArray[np.float32]
    temperature: float
    """Scores are multiplied by this before the softmax."""

    def scores_one(self, idx: npt.NDArray[np.int64], val: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        if len(idx) == 0:
            return self.bias.copy()
        scores: npt.NDArray[np.float32] = val @ self.weights[idx] + self.bias
        return scores

    def proba_one(self, idx: npt.NDArray[np.int64], val: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
        return softmax(self.scores_one(idx, val).astype(np.float64) * self.temperature)

    def proba(self, x: sparse.csr_matrix) -> npt.NDArray[np.float64]:
        scores = np.asarray(x @ self.weights, dtype=np.float64) + self.bias
        return softmax(scores * self.temperature)


def check_option_names(component: str, data: dict[str, Any], known: Any) -> None:
    """Reject misspelt options instead of silently ignoring them."""
    from engine.diagnostics import closest

    for key in data:
        if key not in known:
            hint = closest(key, known)
            fix = f"did you mean {hint!r}? " if hint else ""
            raise ValueError(f"{component} has no option {key!r}. Fix: {fix}options: {', '.join(sorted(known))}")


def softmax(z: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)  # type: ignore[no-any-return]


def _make_estimator(options: ClassifierOptions) -> Any:
    from sklearn.linear_model import LogisticRegression, SGDClassifier
    from sklearn.svm import LinearSVC

    if options.model == "svm":
        return LinearSVC(C=options.C, max_iter=options.max_iter, random_state=options.random_state)
    if options.model == "logreg":
        return LogisticRegression(C=options.C, max_iter=options.max_iter, random_state=options.random_state)
    if options.model == "sgd":
        return SGDClassifier(loss="modified_huber", alpha=1.0 / (options.C * 10_000), random_state=options.random_state)
    raise ValueError(f"unknown classifier model {options.model!r}; use svm, logreg or sgd")


def _decision(estimator: Any, x: sparse.csr_matrix, n_classes: int) -> npt.NDArray[np.float64]:
    d = np.asarray(estimator.decision_function(x), dtype=np.float64)
    if n_classes == 2 and d.ndim == 1:
        d = np.stack([-d, d], axis=1) / 2
    return d


def fit_temperature(scores: npt.NDArray[np.float64], y: npt.NDArray[np.int64]) -> float:
    """The softmax temperature that minimises the negative log-likelihood."""
    from scipy.optimize import minimize_scalar

    def nll(log_t: float) -> float:
        p = softmax(scores * np.exp(log_t))
        return float(-np.mean(np.log(p[np.arange(len(y)), y] + 1e-12)))

    result = minimize_scalar(nll, bounds=(-3.0, 3.0), method="bounded")
    return float(np.exp(result.x))


def fit_classifier(x: sparse.csr_matrix, labels: Sequence[str], options: ClassifierOptions) -> LinearIntentModel:
    """Fit the weights (and the temperature) on the training matrix."""
    classes = tuple(sorted(set(labels)))
    index = {c: i for i, c in enumerate(classes)}
    y = np.asarray([index[label] for label in labels], dtype=np.int64)
    if len(classes) == 1:
        weights = np.zeros((x.shape[1], 1), dtype=np.float32)
        return LinearIntentModel(classes, weights, np.zeros(1, dtype=np.float32), 1.0)
    temperature = 1.0
    if options.calibration != "none":
        temperature = _calibrate(x, y, len(classes), options)
    estimator = _make_estimator(options).fit(x, y)
    coef, bias = binary_to_two_columns(estimator.coef_, estimator.intercept_, len(classes))
    return LinearIntentModel(classes, np.ascontiguousarray(coef.T), bias, temperature)


def binary_to_two_columns(
    coef: Any, intercept: Any, n_classes: int
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """scikit-learn keeps one weight row for two classes; expand it to one row per class."""
    w = np.asarray(coef, dtype=np.float32)
    b = np.asarray(intercept, dtype=np.float32)
    if n_classes == 2 and w.shape[0] == 1:
        w = (np.vstack([-w, w]) / 2).astype(np.float32)
        b = (np.asarray([-b[0], b[0]]) / 2).astype(np.float32)
    return w, b


def _calibrate(x: sparse.csr_matrix, y: npt.NDArray[np.int64], n_classes: int, options: ClassifierOptions) -> float:
    from sklearn.model_selection import StratifiedKFold, train_test_split

    counts = np.bincount(y, minlength=n_classes)
    if counts.min() < 3:
        return 1.0
    method = options.calibration
    if method == "auto":
        method = "cv" if len(y) <= AUTO_CV_MAX_EXAMPLES else "holdout"
    if method == "cv":
        scores = np.zeros((len(y), n_classes))
        for train, test in StratifiedKFold(3, shuffle=True, random_state=options.random_state).split(x, y):
            est = _make_estimator(options).fit(x[train], y[train])
            scores[test] = _decision(est, x[test], n_classes)
        return fit_temperature(scores, y)
    # 10 % held out, but at least one example per intent (a stratified split needs that).
    test_size = max(n_classes, math.ceil(0.1 * len(y)))
    train, test = train_test_split(
        np.arange(len(y)), test_size=test_size, stratify=y, random_state=options.random_state
    )
    est = _make_estimator(options).fit(x[train], y[train])
    if len(set(y[train].tolist())) < n_classes:
        return 1.0
    return fit_temperature(_decision(est, x[test], n_classes), y[test])
