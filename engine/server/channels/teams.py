"""Microsoft Teams (Bot Framework) channel: ``POST /webhooks/teams/api/messages``.

* **verify** the ``Authorization: Bearer <JWT>`` the Bot Connector sends: an RS256 signature
  by a key of the Bot Framework's key set (``TEAMS_JWKS_FILE``, a JWKS file, or the OpenID
  metadata at ``TEAMS_OPENID_URL``, by default Bot Framework's, whose ``jwks_uri`` is fetched
  and cached for a day, and fetched again, at most every five minutes, when a token names an
  unknown key), issuer ``https://api.botframework.com``, audience ``TEAMS_APP_ID``, not
  expired (five minutes of clock skew allowed); a key's ``endorsements``, when it has some,
  must include the activity's ``channelId``; the token's ``serviceurl`` claim, when present,
  must equal the activity's ``serviceUrl``. Anything else is a 401 and nothing is processed.
* **parse**: an Activity of type ``message`` with text is a user message of the conversation
  ``teams:<conversation.id>:<from.id>`` (``<at>...</at>`` mentions removed), the activity id
  its message id. Other activities (conversationUpdate, typing...) are acknowledged.
* **process** in the background;
* **reply** to ``{serviceUrl}/v3/conversations/{conversation.id}/activities/{activity.id}``
  with a message Activity (text; buttons as a hero card of ``messageBack`` buttons that send
  the payload as the user's text; images in a hero card), with a bot token from the
  client-credentials grant of ``TEAMS_APP_ID``/``TEAMS_APP_PASSWORD`` at ``TEAMS_TOKEN_URL``,
  cached until five minutes before it expires.
"""

from __future__ import annotations

import asyncio
import json as jsonlib
import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import jwt
from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json

from engine.events import BotUttered, JsonValue
from engine.server.body import MAX_TEXT, json_body
from engine.server.channels.base import ChannelContext, Incoming, RecentIds
from engine.server.errors import ApiError
from engine.server.outbound import DEFAULT_RETRIES, DEFAULT_TIMEOUT, OutboundError, post_json

log = logging.getLogger("taiwa.channels.teams")

NAME = "teams"
APP_ID_ENV = "TEAMS_APP_ID"
PASSWORD_ENV = "TEAMS_APP_PASSWORD"
JWKS_FILE_ENV = "TEAMS_JWKS_FILE"
OPENID_URL_ENV = "TEAMS_OPENID_URL"
TOKEN_URL_ENV = "TEAMS_TOKEN_URL"
DEFAULT_OPENID_URL = "https://login.botframework.com/v1/.well-known/openidconfiguration"
DEFAULT_TOKEN_URL = "https://login.microsoftonline.com/botframework.com/oauth2/v2.0/token"
ISSUER = "https://api.botframework.com"
SCOPE = "https://api.botframework.com/.default"
LEEWAY = 300
"""Seconds of clock skew allowed on ``exp``/``nbf``."""
KEYS_TTL = 24 * 3600.0
KEYS_MIN_REFRESH = 300.0
"""Seconds between two fetches of the key set caused by an unknown key id."""
TOKEN_MARGIN = 300.0
"""A bot token is renewed this many seconds before it expires."""

_STR = {"type": "string"}
_ACCOUNT = {"type": "object", "required": ["id"], "properties": {"id": _STR, "name": _STR}}
SCHEMA = {
    "type": "object",
    "required": ["type"],
    "properties": {
        "type": _STR,
        "id": _STR,
        "serviceUrl": {"type": "string", "pattern": "^https?://"},
        "channelId": _STR,
        "from": _ACCOUNT,
        "recipient": _ACCOUNT,
        "conversation": _ACCOUNT,
        "text": _STR,
    },
    "allOf": [
        {
            "if": {"properties": {"type": {"const": "message"}}},
            "then": {"required": ["id", "serviceUrl", "from", "conversation"]},
        }
    ],
}

_AT = re.compile(r"<at>.*?</at>", re.IGNORECASE | re.DOTALL)


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message, {"WWW-Authenticate": 'Bearer realm="teams"'})


@dataclass
class _Key:
    jwk: jwt.PyJWK
    endorsements: tuple[str, ...] | None


def _keys_from(jwks: Any) -> dict[str, _Key]:
    keys: dict[str, _Key] = {}
    for data in jwks.get("keys", []) if isinstance(jwks, dict) else []:
        if not isinstance(data, dict) or not isinstance(data.get("kid"), str):
            continue
        try:
            jwk = jwt.PyJWK(data)
        except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError) as exc:
            log.warning("Teams: signing key %s ignored: %s", data.get("kid"), exc)
            continue
        raw = data.get("endorsements")
        endorsements = tuple(str(e) for e in raw) if isinstance(raw, list) else None
        keys[data["kid"]] = _Key(jwk, endorsements)
    return keys


@dataclass
class KeySet:
    """The Bot Framework's signing keys: fixed (a JWKS file) or fetched from OpenID metadata."""

    fixed: dict[str, _Key] | None = None
    openid_url: str | None = None
    http: Callable[[], aiohttp.ClientSession] | None = None
    ttl: float = KEYS_TTL
    _keys: dict[str, _Key] = field(default_factory=dict)
    _fetched: float = float("-inf")
    _lock: asyncio.Lock | None = None

    @classmethod
    def from_file(cls, path: Path) -> KeySet:
        return cls(fixed=_keys_from(jsonlib.loads(path.read_text(encoding="utf-8"))))

    async def get(self, kid: str) -> _Key | None:
        if self.fixed is not None:
            return self.fixed.get(kid)
        now = time.monotonic()
        stale = now - self._fetched > self.ttl
        unknown = kid not in self._keys and now - self._fetched > KEYS_MIN_REFRESH
        if stale or unknown:
            if self._lock is None:
                self._lock = asyncio.Lock()
            async with self._lock:
                if self._fetched < now:  # nobody fetched while this one waited
                    await self._fetch()
        return self._keys.get(kid)

    async def _fetch(self) -> None:
        assert self.openid_url is not None and self.http is not None
        timeout = aiohttp.ClientTimeout(total=DEFAULT_TIMEOUT)
        try:
            async with self.http().get(self.openid_url, timeout=timeout) as response:
                response.raise_for_status()
                metadata = await response.json(content_type=None)
            jwks_uri = metadata.get("jwks_uri") if isinstance(metadata, dict) else None
            if not isinstance(jwks_uri, str):
                raise ValueError("the OpenID metadata has no jwks_uri")
            async with self.http().get(jwks_uri, timeout=timeout) as response:
                response.raise_for_status()
                keys = _keys_from(await response.json(content_type=None))
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            log.warning("Teams: could not fetch the signing keys: %s", type(exc).__name__)
            if not self._keys:
                raise ApiError(503, "unavailable", "The Bot Framework signing keys are unavailable.") from None
            self._fetched = time.monotonic() - self.ttl + 60  # keep the old keys; try again in a minute
            return
        self._keys = keys
        self._fetched = time.monotonic()


async def verify_token(keys: KeySet, app_id: str, authorization: str | None) -> tuple[dict[str, Any], _Key]:
    """The token's claims and signing key, if the Bot Connector signed it for this bot; else 401."""
    if not authorization or not authorization.lower().startswith("bearer "):
        raise _unauthorized("Missing `Authorization: Bearer <token>`.")
    token = authorization[7:].strip()
    try:
        header = jwt.get_unverified_header(token)
    except jwt.InvalidTokenError:
        raise _unauthorized("The token is not a JWT.") from None
    kid = header.get("kid")
    if header.get("alg") != "RS256" or not isinstance(kid, str):
        raise _unauthorized("The token is not signed with RS256 by a known key.")
    key = await keys.get(kid)
    if key is None:
        raise _unauthorized("The token is signed by an unknown key.")
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key.jwk.key,
            algorithms=["RS256"],
            audience=app_id,
            issuer=ISSUER,
            leeway=LEEWAY,
            options={"require": ["exp", "iss", "aud"]},
        )
    except jwt.ExpiredSignatureError:
        raise _unauthorized("The token has expired.") from None
    except jwt.InvalidTokenError as exc:
        raise _unauthorized(f"The token is not valid: {type(exc).__name__}.") from None
    return claims, key


def check_activity(claims: Mapping[str, Any], key: _Key, activity: Mapping[str, Any]) -> None:
    """The activity is the one the token speaks for: endorsed channel, same serviceUrl; else 401."""
    channel = activity.get("channelId")
    if key.endorsements is not None and channel is not None and channel not in key.endorsements:
        raise _unauthorized(f"The signing key is not endorsed for the channel {channel!r}.")
    claimed = claims.get("serviceurl")
    if claimed is not None and claimed != activity.get("serviceUrl"):
        raise _unauthorized("The activity's serviceUrl is not the token's.")


@dataclass
class BotToken:
    """A Bot Connector token from the client-credentials grant, cached until near its expiry."""

    url: str
    app_id: str
    password: str
    _token: str | None = None
    _expires: float = 0.0
    _lock: asyncio.Lock | None = None

    def invalidate(self) -> None:
        self._token = None

    async def get(self, http: aiohttp.ClientSession) -> str:
        if self._token is not None and time.monotonic() < self._expires:
            return self._token
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._token is None or time.monotonic() >= self._expires:
                self._token, lifetime = await self._fetch(http)
                self._expires = time.monotonic() + max(lifetime - TOKEN_MARGIN, lifetime / 2)
            return self._token

    async def _fetch(self, http: aiohttp.ClientSession) -> tuple[str, float]:
        form = {
            "grant_type": "client_credentials",
            "client_id": self.app_id,
            "client_secret": self.password,
            "scope": SCOPE,
        }
        error: OutboundError | None = None
        for attempt in range(DEFAULT_RETRIES + 1):
            if attempt:
                await asyncio.sleep(0.2 * 2 ** (attempt - 1))
            try:
                async with http.post(self.url, data=form, timeout=aiohttp.ClientTimeout(total=DEFAULT_TIMEOUT)) as r:
                    if r.status == 429 or r.status >= 500:
                        error = OutboundError(f"token endpoint answered {r.status}", r.status, retryable=True)
                        continue
                    if r.status >= 400:
                        raise OutboundError(f"token endpoint answered {r.status}", r.status)
                    answer = await r.json(content_type=None)
            except (aiohttp.ClientError, TimeoutError) as exc:
                error = OutboundError(f"token endpoint unreachable: {type(exc).__name__}", retryable=True)
                continue
            except ValueError:
                raise OutboundError("token endpoint answered no JSON") from None
            token = answer.get("access_token") if isinstance(answer, dict) else None
            if not isinstance(token, str) or not token:
                raise OutboundError("token endpoint answered no access_token")
            lifetime = answer.get("expires_in", 3600)
            return token, float(lifetime) if isinstance(lifetime, int | float | str) else 3600.0
        assert error is not None
        raise error


@dataclass(frozen=True)
class TeamsMessage:
    incoming: Incoming
    activity: Mapping[str, Any]


def parse_activity(activity: Mapping[str, Any]) -> TeamsMessage | None:
    """The user message in an Activity (checked against :data:`SCHEMA`), if any."""
    if activity["type"] != "message":
        return None
    text = activity.get("text")
    if not isinstance(text, str):
        return None
    text = _AT.sub("", text).strip()
    if not text:
        return None
    conversation, sender = activity["conversation"]["id"], activity["from"]["id"]
    meta: dict[str, JsonValue] = {
        "teams": {
            "channel_id": activity.get("channelId"),
            "conversation_id": conversation,
            "service_url": activity["serviceUrl"],
        }
    }
    incoming = Incoming(NAME, f"{NAME}:{conversation}:{sender}", text[:MAX_TEXT], activity["id"], meta)
    return TeamsMessage(incoming, activity)


def reply_activity(message: BotUttered, to: Mapping[str, Any]) -> dict[str, Any] | None:
    """The Activity answering ``to`` with one bot message (None when it has nothing to show)."""
    card: dict[str, Any] = {}
    if message.buttons:
        card["buttons"] = [
            {
                "type": "messageBack",
                "title": str(b.get("title") or "?"),
                "text": str(b.get("payload") or b.get("title") or ""),
                "displayText": str(b.get("title") or ""),
                "value": {"payload": str(b.get("payload") or "")},
            }
            for b in message.buttons
        ]
    image = message.data.get("image")
    if isinstance(image, str) and image:
        card["images"] = [{"url": image}]
    if not message.text and not card:
        return None
    reply: dict[str, Any] = {
        "type": "message",
        "from": dict(to.get("recipient") or {}),
        "recipient": dict(to["from"]),
        "conversation": dict(to["conversation"]),
        "replyToId": to["id"],
    }
    if to.get("channelId"):
        reply["channelId"] = to["channelId"]
    if message.text:
        reply["text"] = message.text
    if card:
        reply["attachments"] = [{"contentType": "application/vnd.microsoft.card.hero", "content": card}]
    return reply


def reply_url(activity: Mapping[str, Any]) -> str:
    base = str(activity["serviceUrl"]).rstrip("/")
    conversation = quote(str(activity["conversation"]["id"]), safe="")
    return f"{base}/v3/conversations/{conversation}/activities/{quote(str(activity['id']), safe='')}"


@dataclass
class TeamsChannel:
    app_id: str
    app_password: str
    jwks_file: Path | None = None
    openid_url: str = DEFAULT_OPENID_URL
    token_url: str = DEFAULT_TOKEN_URL
    name: str = NAME
    recent: RecentIds = field(default_factory=RecentIds)

    def blueprint(self, ctx: ChannelContext) -> Blueprint:
        bp = Blueprint("channel_teams", url_prefix="/webhooks/teams")
        keys = KeySet.from_file(self.jwks_file) if self.jwks_file else KeySet(openid_url=self.openid_url, http=ctx.http)
        token = BotToken(self.token_url, self.app_id, self.app_password)

        @bp.get("/")
        async def health(request: Request) -> HTTPResponse:
            return json({"status": "ok"})

        @bp.post("/api/messages")
        async def messages(request: Request) -> HTTPResponse:
            claims, key = await verify_token(keys, self.app_id, request.headers.get("authorization"))
            activity = json_body(request, SCHEMA)
            check_activity(claims, key, activity)
            message = parse_activity(activity)
            if message is not None and self.recent.first(message.incoming):
                ctx.spawn(self._handle(ctx, token, message))
            return json({})

        return bp

    async def _handle(self, ctx: ChannelContext, token: BotToken, message: TeamsMessage) -> None:
        sender = message.incoming.sender_id
        try:
            replies = await ctx.process_new(message.incoming)
        except ApiError as exc:
            log.warning("Teams message not processed: %s", exc.message, extra={"session_id": sender})
            ctx.failed("teams", "process")
            return
        except Exception:  # a background task: log it
            log.exception("Teams message failed", extra={"session_id": sender})
            ctx.failed("teams", "process")
            return
        await self._send(ctx, token, message.activity, replies, sender)

    async def _send(
        self, ctx: ChannelContext, token: BotToken, to: Mapping[str, Any], replies: Sequence[BotUttered], sender: str
    ) -> None:
        url = reply_url(to)
        for reply in replies:
            body = reply_activity(reply, to)
            if body is None:
                continue
            for attempt in (1, 2):
                try:
                    bearer = await token.get(ctx.http())
                    await post_json(ctx.http(), url, body, headers={"Authorization": f"Bearer {bearer}"})
                    break
                except OutboundError as exc:
                    if exc.status == 401 and attempt == 1:
                        token.invalidate()  # revoked or expired early: one more try with a new token
                        continue
                    log.warning("Teams reply failed: %s", exc, extra={"session_id": sender})
                    ctx.failed("teams", "reply")
                    return


def from_env(env: Mapping[str, str]) -> TeamsChannel | None:
    app_id, password = env.get(APP_ID_ENV), env.get(PASSWORD_ENV)
    if not app_id or not password:
        if app_id or password:
            log.warning("Teams channel not mounted: set both %s and %s", APP_ID_ENV, PASSWORD_ENV)
        return None
    jwks = env.get(JWKS_FILE_ENV)
    if jwks:
        path = Path(jwks)
        try:
            if not _keys_from(jsonlib.loads(path.read_text(encoding="utf-8"))):
                raise ValueError("it holds no usable signing key")
        except (OSError, ValueError) as exc:
            log.error("Teams channel not mounted: %s=%s cannot be used: %s", JWKS_FILE_ENV, jwks, exc)
            return None
    return TeamsChannel(
        app_id,
        password,
        Path(jwks) if jwks else None,
        env.get(OPENID_URL_ENV) or DEFAULT_OPENID_URL,
        env.get(TOKEN_URL_ENV) or DEFAULT_TOKEN_URL,
    )
