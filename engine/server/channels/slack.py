"""Slack channel (Events API and interactivity): ``POST /webhooks/slack/events``.

* **verify**: ``X-Slack-Signature`` must be ``v0=`` + hex HMAC-SHA256(signing secret,
  ``v0:{X-Slack-Request-Timestamp}:{raw body}``), compared in constant time, and the timestamp
  must be within five minutes of now (older requests are replays). Otherwise 401, nothing
  processed.
* **parse**: ``url_verification`` is answered with its challenge. ``event_callback`` with a
  ``message`` (from a person: no ``bot_id``, no ``subtype``) or an ``app_mention`` (the mention
  removed) is a user message of the conversation ``slack:<team>:<channel>:<user>``, its
  ``event_id`` the message id, so Slack's retries (``X-Slack-Retry-Num``, same ``event_id``)
  are processed once. A button click arrives as an interactivity request (form-encoded
  ``payload=`` of type ``block_actions``; point the app's Interactivity Request URL at this
  same route): the button's value is the user's message. Anything else is acknowledged.
* **process** in the background: Slack wants its 200 within three seconds;
* **reply** with ``POST {SLACK_API_BASE}/api/chat.postMessage`` (``Authorization: Bearer
  <bot token>``): ``channel``, ``text`` and, for buttons, ``blocks`` (a section and an
  actions block whose buttons carry the payload as ``value``); in the thread when the user
  wrote in one.
"""

from __future__ import annotations

import hashlib
import hmac
import json as jsonlib
import logging
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match
from sanic import Blueprint, Request
from sanic.response import HTTPResponse, empty, json

from engine.events import BotUttered, JsonValue
from engine.server.body import MAX_TEXT, json_body
from engine.server.channels.base import ChannelContext, Incoming, RecentIds
from engine.server.errors import ApiError
from engine.server.outbound import OutboundError, post_json

log = logging.getLogger("taiwa.channels.slack")

NAME = "slack"
SECRET_ENV = "SLACK_SIGNING_SECRET"
TOKEN_ENV = "SLACK_BOT_TOKEN"
BASE_ENV = "SLACK_API_BASE"
DEFAULT_BASE = "https://slack.com"
SIGNATURE_HEADER = "X-Slack-Signature"
TIMESTAMP_HEADER = "X-Slack-Request-Timestamp"
MAX_AGE = 300
"""Seconds a signed request stays valid (Slack: five minutes)."""

MAX_SECTION_TEXT = 3000
MAX_BUTTON_TEXT = 75
MAX_BUTTON_VALUE = 2000
MAX_BUTTONS = 25

_STR = {"type": "string"}
_OBJ_ID = {"type": "object", "required": ["id"], "properties": {"id": _STR}}
EVENTS_SCHEMA = {
    "type": "object",
    "required": ["type"],
    "properties": {
        "type": _STR,
        "challenge": _STR,
        "team_id": _STR,
        "event_id": _STR,
        "event": {
            "type": "object",
            "required": ["type"],
            "properties": {"type": _STR, "user": _STR, "text": _STR, "channel": _STR, "ts": _STR, "thread_ts": _STR},
        },
    },
    "allOf": [
        {"if": {"properties": {"type": {"const": "url_verification"}}}, "then": {"required": ["challenge"]}},
        {"if": {"properties": {"type": {"const": "event_callback"}}}, "then": {"required": ["event", "event_id"]}},
    ],
}
ACTIONS_SCHEMA = {
    "type": "object",
    "required": ["type"],
    "properties": {
        "type": _STR,
        "team": _OBJ_ID,
        "user": _OBJ_ID,
        "channel": _OBJ_ID,
        "message": {"type": "object", "properties": {"ts": _STR, "thread_ts": _STR}},
        "actions": {
            "type": "array",
            "items": {"type": "object", "properties": {"value": _STR, "action_ts": _STR, "action_id": _STR}},
        },
    },
    "allOf": [{"if": {"properties": {"type": {"const": "block_actions"}}}, "then": {"required": ["user", "actions"]}}],
}

_MENTION = re.compile(r"<@[A-Z0-9]+(?:\|[^>]*)?>")


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """What Slack puts in ``X-Slack-Signature``."""
    base = b"v0:" + timestamp.encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, timestamp: str | None, presented: str | None, now: float | None = None) -> None:
    if not timestamp or not presented:
        raise ApiError(401, "unauthorized", f"Missing {SIGNATURE_HEADER} or {TIMESTAMP_HEADER} header.")
    try:
        sent = int(timestamp)
    except ValueError:
        raise ApiError(401, "unauthorized", f"{TIMESTAMP_HEADER} is not a Unix time.") from None
    if abs((time.time() if now is None else now) - sent) > MAX_AGE:
        raise ApiError(401, "unauthorized", f"{TIMESTAMP_HEADER} is more than {MAX_AGE // 60} minutes off: refused.")
    if not hmac.compare_digest(signature(secret, timestamp, body).encode(), presented.encode()):
        raise ApiError(401, "unauthorized", f"The {SIGNATURE_HEADER} does not match the request.")


def _unescape(text: str) -> str:
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


@dataclass(frozen=True)
class SlackMessage:
    incoming: Incoming
    channel: str
    thread_ts: str | None = None


def parse_event(body: Mapping[str, Any]) -> SlackMessage | None:
    """The user message in an ``event_callback`` (checked against :data:`EVENTS_SCHEMA`), if any."""
    event = body["event"]
    kind = event["type"]
    if kind not in ("message", "app_mention") or event.get("bot_id") or event.get("subtype"):
        return None
    user, channel, text = event.get("user"), event.get("channel"), event.get("text")
    if not user or not channel or not isinstance(text, str):
        return None
    text = _unescape(_MENTION.sub("", text) if kind == "app_mention" else text).strip()
    if not text:
        return None
    team = body.get("team_id") or event.get("team") or "-"
    thread = event.get("thread_ts")
    meta: dict[str, JsonValue] = {"slack": {"team": team, "channel": channel, "event": kind, "ts": event.get("ts")}}
    incoming = Incoming(NAME, f"{NAME}:{team}:{channel}:{user}", text[:MAX_TEXT], body["event_id"], meta)
    return SlackMessage(incoming, channel, thread)


def parse_actions(payload: Mapping[str, Any]) -> SlackMessage | None:
    """The button click in a ``block_actions`` payload (checked against :data:`ACTIONS_SCHEMA`), if any."""
    channel = (payload.get("channel") or {}).get("id")
    actions = [a for a in payload["actions"] if isinstance(a.get("value"), str) and a["value"]]
    if not channel or not actions:
        return None
    action = actions[0]
    user = payload["user"]["id"]
    team = (payload.get("team") or {}).get("id") or "-"
    thread = (payload.get("message") or {}).get("thread_ts")
    mid = f"action:{action.get('action_ts') or ''}:{action.get('action_id') or ''}"
    meta: dict[str, JsonValue] = {"slack": {"team": team, "channel": channel, "event": "block_actions"}}
    return SlackMessage(
        Incoming(NAME, f"{NAME}:{team}:{channel}:{user}", action["value"][:MAX_TEXT], mid, meta), channel, thread
    )


def _form_payload(request: Request) -> dict[str, Any]:
    try:
        form = parse_qs((request.body or b"").decode("utf-8"), strict_parsing=True)
        data = jsonlib.loads(form["payload"][0])
    except (UnicodeDecodeError, ValueError, KeyError, RecursionError):
        raise ApiError(400, "invalid_request", "Expected a form with a JSON `payload` field.") from None
    error = best_match(Draft202012Validator(ACTIONS_SCHEMA).iter_errors(data))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(the payload)"
        raise ApiError(400, "invalid_request", f"{where}: {error.message[:200]}")
    return dict(data)


def message_body(message: BotUttered, channel: str, thread_ts: str | None) -> dict[str, Any] | None:
    """The ``chat.postMessage`` body for one bot message (None when it has nothing to show)."""
    text = message.text or ""
    blocks: list[dict[str, Any]] = []
    image = message.data.get("image")
    if isinstance(image, str) and image:
        blocks.append({"type": "image", "image_url": image, "alt_text": text[:100] or "image"})
    if message.buttons:
        if text:
            blocks.insert(0, {"type": "section", "text": {"type": "mrkdwn", "text": _escape(text)[:MAX_SECTION_TEXT]}})
        elements = [
            {
                "type": "button",
                "action_id": f"taiwa_button_{i}",
                "text": {"type": "plain_text", "text": str(b.get("title") or "?")[:MAX_BUTTON_TEXT], "emoji": True},
                "value": str(b.get("payload") or b.get("title") or "")[:MAX_BUTTON_VALUE],
            }
            for i, b in enumerate(message.buttons[:MAX_BUTTONS])
        ]
        blocks.append({"type": "actions", "elements": elements})
    elif blocks and text:
        blocks.insert(0, {"type": "section", "text": {"type": "mrkdwn", "text": _escape(text)[:MAX_SECTION_TEXT]}})
    if not text and not blocks:
        return None
    body: dict[str, Any] = {"channel": channel, "text": _escape(text) or " ".join(b["type"] for b in blocks)}
    if blocks:
        body["blocks"] = blocks
    if thread_ts:
        body["thread_ts"] = thread_ts
    return body


@dataclass
class SlackChannel:
    signing_secret: str
    bot_token: str
    api_base: str = DEFAULT_BASE
    name: str = NAME
    recent: RecentIds = field(default_factory=RecentIds)

    @property
    def post_url(self) -> str:
        return f"{self.api_base.rstrip('/')}/api/chat.postMessage"

    def blueprint(self, ctx: ChannelContext) -> Blueprint:
        bp = Blueprint("channel_slack", url_prefix="/webhooks/slack")

        @bp.get("/")
        async def health(request: Request) -> HTTPResponse:
            return json({"status": "ok"})

        @bp.post("/events")
        async def events(request: Request) -> HTTPResponse:
            verify(
                self.signing_secret,
                request.body or b"",
                request.headers.get(TIMESTAMP_HEADER),
                request.headers.get(SIGNATURE_HEADER),
            )
            message: SlackMessage | None = None
            if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
                payload = _form_payload(request)
                if payload["type"] == "block_actions":
                    message = parse_actions(payload)
            else:
                body = json_body(request, EVENTS_SCHEMA)
                if body["type"] == "url_verification":
                    return json({"challenge": body["challenge"]})
                if body["type"] == "event_callback":
                    message = parse_event(body)
            if message is not None and self.recent.first(message.incoming):
                ctx.spawn(self._handle(ctx, message))
            return empty(status=200)

        return bp

    async def _handle(self, ctx: ChannelContext, message: SlackMessage) -> None:
        sender = message.incoming.sender_id
        try:
            replies = await ctx.process_new(message.incoming)
        except ApiError as exc:
            log.warning("Slack message not processed: %s", exc.message, extra={"session_id": sender})
            ctx.failed("slack", "process")
            return
        except Exception:  # a background task: log it
            log.exception("Slack message failed", extra={"session_id": sender})
            ctx.failed("slack", "process")
            return
        for reply in replies:
            body = message_body(reply, message.channel, message.thread_ts)
            if body is None:
                continue
            try:
                answer = await post_json(
                    ctx.http(), self.post_url, body, headers={"Authorization": f"Bearer {self.bot_token}"}
                )
            except OutboundError as exc:
                log.warning("Slack reply failed: %s", exc, extra={"session_id": sender})
                ctx.failed("slack", "reply")
                return
            if isinstance(answer, dict) and answer.get("ok") is False:
                log.warning("Slack refused the reply: %s", answer.get("error"), extra={"session_id": sender})
                ctx.failed("slack", "reply")
                return


def from_env(env: Mapping[str, str]) -> SlackChannel | None:
    secret, token = env.get(SECRET_ENV), env.get(TOKEN_ENV)
    if not secret or not token:
        if secret or token:
            log.warning("Slack channel not mounted: set both %s and %s", SECRET_ENV, TOKEN_ENV)
        return None
    return SlackChannel(secret, token, env.get(BASE_ENV) or DEFAULT_BASE)
