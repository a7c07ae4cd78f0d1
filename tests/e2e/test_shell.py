"""``taiwa shell`` as a user runs it: the installed script, a scripted session on stdin,
the reference assistant's use cases from start to end."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TAIWA = Path(sys.executable).parent / "taiwa"


def shell(models: Path, tmp_path: Path, script: list[str], *options: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TAIWA_CRM_DB": str(tmp_path / "crm.sqlite3"), "COLUMNS": "200", "NO_COLOR": "1"}
    return subprocess.run(
        [str(TAIWA), "shell", "--project", str(REPO), "--model", str(models), *options],
        input="\n".join(script) + "\n",
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )


def bot_lines(out: str) -> list[str]:
    return [line.removeprefix("Bot: ") for line in out.splitlines() if line.startswith("Bot: ")]


def test_every_use_case_in_one_scripted_session(reference_models: Path, tmp_path: Path) -> None:
    script = [
        "hi",
        "how do I reset my password?",  # UC-01 FAQ
        "check my account",  # UC-02 account lookup (identity check in a sub-flow)
        "C12345",
        "12/04/1990",
        "I want to open a ticket",  # UC-03 ticket
        "the export page shows an error",
        "3",  # the third button: High
        "1",  # Yes, open it
        "talk to a human",  # handoff
        "are you there?",
        "/stop",
    ]
    done = shell(reference_models, tmp_path, script)
    assert done.returncode == 0, done.stderr
    said = bot_lines(done.stdout)
    assert said[0].startswith(("Hi!", "Hello", "Hey"))
    assert "Forgot password?" in said[1]
    assert said[2].startswith("What's your customer ID?")
    assert "date of birth" in said[3]
    assert said[4] == "Thanks Jane Doe! Your account C12345 is on the Business plan and its status is active."
    assert "ticket" in said[5].lower() or "issue" in said[5].lower()
    assert said[6] == "How urgent is it?"
    assert "     3. High" in done.stdout
    assert '(pressed: High → /inform{"priority": "high"})' in done.stdout
    assert said[7] == 'Shall I open a high priority ticket about "the export page shows an error"?'
    assert "T-0000" in said[8]
    assert said[9] == "Thanks Jane Doe, I'm connecting you to the support team now. They'll see your account details."
    assert "(handed over to a person: user_request." in done.stdout
    assert len(said) == 10  # silent after the handoff
    assert done.stdout.rstrip().endswith("Bye.")


def test_debug_shows_ranking_slots_stack_and_decision(reference_models: Path, tmp_path: Path) -> None:
    done = shell(reference_models, tmp_path, ["check my account", "C12345"], "--debug")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "IR   intent check_account" in out and "ranking: check_account" in out
    assert "DM   flow_policy: intent check_account" in out and "triggers flow account_lookup" in out
    assert "stack account_lookup@0_call_verify_identity > verify_identity@0_collect_customer_id" in out
    assert "IR   entities: customer_id='C12345'" in out
    assert "ST   slot customer_id = 'C12345'" in out
    assert "time " in out


def test_the_intent_shortcut_bypasses_the_nlu(reference_models: Path, tmp_path: Path) -> None:
    done = shell(reference_models, tmp_path, ['/open_ticket{"priority": "low"}', "the app crashes"], "--debug")
    assert done.returncode == 0, done.stderr
    assert "intent open_ticket (1.00, shortcut)" in done.stdout
    assert bot_lines(done.stdout)[-1] == 'Shall I open a low priority ticket about "the app crashes"?'


def test_a_button_number_out_of_range_is_explained(reference_models: Path, tmp_path: Path) -> None:
    done = shell(reference_models, tmp_path, ["I want to open a ticket", "it's broken", "7"])
    assert "There is no button 7; choose 1 to 3." in done.stdout


def test_without_a_trained_model_it_says_how_to_train(tmp_path: Path) -> None:
    done = shell(tmp_path / "no-models", tmp_path, ["hi"])
    assert done.returncode == 2
    assert "taiwa train" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("bad", ["sqlite:relative-without-slashes.db", "mongodb://localhost"])
def test_a_bad_store_url_is_a_usage_error(reference_models: Path, tmp_path: Path, bad: str) -> None:
    done = shell(reference_models, tmp_path, ["hi"], "--store", bad)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr and "Fix" in done.stderr
