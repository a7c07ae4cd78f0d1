"""The reference assistant's NLU on sentences it never saw: a floor on its accuracy.

benchmarks/data/reference_heldout.jsonl holds 20 sentences per intent, written from the
domain, flows and knowledge base alone, without looking at nlu_data/. Short ones ("yes",
"bye") are bound to be training examples too: only the sentences the training data does not
contain (compared lower-cased, without punctuation) count. A change to the NLU code or to
the training data that makes the assistant misunderstand plain requests fails here, not in
a user's chat.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

from engine.loading.project import load_project_or_raise
from engine.nlu.artifact import load_model

REPO = Path(__file__).resolve().parents[2]
HELDOUT = REPO / "benchmarks" / "data" / "reference_heldout.jsonl"


def _plain(text: str) -> str:
    return re.sub(r"[^a-z0-9 ]", "", text.lower()).strip()


def test_the_reference_nlu_understands_unseen_sentences(reference_models: Path, isolated_actions: None) -> None:
    trained_on = {_plain(e.text) for e in load_project_or_raise(REPO).nlu.examples}
    rows = [json.loads(line) for line in HELDOUT.read_text(encoding="utf-8").splitlines() if line.strip()]
    unseen = [row for row in rows if _plain(row["text"]) not in trained_on]
    assert len(unseen) >= 130, "most held-out sentences became training examples: write new held-out ones"
    model = load_model(reference_models)
    predicted = [r.intent.name for r in model.parse_batch([row["text"] for row in unseen])]
    right = Counter(row["intent"] for row, p in zip(unseen, predicted, strict=True) if p == row["intent"])
    total = Counter(row["intent"] for row in unseen)
    accuracy = sum(right.values()) / len(unseen)
    misses = [(row["text"], row["intent"], p) for row, p in zip(unseen, predicted, strict=True) if p != row["intent"]]
    assert accuracy >= 0.95, f"accuracy {accuracy:.1%} on {len(unseen)} unseen sentences; misses: {misses}"
    weak = {intent: f"{right[intent]}/{n}" for intent, n in total.items() if n >= 5 and right[intent] / n < 0.8}
    assert not weak, f"intents understood on fewer than 80% of unseen sentences: {weak}; misses: {misses}"
