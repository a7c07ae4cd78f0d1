"""`taiwa run` as a real server on a free localhost port: the REST channel through every
use case, the API with and without credentials, bad bodies, rate limits, right to deletion."""

from __future__ import annotations

import asyncio
import http.client
import io
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import psycopg
import pytest

from server.live import LiveServer, live_server

TOKEN = "test-token-7f3a"
SECRET = "jwt-secret-for-tests-0123456789abcdef"


@pytest.fixture(scope="module")
def server(reference_models: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    tmp = tmp_path_factory.mktemp("server")
    env = {
        "TAIWA_API_TOKEN": TOKEN,
        "TAIWA_JWT_SECRET": SECRET,
        "TAIWA_WEBCHAT": "0",
        "TAIWA_AUDIT_LOG": str(tmp / "audit.jsonl"),
    }
    with live_server(reference_models, tmp, env) as s:
        yield s


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def role_token(role: str, *, expires_in: int = 300) -> str:
    return jwt.encode({"sub": f"{role}-user", "role": role, "exp": int(time.time()) + expires_in}, SECRET, "HS256")


async def call(
    server: LiveServer,
    method: str,
    path: str,
    body: Any = None,
    *,
    raw: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any, dict[str, str]]:
    async with aiohttp.ClientSession() as session:
        data: Any = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        if isinstance(data, bytes) and len(data) > 65536:
            data = io.BytesIO(data)
        async with session.request(method, server.url + path, data=data, headers=headers or {}) as r:
            text = await r.text()
            try:
                payload: Any = json.loads(text)
            except ValueError:
                payload = text
            return r.status, payload, dict(r.headers)


async def rest(server: LiveServer, sender: str, message: str) -> list[dict[str, Any]]:
    status, body, _ = await call(server, "POST", "/webhooks/rest/webhook", {"sender": sender, "message": message})
    assert status == 200, body
    assert isinstance(body, list)
    return body


# --------------------------------------------------------------------------- REST channel


async def test_rest_faq(server: LiveServer) -> None:
    (reply,) = await rest(server, "u-faq", "how do I reset my password?")
    assert reply["recipient_id"] == "u-faq" and "Forgot password?" in reply["text"]


async def test_rest_account_lookup(server: LiveServer) -> None:
    await rest(server, "u-acc", "check my account")
    await rest(server, "u-acc", "C12345")
    (reply,) = await rest(server, "u-acc", "12/04/1990")
    assert reply["text"] == "Thanks Jane Doe! Your account C12345 is on the Business plan and its status is active."


async def test_rest_ticket_with_buttons(server: LiveServer) -> None:
    await rest(server, "u-tkt", "I want to open a ticket")
    (ask,) = await rest(server, "u-tkt", "the dashboard is slow")
    assert [b["title"] for b in ask["buttons"]] == ["Low", "Medium", "High"]
    (confirm,) = await rest(server, "u-tkt", ask["buttons"][1]["payload"])
    assert confirm["text"] == 'Shall I open a medium priority ticket about "the dashboard is slow"?'
    (done,) = await rest(server, "u-tkt", "/affirm")
    assert "T-0000" in done["text"]


async def test_rest_handoff_then_silence(server: LiveServer) -> None:
    replies = await rest(server, "u-hand", "I want to talk to a human")
    assert replies and "connecting you" in replies[0]["text"]
    assert await rest(server, "u-hand", "hello?") == []


@pytest.mark.parametrize(
    ("raw", "code", "fragment"),
    [
        (b"", "empty_body", "no body"),
        (b"{not json", "invalid_json", "not valid JSON"),
        (b"\xff\xfe\x00binary", "invalid_json", "not UTF-8"),
        (b'{"sender": 5, "message": "hi"}', "invalid_request", "sender"),
        (b'{"sender": "a", "message": "hi", "extra": 1}', "invalid_request", "extra"),
        (b'{"sender": "a"}', "invalid_request", "message"),
        (json.dumps({"sender": "a", "message": "x" * 5000}).encode(), "invalid_request", "message"),
        (b"[" * 100 + b"]" * 100, "invalid_json", "deeper"),
        (b'"just a string"', "invalid_request", "object"),
    ],
)
async def test_bad_bodies_get_a_clear_400(server: LiveServer, raw: bytes, code: str, fragment: str) -> None:
    status, body, _ = await call(server, "POST", "/webhooks/rest/webhook", raw=raw)
    assert status == 400, body
    assert body["error"]["code"] == code
    assert fragment in body["error"]["message"]


def _announce_huge_body(server: LiveServer) -> tuple[int, dict[str, Any]]:
    """Send only the headers of a 2 MB POST, with Expect: 100-continue, and read the answer."""
    host, port = server.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.putrequest("POST", "/webhooks/rest/webhook")
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Content-Length", str(2_000_000))
        conn.putheader("Expect", "100-continue")
        conn.endheaders()
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


async def test_a_huge_body_is_413_and_the_server_lives_on(server: LiveServer) -> None:
    # With Expect: 100-continue the 413 comes before the body is sent: the client here sends
    # none. (aiohttp's expect100 may start sending the body once any answer arrives, and the
    # server's close then resets the connection before the 413 is read.) Without Expect the
    # server answers as soon as it reads Content-Length and closes; a client still sending may
    # see a reset.
    status, body = await asyncio.to_thread(_announce_huge_body, server)
    assert status == 413 and body["error"]["code"] == "payload_too_large"
    async with aiohttp.ClientSession() as session:
        url = server.url + "/webhooks/rest/webhook"
        try:
            async with session.post(url, data=io.BytesIO(b"x" * 2_000_000)) as r:
                assert r.status == 413
        except aiohttp.ClientOSError:
            pass
    assert (await rest(server, "u-after", "hi"))[0]["text"]


async def test_unknown_paths_and_methods_are_json_errors(server: LiveServer) -> None:
    status, body, _ = await call(server, "GET", "/nope")
    assert status == 404 and body["error"]["code"] == "not_found"
    status, body, _ = await call(server, "GET", "/webhooks/rest/webhook")
    assert status == 405 and body["error"]["code"] == "method_not_allowed"


# --------------------------------------------------------------------------- API and auth


async def test_health_and_version_are_public(server: LiveServer) -> None:
    status, health, _ = await call(server, "GET", "/health")
    assert status == 200 and health["status"] == "ok"
    assert health["checks"]["tracker_store"]["status"] == "up"
    assert health["checks"]["lock_store"]["status"] == "up" and health["checks"]["lock_store"]["required"]
    status, version, _ = await call(server, "GET", "/version")
    assert status == 200 and version["model_id"].startswith("nlu-")
    assert set(version["revisions"]) >= {"domain", "flows", "policies", "nlu_data", "actions", "config", "prompt"}


@pytest.mark.parametrize(
    ("method", "path", "body", "role"),
    [
        ("POST", "/model/parse", {"text": "hi"}, "reader"),
        ("GET", "/conversations/u-faq/tracker", None, "reader"),
        ("GET", "/metrics", None, "reader"),
        ("POST", "/conversations/api-1/messages", {"text": "hi"}, "operator"),
        ("POST", "/conversations/api-1/trigger_intent", {"name": "greet"}, "operator"),
        ("DELETE", "/users/nobody/data", None, "admin"),
    ],
)
async def test_every_api_endpoint_needs_credentials_and_the_right_role(
    server: LiveServer, method: str, path: str, body: Any, role: str
) -> None:
    status, payload, headers = await call(server, method, path, body)
    assert status == 401 and payload["error"]["code"] == "unauthorized"
    assert "WWW-Authenticate" in headers
    status, payload, _ = await call(server, method, path, body, headers=bearer("wrong-token"))
    assert status == 401
    assert "wrong-token" not in json.dumps(payload)
    roles = ["reader", "operator", "admin"]
    for held in roles:
        status, payload, _ = await call(server, method, path, body, headers=bearer(role_token(held)))
        if roles.index(held) < roles.index(role):
            assert status == 403 and payload["error"]["code"] == "forbidden", (held, payload)
        else:
            assert status == 200, (held, payload)
    status, _, _ = await call(server, method, path, body, headers=bearer(TOKEN))
    assert status == 200


async def test_an_expired_or_forged_jwt_is_refused(server: LiveServer) -> None:
    expired = role_token("admin", expires_in=-10)
    status, body, _ = await call(server, "POST", "/model/parse", {"text": "hi"}, headers=bearer(expired))
    assert status == 401 and "expired" in body["error"]["message"]
    forged = jwt.encode(
        {"role": "admin", "exp": int(time.time()) + 60}, "not-the-secret-but-long-enough-for-hs256", "HS256"
    )
    status, body, _ = await call(server, "POST", "/model/parse", {"text": "hi"}, headers=bearer(forged))
    assert status == 401


async def test_parse_tracker_messages_and_trigger_intent(server: LiveServer) -> None:
    h = bearer(TOKEN)
    status, parsed, _ = await call(server, "POST", "/model/parse", {"text": "check my account"}, headers=h)
    assert status == 200 and parsed["intent"]["name"] == "check_account"
    status, turn, _ = await call(
        server, "POST", "/conversations/api-2/messages", {"text": "check my account"}, headers=h
    )
    assert status == 200 and turn["active_flow"] == "verify_identity" and turn["policy"] == "flow_policy"
    status, turn, _ = await call(
        server,
        "POST",
        "/conversations/api-2/trigger_intent",
        {"name": "inform", "entities": {"customer_id": "C12345"}},
        headers=h,
    )
    assert status == 200 and "date of birth" in turn["messages"][0]["text"]
    status, tracker, _ = await call(server, "GET", "/conversations/api-2/tracker", headers=h)
    assert status == 200
    assert tracker["slots"]["customer_id"] == "C12345"
    assert [f["flow"] for f in tracker["stack"]] == ["account_lookup", "verify_identity"]
    assert [e["event"] for e in tracker["events"]].count("user_uttered") == 2
    status, body, _ = await call(server, "POST", "/conversations/api-2/trigger_intent", {"name": "nope"}, headers=h)
    assert status == 400 and body["error"]["code"] == "unknown_intent"


async def test_metrics_count_turns(server: LiveServer) -> None:
    await rest(server, "u-metrics", "hi")
    status, text, headers = await call(server, "GET", "/metrics", headers=bearer(TOKEN))
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    assert 'taiwa_turns_total{channel="rest",policy="rule_policy"}' in text
    assert "taiwa_turn_latency_seconds_bucket" in text


async def test_openapi_document(server: LiveServer) -> None:
    status, doc, _ = await call(server, "GET", "/openapi.json")
    assert status == 200 and doc["openapi"].startswith("3.1")
    assert "/webhooks/rest/webhook" in doc["paths"] and "/users/{user_id}/data" in doc["paths"]


# --------------------------------------------------------------------------- rate limit


async def test_a_sender_over_the_rate_limit_gets_429_with_retry_after(server: LiveServer) -> None:
    statuses = []
    headers: dict[str, str] = {}
    for _ in range(30):  # capacity 20, refilled at 5/s: a burst of 30 is over
        status, body, headers_ = await call(
            server, "POST", "/webhooks/rest/webhook", {"sender": "flood", "message": "hi"}
        )
        statuses.append(status)
        if status == 429:
            headers = headers_
            assert body["error"]["code"] == "rate_limited"
    assert statuses.count(200) >= 20 and 429 in statuses
    assert int(headers["Retry-After"]) >= 1
    assert (await rest(server, "someone-else", "hi"))[0]["text"]  # other senders are not affected


# --------------------------------------------------------------------------- right to deletion


async def test_deleting_a_user_removes_their_conversations_and_is_audited(server: LiveServer) -> None:
    await rest(server, "erase-me", "hi")
    await rest(server, "keep-me", "hi")
    status, body, _ = await call(server, "DELETE", "/users/erase-me/data", headers=bearer(TOKEN))
    assert status == 200 and body["deleted_conversations"] == ["erase-me"]
    status, tracker, _ = await call(server, "GET", "/conversations/erase-me/tracker", headers=bearer(TOKEN))
    assert tracker["events"] == []
    status, tracker, _ = await call(server, "GET", "/conversations/keep-me/tracker", headers=bearer(TOKEN))
    assert tracker["events"]
    # Really gone from the SQLite file, not just hidden.
    import sqlite3

    db = next(Path(server.log.parent).glob("tracker.sqlite3"))
    with sqlite3.connect(db) as conn:
        text = "\n".join(str(row) for row in conn.execute("SELECT * FROM sqlite_master"))
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        dump = "\n".join(str(row) for t in tables for row in conn.execute(f"SELECT * FROM {t}"))
    assert text and "erase-me" not in dump and "keep-me" in dump
    audit = (server.log.parent / "audit.jsonl").read_text(encoding="utf-8")
    entry = json.loads(audit.strip().splitlines()[-1])
    assert entry["action"] == "delete_user_data" and entry["user_id"] == "erase-me" and entry["actor"] == "api-token"


@pytest.mark.services
async def test_deletion_on_postgresql(reference_models: Path, tmp_path: Path, postgres_url: str) -> None:
    table = f"taiwa_del_{int(time.time() * 1000) % 10**9}"
    url = f"{postgres_url}{'&' if '?' in postgres_url else '?'}table={table}"
    try:
        with live_server(reference_models, tmp_path, {"TAIWA_API_TOKEN": TOKEN, "TAIWA_WEBCHAT": "0"}, store=url) as s:
            await rest(s, "pg-erase", "hi")
            await rest(s, "pg-keep", "hi")
            status, body, _ = await call(s, "DELETE", "/users/pg-erase/data", headers=bearer(TOKEN))
            assert status == 200 and body["deleted_conversations"] == ["pg-erase"]
        with psycopg.connect(postgres_url) as conn:
            rows = conn.execute(f"SELECT conversation_id FROM {table}").fetchall()
        assert {r[0] for r in rows} == {"pg-keep"}
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(f"DROP TABLE IF EXISTS {table}")


async def test_a_rest_sender_cannot_name_another_channels_conversation(server: LiveServer) -> None:
    for sender in ("slack:T1:C1:U1", "line:U123", "teams:abc", "telegram:42", "api:x"):
        status, body, _ = await call(server, "POST", "/webhooks/rest/webhook", {"sender": sender, "message": "hi"})
        assert status == 400 and body["error"]["code"] == "invalid_request", sender
    status, body, _ = await call(server, "POST", "/webhooks/rest/webhook", {"message": "hi"})
    assert status == 400 and "sender" in body["error"]["message"]


async def test_a_retried_message_gets_the_same_answer_and_runs_once(server: LiveServer) -> None:
    body = {"sender": "retry-user", "message": "check my account", "message_id": "m-42"}
    first = await call(server, "POST", "/webhooks/rest/webhook", body)
    again = await call(server, "POST", "/webhooks/rest/webhook", body)
    assert first[0] == again[0] == 200 and first[1] == again[1] and first[1]
    _, tracker, _ = await call(server, "GET", "/conversations/retry-user/tracker", headers=bearer(TOKEN))
    assert [e["event"] for e in tracker["events"]].count("user_uttered") == 1


async def test_conversation_ids_in_paths_are_percent_decoded(server: LiveServer) -> None:
    await rest(server, "web:42/a b", "hi")
    _, tracker, _ = await call(server, "GET", "/conversations/web%3A42%2Fa%20b/tracker", headers=bearer(TOKEN))
    assert tracker["conversation_id"] == "web:42/a b" and tracker["events"]


async def test_health_reports_each_llm_provider(reference_models: Path, tmp_path: Path) -> None:
    """The fallback chain's providers: up when the key is set and the host answers, else down
    with the reason; they are not required, so the server is 'degraded', still 200."""
    import socket

    from server.live import copy_reference_project

    project = copy_reference_project(tmp_path)
    policies = project / "policies" / "policies.yml"
    text = policies.read_text(encoding="utf-8")
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        text = text.replace("enabled: false", "enabled: true", 1).replace("127.0.0.1:8000", f"127.0.0.1:{port}")
        policies.write_text(text, encoding="utf-8")
        env = {"TAIWA_WEBCHAT": "0", "OPENAI_API_KEY": "sk-test", "ANTHROPIC_API_KEY": ""}
        with live_server(reference_models, tmp_path, env, project=project) as s:
            status, health, _ = await call(s, "GET", "/health")
    assert status == 200 and health["status"] == "degraded"
    local, anthropic = health["checks"]["llm:local_openai"], health["checks"]["llm:anthropic"]
    assert local["status"] == "up" and local["latency_ms"] >= 0 and local["model"] == "gpt-4o-mini"
    assert anthropic == {"model": anthropic["model"], "required": False, "status": "down",
                         "error": "ANTHROPIC_API_KEY is not set"}  # fmt: skip
    assert "sk-test" not in json.dumps(health)
