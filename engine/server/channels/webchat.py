"""The web chat page: ``GET /chat``, a small dependency-free chat UI that talks to the REST
channel (``POST /webhooks/rest/webhook``) on the same origin.

It is always mounted unless ``TAIWA_WEBCHAT=0``. ``TAIWA_WEBCHAT_TITLE`` sets the heading and
the page title. The page and its assets (``engine/server/static/``) are read once per worker
and served from memory with an ETag; the page references its assets with a content hash
(``chat/chat.js?v=<hash>``), so those responses are cached for a year and a new release is
picked up at the next page load. URLs in the page are relative, so the chat also works behind
a reverse proxy that mounts the server under a path prefix.
"""

from __future__ import annotations

import hashlib
import html
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, empty, raw, redirect

from engine.server.body import MAX_TEXT
from engine.server.channels.base import ChannelContext
from engine.server.errors import ApiError

NAME = "webchat"
ENABLE_ENV = "TAIWA_WEBCHAT"
TITLE_ENV = "TAIWA_WEBCHAT_TITLE"
DEFAULT_TITLE = "Support chat"

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
PAGE = "chat.html"
ASSET_TYPES = {
    "chat.css": "text/css; charset=utf-8",
    "chat.js": "text/javascript; charset=utf-8",
}

PAGE_HEADERS = {
    "Cache-Control": "no-cache",
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' https: data:; base-uri 'none'; form-action 'none'; frame-ancestors 'self'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}
IMMUTABLE = "public, max-age=31536000, immutable"


@dataclass(frozen=True)
class Asset:
    body: bytes
    content_type: str

    @property
    def etag(self) -> str:
        return '"' + hashlib.sha256(self.body).hexdigest()[:20] + '"'

    @property
    def version(self) -> str:
        return self.etag.strip('"')[:12]


def load_assets(title: str, static_dir: Path = STATIC_DIR) -> tuple[Asset, dict[str, Asset]]:
    """The page (title and asset versions filled in) and its assets, by file name."""
    assets = {name: Asset((static_dir / name).read_bytes(), ctype) for name, ctype in ASSET_TYPES.items()}
    page = (static_dir / PAGE).read_text(encoding="utf-8")
    fields = {
        "title": html.escape(title),
        "max_text": str(MAX_TEXT),
        **{f"v:{name}": asset.version for name, asset in assets.items()},
    }
    for key, value in fields.items():
        page = page.replace("{{" + key + "}}", value)
    return Asset(page.encode("utf-8"), "text/html; charset=utf-8"), assets


def _serve(
    request: Request, asset: Asset, cache_control: str, headers: Mapping[str, str] | None = None
) -> HTTPResponse:
    common = {
        **(headers or {}),
        "ETag": asset.etag,
        "Cache-Control": cache_control,
        "X-Content-Type-Options": "nosniff",
    }
    if asset.etag in request.headers.get("if-none-match", ""):
        return empty(status=304, headers=common)
    return raw(asset.body, content_type=asset.content_type, headers=common)


@dataclass
class WebChatChannel:
    title: str = DEFAULT_TITLE
    name: str = NAME

    def blueprint(self, ctx: ChannelContext) -> Blueprint:
        page, assets = load_assets(self.title)
        bp = Blueprint("channel_webchat")

        @bp.get("/chat", strict_slashes=True)
        async def chat(request: Request) -> HTTPResponse:
            return _serve(request, page, "no-cache", PAGE_HEADERS)

        @bp.get("/chat/", strict_slashes=True)
        async def chat_slash(request: Request) -> HTTPResponse:
            # Relative, so that a path prefix added by a reverse proxy is kept.
            return redirect("../chat", status=308)

        @bp.get("/chat/<filename:str>")
        async def asset(request: Request, filename: str) -> HTTPResponse:
            found = assets.get(filename)
            if found is None:
                raise ApiError(404, "not_found", f"No web chat asset {filename!r}.")
            versioned = request.args.get("v") == found.version
            return _serve(request, found, IMMUTABLE if versioned else "no-cache")

        return bp


def from_env(env: Mapping[str, str]) -> WebChatChannel | None:
    if env.get(ENABLE_ENV, "1").strip().lower() in {"0", "false", "no", "off"}:
        return None
    return WebChatChannel(title=env.get(TITLE_ENV, "").strip() or DEFAULT_TITLE)
