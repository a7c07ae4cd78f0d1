"""`taiwa train`, run in-process on the reference assistant and on broken copies of tiny/.

Training the reference assistant takes a few seconds, so one module-scoped model is
shared: it is trained once, then reused (unchanged input) and retrained once with --force.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from cli.main import main
from engine.nlu.artifact import LATEST, load_model
from engine.nlu.model import NluModel

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "tests" / "fixtures" / "tiny"


@dataclass(frozen=True)
class FirstRun:
    code: int
    out: str
    err: str
    models: Path


pytestmark = pytest.mark.usefixtures("isolated_actions_module")


@pytest.fixture(scope="module")
def first_run(tmp_path_factory: pytest.TempPathFactory) -> FirstRun:
    """The one normal training of the reference assistant in this module."""
    models = tmp_path_factory.mktemp("train") / "models"
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["train", "--project", str(ROOT), "--out", str(models)])
    return FirstRun(code, out.getvalue(), err.getvalue(), models)


@pytest.fixture(scope="module")
def trained(first_run: FirstRun) -> NluModel:
    assert first_run.code == 0, first_run.err
    return load_model(first_run.models)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def model_dirs(models: Path) -> list[Path]:
    return sorted(p for p in models.iterdir() if p.is_dir())


def test_train_prints_the_model_and_cross_validation(first_run: FirstRun) -> None:
    assert first_run.code == 0, first_run.err
    lines = first_run.out.splitlines()
    match = re.fullmatch(
        r"✓ trained (nlu-[0-9a-f]{16}) in [\d.]+ s: (\d+) examples, (\d+) intents, ([\d,]+) features -> (.+)", lines[0]
    )
    assert match, first_run.out
    model_id = match.group(1)
    assert int(match.group(2)) > 100 and int(match.group(3)) >= 10
    assert Path(match.group(5)) == first_run.models / model_id
    assert re.fullmatch(
        r"  3-fold cross-validation: intent accuracy [\d.]+%, macro F1 [\d.]+%, entity F1 [\d.]+% \(\d+ entities\)",
        lines[1],
    ), first_run.out
    assert (first_run.models / LATEST).read_text(encoding="utf-8").strip() == model_id
    assert [p.name for p in model_dirs(first_run.models)] == [model_id]
    # Not a terminal: plain progress lines on stderr instead of a progress bar.
    assert "training: done (5/5)" in first_run.err


def test_the_trained_model_understands_the_reference_assistant(trained: NluModel) -> None:
    r = trained.parse("I want to open a ticket, it's urgent")
    assert r.intent.name == "open_ticket"
    assert [(e.entity, e.value, e.text) for e in r.entities] == [("priority", "high", "urgent")]

    r = trained.parse("my customer id is C12345")
    assert r.intent.name == "inform"
    assert [(e.entity, e.value, e.start, e.end) for e in r.entities] == [("customer_id", "C12345", 18, 24)]

    r = trained.parse("hello")
    assert r.intent.name == "greet"
    assert r.entities == ()


def test_unchanged_project_is_not_retrained(first_run: FirstRun, capsys: pytest.CaptureFixture[str]) -> None:
    assert first_run.code == 0, first_run.err
    (folder,) = model_dirs(first_run.models)
    before = {p.name: p.stat().st_mtime_ns for p in [folder, *folder.iterdir()]}
    (first_run.models / LATEST).write_text("something-else\n", encoding="utf-8")

    code, out, err = run(capsys, "train", "--project", str(ROOT), "--out", str(first_run.models))

    assert code == 0, err
    assert out == f"✓ nothing changed: model {folder.name} is up to date ({folder}). Use --force to retrain.\n"
    assert "training:" not in err  # no training stage ran
    assert {p.name: p.stat().st_mtime_ns for p in [folder, *folder.iterdir()]} == before
    assert (first_run.models / LATEST).read_text(encoding="utf-8").strip() == folder.name


def test_json_prints_the_model_card(first_run: FirstRun, capsys: pytest.CaptureFixture[str]) -> None:
    assert first_run.code == 0, first_run.err
    (folder,) = model_dirs(first_run.models)

    code, out, err = run(capsys, "train", "--project", str(ROOT), "--out", str(first_run.models), "--json")

    assert code == 0, err
    report = json.loads(out)
    assert report["model_id"] == folder.name
    assert report["path"] == str(folder)
    assert report["skipped"] is True
    card = report["card"]
    assert card["model_id"] == folder.name
    assert card["data"]["examples"] > 100
    assert card["cross_validation"]["folds"] == 3
    assert err == ""  # --json keeps stderr quiet


def test_force_retrains(first_run: FirstRun, trained: NluModel, capsys: pytest.CaptureFixture[str]) -> None:
    (folder,) = model_dirs(first_run.models)
    before = (folder / "meta.json").stat().st_mtime_ns

    code, out, err = run(capsys, "train", "--project", str(ROOT), "--out", str(first_run.models), "--force")

    assert code == 0, err
    assert out.startswith(f"✓ trained {folder.name} in "), out
    assert "training: cross-validation (4/5)" in err
    assert model_dirs(first_run.models) == [folder]  # same input, same id, replaced in place
    assert (folder / "meta.json").stat().st_mtime_ns != before
    retrained = load_model(first_run.models)
    for text in ("hello", "my customer id is C12345", "I want to open a ticket, it's urgent"):
        a, b = trained.parse(text), retrained.parse(text)
        assert a.intent.name == b.intent.name
        assert a.intent.confidence == pytest.approx(b.intent.confidence, abs=1e-6)  # training is deterministic
        assert a.entities == b.entities


@pytest.fixture
def tiny_copy(tmp_path: Path) -> Path:
    target = tmp_path / "tiny"
    shutil.copytree(TINY, target)
    return target


def test_broken_project_exits_1_with_diagnostics(
    tiny_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flow = tiny_copy / "flows" / "order.yml"
    flow.write_text(flow.read_text(encoding="utf-8").replace("collect: pizza_size", "collect: pizza_sizee"), "utf-8")

    code, out, err = run(capsys, "train", "--project", str(tiny_copy), "--out", str(tmp_path / "models"))

    assert code == 1
    assert out == ""
    assert "flows/order.yml:" in err
    assert "unknown slot 'pizza_sizee'" in err
    assert "did you mean: 'pizza_size'?" in err
    assert err.rstrip().endswith("✗ 1 error(s); fix them (see `taiwa validate`) and train again")
    assert not (tmp_path / "models").exists()


def test_unknown_pipeline_component_exits_1(
    tiny_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tiny_copy / "policies" / "pipeline.yml").write_text(
        "pipeline:\n  - name: tokenizer.spacy.v1\n  - name: classifier.nope.v1\n", encoding="utf-8"
    )

    code, out, err = run(capsys, "train", "--project", str(tiny_copy), "--out", str(tmp_path / "models"))

    assert code == 1
    assert out == ""
    assert "policies/pipeline.yml:" in err
    assert "classifier.nope.v1" in err
    assert "did you mean: 'classifier.linear.v1'?" in err
    assert "featurizer.tfidf.v1" in err  # the available names are listed
    assert not (tmp_path / "models").exists()


def test_missing_project_folder_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "train", "--project", str(tmp_path / "nope"))
    assert code == 2
    assert out == ""
    assert "does not exist" in err and "Fix:" in err


# -- training from a JSONL data set (the benchmarks' format) ------------------------------

JSONL_ROWS = [
    {"text": t, "intent": i}
    for i, texts in {
        "card_lost": ["I lost my card", "my card is missing", "can't find my card", "card gone", "lost card help"],
        "exchange_rate": [
            "what is the exchange rate",
            "rate for euros",
            "usd to eur rate",
            "fx rate",
            "exchange rate?",
        ],
        "oos": [
            "what's the weather on mars",
            "sing a song",
            "who is the president",
            "tell me a joke",
            "how tall is it",
        ],
    }.items()
    for t in texts
]


def write_jsonl(path: Path, rows: list[dict[str, str]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_train_from_a_jsonl_data_set_then_reuse(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = write_jsonl(tmp_path / "train.jsonl", JSONL_ROWS)
    models = tmp_path / "models"
    code, out, err = run(capsys, "train", "--data", str(data), "--out", str(models))
    assert code == 0, err
    assert "15 examples, 3 intents" in out
    model = load_model(models)
    assert model.parse("I lost my debit card").intent.name == "card_lost"
    card = model.card
    assert "oos_threshold" in card["cross_validation"]
    code, out, _ = run(capsys, "train", "--data", str(data), "--out", str(models))
    assert code == 0
    assert "nothing changed" in out


def test_train_from_jsonl_with_a_pipeline_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = write_jsonl(tmp_path / "train.jsonl", JSONL_ROWS)
    pipe = tmp_path / "pipe.yml"
    pipe.write_text("pipeline:\n  - name: featurizer.tfidf.v1\n    char_ngrams: [3, 4]\n", encoding="utf-8")
    code, _, err = run(capsys, "train", "--data", str(data), "--pipeline", str(pipe), "--out", str(tmp_path / "m"))
    assert code == 0, err
    assert load_model(tmp_path / "m").featurizer.options.char_ngrams == (3, 4)


def test_a_bad_jsonl_line_is_reported_with_its_line_and_nothing_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "train.jsonl"
    data.write_text('{"text": "hi", "intent": "greet"}\n{"text": "bye", "intent": \n', encoding="utf-8")
    code, _, err = run(capsys, "train", "--data", str(data), "--out", str(tmp_path / "m"))
    assert code == 1
    assert f"{data}:2:" in err
    assert "not valid JSON" in err
    assert "Fix:" in err
    assert not (tmp_path / "m").exists()


def test_a_row_without_an_intent_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = write_jsonl(tmp_path / "train.jsonl", [{"text": "hi", "intent": "greet"}, {"text": "bye"}])  # type: ignore[list-item]
    code, _, err = run(capsys, "train", "--data", str(data), "--out", str(tmp_path / "m"))
    assert code == 1
    assert f"{data}:2:1:" in err


def test_a_missing_data_file_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "train", "--data", str(tmp_path / "nope.jsonl"))
    assert code == 2
    assert "no such file" in err
