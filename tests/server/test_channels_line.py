"""The LINE channel against the real ``taiwa run``: webhook bodies built with line-bot-sdk's
models and signed as LINE signs them (checked with the SDK's SignatureValidator and
WebhookParser), replies received by a fake of the Messaging API and read back with the SDK's
ReplyMessageRequest model."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from fakes.platforms import (
    LINE_SECRET,
    LINE_TOKEN,
    Answer,
    FakePlatforms,
    http,
    user_events,
)
from linebot.v3 import SignatureValidator
from linebot.v3.messaging import ReplyMessageRequest
from linebot.v3.webhook import WebhookParser
from linebot.v3.webhooks import (
    CallbackRequest,
    DeliveryContext,
    FollowEvent,
    MessageEvent,
    PostbackContent,
    PostbackEvent,
    StickerMessageContent,
    TextMessageContent,
    UserSource,
)

from engine.events import BotUttered
from engine.server.channels import line
from server.live import LiveServer, live_server

REPLY = "/v2/bot/message/reply"
ROUTE = "/webhooks/line/webhook"
BOT = "U" + "0" * 32


# -- building LINE's requests with its SDK


def new_user() -> str:
    return "U" + uuid.uuid4().hex


def _common(reply_token: str | None, event_id: str | None = None, redelivery: bool = False) -> dict[str, Any]:
    return {
        "timestamp": int(time.time() * 1000),
        "mode": "active",
        "webhookEventId": event_id or uuid.uuid4().hex.upper()[:26],
        "deliveryContext": DeliveryContext(isRedelivery=redelivery),
        "replyToken": reply_token,
    }


def text_event(user: str, text: str, message_id: str, reply_token: str, redelivery: bool = False) -> MessageEvent:
    content = TextMessageContent(id=message_id, text=text, quoteToken="q-" + message_id)
    return MessageEvent(source=UserSource(userId=user), message=content, **_common(reply_token, redelivery=redelivery))


def postback_event(user: str, data: str, reply_token: str) -> PostbackEvent:
    return PostbackEvent(source=UserSource(userId=user), postback=PostbackContent(data=data), **_common(reply_token))


def body_of(*events: Any) -> bytes:
    return CallbackRequest(destination=BOT, events=list(events)).to_json().encode()


def sign(body: bytes, secret: str = LINE_SECRET) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def post(server: LiveServer, body: bytes, signature: str | None) -> Answer:
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["X-Line-Signature"] = signature
    return http("POST", server.url + ROUTE, body, headers)


def send(server: LiveServer, *events: Any) -> Answer:
    body = body_of(*events)
    signature = sign(body)
    # what we send is what LINE's own SDK accepts as a genuine, parseable webhook
    assert SignatureValidator(LINE_SECRET).validate(body.decode(), signature)
    assert len(WebhookParser(LINE_SECRET).parse(body.decode(), signature)) == len(events)
    return post(server, body, signature)


def reply_to(platform: FakePlatforms, token: str) -> ReplyMessageRequest:
    [call] = platform.wait_for(REPLY, lambda c: c.json.get("replyToken") == token)
    assert call.headers["Authorization"] == f"Bearer {LINE_TOKEN}"
    return ReplyMessageRequest.from_dict(call.json)


def replies_with(platform: FakePlatforms, token: str) -> list[Any]:
    return [c for c in platform.to(REPLY) if c.json.get("replyToken") == token]


# -- tests


def test_text_message_is_processed_and_answered_with_the_reply_token(
    server: LiveServer, platform: FakePlatforms
) -> None:
    user = new_user()
    answer = send(server, text_event(user, "/greet", "m-greet", "rt-greet"))
    assert answer.status == 200

    reply = reply_to(platform, "rt-greet")
    assert len(reply.messages) == 1 and reply.messages[0].type == "text" and reply.messages[0].text
    [event] = user_events(server.url, f"line:{user}")
    assert (event["intent"], event["channel"], event["message_id"]) == ("greet", "line", "m-greet")


def test_buttons_become_postback_quick_replies_and_a_postback_is_the_next_message(
    server: LiveServer, platform: FakePlatforms
) -> None:
    user = new_user()
    send(server, text_event(user, "/open_ticket", "m-1", "rt-b1"))
    reply_to(platform, "rt-b1")
    send(server, text_event(user, "my vm is down", "m-2", "rt-b2"))
    reply = reply_to(platform, "rt-b2")

    last = reply.messages[-1]
    assert last.quick_reply is not None
    actions = [item.action for item in last.quick_reply.items]
    assert [(a.type, a.label, a.display_text) for a in actions] == [
        ("postback", "Low", "Low"),
        ("postback", "Medium", "Medium"),
        ("postback", "High", "High"),
    ]
    low = actions[0].data
    assert low == '/inform{"priority": "low"}'

    send(server, postback_event(user, low, "rt-b3"))
    confirm = reply_to(platform, "rt-b3")
    assert "low priority" in confirm.messages[0].text
    events = user_events(server.url, f"line:{user}")
    assert [e["text"] for e in events] == ["/open_ticket", "my vm is down", low]


@pytest.mark.parametrize(
    "signature",
    [None, "", "bm90IHRoZSBzaWduYXR1cmU=", "forged", sign(b"another body"), "wrong-secret"],
    ids=["missing", "empty", "other-base64", "garbage", "other-body", "wrong-secret"],
)
def test_forged_or_unsigned_requests_are_refused_and_not_processed(
    server: LiveServer, platform: FakePlatforms, signature: str | None
) -> None:
    user = new_user()
    token = f"rt-forged-{uuid.uuid4().hex}"
    body = body_of(text_event(user, "/greet", "m-forged", token))
    if signature == "wrong-secret":
        signature = sign(body, "not-the-channel-secret")
    answer = post(server, body, signature)
    assert answer.status == 401
    assert answer.json["error"]["code"] == "unauthorized"
    time.sleep(0.3)
    assert user_events(server.url, f"line:{user}") == []
    assert replies_with(platform, token) == []


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"\xff\xfe",
        b"[]",
        b'{"destination": "U0"}',
        b'{"events": "not a list"}',
        b'{"events": [{"type": "message", "replyToken": "x"}]}',
        b'{"events": [{"type": "message", "source": {"userId": "U1"}, "message": {"type": "text", "text": 7}}]}',
        b'{"events": [{"type": "postback", "source": {"userId": "U1"}}]}',
        b'{"events": [' + b"[" * 40 + b"]" * 40 + b"]}",
    ],
    ids=["empty", "not-json", "not-utf8", "array", "no-events", "events-not-list", "no-source", "text-not-string",
         "postback-no-data", "deep"],
)  # fmt: skip
def test_malformed_bodies_are_400_never_5xx(server: LiveServer, body: bytes) -> None:
    answer = post(server, body, sign(body))
    assert answer.status == 400, answer.body


def test_other_events_are_acknowledged_and_an_empty_verify_request_is_200(
    server: LiveServer, platform: FakePlatforms
) -> None:
    user = new_user()
    follow = FollowEvent(source=UserSource(userId=user), follow={"isUnblocked": False}, **_common("rt-follow"))
    sticker = MessageEvent(
        source=UserSource(userId=user),
        message=StickerMessageContent(
            id="m-st", packageId="1", stickerId="1", stickerResourceType="STATIC", quoteToken="q"
        ),
        **_common("rt-sticker"),
    )
    assert send(server, follow, sticker).status == 200
    assert send(server).status == 200  # the console's "Verify": no events
    time.sleep(0.3)
    assert user_events(server.url, f"line:{user}") == []
    assert replies_with(platform, "rt-follow") == replies_with(platform, "rt-sticker") == []


def test_a_redelivered_message_is_processed_once(server: LiveServer, platform: FakePlatforms) -> None:
    user = new_user()
    send(server, text_event(user, "/greet", "m-once", "rt-once-1"))
    reply_to(platform, "rt-once-1")
    send(server, text_event(user, "/greet", "m-once", "rt-once-2", redelivery=True))
    send(server, text_event(user, "/goodbye", "m-after", "rt-once-3"))
    reply_to(platform, "rt-once-3")
    time.sleep(0.2)
    assert replies_with(platform, "rt-once-2") == []
    assert [e["message_id"] for e in user_events(server.url, f"line:{user}")] == ["m-once", "m-after"]


def test_events_of_one_request_are_processed_in_order(server: LiveServer, platform: FakePlatforms) -> None:
    user = new_user()
    send(server, text_event(user, "/open_ticket", "m-o1", "rt-o1"), text_event(user, "my vm is down", "m-o2", "rt-o2"))
    reply_to(platform, "rt-o1")
    assert reply_to(platform, "rt-o2").messages[-1].quick_reply is not None
    assert [e["message_id"] for e in user_events(server.url, f"line:{user}")] == ["m-o1", "m-o2"]


def test_a_failed_reply_is_retried(server: LiveServer, platform: FakePlatforms) -> None:
    user = new_user()
    platform.fail(REPLY, 500, times=1)
    send(server, text_event(user, "/greet", "m-retry", "rt-retry"))
    reply_to(platform, "rt-retry")
    assert [c.status for c in replies_with(platform, "rt-retry")] == [500, 200]


def test_not_mounted_without_both_credentials(reference_models: Path, tmp_path: Path) -> None:
    assert line.from_env({}) is None
    assert line.from_env({line.SECRET_ENV: "s"}) is None
    assert line.from_env({line.TOKEN_ENV: "t"}) is None
    assert line.from_env({line.SECRET_ENV: "s", line.TOKEN_ENV: "t"}) is not None
    with live_server(reference_models, tmp_path, {line.SECRET_ENV: LINE_SECRET}) as s:
        body = body_of(text_event(new_user(), "/greet", "m-x", "rt-x"))
        answer = post(s, body, sign(body))
        assert answer.status == 404
        assert answer.json["error"]["code"] == "not_found"
        assert http("POST", s.url + "/webhooks/rest/webhook", b'{"sender": "someone", "message": "hi"}').status == 200


def test_reply_messages_respect_lines_limits() -> None:
    buttons = tuple({"title": f"A rather long button title {i}", "payload": f"/p{i}"} for i in range(15))
    replies = [BotUttered(text=f"message {i}") for i in range(6)] + [BotUttered(text="pick", buttons=buttons)]
    messages = line.reply_messages(replies)
    assert len(messages) == 5
    assert messages[-1]["text"] == "message 4\n\nmessage 5\n\npick"
    items = messages[-1]["quickReply"]["items"]
    assert len(items) == 13
    assert all(len(i["action"]["label"]) <= 20 for i in items)
    assert items[0]["action"] == {
        "type": "postback",
        "label": "A rather long butto…",
        "data": "/p0",
        "displayText": "A rather long button title 0",
    }
    ReplyMessageRequest.from_dict({"replyToken": "t", "messages": messages})
    assert line.reply_messages([BotUttered(text=None)]) == []
