"""LINE Messaging API channel: ``POST /webhooks/line/webhook``.

* **verify**: ``X-Line-Signature`` must be base64(HMAC-SHA256(channel secret, raw body)),
  compared in constant time; a missing or wrong signature is a 401 and nothing is processed.
* **parse**: ``{"destination", "events": [...]}``. A ``message`` event with a text message and
  a ``postback`` event (a button press: its ``data``) are user messages; every other event
  (follow, unfollow, join, stickers, images...) is acknowledged and ignored. The conversation
  is ``line:<userId>`` (the group or room id when LINE withholds the user id); the message id
  (for postbacks, the ``webhookEventId``) de-duplicates LINE's redeliveries.
* **process** in the background (LINE wants a quick 200), one event after the other;
* **reply** with ``POST {LINE_API_BASE}/v2/bot/message/reply`` ``{"replyToken", "messages"}``
  (at most five messages; buttons become quick replies with postback actions on the last
  message), ``Authorization: Bearer <channel access token>``.

An empty ``events`` list (the console's "Verify" button) is answered 200.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json

from engine.events import BotUttered, JsonValue
from engine.server.body import MAX_TEXT, json_body
from engine.server.channels.base import ChannelContext, Incoming, RecentIds
from engine.server.errors import ApiError
from engine.server.outbound import OutboundError, post_json

log = logging.getLogger("taiwa.channels.line")

NAME = "line"
SECRET_ENV = "LINE_CHANNEL_SECRET"
TOKEN_ENV = "LINE_CHANNEL_ACCESS_TOKEN"
BASE_ENV = "LINE_API_BASE"
DEFAULT_BASE = "https://api.line.me"
SIGNATURE_HEADER = "X-Line-Signature"

MAX_MESSAGES = 5
"""Messages in one reply."""
MAX_MESSAGE_TEXT = 5000
MAX_QUICK_REPLIES = 13
MAX_LABEL = 20
MAX_POSTBACK_DATA = 300

_STR = {"type": "string"}
_ID = {"type": "string", "minLength": 1, "maxLength": 256}
EVENT = {
    "type": "object",
    "required": ["type"],
    "properties": {
        "type": _STR,
        "replyToken": _STR,
        "webhookEventId": _STR,
        "source": {"type": "object", "properties": {"type": _STR, "userId": _ID, "groupId": _ID, "roomId": _ID}},
        "message": {"type": "object", "required": ["type"], "properties": {"type": _STR, "id": _ID, "text": _STR}},
        "postback": {"type": "object", "required": ["data"], "properties": {"data": _STR}},
    },
    "allOf": [
        {"if": {"properties": {"type": {"const": "message"}}}, "then": {"required": ["message", "source"]}},
        {"if": {"properties": {"type": {"const": "postback"}}}, "then": {"required": ["postback", "source"]}},
    ],
}
SCHEMA = {
    "type": "object",
    "required": ["events"],
    "properties": {"destination": _STR, "events": {"type": "array", "items": EVENT, "maxItems": 100}},
}


def signature(secret: str, body: bytes) -> str:
    """What LINE puts in ``X-Line-Signature`` for ``body``."""
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def verify(secret: str, body: bytes, presented: str | None) -> None:
    if not presented:
        raise ApiError(401, "unauthorized", f"Missing {SIGNATURE_HEADER} header.")
    if not hmac.compare_digest(signature(secret, body).encode(), presented.encode()):
        raise ApiError(401, "unauthorized", f"The {SIGNATURE_HEADER} does not match the body.")


@dataclass(frozen=True)
class LineMessage:
    incoming: Incoming
    reply_token: str | None


def parse_events(body: Mapping[str, Any]) -> list[LineMessage]:
    """The user messages among the events (already checked against :data:`SCHEMA`)."""
    out: list[LineMessage] = []
    for event in body["events"]:
        kind = event["type"]
        if kind == "message" and event["message"]["type"] == "text":
            text = event["message"].get("text")
            mid = event["message"].get("id") or event.get("webhookEventId")
        elif kind == "postback":
            text = event["postback"]["data"]
            mid = event.get("webhookEventId")
        else:
            continue
        source = event["source"]
        who = source.get("userId") or source.get("groupId") or source.get("roomId")
        if not who or not isinstance(text, str) or not text.strip():
            continue
        line: dict[str, JsonValue] = {"source": dict(source), "event": kind}
        if event.get("webhookEventId"):
            line["webhook_event_id"] = event["webhookEventId"]
        metadata: dict[str, JsonValue] = {"line": line}
        incoming = Incoming(NAME, f"{NAME}:{who}", text[:MAX_TEXT], str(mid) if mid else None, metadata)
        out.append(LineMessage(incoming, event.get("replyToken") or None))
    return out


def _label(title: str) -> str:
    return title if len(title) <= MAX_LABEL else title[: MAX_LABEL - 1] + "…"


def _action(button: Mapping[str, str]) -> dict[str, Any]:
    title = str(button.get("title") or button.get("payload") or "?")
    payload = str(button.get("payload") or title)
    if len(payload) <= MAX_POSTBACK_DATA:
        return {"type": "postback", "label": _label(title), "data": payload, "displayText": title[:MAX_POSTBACK_DATA]}
    return {"type": "message", "label": _label(title), "text": title[:MAX_POSTBACK_DATA]}


def reply_messages(replies: Sequence[BotUttered]) -> list[dict[str, Any]]:
    """LINE message objects for the bot's messages: texts and images, at most five; every
    button becomes a quick reply on the last message (LINE shows only the last one's)."""
    messages: list[dict[str, Any]] = []
    buttons: list[Mapping[str, str]] = []
    for m in replies:
        if m.text:
            messages.append({"type": "text", "text": m.text[:MAX_MESSAGE_TEXT]})
        image = m.data.get("image")
        if isinstance(image, str) and image:
            messages.append({"type": "image", "originalContentUrl": image, "previewImageUrl": image})
        buttons.extend(m.buttons)
    if buttons and not messages:
        messages.append(
            {"type": "text", "text": " / ".join(str(b.get("title", "")) for b in buttons)[:MAX_MESSAGE_TEXT]}
        )
    if len(messages) > MAX_MESSAGES:
        head, tail = messages[: MAX_MESSAGES - 1], messages[MAX_MESSAGES - 1 :]
        texts = [t["text"] for t in tail if t["type"] == "text"]
        merged = {"type": "text", "text": "\n\n".join(texts)[:MAX_MESSAGE_TEXT]} if texts else tail[0]
        log.info("LINE allows %d messages per reply; %d merged into one", MAX_MESSAGES, len(tail))
        messages = [*head, merged]
    if buttons:
        items = [{"type": "action", "action": _action(b)} for b in buttons[:MAX_QUICK_REPLIES]]
        messages[-1] = {**messages[-1], "quickReply": {"items": items}}
    return messages


@dataclass
class LineChannel:
    secret: str
    access_token: str
    api_base: str = DEFAULT_BASE
    name: str = NAME
    recent: RecentIds = field(default_factory=RecentIds)

    @property
    def reply_url(self) -> str:
        return f"{self.api_base.rstrip('/')}/v2/bot/message/reply"

    def blueprint(self, ctx: ChannelContext) -> Blueprint:
        bp = Blueprint("channel_line", url_prefix="/webhooks/line")

        @bp.get("/")
        async def health(request: Request) -> HTTPResponse:
            return json({"status": "ok"})

        @bp.post("/webhook")
        async def webhook(request: Request) -> HTTPResponse:
            verify(self.secret, request.body or b"", request.headers.get(SIGNATURE_HEADER))
            messages = [m for m in parse_events(json_body(request, SCHEMA)) if self.recent.first(m.incoming)]
            if messages:
                ctx.spawn(self._handle(ctx, messages))
            return json({})

        return bp

    async def _handle(self, ctx: ChannelContext, messages: list[LineMessage]) -> None:
        for message in messages:
            sender = message.incoming.sender_id
            try:
                replies = await ctx.process_new(message.incoming)
            except ApiError as exc:
                log.warning("LINE message not processed: %s", exc.message, extra={"session_id": sender})
                ctx.failed("line", "process")
                continue
            except Exception:  # a background task: log it, go on with the next events
                log.exception("LINE message failed", extra={"session_id": sender})
                ctx.failed("line", "process")
                continue
            out = reply_messages(replies)
            if not out:
                continue
            if message.reply_token is None:
                log.warning("LINE event without a reply token: reply dropped", extra={"session_id": sender})
                ctx.failed("line", "reply")
                continue
            try:
                await post_json(
                    ctx.http(),
                    self.reply_url,
                    {"replyToken": message.reply_token, "messages": out},
                    headers={"Authorization": f"Bearer {self.access_token}"},
                )
            except OutboundError as exc:
                log.warning("LINE reply failed: %s", exc, extra={"session_id": sender})
                ctx.failed("line", "reply")


def from_env(env: Mapping[str, str]) -> LineChannel | None:
    secret, token = env.get(SECRET_ENV), env.get(TOKEN_ENV)
    if not secret or not token:
        if secret or token:
            log.warning("LINE channel not mounted: set both %s and %s", SECRET_ENV, TOKEN_ENV)
        return None
    return LineChannel(secret, token, env.get(BASE_ENV) or DEFAULT_BASE)
