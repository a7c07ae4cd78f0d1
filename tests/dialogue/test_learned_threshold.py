"""`nlu_threshold: auto`: the fallback threshold `taiwa train` learned from the `oos` examples."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from dialogue.project import project_from_yaml
from engine.actions.runner import LocalActionRunner
from engine.diagnostics import Location
from engine.dialogue.processor import MessageProcessor
from engine.nlu.artifact import load_model
from engine.nlu.train import train_project
from engine.policies.config import LearnedThresholdMissingError, with_learned_threshold
from engine.stores.memory import InMemoryTrackerStore

OOS = {
    "domain/oos.yml": "intents:\n  - oos\n",
    "nlu_data/oos.yml": """
nlu:
  - intent: oos
    examples: |
      - what's the weather on mars
      - who won the football last night
      - sing me a song about whales
      - how tall is mount everest
      - recommend a good novel
      - what is the capital of peru
      - tell me about black holes
      - how do I cook rice
      - translate hello into german
      - what time is it in tokyo
""",
    "policies/thresholds.yml": "nlu_threshold: auto\n",
}


def test_a_number_stays_and_auto_takes_the_cards_threshold(tmp_path: Path) -> None:
    numbered = project_from_yaml(tmp_path / "a", {"policies/thresholds.yml": "nlu_threshold: 0.55\n"}).policies
    assert with_learned_threshold(numbered, {"cross_validation": {"oos_threshold": 0.2}}) is numbered
    auto = project_from_yaml(tmp_path / "b", OOS).policies
    assert auto.nlu_threshold_auto == Location("policies/thresholds.yml", 1, 16)
    learned = with_learned_threshold(auto, {"cross_validation": {"oos_threshold": 0.3127}})
    assert learned.nlu_threshold == 0.3127


def test_auto_with_a_model_that_learned_nothing_says_where_and_how_to_fix_it(tmp_path: Path) -> None:
    auto = project_from_yaml(tmp_path, OOS).policies
    with pytest.raises(LearnedThresholdMissingError) as err:
        with_learned_threshold(auto, {"cross_validation": {"folds": 3}}, "nlu-old")
    text = str(err.value)
    assert text.startswith("policies/thresholds.yml:1:16: nlu_threshold is auto, but the model nlu-old")
    assert "Fix: run `taiwa train`" in text


def with_intent_named(name: str) -> dict[str, str]:
    """The OOS files with the out-of-scope intent called ``name`` (CLINC150's `oos`, Rasa's `out_of_scope`)."""
    return {
        path: text.replace("- oos", f"- {name}").replace("intent: oos", f"intent: {name}") for path, text in OOS.items()
    }


@pytest.mark.parametrize("name", ["oos", "out_of_scope"])
async def test_training_learns_it_and_the_turn_pipeline_uses_it(tmp_path: Path, name: str) -> None:
    project = project_from_yaml(tmp_path, with_intent_named(name))
    outcome = train_project(project.root)
    nlu = load_model(outcome.model_dir)
    assert nlu.card["cross_validation"]["oos_label"] == name
    learned = nlu.card["cross_validation"]["oos_threshold"]
    assert 0.0 <= learned < 1.0 and learned != 0.4  # 0.0: the oos class alone caught every fold's oos
    processor = MessageProcessor(project, nlu, InMemoryTrackerStore(), LocalActionRunner({}))
    assert processor.policies.nlu_threshold == learned
    assert project.policies.nlu_threshold == 0.4  # the loaded project itself is not changed
    # An out-of-scope message is not forced into an intent: the fallback answers it.
    result = await processor.handle("u1", "what's the weather on jupiter")
    assert result.parse is not None and result.parse["intent"]["name"] == name
    assert result.outcome == "fallback"


def test_taiwa_run_refuses_auto_with_a_model_that_learned_nothing(tmp_path: Path) -> None:
    # The model was trained before the project switched to auto: no threshold in its card.
    project = project_from_yaml(tmp_path, {k: v for k, v in OOS.items() if not k.startswith("policies/")})
    outcome = train_project(project.root)
    card = outcome.model_dir / "card.json"
    card.write_text(card.read_text().replace('"oos_threshold"', '"old_threshold"'))
    (project.root / "policies" / "thresholds.yml").write_text("nlu_threshold: auto\n")
    taiwa = Path(sys.executable).parent / "taiwa"
    args = [str(taiwa), "run", "--project", str(project.root), "--model", str(outcome.model_dir), "--port", "1"]
    run = subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 2, run.stderr
    assert "policies/thresholds.yml:1:16: nlu_threshold is auto" in run.stderr
    assert "Fix: run `taiwa train`" in run.stderr
