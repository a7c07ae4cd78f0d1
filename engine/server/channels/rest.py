"""Rasa's REST channel, wire-compatible: ``POST /webhooks/rest/webhook`` with
``{"sender", "message", "metadata"}`` answers the list of bot messages
(``[{"recipient_id", "text", "buttons", "image", "custom"}]``).

The **callback** variant (``POST /webhooks/callback/webhook``, mounted when
``TAIWA_CALLBACK_URL`` is set) answers ``"success"`` at once and POSTs each bot message to
that URL afterwards, as Rasa's CallbackInput does.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json, text

from engine.dialogue.wire import bot_message_dict
from engine.server.body import ID, METADATA, TEXT, json_body, obj
from engine.server.channels.base import ChannelContext, Incoming
from engine.server.outbound import OutboundError, post_json

log = logging.getLogger("taiwa.channels.rest")

NAME = "rest"
CALLBACK_URL_ENV = "TAIWA_CALLBACK_URL"

RESERVED_PREFIXES = ("line:", "slack:", "telegram:", "teams:", "api:")
"""Conversation ids of other channels: a REST sender may not name them (it would read and
write another channel's user's conversation)."""

SENDER = {
    **ID,
    # One pattern, the reserved prefixes in a negative lookahead: a "not" keyword built (and
    # threw away) a validation error for every valid sender.
    "pattern": "^(?!(?:" + "|".join(p.rstrip(":") for p in RESERVED_PREFIXES) + "):)" + str(ID["pattern"])[1:],
}

SCHEMA = obj({"sender": SENDER, "message": TEXT, "metadata": METADATA, "message_id": ID}, ("sender", "message"))


def incoming(channel: str, body: dict[str, object], client_ip: str | None = None) -> Incoming:
    sender = str(body["sender"])
    mid = body.get("message_id")
    meta = body.get("metadata")
    return Incoming(
        channel,
        sender,
        str(body["message"]),
        str(mid) if mid is not None else None,
        dict(meta) if isinstance(meta, dict) else {},
        client_ip,
    )


@dataclass
class RestChannel:
    name: str = NAME

    def blueprint(self, ctx: ChannelContext) -> Blueprint:
        bp = Blueprint("channel_rest", url_prefix="/webhooks/rest")

        @bp.get("/")
        async def health(request: Request) -> HTTPResponse:
            return json({"status": "ok"})

        @bp.post("/webhook")
        async def webhook(request: Request) -> HTTPResponse:
            msg = incoming(NAME, json_body(request, SCHEMA), request.remote_addr or request.ip)
            replies = await ctx.process(msg)
            return json([bot_message_dict(m, msg.sender_id) for m in replies])

        return bp


@dataclass
class CallbackChannel:
    url: str
    name: str = "callback"

    def blueprint(self, ctx: ChannelContext) -> Blueprint:
        bp = Blueprint("channel_callback", url_prefix="/webhooks/callback")

        @bp.post("/webhook")
        async def webhook(request: Request) -> HTTPResponse:
            msg = incoming(self.name, json_body(request, SCHEMA), request.remote_addr or request.ip)

            async def deliver() -> None:
                for m in await ctx.process(msg):
                    try:
                        await post_json(ctx.http(), self.url, bot_message_dict(m, msg.sender_id))
                    except OutboundError as exc:
                        log.warning("callback delivery failed: %s", exc, extra={"session_id": msg.sender_id})
                        ctx.failed("callback", "reply")
                        return

            ctx.spawn(deliver())
            return text("success")

        return bp


def from_env(env: Mapping[str, str]) -> list[RestChannel | CallbackChannel]:
    channels: list[RestChannel | CallbackChannel] = [RestChannel()]
    if env.get(CALLBACK_URL_ENV):
        channels.append(CallbackChannel(env[CALLBACK_URL_ENV]))
    return channels
