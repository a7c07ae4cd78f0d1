"""The Slack channel against the real ``taiwa run``: Events API and interactivity requests
signed with slack-sdk's SignatureVerifier, replies received by a fake of ``chat.postMessage``
and their blocks read back with slack-sdk's block models."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from fakes.platforms import (
    SLACK_SECRET,
    SLACK_TOKEN,
    Answer,
    Call,
    FakePlatforms,
    http,
    user_events,
)
from slack_sdk.models.blocks import ActionsBlock, Block, SectionBlock
from slack_sdk.signature import SignatureVerifier

from engine.events import BotUttered
from engine.server.channels import slack
from server.live import LiveServer, live_server

POST = "/api/chat.postMessage"
ROUTE = "/webhooks/slack/events"
TEAM = "T0TEAM"


# -- Slack's requests


def new_id(prefix: str) -> str:
    return prefix + uuid.uuid4().hex[:10].upper()


def message(user: str, channel: str, text: str, **extra: Any) -> dict[str, Any]:
    ts = f"{time.time():.6f}"
    event = {"type": "message", "channel": channel, "user": user, "text": text, "ts": ts, "event_ts": ts}
    return {**event, "channel_type": "im", "client_msg_id": str(uuid.uuid4()), **extra}


def callback(event: dict[str, Any], event_id: str | None = None) -> bytes:
    body = {
        "token": "deprecated-verification-token",
        "team_id": TEAM,
        "api_app_id": "A0APP",
        "event": event,
        "type": "event_callback",
        "event_id": event_id or new_id("Ev"),
        "event_time": int(time.time()),
        "authorizations": [{"team_id": TEAM, "user_id": "U0BOT", "is_bot": True}],
    }
    return json.dumps(body).encode()


def post(
    server: LiveServer,
    body: bytes,
    *,
    timestamp: int | None = None,
    secret: str = SLACK_SECRET,
    signed: bool = True,
    form: bool = False,
    headers: dict[str, str] | None = None,
) -> Answer:
    ts = str(int(time.time()) if timestamp is None else timestamp)
    all_headers = {
        "Content-Type": "application/x-www-form-urlencoded" if form else "application/json",
        **(headers or {}),
    }
    if signed:
        try:
            signature = SignatureVerifier(secret).generate_signature(timestamp=ts, body=body)
        except UnicodeDecodeError:  # the SDK signs text only; Slack signs the raw bytes
            signature = slack.signature(secret, ts, body)
        assert signature is not None
        all_headers |= {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": signature}
    return http("POST", server.url + ROUTE, body, all_headers)


def posted_to(platform: FakePlatforms, channel: str, count: int = 1) -> list[Call]:
    calls = platform.wait_for(POST, lambda c: c.json.get("channel") == channel, count=count)
    for call in calls:
        assert call.headers["Authorization"] == f"Bearer {SLACK_TOKEN}"
    return calls


def all_to(platform: FakePlatforms, channel: str) -> list[Call]:
    return [c for c in platform.to(POST) if c.json.get("channel") == channel]


# -- tests


def test_url_verification_answers_the_challenge(server: LiveServer) -> None:
    body = json.dumps(
        {"token": "t", "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P", "type": "url_verification"}
    )
    answer = post(server, body.encode())
    assert answer.status == 200
    assert answer.json == {"challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"}
    assert post(server, body.encode(), signed=False).status == 401


def test_a_message_is_acknowledged_at_once_and_answered_with_chat_post_message(
    server: LiveServer, platform: FakePlatforms
) -> None:
    user, channel, event_id = new_id("U"), new_id("D"), new_id("Ev")
    answer = post(server, callback(message(user, channel, "/greet"), event_id))
    assert answer.status == 200 and answer.body == b""

    [call] = posted_to(platform, channel)
    assert call.json["text"] and "blocks" not in call.json and "thread_ts" not in call.json
    [event] = user_events(server.url, f"slack:{TEAM}:{channel}:{user}")
    assert (event["intent"], event["channel"], event["message_id"]) == ("greet", "slack", event_id)


def test_buttons_become_blocks_and_a_click_is_the_next_message(server: LiveServer, platform: FakePlatforms) -> None:
    user, channel = new_id("U"), new_id("D")
    post(server, callback(message(user, channel, "/open_ticket")))
    posted_to(platform, channel)
    post(server, callback(message(user, channel, "my vm is down")))
    call = posted_to(platform, channel, count=2)[-1]

    blocks = Block.parse_all(call.json["blocks"])
    for block in blocks:
        block.validate_json()
    section, actions = blocks
    assert isinstance(section, SectionBlock) and isinstance(actions, ActionsBlock)
    assert call.json["text"] == section.text.text == "How urgent is it?"  # type: ignore[union-attr]
    buttons = [(b.text.text, b.value) for b in actions.elements]  # type: ignore[attr-defined]
    assert buttons == [
        ("Low", '/inform{"priority": "low"}'),
        ("Medium", '/inform{"priority": "medium"}'),
        ("High", '/inform{"priority": "high"}'),
    ]

    element = call.json["blocks"][1]["elements"][0]
    payload = {
        "type": "block_actions",
        "team": {"id": TEAM, "domain": "acme"},
        "user": {"id": user, "username": "someone", "team_id": TEAM},
        "api_app_id": "A0APP",
        "container": {
            "type": "message",
            "message_ts": "1700000000.000001",
            "channel_id": channel,
            "is_ephemeral": False,
        },
        "trigger_id": "1.2.3",
        "channel": {"id": channel, "name": "directmessage"},
        "message": {"type": "message", "ts": "1700000000.000001", "text": "How urgent is it?"},
        "response_url": "https://hooks.slack.invalid/actions/1",
        "actions": [
            {
                "type": "button",
                "action_id": element["action_id"],
                "block_id": "b1",
                "text": element["text"],
                "value": element["value"],
                "action_ts": f"{time.time():.6f}",
            }
        ],
    }
    answer = post(server, urlencode({"payload": json.dumps(payload)}).encode(), form=True)
    assert answer.status == 200
    confirm = posted_to(platform, channel, count=3)[-1]
    assert "low priority" in confirm.json["text"]
    texts = [e["text"] for e in user_events(server.url, f"slack:{TEAM}:{channel}:{user}")]
    assert texts == ["/open_ticket", "my vm is down", '/inform{"priority": "low"}']


def test_an_app_mention_is_answered_in_its_thread_without_the_mention(
    server: LiveServer, platform: FakePlatforms
) -> None:
    user, channel = new_id("U"), new_id("C")
    event = {**message(user, channel, "<@U0BOT> /greet", thread_ts="1700000000.000100"), "type": "app_mention"}
    event.pop("channel_type")
    assert post(server, callback(event)).status == 200
    [call] = posted_to(platform, channel)
    assert call.json["thread_ts"] == "1700000000.000100"
    [user_event] = user_events(server.url, f"slack:{TEAM}:{channel}:{user}")
    assert user_event["text"] == "/greet"


@pytest.mark.parametrize("case", ["unsigned", "wrong-secret", "stale", "future", "tampered", "bad-timestamp"])
def test_forged_stale_or_unsigned_requests_are_refused_and_not_processed(
    server: LiveServer, platform: FakePlatforms, case: str
) -> None:
    user, channel = new_id("U"), new_id("D")
    body = callback(message(user, channel, "/greet"))
    now = int(time.time())
    if case == "unsigned":
        answer = post(server, body, signed=False)
    elif case == "wrong-secret":
        answer = post(server, body, secret="not-the-signing-secret")
    elif case == "stale":
        answer = post(server, body, timestamp=now - 301)
    elif case == "future":
        answer = post(server, body, timestamp=now + 400)
    elif case == "tampered":
        ts = str(now)
        signature = SignatureVerifier(SLACK_SECRET).generate_signature(timestamp=ts, body=body)
        headers = {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": str(signature)}
        answer = http("POST", server.url + ROUTE, body.replace(b"/greet", b"/goodbye"), headers)
    else:
        headers = {"X-Slack-Request-Timestamp": "yesterday", "X-Slack-Signature": "v0=00"}
        answer = http("POST", server.url + ROUTE, body, headers)
    assert answer.status == 401
    assert answer.json["error"]["code"] == "unauthorized"
    time.sleep(0.3)
    assert user_events(server.url, f"slack:{TEAM}:{channel}:{user}") == []
    assert all_to(platform, channel) == []


def test_a_retried_event_is_processed_once(server: LiveServer, platform: FakePlatforms) -> None:
    user, channel, event_id = new_id("U"), new_id("D"), new_id("Ev")
    body = callback(message(user, channel, "/greet"), event_id)
    assert post(server, body).status == 200
    posted_to(platform, channel)
    retry = {"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}
    assert post(server, body, headers=retry).status == 200
    post(server, callback(message(user, channel, "/goodbye")))
    posted_to(platform, channel, count=2)
    time.sleep(0.3)
    assert len(all_to(platform, channel)) == 2
    events = user_events(server.url, f"slack:{TEAM}:{channel}:{user}")
    assert [e["text"] for e in events] == ["/greet", "/goodbye"]
    assert events[0]["message_id"] == event_id


@pytest.mark.parametrize(
    "extra",
    [{"bot_id": "B0BOT"}, {"subtype": "message_changed"}, {"subtype": "channel_join"}, {"text": "   "}],
    ids=["bot", "edited", "join", "blank"],
)
def test_bot_messages_and_subtypes_are_acknowledged_not_processed(
    server: LiveServer, platform: FakePlatforms, extra: dict[str, str]
) -> None:
    user, channel = new_id("U"), new_id("D")
    assert post(server, callback({**message(user, channel, "/greet"), **extra})).status == 200
    other = callback({"type": "reaction_added", "user": user, "reaction": "thumbsup", "item": {}})
    assert post(server, other).status == 200
    assert post(server, json.dumps({"type": "app_rate_limited", "team_id": TEAM}).encode()).status == 200
    time.sleep(0.3)
    assert user_events(server.url, f"slack:{TEAM}:{channel}:{user}") == []
    assert all_to(platform, channel) == []


@pytest.mark.parametrize(
    ("body", "form"),
    [
        (b"", False),
        (b"{not json", False),
        (b"[1, 2]", False),
        (b'{"type": "url_verification"}', False),
        (b'{"type": "event_callback", "event_id": "Ev1"}', False),
        (b'{"type": "event_callback", "event_id": "Ev1", "event": {"type": 5}}', False),
        (b'{"type": "event_callback", "event_id": "Ev1", "event": {"type": "message", "text": ["x"]}}', False),
        (b"text=hello", True),
        (b"payload=%7Bnot+json", True),
        (urlencode({"payload": json.dumps({"type": "block_actions"})}).encode(), True),
        (urlencode({"payload": json.dumps({"type": "block_actions", "user": {}, "actions": []})}).encode(), True),
        (b"\xff\xfe=\xff", True),
    ],
    ids=["empty", "not-json", "array", "no-challenge", "no-event", "event-type-int", "text-list", "form-no-payload",
         "payload-not-json", "actions-no-user", "user-no-id", "form-not-utf8"],
)  # fmt: skip
def test_malformed_bodies_are_400_never_5xx(server: LiveServer, body: bytes, form: bool) -> None:
    answer = post(server, body, form=form)
    assert answer.status == 400, answer.body


def test_a_failed_post_message_is_retried(server: LiveServer, platform: FakePlatforms) -> None:
    user, channel = new_id("U"), new_id("D")
    platform.fail(POST, 500, times=1)
    post(server, callback(message(user, channel, "/greet")))
    posted_to(platform, channel)
    statuses = [c.status for c in platform.to(POST)[-2:]]
    assert statuses == [500, 200]


def test_not_mounted_without_both_credentials(reference_models: Path, tmp_path: Path) -> None:
    assert slack.from_env({}) is None
    assert slack.from_env({slack.SECRET_ENV: "s"}) is None
    assert slack.from_env({slack.TOKEN_ENV: "t"}) is None
    assert slack.from_env({slack.SECRET_ENV: "s", slack.TOKEN_ENV: "t"}) is not None
    with live_server(reference_models, tmp_path, {slack.TOKEN_ENV: SLACK_TOKEN}) as s:
        body = json.dumps({"type": "url_verification", "challenge": "c"}).encode()
        answer = post(s, body)
        assert answer.status == 404
        assert answer.json["error"]["code"] == "not_found"


def test_signature_rules_match_slack_sdk() -> None:
    body, now = b'{"type": "event_callback"}', 1_700_000_000
    verifier = SignatureVerifier(SLACK_SECRET)
    good = verifier.generate_signature(timestamp=str(now), body=body)
    assert good == slack.signature(SLACK_SECRET, str(now), body)
    slack.verify(SLACK_SECRET, body, str(now), good, now=now + 300)
    with pytest.raises(Exception, match="5 minutes"):
        slack.verify(SLACK_SECRET, body, str(now), good, now=now + 301)


def test_message_body_escapes_text_and_caps_buttons() -> None:
    buttons = tuple({"title": "x" * 100, "payload": f"/p{i}"} for i in range(30))
    body = slack.message_body(BotUttered(text="a < b & c", buttons=buttons), "C1", "1.2")
    assert body is not None
    assert body["text"] == "a &lt; b &amp; c" and body["thread_ts"] == "1.2"
    elements = body["blocks"][1]["elements"]
    assert len(elements) == 25 and all(len(e["text"]["text"]) == 75 for e in elements)
    assert len({e["action_id"] for e in elements}) == 25
    for block in Block.parse_all(body["blocks"]):
        block.validate_json()
    assert slack.message_body(BotUttered(text=None), "C1", None) is None
