"""Fakes of the four messaging platforms' APIs that ``taiwa run``'s channels reply through.

One aiohttp.web server on 127.0.0.1 (port 0), in a thread of its own so that it serves while a
test blocks on the server under test, answering as the real APIs do where the channels can tell:

* **LINE** ``POST /v2/bot/message/reply``: ``Authorization: Bearer <channel access token>``
  (else 401 ``{"message"}``); ``replyToken`` and 1-5 ``messages`` (else 400); ``200
  {"sentMessages": [...]}``.
* **Slack** ``POST /api/chat.postMessage``: ``Bearer <bot token>``; ``200 {"ok": true,
  "channel", "ts"}``, or ``200 {"ok": false, "error"}`` (``invalid_auth``, ``channel_not_found``,
  ``no_text``) as Slack does.
* **Telegram** ``POST /bot<token>/<method>`` for ``sendMessage``, ``sendPhoto``,
  ``answerCallbackQuery``: ``200 {"ok": true, "result"}``; a wrong token 401, an unknown method
  404, missing parameters 400 (``{"ok": false, "error_code", "description"}``).
* **Bot Framework**: the token endpoint ``POST /botframework/token`` (form-encoded
  client-credentials grant, ``scope=https://api.botframework.com/.default``) issues
  ``{"token_type", "expires_in", "access_token"}``; the connector ``POST
  /v3/conversations/{conversation}/activities/{activity}`` wants one of those tokens and
  answers ``{"id"}``; ``GET /botframework/openid`` and ``GET /botframework/keys`` serve the
  OpenID metadata and the key set (``jwks``) a test gives it.

Every request is recorded (:class:`Call`, with the status answered). ``fail(path, status,
times)`` makes the next ``times`` requests to ``path`` answer ``status`` first, to test retries.
The module also signs Bot Framework tokens: :class:`BotFrameworkIssuer` holds an RSA key made
with ``cryptography`` and writes its JWKS.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import jwt
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa

LINE_TOKEN = "line-access-token"
LINE_SECRET = "line-channel-secret"
SLACK_TOKEN = "xoxb-test-token"
SLACK_SECRET = "slack-signing-secret"
TELEGRAM_TOKEN = "123456:telegram-bot-token"
TELEGRAM_SECRET = "telegram-secret-token"
TEAMS_APP_ID = "00000000-0000-0000-0000-00000000b07"
TEAMS_PASSWORD = "teams-app-password"
API_TOKEN = "api-token-for-tests"
BOTFRAMEWORK_ISSUER = "https://api.botframework.com"


@dataclass
class Call:
    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes
    status: int = 0

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def form(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(self.body.decode()).items()}


@dataclass
class FakePlatforms:
    line_token: str = LINE_TOKEN
    slack_token: str = SLACK_TOKEN
    telegram_token: str = TELEGRAM_TOKEN
    teams_app_id: str = TEAMS_APP_ID
    teams_password: str = TEAMS_PASSWORD
    token_lifetime: int = 3600
    jwks: dict[str, Any] = field(default_factory=lambda: {"keys": []})
    calls: list[Call] = field(default_factory=list)
    issued: list[str] = field(default_factory=list)
    _failures: dict[str, list[int]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    _runner: web.AppRunner | None = None
    url: str = ""

    # -- control, from the test's thread

    def fail(self, path: str, status: int = 500, times: int = 1) -> None:
        """The next ``times`` requests to ``path`` answer ``status``."""
        with self._lock:
            self._failures.setdefault(path, []).extend([status] * times)

    def to(self, path: str) -> list[Call]:
        """The requests to ``path`` so far (``path`` may end with ``*``: a prefix)."""
        with self._lock:
            calls = list(self.calls)
        if path.endswith("*"):
            return [c for c in calls if c.path.startswith(path[:-1])]
        return [c for c in calls if c.path == path]

    def wait_for(
        self, path: str, where: Callable[[Call], bool] = lambda c: True, count: int = 1, timeout: float = 15.0
    ) -> list[Call]:
        """The first ``count`` requests to ``path`` for which ``where`` holds (answered 2xx), waiting for them."""
        deadline = time.monotonic() + timeout
        while True:
            found = [c for c in self.to(path) if 200 <= c.status < 300 and where(c)]
            if len(found) >= count:
                return found[:count]
            if time.monotonic() > deadline:
                seen = [(c.path, c.status, c.body[:200]) for c in self.to(path)]
                raise AssertionError(f"{count} request(s) to {path} not seen within {timeout} s; got {seen}")
            time.sleep(0.02)

    # -- the server

    async def start(self) -> None:
        app = web.Application(middlewares=[self._record])
        app.router.add_post("/v2/bot/message/reply", self._line_reply)
        app.router.add_post("/api/chat.postMessage", self._slack_post)
        app.router.add_post("/bot{token}/{method}", self._telegram)
        app.router.add_post("/botframework/token", self._bf_token)
        app.router.add_get("/botframework/openid", self._bf_openid)
        app.router.add_get("/botframework/keys", self._bf_keys)
        app.router.add_post("/v3/conversations/{conversation}/activities/{activity}", self._bf_reply)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @web.middleware
    async def _record(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        call = Call(request.method, request.path, dict(request.headers), await request.read())
        with self._lock:
            self.calls.append(call)
            pending = self._failures.get(request.path)
            failure = pending.pop(0) if pending else None
        if failure is not None:
            call.status = failure
            return web.json_response({"error": "injected failure"}, status=failure)
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            call.status = exc.status
            raise
        call.status = response.status
        return response

    def _bearer(self, request: web.Request) -> str | None:
        header = request.headers.get("Authorization", "")
        return header[7:] if header.startswith("Bearer ") else None

    async def _json(self, request: web.Request) -> Any:
        try:
            return json.loads(await request.read())
        except ValueError:
            return None

    # -- LINE

    async def _line_reply(self, request: web.Request) -> web.Response:
        if self._bearer(request) != self.line_token:
            return web.json_response(
                {"message": "Authentication failed. Confirm that the access token is valid."}, status=401
            )
        body = await self._json(request)
        messages = body.get("messages") if isinstance(body, dict) else None
        if not isinstance(body, dict) or not body.get("replyToken") or not isinstance(messages, list):
            return web.json_response({"message": "The request body has 1 error(s)"}, status=400)
        if not 1 <= len(messages) <= 5:
            return web.json_response({"message": "Size must be between 1 and 5"}, status=400)
        return web.json_response({"sentMessages": [{"id": str(next(self._ids))} for _ in messages]})

    # -- Slack

    async def _slack_post(self, request: web.Request) -> web.Response:
        if self._bearer(request) != self.slack_token:
            return web.json_response({"ok": False, "error": "invalid_auth"})
        body = await self._json(request)
        if not isinstance(body, dict) or not body.get("channel"):
            return web.json_response({"ok": False, "error": "channel_not_found"})
        if not body.get("text") and not body.get("blocks"):
            return web.json_response({"ok": False, "error": "no_text"})
        return web.json_response({"ok": True, "channel": body["channel"], "ts": f"1700000000.{next(self._ids):06d}"})

    # -- Telegram

    async def _telegram(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.telegram_token:
            return web.json_response({"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401)
        method = request.match_info["method"]
        body = await self._json(request)
        required: dict[str, tuple[str, ...]] = {
            "sendMessage": ("chat_id", "text"),
            "sendPhoto": ("chat_id", "photo"),
            "answerCallbackQuery": ("callback_query_id",),
        }
        if method not in required:
            return web.json_response({"ok": False, "error_code": 404, "description": "Not Found"}, status=404)
        missing = [k for k in required[method] if not isinstance(body, dict) or body.get(k) in (None, "")]
        if missing:
            description = f"Bad Request: {missing[0]} is empty"
            return web.json_response({"ok": False, "error_code": 400, "description": description}, status=400)
        if method == "answerCallbackQuery":
            return web.json_response({"ok": True, "result": True})
        result = {"message_id": next(self._ids), "chat": {"id": body["chat_id"]}, "date": int(time.time())}
        return web.json_response({"ok": True, "result": result})

    # -- Bot Framework

    async def _bf_token(self, request: web.Request) -> web.Response:
        form = {k: v[0] for k, v in parse_qs((await request.read()).decode()).items()}
        if (
            form.get("grant_type") != "client_credentials"
            or form.get("scope") != "https://api.botframework.com/.default"
        ):
            return web.json_response({"error": "invalid_request"}, status=400)
        if form.get("client_id") != self.teams_app_id or form.get("client_secret") != self.teams_password:
            return web.json_response({"error": "invalid_client"}, status=401)
        token = f"bf-token-{next(self._ids)}"
        with self._lock:
            self.issued.append(token)
        answer = {"token_type": "Bearer", "expires_in": self.token_lifetime, "ext_expires_in": self.token_lifetime}
        return web.json_response({**answer, "access_token": token})

    async def _bf_openid(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "issuer": BOTFRAMEWORK_ISSUER,
                "authorization_endpoint": "https://invalid.botframework.com",
                "jwks_uri": f"{self.url}/botframework/keys",
                "id_token_signing_alg_values_supported": ["RS256"],
                "token_endpoint_auth_methods_supported": ["private_key_jwt"],
            }
        )

    async def _bf_keys(self, request: web.Request) -> web.Response:
        return web.json_response(self.jwks)

    async def _bf_reply(self, request: web.Request) -> web.Response:
        with self._lock:
            known = self._bearer(request) in self.issued
        if not known:
            return web.json_response({"error": {"code": "Unauthorized", "message": "Authorization failed"}}, status=401)
        body = await self._json(request)
        if not isinstance(body, dict) or body.get("type") is None:
            return web.json_response({"error": {"code": "BadArgument", "message": "Invalid activity"}}, status=400)
        return web.json_response({"id": f"reply-{next(self._ids)}"})


@contextlib.contextmanager
def running(fake: FakePlatforms) -> Iterator[FakePlatforms]:
    """``fake`` serving from a thread of its own for the ``with`` block."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="fake-platforms", daemon=True)
    thread.start()
    try:
        asyncio.run_coroutine_threadsafe(fake.start(), loop).result(timeout=10)
        yield fake
    finally:
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(fake.close(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


# -- Bot Framework tokens


@dataclass
class BotFrameworkIssuer:
    """Signs tokens as the Bot Connector does (RS256, issuer api.botframework.com) with its own RSA key."""

    kid: str = "test-key-1"
    endorsements: tuple[str, ...] = ("msteams", "emulator")
    key: rsa.RSAPrivateKey = field(
        default_factory=lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )

    def jwks(self) -> dict[str, Any]:
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        return {
            "keys": [{**jwk, "kid": self.kid, "use": "sig", "alg": "RS256", "endorsements": list(self.endorsements)}]
        }

    def write_jwks(self, path: Path) -> Path:
        path.write_text(json.dumps(self.jwks()), encoding="utf-8")
        return path

    def token(self, audience: str = TEAMS_APP_ID, *, service_url: str | None = None, **overrides: Any) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {"iss": BOTFRAMEWORK_ISSUER, "aud": audience, "nbf": now - 5, "exp": now + 3600}
        if service_url is not None:
            claims["serviceurl"] = service_url
        claims.update(overrides)
        claims = {k: v for k, v in claims.items() if v is not None}
        return jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": self.kid})


# -- the environment of a server whose four channels talk to one fake


def channel_env(fake: FakePlatforms, jwks_file: Path) -> dict[str, str]:
    return {
        "TAIWA_API_TOKEN": API_TOKEN,
        "LINE_CHANNEL_SECRET": LINE_SECRET,
        "LINE_CHANNEL_ACCESS_TOKEN": fake.line_token,
        "LINE_API_BASE": fake.url,
        "SLACK_SIGNING_SECRET": SLACK_SECRET,
        "SLACK_BOT_TOKEN": fake.slack_token,
        "SLACK_API_BASE": fake.url,
        "TELEGRAM_BOT_TOKEN": fake.telegram_token,
        "TELEGRAM_SECRET_TOKEN": TELEGRAM_SECRET,
        "TELEGRAM_API_BASE": fake.url,
        "TEAMS_APP_ID": fake.teams_app_id,
        "TEAMS_APP_PASSWORD": fake.teams_password,
        "TEAMS_JWKS_FILE": str(jwks_file),
        "TEAMS_TOKEN_URL": f"{fake.url}/botframework/token",
    }


# -- plain HTTP to the server under test


@dataclass
class Answer:
    status: int
    headers: Mapping[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


def http(method: str, url: str, body: bytes | None = None, headers: Mapping[str, str] | None = None) -> Answer:
    """One request; 4xx/5xx answers are returned, not raised."""
    request = urllib.request.Request(url, data=body, method=method, headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            return Answer(response.status, dict(response.headers), response.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return Answer(exc.code, dict(exc.headers), exc.read())


def tracker_events(server_url: str, conversation: str) -> list[dict[str, Any]]:
    from urllib.parse import quote

    answer = http(
        "GET",
        f"{server_url}/conversations/{quote(conversation, safe=':@')}/tracker",
        headers={"Authorization": f"Bearer {API_TOKEN}"},
    )
    assert answer.status == 200, answer.body
    return list(answer.json["events"])


def user_events(server_url: str, conversation: str) -> list[dict[str, Any]]:
    return [e for e in tracker_events(server_url, conversation) if e.get("event") == "user_uttered"]
