"""Telegram Bot API channel: ``POST /webhooks/telegram/webhook``.

* **verify**: the header ``X-Telegram-Bot-Api-Secret-Token`` must equal the ``secret_token``
  given to ``setWebhook`` (``TELEGRAM_SECRET_TOKEN``), compared in constant time; otherwise
  401 and nothing is processed. The channel is not mounted without that secret.
* **parse**: an Update with a ``message`` that has ``text``, or a ``callback_query`` (a button
  press: its ``data``, answered with ``answerCallbackQuery``) is a user message of the
  conversation ``telegram:<chat id>``; the ``update_id`` is the message id, so a redelivered
  update is processed once. Other updates are acknowledged.
* **process** in the background;
* **reply** with ``POST {TELEGRAM_API_BASE}/bot<token>/sendMessage`` (``chat_id``, ``text``,
  buttons as ``reply_markup.inline_keyboard`` with ``callback_data``) and ``sendPhoto`` for
  images. ``callback_data`` holds at most 64 bytes: a longer payload is sent as a short key
  (``~`` + 32 hex digits) that this process resolves; another worker that does not know the
  key falls back to the pressed button's title (Telegram sends the keyboard back with the
  callback), which the NLU then understands.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
from collections import OrderedDict
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

log = logging.getLogger("taiwa.channels.telegram")

NAME = "telegram"
TOKEN_ENV = "TELEGRAM_BOT_TOKEN"
SECRET_ENV = "TELEGRAM_SECRET_TOKEN"
BASE_ENV = "TELEGRAM_API_BASE"
DEFAULT_BASE = "https://api.telegram.org"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"

MAX_MESSAGE_TEXT = 4096
MAX_CALLBACK_DATA = 64
"""Bytes of ``callback_data``."""
KEYS_KEPT = 10_000
"""Long payloads remembered per process."""

_INT = {"type": "integer"}
_STR = {"type": "string"}
_CHAT = {"type": "object", "required": ["id"], "properties": {"id": {"type": ["integer", "string"]}}}
_USER = {"type": "object", "required": ["id"], "properties": {"id": _INT}}
_MESSAGE = {
    "type": "object",
    "required": ["chat"],
    "properties": {"message_id": _INT, "chat": _CHAT, "from": _USER, "text": _STR, "reply_markup": {"type": "object"}},
}
SCHEMA = {
    "type": "object",
    "required": ["update_id"],
    "properties": {
        "update_id": _INT,
        "message": _MESSAGE,
        "callback_query": {
            "type": "object",
            "required": ["id", "from"],
            "properties": {"id": _STR, "from": _USER, "message": _MESSAGE, "data": _STR},
        },
    },
}

_KEY = re.compile(r"^~[0-9a-f]{32}$")


@dataclass
class CallbackKeys:
    """``callback_data`` for payloads longer than Telegram's 64 bytes."""

    kept: int = KEYS_KEPT
    _payloads: OrderedDict[str, str] = field(default_factory=OrderedDict)

    def data(self, payload: str) -> str:
        if len(payload.encode()) <= MAX_CALLBACK_DATA and not _KEY.match(payload):
            return payload
        key = "~" + hashlib.blake2b(payload.encode(), digest_size=16).hexdigest()
        self._payloads[key] = payload
        self._payloads.move_to_end(key)
        while len(self._payloads) > self.kept:
            self._payloads.popitem(last=False)
        return key

    def resolve(self, data: str, keyboard: Any = None) -> str:
        """The payload behind ``data``; for an unknown key, the title of its button in ``keyboard``."""
        if not _KEY.match(data):
            return data
        if data in self._payloads:
            return self._payloads[data]
        for button in _buttons(keyboard):
            if button.get("callback_data") == data and isinstance(button.get("text"), str):
                return str(button["text"])
        return data


def _buttons(markup: Any) -> list[dict[str, Any]]:
    rows = markup.get("inline_keyboard") if isinstance(markup, dict) else None
    if not isinstance(rows, list):
        return []
    return [b for row in rows if isinstance(row, list) for b in row if isinstance(b, dict)]


def verify(secret: str, presented: str | None) -> None:
    if not presented:
        raise ApiError(401, "unauthorized", f"Missing {SECRET_HEADER} header.")
    if not hmac.compare_digest(secret.encode(), presented.encode()):
        raise ApiError(401, "unauthorized", f"The {SECRET_HEADER} is not the webhook's secret token.")


@dataclass(frozen=True)
class TelegramMessage:
    incoming: Incoming
    chat_id: int | str
    callback_query_id: str | None = None


def parse_update(update: Mapping[str, Any], keys: CallbackKeys) -> TelegramMessage | None:
    """The user message in an Update (checked against :data:`SCHEMA`), if any."""
    mid = str(update["update_id"])
    if "message" in update:
        message = update["message"]
        text = message.get("text")
        if not isinstance(text, str) or not text.strip():
            return None
        chat = message["chat"]["id"]
        meta: dict[str, JsonValue] = {"telegram": {"chat_id": chat, "message_id": message.get("message_id")}}
        return TelegramMessage(Incoming(NAME, f"{NAME}:{chat}", text[:MAX_TEXT], mid, meta), chat)
    if "callback_query" in update:
        query = update["callback_query"]
        data = query.get("data")
        message = query.get("message") or {}
        chat = message["chat"]["id"] if message else query["from"]["id"]
        if not isinstance(data, str) or not data:
            return TelegramMessage(Incoming(NAME, f"{NAME}:{chat}", "", mid), chat, query["id"])
        text = keys.resolve(data, message.get("reply_markup"))
        meta = {"telegram": {"chat_id": chat, "callback_query_id": query["id"]}}
        return TelegramMessage(Incoming(NAME, f"{NAME}:{chat}", text[:MAX_TEXT], mid, meta), chat, query["id"])
    return None


def send_requests(
    replies: Sequence[BotUttered], chat_id: int | str, keys: CallbackKeys
) -> list[tuple[str, dict[str, Any]]]:
    """``(method, body)`` for each bot message: sendMessage, or sendPhoto for an image."""
    out: list[tuple[str, dict[str, Any]]] = []
    for m in replies:
        markup: dict[str, Any] | None = None
        if m.buttons:
            rows = [
                [
                    {
                        "text": str(b.get("title") or "?"),
                        "callback_data": keys.data(str(b.get("payload") or b.get("title"))),
                    }
                ]
                for b in m.buttons
            ]
            markup = {"inline_keyboard": rows}
        image = m.data.get("image")
        if isinstance(image, str) and image:
            body: dict[str, Any] = {"chat_id": chat_id, "photo": image}
            if m.text:
                body["caption"] = m.text[:1024]
            if markup:
                body["reply_markup"] = markup
            out.append(("sendPhoto", body))
            continue
        text = m.text or (" / ".join(str(b.get("title")) for b in m.buttons) if m.buttons else "")
        if not text:
            continue
        body = {"chat_id": chat_id, "text": text[:MAX_MESSAGE_TEXT]}
        if markup:
            body["reply_markup"] = markup
        out.append(("sendMessage", body))
    return out


@dataclass
class TelegramChannel:
    bot_token: str
    secret_token: str
    api_base: str = DEFAULT_BASE
    name: str = NAME
    keys: CallbackKeys = field(default_factory=CallbackKeys)
    recent: RecentIds = field(default_factory=RecentIds)

    def method_url(self, method: str) -> str:
        return f"{self.api_base.rstrip('/')}/bot{self.bot_token}/{method}"

    def blueprint(self, ctx: ChannelContext) -> Blueprint:
        bp = Blueprint("channel_telegram", url_prefix="/webhooks/telegram")

        @bp.get("/")
        async def health(request: Request) -> HTTPResponse:
            return json({"status": "ok"})

        @bp.post("/webhook")
        async def webhook(request: Request) -> HTTPResponse:
            verify(self.secret_token, request.headers.get(SECRET_HEADER))
            message = parse_update(json_body(request, SCHEMA), self.keys)
            if message is not None and self.recent.first(message.incoming):
                ctx.spawn(self._handle(ctx, message))
            return json({})

        return bp

    async def _call(self, ctx: ChannelContext, method: str, body: dict[str, Any], sender: str) -> bool:
        try:
            answer = await post_json(ctx.http(), self.method_url(method), body)
        except OutboundError as exc:
            log.warning("Telegram %s failed: %s", method, exc, extra={"session_id": sender})
            ctx.failed("telegram", "reply")
            return False
        if isinstance(answer, dict) and answer.get("ok") is False:
            log.warning("Telegram refused %s: %s", method, answer.get("description"), extra={"session_id": sender})
            ctx.failed("telegram", "reply")
            return False
        return True

    async def _handle(self, ctx: ChannelContext, message: TelegramMessage) -> None:
        sender = message.incoming.sender_id
        if message.callback_query_id is not None:
            await self._call(ctx, "answerCallbackQuery", {"callback_query_id": message.callback_query_id}, sender)
        if not message.incoming.text:
            return
        try:
            replies = await ctx.process_new(message.incoming)
        except ApiError as exc:
            log.warning("Telegram message not processed: %s", exc.message, extra={"session_id": sender})
            ctx.failed("telegram", "process")
            return
        except Exception:  # a background task: log it
            log.exception("Telegram message failed", extra={"session_id": sender})
            ctx.failed("telegram", "process")
            return
        for method, body in send_requests(replies, message.chat_id, self.keys):
            if not await self._call(ctx, method, body, sender):
                return


def from_env(env: Mapping[str, str]) -> TelegramChannel | None:
    token, secret = env.get(TOKEN_ENV), env.get(SECRET_ENV)
    if not token or not secret:
        if token or secret:
            log.warning("Telegram channel not mounted: set both %s and %s", TOKEN_ENV, SECRET_ENV)
        return None
    return TelegramChannel(token, secret, env.get(BASE_ENV) or DEFAULT_BASE)
