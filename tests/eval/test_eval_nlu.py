"""`taiwa eval nlu`: the metrics on hand-computed examples, the command end to end on small JSONL
files and on the tiny fixture project (hold-out and k-fold), and the bad-input errors.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from cli.main import main
from engine.evaluation.nlu_eval import confused_pairs, score_entities, score_intents, worst_intents
from engine.loading.project import load_project
from engine.nlu.pipeline import build_pipeline
from engine.nlu.train import cross_validation

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "tests" / "fixtures" / "tiny"

TRAIN = {
    "greet": ["hi", "hello", "hey there", "good morning", "hello bot", "hi there", "hey", "good evening"],
    "bye": ["bye", "goodbye", "see you later", "bye bye", "good night", "talk to you later", "farewell", "see ya"],
    "pizza": [
        "order a pizza",
        "I want a pizza",
        "pizza please",
        "get me a pizza",
        "one large pizza",
        "can I order pizza",
        "pizza for dinner",
        "I'd like a pizza",
    ],
    "oos": ["what is the weather", "tell me a joke", "how tall is everest", "who won the game"],
}
TEST = {
    "greet": ["hello there", "hi bot", "morning"],
    "bye": ["goodbye now", "see you", "bye for now"],
    "pizza": ["a pizza please", "order pizza now", "I want pizza"],
    "oos": ["what time is it", "sing a song", "how far is the moon"],
}
REQUIRED_KEYS = {
    "accuracy",
    "macro_f1",
    "train_seconds",
    "predict_seconds",
    "n_train",
    "n_test",
    "per_intent",
    "confusion",
    "engine_version",
    "data",
}


def write_jsonl(path: Path, rows: dict[str, list[str]], *, without: str | None = None) -> Path:
    lines = [json.dumps({"text": t, "intent": i}) for i, texts in rows.items() if i != without for t in texts]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["eval", "nlu", *argv])
    out, err = capsys.readouterr()
    return code, out, err


# -- the metrics, against hand-computed values


def test_intent_scores_match_a_hand_computed_example() -> None:
    gold = ["a", "a", "b", "b", "oos", "oos"]
    predicted = ["a", "b", "b", "b", "oos", "a"]
    scores = score_intents(gold, predicted)
    # a: 1 right of 2 predicted, 1 of 2 found; b: 2 of 3 predicted, 2 of 2; oos: 1 of 1, 1 of 2.
    assert scores.accuracy == pytest.approx(4 / 6)
    assert scores.per_intent["a"].precision == pytest.approx(0.5)
    assert scores.per_intent["a"].recall == pytest.approx(0.5)
    assert scores.per_intent["b"].precision == pytest.approx(2 / 3)
    assert scores.per_intent["b"].f1 == pytest.approx(0.8)
    assert scores.per_intent["oos"].f1 == pytest.approx(2 / 3)
    assert scores.macro_f1 == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    assert [s.support for s in scores.per_intent.values()] == [2, 2, 2]
    assert scores.in_scope_accuracy == pytest.approx(3 / 4)  # a, b, b, b against a, a, b, b
    assert scores.oos_recall == pytest.approx(1 / 2)
    assert scores.labels == ("a", "b", "oos")
    assert scores.confusion == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert worst_intents(scores) == ["a", "oos", "b"]
    assert confused_pairs(scores) == [("a", "b", 1), ("oos", "a", 1)]


def test_without_out_of_scope_gold_there_are_no_oos_figures() -> None:
    scores = score_intents(["a", "b", "b"], ["a", "b", "c"])
    assert scores.in_scope_accuracy is None and scores.oos_recall is None
    # c was predicted but never gold: it counts in macro F1 with F1 0 and support 0.
    assert scores.per_intent["c"].support == 0
    assert scores.macro_f1 == pytest.approx((1 + 2 / 3 + 0) / 3)
    assert worst_intents(scores) == ["b", "a"]  # c is not a tested intent


def test_a_custom_oos_label_is_scored_as_out_of_scope() -> None:
    scores = score_intents(["x", "out_of_scope", "out_of_scope"], ["x", "out_of_scope", "x"], "out_of_scope")
    assert scores.oos_recall == pytest.approx(0.5)
    assert scores.in_scope_accuracy == pytest.approx(1.0)


def test_entity_scores_match_exact_spans_names_and_values() -> None:
    gold = {(0, 0, 5, "size", "large"), (1, 2, 7, "size", "small"), (1, 10, 14, "city", "oslo")}
    predicted = {
        (0, 0, 5, "size", "large"),  # right
        (1, 2, 7, "size", "medium"),  # wrong value: a miss and a false alarm
        (1, 10, 14, "city", "oslo"),  # right
        (2, 0, 3, "city", "rome"),  # false alarm
    }
    scores = score_entities(gold, predicted)
    assert scores.precision == pytest.approx(2 / 4)
    assert scores.recall == pytest.approx(2 / 3)
    assert scores.f1 == pytest.approx(2 * (1 / 2) * (2 / 3) / (1 / 2 + 2 / 3))
    assert scores.support == 3
    assert scores.per_entity["city"].precision == pytest.approx(1 / 2)
    assert scores.per_entity["city"].recall == pytest.approx(1.0)
    assert scores.per_entity["size"].precision == pytest.approx(1 / 2)
    assert scores.per_entity["size"].recall == pytest.approx(1 / 2)
    assert score_entities(set(), set()).support == 0


# -- the command end to end


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("jsonl")
    return {
        "train": write_jsonl(folder / "train.jsonl", TRAIN),
        "train_no_oos": write_jsonl(folder / "train_no_oos.jsonl", TRAIN, without="oos"),
        "test": write_jsonl(folder / "test.jsonl", TEST),
        "val": write_jsonl(folder / "val.jsonl", TEST),
    }


def check_report_is_consistent(report: dict[str, Any]) -> None:
    """Every figure agrees with the confusion matrix it came with."""
    assert set(report) >= REQUIRED_KEYS
    confusion = report["confusion"]
    assert isinstance(confusion, dict)
    labels, matrix = confusion["labels"], confusion["matrix"]
    total = sum(map(sum, matrix))
    assert total == report["n_test"]
    right = sum(matrix[i][i] for i in range(len(labels)))
    assert report["accuracy"] == pytest.approx(right / total, abs=1e-4)
    per_intent = report["per_intent"]
    assert isinstance(per_intent, dict)
    for i, label in enumerate(labels):
        assert per_intent[label]["support"] == sum(matrix[i])
        found = matrix[i][i] / sum(matrix[i]) if sum(matrix[i]) else 0.0
        assert per_intent[label]["recall"] == pytest.approx(found, abs=1e-4)


def test_train_and_test_files_give_the_full_report(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report_path = tmp_path / "report.json"
    code, out, err = run(
        capsys, "--train", str(files["train"]), "--test", str(files["test"]), "--report", str(report_path)
    )
    assert code == 0, err
    report = json.loads(report_path.read_text(encoding="utf-8"))
    check_report_is_consistent(report)
    assert report["n_train"] == sum(map(len, TRAIN.values()))
    assert report["n_test"] == sum(map(len, TEST.values()))
    assert report["data"]["train"]["sha256"] == hashlib.sha256(files["train"].read_bytes()).hexdigest()
    assert report["data"]["test"]["path"] == str(files["test"])
    oos = TEST["oos"]
    oos_row = report["confusion"]["labels"].index("oos")
    assert report["oos_recall"] == pytest.approx(report["confusion"]["matrix"][oos_row][oos_row] / len(oos), abs=1e-4)
    assert 0 <= report["in_scope_accuracy"] <= 1
    assert report["oos"]["thresholds"] == []  # oos only as a trained class: no threshold asked for
    assert "entity_f1" not in report  # JSONL rows carry no entities
    assert report["train_seconds"] > 0 and report["predict_seconds"] > 0
    assert "NLU evaluation" in out and "10 worst intents" in out and "OOS recall" in out
    assert "training model" in err and "predicting model" in err  # progress, plain when not a terminal


def test_a_threshold_turns_unsure_predictions_into_oos(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    # Trained without oos: only the threshold can predict it. At 1.0 every prediction is unsure.
    argv = ["--train", str(files["train_no_oos"]), "--test", str(files["test"]), "--json"]
    code, out, err = run(capsys, *argv, "--threshold", "1")
    assert code == 0, err
    report = json.loads(out)
    assert report["oos_recall"] == 1.0
    assert report["oos"]["thresholds"] == [1.0]
    assert report["in_scope_accuracy"] == 0.0
    code, out, err = run(capsys, *argv, "--val", str(files["val"]))
    assert code == 0, err
    tuned = json.loads(out)
    assert len(tuned["oos"]["thresholds"]) == 1
    assert "validation data" in tuned["oos"]["threshold_rule"]
    assert tuned["data"]["val"]["sha256"] == hashlib.sha256(files["val"].read_bytes()).hexdigest()


@pytest.mark.skipif(importlib.util.find_spec("matplotlib") is None, reason="matplotlib is an optional dependency")
def test_k_fold_on_a_file_draws_the_confusion_matrix(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    png = tmp_path / "confusion.png"
    code, out, err = run(capsys, "--train", str(files["train"]), "--folds", "2", "--confusion-png", str(png), "--json")
    assert code == 0, err
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    report = json.loads(out)
    assert report["n_test"] == sum(map(len, TRAIN.values()))  # every example tested once
    assert report["models"] == 2


def test_k_fold_on_the_project_agrees_with_the_training_cross_validation(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The model card's 3-fold cross-validation (its own counting) scores the same folds."""
    project = load_project(TINY, import_actions=False).project
    assert project is not None
    pipeline = build_pipeline([(c.name, c.options) for c in project.policies.pipeline])
    expected = cross_validation(project.nlu, pipeline, frozenset(project.domain.entities), folds=3)
    code, out, err = run(capsys, "--project", str(TINY), "--folds", "3", "--seed", "0", "--json")
    assert code == 0, err
    report = json.loads(out)
    check_report_is_consistent(report)
    assert report["accuracy"] == expected["intent_accuracy"]
    assert report["macro_f1"] == expected["intent_macro_f1"]
    assert report["entity_f1"] == expected["entity_f1"]
    assert report["entities"]["support"] == expected["entity_support"]
    assert report["split"] == {"kind": "k-fold", "folds": 3, "seed": 0}
    assert [f["path"] for f in report["data"]["train"]["files"]] == [str(TINY / "nlu_data" / "nlu.yml")]


def test_holdout_on_the_project_keeps_every_intent_on_both_sides(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "--project", str(TINY), "--holdout", "0.2", "--seed", "7", "--json")
    assert code == 0, err
    report = json.loads(out)
    check_report_is_consistent(report)
    assert (report["n_train"], report["n_test"]) == (40, 10)  # tiny/: 5 intents x 10 examples
    assert {s["support"] for s in report["per_intent"].values()} == {2}
    assert report["entities"]["support"] >= 1  # the held-out inform examples carry sizes
    assert report["split"] == {"kind": "holdout", "fraction": 0.2, "seed": 7}


# -- bad input: exit code 2, a message that says what and where, no traceback


def test_a_bad_jsonl_line_names_the_file_and_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "hi", "intent": "greet"}\n{"text": "bye", "intent": "bye"}\n{"text": "oops"\n')
    code, _, err = run(capsys, "--train", str(bad), "--folds", "2")
    assert code == 2
    assert f"{bad}:3:" in err and "not valid JSON" in err
    bad.write_text('{"text": "hi", "intent": "greet"}\n{"text": "bye"}\n')
    code, _, err = run(capsys, "--train", str(bad), "--folds", "2")
    assert code == 2
    assert f"{bad}:2:1" in err and 'expected an object with non-empty string "text" and "intent"' in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--train", "missing.jsonl", "--test", "{test}"], "--train missing.jsonl: no such file"),
        (["--train", "{train}", "--folds", "1"], "cross-validation needs at least 2 folds"),
        (["--train", "{train}", "--test", "{test}", "--folds", "3"], "--test and --folds each choose the test data"),
        (["--train", "{train}", "--holdout", "1.5"], "--holdout 1.5: expected a fraction between 0 and 1"),
        (["--train", "{train}", "--folds", "9"], "9-fold cross-validation needs at least 9 examples of every intent"),
        (["--train", "{train}", "--project", "."], "--train and --project both give training data"),
        (["--train", "{train_no_oos}", "--test", "{test}"], "the training data has none and no threshold is set"),
        (["--train", "{train}", "--test", "{renamed}"], "'Greet' (did you mean 'greet'?)"),
        (["--project", "no-such-folder"], "the project folder 'no-such-folder' does not exist"),
    ],
)
def test_bad_arguments_exit_2_with_a_clear_message(
    argv: list[str], message: str, files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    renamed = write_jsonl(tmp_path / "renamed.jsonl", {"Greet": ["hi"], "bye": ["bye"]})
    paths = {**{k: str(v) for k, v in files.items()}, "renamed": str(renamed)}
    code, out, err = run(capsys, *(a.format(**paths) for a in argv))
    assert code == 2
    assert message in err
    assert out == ""


def test_confusion_png_without_matplotlib_says_how_to_install_it(
    files: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" else real_find_spec(name, *a)
    )
    code, _, err = run(
        capsys, "--train", str(files["train"]), "--folds", "2", "--confusion-png", str(tmp_path / "c.png")
    )
    assert code == 2
    assert "pip install matplotlib" in err
    assert not (tmp_path / "c.png").exists()


def test_the_console_script_reports_errors_without_a_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text("not json\n", encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", "eval", "nlu", "--train", str(bad), "--folds", "2"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert f"{bad}:1:1: error: not valid JSON" in done.stderr
    assert "Traceback" not in done.stderr


def test_an_out_of_scope_intent_is_found_by_its_rasa_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Rasa projects call it out_of_scope: without --oos-label it is scored as out of scope all the same.
    renamed = {("out_of_scope" if k == "oos" else k): v for k, v in TRAIN.items()}
    renamed_test = {("out_of_scope" if k == "oos" else k): v for k, v in TEST.items()}
    report_path = tmp_path / "report.json"
    train, test = write_jsonl(tmp_path / "train.jsonl", renamed), write_jsonl(tmp_path / "test.jsonl", renamed_test)
    code, _, err = run(capsys, "--train", str(train), "--test", str(test), "--report", str(report_path))
    assert code == 0, err
    report = json.loads(report_path.read_text(encoding="utf-8"))
    assert report["oos"]["label"] == "out_of_scope"
    assert report["oos_recall"] is not None
