"""What an operator's log pipeline gets from `taiwa run`: one JSON object per line on stderr,
every turn and tool call with its ids, outcome and latency, tied to the revisions /version shows."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from pathlib import Path
from typing import Any

import aiohttp

from server.live import REPO, TAIWA, live_server

TOKEN = "logs-token-5c2e"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ENV = {"TAIWA_API_TOKEN": TOKEN, "TAIWA_WEBCHAT": "0", "TAIWA_RATE_LIMIT": "off"}


def json_lines(output: str) -> list[dict[str, Any]]:
    """Every line the server wrote that is a log record (stdout's banner is plain text)."""
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


async def test_turns_and_tool_calls_are_json_lines_with_ids_outcome_and_revisions(
    reference_models: Path, tmp_path: Path
) -> None:
    with live_server(reference_models, tmp_path, ENV, workers=2) as server:
        deadline = time.monotonic() + 30
        while server.output().count('"message":"Worker ready') < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)  # /health answers once the first worker is up
        async with aiohttp.ClientSession() as session:
            for text in ("hi", "how do I reset my password"):
                async with session.post(
                    server.url + "/webhooks/rest/webhook", json={"sender": "ops-1", "message": text}
                ) as r:
                    assert r.status == 200
            async with session.get(server.url + "/version") as r:
                version = await r.json()
            async with session.get(server.url + "/conversations/ops-1/tracker", headers=AUTH) as r:
                events = (await r.json())["events"]
    output = server.output()
    records = json_lines(output)
    # Every line of stderr is a JSON object: nothing else (no Sanic banner, no plain text).
    assert len(records) == sum(1 for line in output.splitlines() if line.strip()) - 1  # the stdout banner
    turn_ids = [e["turn_id"] for e in events if e["event"] == "user_uttered"]
    turns = [r for r in records if r["logger"] == "taiwa.turn" and r["message"] == "turn"]
    assert [t["turn_id"] for t in turns] == turn_ids
    for turn in turns:
        assert turn["session_id"] == "ops-1" and turn["channel"] == "rest"
        assert turn["outcome"] and turn["policy"] and turn["latency_ms"] > 0
        assert set(turn["nodes_ms"]) == {"IR", "ST", "DM", "EXEC"}
    assert turns[0]["intent"] == "greet"
    (tool,) = [r for r in records if r.get("tool_name") == "kb_search"]
    assert (tool["turn_id"], tool["node"], tool["outcome"]) == (turn_ids[1], "EXEC", "ok")
    # The revisions on every line are those of what /version says is loaded.
    expected = {
        "model_revision": version["model_id"],
        "prompt_revision": version["revisions"]["prompt"],
        "workflow_revision": version["revisions"]["flows"],
        "config_revision": version["revisions"]["config"],
    }
    for record in records:
        assert {k: record.get(k) for k in expected} == expected, record
    # Both workers' records arrive whole, one per line, and Sanic's own records are among them.
    assert any(r["logger"].startswith("sanic.") and r["message"].startswith("Worker ready") for r in records)
    assert not [r for r in records if r["level"] in ("warning", "error")], records


def test_a_bad_log_format_is_a_usage_error(tmp_path: Path) -> None:
    args = [str(TAIWA), "run", "--project", str(REPO), "--log-format", "xml"]
    run = subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 2
    assert "unknown log format 'xml'" in run.stderr and "--log-format auto|json|text" in run.stderr
