"""The Telegram channel against the real ``taiwa run``: Updates built as the Bot API documents
them (https://core.telegram.org/bots/api#update), with the webhook's secret token header;
replies received by a fake of the Bot API."""

from __future__ import annotations

import itertools
import json
import random
import re
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from fakes.platforms import (
    API_TOKEN,
    TELEGRAM_SECRET,
    TELEGRAM_TOKEN,
    Answer,
    Call,
    FakePlatforms,
    http,
    user_events,
)

from engine.events import BotUttered
from engine.server.channels import telegram
from server.live import LiveServer, live_server

ROUTE = "/webhooks/telegram/webhook"
SEND = f"/bot{TELEGRAM_TOKEN}/sendMessage"
ANSWER_CALLBACK = f"/bot{TELEGRAM_TOKEN}/answerCallbackQuery"
_update_ids = itertools.count(random.randrange(10**6, 10**8))


# -- Bot API objects


def new_chat() -> int:
    return random.randrange(10**8, 10**10)


def user(chat: int) -> dict[str, Any]:
    return {"id": chat, "is_bot": False, "first_name": "Ada", "language_code": "en"}


def text_update(chat: int, text: str, update_id: int | None = None) -> dict[str, Any]:
    message = {
        "message_id": random.randrange(1, 10**6),
        "from": user(chat),
        "chat": {"id": chat, "first_name": "Ada", "type": "private"},
        "date": int(time.time()),
        "text": text,
    }
    return {"update_id": next(_update_ids) if update_id is None else update_id, "message": message}


def callback_update(chat: int, sent: dict[str, Any], data: str) -> dict[str, Any]:
    """A press on a button of ``sent`` (the body of our sendMessage), as Telegram reports it."""
    message = {
        "message_id": 77,
        "from": {"id": 123456, "is_bot": True, "first_name": "Acme", "username": "acme_bot"},
        "chat": {"id": chat, "first_name": "Ada", "type": "private"},
        "date": int(time.time()),
        "text": sent["text"],
        "reply_markup": sent["reply_markup"],
    }
    query = {"id": str(random.randrange(10**15, 10**16)), "from": user(chat), "message": message}
    return {"update_id": next(_update_ids), "callback_query": {**query, "chat_instance": "-42", "data": data}}


def post(server: LiveServer, update: Any, secret: str | None = TELEGRAM_SECRET) -> Answer:
    body = update if isinstance(update, bytes) else json.dumps(update).encode()
    headers = {"Content-Type": "application/json"}
    if secret is not None:
        headers["X-Telegram-Bot-Api-Secret-Token"] = secret
    return http("POST", server.url + ROUTE, body, headers)


def sent_to(platform: FakePlatforms, chat: int, count: int = 1) -> list[Call]:
    return platform.wait_for(SEND, lambda c: c.json.get("chat_id") == chat, count=count)


def all_to(platform: FakePlatforms, chat: int) -> list[Call]:
    return [c for c in platform.to(f"/bot{TELEGRAM_TOKEN}/*") if c.json.get("chat_id") == chat]


# -- tests


def test_a_text_message_is_answered_with_send_message(server: LiveServer, platform: FakePlatforms) -> None:
    chat = new_chat()
    update = text_update(chat, "/greet")
    answer = post(server, update)
    assert answer.status == 200
    [call] = sent_to(platform, chat)
    assert call.json["text"] and "reply_markup" not in call.json
    [event] = user_events(server.url, f"telegram:{chat}")
    assert (event["intent"], event["channel"], event["message_id"]) == ("greet", "telegram", str(update["update_id"]))


def test_buttons_become_an_inline_keyboard_and_a_press_is_the_next_message(
    server: LiveServer, platform: FakePlatforms
) -> None:
    chat = new_chat()
    post(server, text_update(chat, "/open_ticket"))
    sent_to(platform, chat)
    post(server, text_update(chat, "my vm is down"))
    sent = sent_to(platform, chat, count=2)[-1].json
    keyboard = sent["reply_markup"]["inline_keyboard"]
    assert keyboard == [
        [{"text": "Low", "callback_data": '/inform{"priority": "low"}'}],
        [{"text": "Medium", "callback_data": '/inform{"priority": "medium"}'}],
        [{"text": "High", "callback_data": '/inform{"priority": "high"}'}],
    ]
    assert all(len(b["callback_data"].encode()) <= 64 for row in keyboard for b in row)

    update = callback_update(chat, sent, keyboard[0][0]["callback_data"])
    assert post(server, update).status == 200
    [answered] = platform.wait_for(
        ANSWER_CALLBACK, lambda c: c.json.get("callback_query_id") == update["callback_query"]["id"]
    )
    assert answered.status == 200
    confirm = sent_to(platform, chat, count=3)[-1]
    assert "low priority" in confirm.json["text"]
    events = user_events(server.url, f"telegram:{chat}")
    assert [e["text"] for e in events] == ["/open_ticket", "my vm is down", '/inform{"priority": "low"}']


@pytest.mark.parametrize(
    "secret", [None, "", "wrong-secret", TELEGRAM_SECRET.upper(), TELEGRAM_SECRET + "x", TELEGRAM_TOKEN]
)
def test_requests_without_the_secret_token_are_refused_and_not_processed(
    server: LiveServer, platform: FakePlatforms, secret: str | None
) -> None:
    chat = new_chat()
    answer = post(server, text_update(chat, "/greet"), secret=secret)
    assert answer.status == 401
    assert answer.json["error"]["code"] == "unauthorized"
    time.sleep(0.3)
    assert user_events(server.url, f"telegram:{chat}") == []
    assert all_to(platform, chat) == []


def test_a_redelivered_update_is_processed_once(server: LiveServer, platform: FakePlatforms) -> None:
    chat = new_chat()
    update = text_update(chat, "/greet")
    post(server, update)
    sent_to(platform, chat)
    post(server, update)
    post(server, text_update(chat, "/goodbye"))
    sent_to(platform, chat, count=2)
    time.sleep(0.3)
    assert [e["text"] for e in user_events(server.url, f"telegram:{chat}")] == ["/greet", "/goodbye"]
    assert len(all_to(platform, chat)) == 2, [(c.status, c.path, c.body[:40]) for c in all_to(platform, chat)]


def test_other_updates_are_acknowledged_not_processed(server: LiveServer, platform: FakePlatforms) -> None:
    chat = new_chat()
    edited = text_update(chat, "/greet")
    edited["edited_message"] = edited.pop("message")
    sticker = text_update(chat, "x")
    del sticker["message"]["text"]
    sticker["message"]["sticker"] = {"file_id": "f", "file_unique_id": "u", "width": 512, "height": 512}
    member = {
        "update_id": next(_update_ids),
        "my_chat_member": {"chat": {"id": chat, "type": "private"}, "from": user(chat), "date": 1},
    }
    for update in (edited, sticker, member):
        assert post(server, update).status == 200
    time.sleep(0.3)
    assert user_events(server.url, f"telegram:{chat}") == []
    assert all_to(platform, chat) == []


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"{",
        b'"update"',
        b"{}",
        b'{"update_id": "1"}',
        b'{"update_id": 1, "message": {"text": "hi"}}',
        b'{"update_id": 1, "message": {"chat": {}, "text": "hi"}}',
        b'{"update_id": 1, "message": {"chat": {"id": 1}, "text": {"t": 1}}}',
        b'{"update_id": 1, "callback_query": {"data": "x"}}',
        b'{"update_id": 1, "callback_query": {"id": "1", "from": {"id": 1}, "data": 5}}',
    ],
    ids=["empty", "truncated", "string", "no-update-id", "update-id-string", "no-chat", "chat-no-id", "text-object",
         "query-no-id", "data-int"],
)  # fmt: skip
def test_malformed_updates_are_400_never_5xx(server: LiveServer, body: bytes) -> None:
    answer = post(server, body)
    assert answer.status == 400, answer.body


def test_a_failed_send_message_is_retried(server: LiveServer, platform: FakePlatforms) -> None:
    chat = new_chat()
    platform.fail(SEND, 500, times=1)
    post(server, text_update(chat, "/greet"))
    sent_to(platform, chat)
    assert [c.status for c in all_to(platform, chat)] == [500, 200]


def test_a_reply_the_platform_refuses_is_counted_for_operators(server: LiveServer, platform: FakePlatforms) -> None:
    def failures() -> float:
        request = urllib.request.Request(server.url + "/metrics", headers={"Authorization": f"Bearer {API_TOKEN}"})
        with urllib.request.urlopen(request, timeout=5) as r:
            text = r.read().decode()
        found = re.findall(r'^taiwa_channel_failures_total\{channel="telegram",stage="reply"\} (\S+)$', text, re.M)
        return float(found[0]) if found else 0.0

    before = failures()
    chat = new_chat()
    platform.fail(SEND, 400, times=1)  # a 4xx is not retried: the reply is lost, and counted
    post(server, text_update(chat, "/greet"))
    deadline = time.monotonic() + 10
    while failures() == before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert failures() == before + 1
    assert [c.status for c in all_to(platform, chat)] == [400]


def test_not_mounted_without_the_secret_token(reference_models: Path, tmp_path: Path) -> None:
    assert telegram.from_env({}) is None
    assert telegram.from_env({telegram.TOKEN_ENV: "t"}) is None
    assert telegram.from_env({telegram.SECRET_ENV: "s"}) is None
    assert telegram.from_env({telegram.TOKEN_ENV: "t", telegram.SECRET_ENV: "s"}) is not None
    with live_server(reference_models, tmp_path, {telegram.TOKEN_ENV: TELEGRAM_TOKEN}) as s:
        answer = post(s, text_update(new_chat(), "/greet"))
        assert answer.status == 404
        assert answer.json["error"]["code"] == "not_found"


def test_long_payloads_get_short_callback_data_that_resolves() -> None:
    payload = '/inform{"ticket_summary": "the dashboard shows a blank page after login", "priority": "high"}'
    assert len(payload.encode()) > 64
    keys = telegram.CallbackKeys()
    [(method, body)] = telegram.send_requests(
        [BotUttered(text="Confirm?", buttons=({"title": "Yes, that one", "payload": payload},))], 42, keys
    )
    assert method == "sendMessage"
    data = body["reply_markup"]["inline_keyboard"][0][0]["callback_data"]
    assert len(data.encode()) <= 64
    assert keys.resolve(data) == payload
    # a worker that did not send it falls back to the button's title, from the keyboard Telegram sends back
    assert telegram.CallbackKeys().resolve(data, body["reply_markup"]) == "Yes, that one"
    assert keys.resolve("/greet") == "/greet"
    small = telegram.CallbackKeys(kept=2)
    first = small.data(payload + "1")
    small.data(payload + "2")
    small.data(payload + "3")
    assert small.resolve(first) == first  # forgotten: least recently used first
