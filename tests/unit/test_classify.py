"""The linear intent classifier: ranking, probabilities and temperature calibration."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
from scipy import sparse
from sklearn.linear_model import LogisticRegression

from engine.nlu.classify import (
    ClassifierOptions,
    LinearIntentModel,
    binary_to_two_columns,
    fit_classifier,
    fit_temperature,
    softmax,
)

N_FEATURES = 40
FEATURES_PER_CLASS = 8


def synthetic(n_classes: int, per_class: int, seed: int, noise: float = 0.3) -> tuple[sparse.csr_matrix, list[str]]:
    """Each class owns a block of features; every row also has a few random shared ones."""
    rng = np.random.default_rng(seed)
    n_features = max(N_FEATURES, n_classes * FEATURES_PER_CLASS)
    rows = []
    labels = []
    for c in range(n_classes):
        for _ in range(per_class):
            v = np.zeros(n_features)
            own = rng.choice(FEATURES_PER_CLASS, size=3, replace=False) + c * FEATURES_PER_CLASS
            v[own] = 1.0
            shared = rng.choice(n_features, size=2, replace=False)
            v[shared] += noise
            rows.append(v / np.linalg.norm(v))
            labels.append(f"intent_{c}")
    return sparse.csr_matrix(np.asarray(rows, dtype=np.float32)), labels


def one_row(x: sparse.csr_matrix, i: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    row = x[i]
    return row.indices.astype(np.int64), row.data.astype(np.float32)


def nll(proba: npt.NDArray[np.float64], y: list[int]) -> float:
    return float(-np.mean(np.log(proba[np.arange(len(y)), y] + 1e-12)))


@pytest.mark.parametrize("model", ["svm", "logreg", "sgd"])
def test_each_model_ranks_the_right_intent_first(model: str) -> None:
    x, labels = synthetic(4, 12, seed=1)
    clf = fit_classifier(x, labels, ClassifierOptions(model=model))
    assert clf.classes == ("intent_0", "intent_1", "intent_2", "intent_3")
    assert clf.weights.shape == (N_FEATURES, 4)
    assert clf.bias.shape == (4,)
    x_test, y_test = synthetic(4, 10, seed=2)
    proba = clf.proba(x_test)
    predicted = [clf.classes[i] for i in proba.argmax(axis=1)]
    accuracy = np.mean([p == t for p, t in zip(predicted, y_test, strict=True)])
    assert accuracy >= 0.9


def test_proba_rows_sum_to_one_and_stay_in_range() -> None:
    x, labels = synthetic(4, 12, seed=3, noise=2.0)
    clf = fit_classifier(x, labels, ClassifierOptions())
    proba = clf.proba(x)
    assert proba.shape == (x.shape[0], 4)
    assert np.allclose(proba.sum(axis=1), 1.0)
    assert ((proba > 0) & (proba < 1)).all()


def test_proba_one_equals_the_batch_row() -> None:
    x, labels = synthetic(3, 10, seed=4)
    clf = fit_classifier(x, labels, ClassifierOptions(calibration="cv"))
    batch = clf.proba(x)
    for i in range(x.shape[0]):
        assert np.allclose(clf.proba_one(*one_row(x, i)), batch[i], atol=1e-6)


def test_an_empty_feature_vector_scores_the_bias() -> None:
    x, labels = synthetic(3, 10, seed=5)
    clf = fit_classifier(x, labels, ClassifierOptions())
    empty = clf.proba_one(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32))
    assert np.allclose(empty, clf.proba(sparse.csr_matrix((1, N_FEATURES), dtype=np.float32))[0])
    assert empty.sum() == pytest.approx(1.0)


def test_uncalibrated_logreg_equals_sklearn_predict_proba() -> None:
    x, labels = synthetic(4, 10, seed=6)
    clf = fit_classifier(x, labels, ClassifierOptions(model="logreg", C=1.0, calibration="none"))
    assert clf.temperature == 1.0
    y = [clf.classes.index(label) for label in labels]
    reference = LogisticRegression(C=1.0, max_iter=2000, random_state=0).fit(x, y)
    assert np.allclose(clf.proba(x), reference.predict_proba(x), atol=1e-5)


def test_fit_temperature_cools_an_overconfident_model() -> None:
    rng = np.random.default_rng(0)
    n, k = 400, 4
    y = rng.integers(0, k, size=n)
    logits = rng.normal(size=(n, k))
    logits[np.arange(n), y] += 1.0  # right 60 % of the time or so...
    scores = 10.0 * logits  # ...but ten times too sure of it
    t = fit_temperature(scores, y)
    assert 0 < t < 1
    assert nll(softmax(scores * t), list(y)) < nll(softmax(scores), list(y))
    assert t == pytest.approx(0.1, rel=0.5)


@pytest.mark.parametrize("model", ["svm", "logreg", "sgd"])
@pytest.mark.parametrize("calibration", ["holdout", "cv"])
def test_calibrated_model_has_lower_held_out_nll_than_t1(model: str, calibration: str) -> None:
    x, labels = synthetic(4, 30, seed=7, noise=2.0)
    clf = fit_classifier(x, labels, ClassifierOptions(model=model, calibration=calibration))
    assert np.isfinite(clf.temperature) and clf.temperature > 0
    x_test, y_test = synthetic(4, 30, seed=8, noise=2.0)
    y = [clf.classes.index(label) for label in y_test]
    proba = clf.proba(x_test)
    assert ((proba > 0) & (proba < 1)).all()
    uncalibrated = LinearIntentModel(clf.classes, clf.weights, clf.bias, 1.0)
    assert nll(proba, y) < nll(uncalibrated.proba(x_test), y)


def test_no_calibration_keeps_t1() -> None:
    x, labels = synthetic(4, 30, seed=7, noise=2.0)
    assert fit_classifier(x, labels, ClassifierOptions(calibration="none")).temperature == 1.0


def test_holdout_calibration_with_many_intents_and_few_examples() -> None:
    """10 % of 48 examples is 5, fewer than the 12 intents: the held-out split used to raise
    scikit-learn's "The test_size = 5 should be greater or equal to the number of classes = 12"."""
    x, labels = synthetic(12, 4, seed=14)
    clf = fit_classifier(x, labels, ClassifierOptions(calibration="holdout"))
    assert np.isfinite(clf.temperature) and clf.temperature > 0
    assert len(clf.classes) == 12
    assert np.mean([clf.classes[i] == t for i, t in zip(clf.proba(x).argmax(axis=1), labels, strict=True)]) > 0.9


def test_too_few_examples_per_intent_skip_calibration() -> None:
    x, labels = synthetic(3, 2, seed=9)
    clf = fit_classifier(x, labels, ClassifierOptions(calibration="holdout"))
    assert clf.temperature == 1.0
    assert [clf.classes[i] for i in clf.proba(x).argmax(axis=1)] == labels


@pytest.mark.parametrize("model", ["svm", "logreg", "sgd"])
def test_two_intents_get_one_column_each(model: str) -> None:
    x, labels = synthetic(2, 12, seed=10)
    clf = fit_classifier(x, labels, ClassifierOptions(model=model))
    assert clf.classes == ("intent_0", "intent_1")
    assert clf.weights.shape == (N_FEATURES, 2)
    proba = clf.proba(x)
    assert np.allclose(proba.sum(axis=1), 1.0)
    assert [clf.classes[i] for i in proba.argmax(axis=1)] == labels
    for i in range(x.shape[0]):
        assert np.allclose(clf.proba_one(*one_row(x, i)), proba[i], atol=1e-6)


def test_binary_logreg_matches_sklearn_sigmoid() -> None:
    x, labels = synthetic(2, 10, seed=11)
    clf = fit_classifier(x, labels, ClassifierOptions(model="logreg", C=1.0, calibration="none"))
    reference = LogisticRegression(max_iter=2000, random_state=0).fit(x, [clf.classes.index(v) for v in labels])
    assert np.allclose(clf.proba(x), reference.predict_proba(x), atol=1e-5)


def test_binary_to_two_columns_keeps_multiclass_weights() -> None:
    coef = np.arange(6, dtype=np.float64).reshape(3, 2)
    w, b = binary_to_two_columns(coef, np.ones(3), 3)
    assert w.shape == (3, 2) and w.dtype == np.float32 and b.tolist() == [1.0, 1.0, 1.0]
    w2, b2 = binary_to_two_columns(np.asarray([[2.0, -4.0]]), np.asarray([1.0]), 2)
    assert w2.tolist() == [[-1.0, 2.0], [1.0, -2.0]] and b2.tolist() == [-0.5, 0.5]


def test_single_intent_data_always_predicts_it() -> None:
    x, _ = synthetic(1, 5, seed=12)
    clf = fit_classifier(x, ["greet"] * 5, ClassifierOptions())
    assert clf.classes == ("greet",)
    assert np.allclose(clf.proba(x), 1.0)
    assert clf.proba_one(*one_row(x, 0)).tolist() == [1.0]


def test_unknown_model_name_raises_value_error() -> None:
    x, labels = synthetic(3, 5, seed=13)
    for calibration in ("none", "holdout"):
        with pytest.raises(ValueError, match="unknown classifier model 'forest'"):
            fit_classifier(x, labels, ClassifierOptions(model="forest", calibration=calibration))


def test_options_from_dict_reads_known_keys() -> None:
    opts = ClassifierOptions.from_dict({"model": "logreg", "C": 3.0})
    assert opts == ClassifierOptions(model="logreg", C=3.0)


def test_options_from_dict_rejects_a_misspelt_option() -> None:
    # A typo such as `c: 2` must not silently train with the default.
    with pytest.raises(ValueError, match=r"no option 'c'.*options: C, calibration"):
        ClassifierOptions.from_dict({"c": 2.0})


def test_softmax_is_stable_for_large_scores() -> None:
    p = softmax(np.asarray([[1000.0, 999.0, -1000.0]]))
    assert np.isfinite(p).all()
    assert p.sum() == pytest.approx(1.0)
    assert p[0, 0] > p[0, 1] > p[0, 2]
