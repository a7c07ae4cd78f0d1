"""The web chat page (``GET /chat``, issue #5): served by the real ``taiwa run``, and driven in
real headless Chromium through a ticket flow of the reference assistant.

The browser test needs Node.js, Chromium (``/usr/bin/chromium`` or ``$TAIWA_CHROMIUM``) and
playwright-core (``npm ci --prefix tests/server``); without them it skips, unless
``TAIWA_REQUIRE_SERVICES=1`` (CI), where it fails. Its screenshot is saved to
``test-artifacts/webchat.png``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest

from engine.server.channels import webchat
from server.live import REPO, LiveServer, live_server

HERE = Path(__file__).resolve().parent
BROWSER_SCRIPT = HERE / "webchat_browser.mjs"
ARTIFACTS = REPO / "test-artifacts"
TITLE = "Acme Cloud support"


@pytest.fixture(scope="module")
def server(reference_models: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    tmp = tmp_path_factory.mktemp("webchat")
    with live_server(reference_models, tmp, {"TAIWA_WEBCHAT_TITLE": TITLE}) as live:
        yield live


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, {k.lower(): v for k, v in response.headers.items()}, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read()


def test_from_env() -> None:
    assert webchat.from_env({}) == webchat.WebChatChannel(title=webchat.DEFAULT_TITLE)
    assert webchat.from_env({"TAIWA_WEBCHAT": "1", "TAIWA_WEBCHAT_TITLE": " Acme "}) == webchat.WebChatChannel("Acme")
    for off in ("0", "false", "off"):
        assert webchat.from_env({"TAIWA_WEBCHAT": off}) is None


def test_page_and_assets_over_http(server: LiveServer) -> None:
    status, headers, body = get(server.url + "/chat")
    assert status == 200
    assert headers["content-type"] == "text/html; charset=utf-8"
    assert headers["cache-control"] == "no-cache"
    assert "script-src 'self'" in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff"
    page = body.decode("utf-8")
    assert f"<title>{TITLE}</title>" in page
    assert 'aria-live="polite"' in page
    assert '<label for="message"' in page
    assert "{{" not in page, "a template field was left unfilled"
    assert "http://" not in page and "https://" not in page, "the page must not fetch anything from elsewhere"

    status, headers, _ = get(server.url + "/chat", {"If-None-Match": headers["etag"]})
    assert status == 304

    assets = re.findall(r'(?:href|src)="(chat/[^"]+)"', page)
    assert sorted(a.split("?")[0] for a in assets) == ["chat/chat.css", "chat/chat.js"]
    expected_types = {"chat/chat.css": "text/css; charset=utf-8", "chat/chat.js": "text/javascript; charset=utf-8"}
    for asset in assets:
        status, headers, body = get(f"{server.url}/{asset}")
        assert status == 200, asset
        assert headers["content-type"] == expected_types[asset.split("?")[0]]
        assert headers["cache-control"] == "public, max-age=31536000, immutable", "versioned assets are cached"
        assert body
        status, headers, _ = get(f"{server.url}/{asset.split('?')[0]}")
        assert status == 200 and headers["cache-control"] == "no-cache", "unversioned: revalidated"

    status, headers, body = get(server.url + "/chat/secrets.env")
    assert status == 404 and json.loads(body)["error"]["code"] == "not_found"
    for sneaky in ("/chat/../chat/chat.js", "/chat/..%2Fchat.html", "/chat/chat.html"):
        assert get(server.url + sneaky)[0] == 404, sneaky

    status, _, body = get(server.url + "/version")
    assert "webchat" in json.loads(body)["channels"]


def _browser_missing(detail: str) -> NoReturn:
    if os.environ.get("TAIWA_REQUIRE_SERVICES") == "1":
        pytest.fail(f"the web chat browser test needs {detail} (TAIWA_REQUIRE_SERVICES=1)", pytrace=False)
    pytest.skip(f"web chat browser test: {detail} (TAIWA_REQUIRE_SERVICES=1 makes this an error)")


@pytest.fixture(scope="module")
def node() -> str:
    """Node.js, with Chromium and playwright-core next to it (checked before a server starts)."""
    node = shutil.which("node")
    if node is None:
        _browser_missing("Node.js: `node` is not on PATH")
    chromium = os.environ.get("TAIWA_CHROMIUM", "/usr/bin/chromium")
    if not os.access(chromium, os.X_OK):
        _browser_missing(f"Chromium at {chromium}: `apt-get install -y chromium` or set TAIWA_CHROMIUM")
    if not (HERE / "node_modules" / "playwright-core" / "package.json").is_file():
        _browser_missing("playwright-core: run `npm ci --prefix tests/server`")
    return node


@pytest.mark.browser
def test_ticket_flow_in_chromium(node: str, server: LiveServer) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "webchat.png"
    screenshot.unlink(missing_ok=True)
    try:
        proc = subprocess.run(
            [node, str(BROWSER_SCRIPT), server.url, str(screenshot)],
            capture_output=True,
            text=True,
            timeout=150,
            cwd=HERE,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the browser script did not finish in {exc.timeout} s; stderr: {exc.stderr!r}")
    lines = proc.stdout.strip().splitlines()
    assert lines, f"no output from the browser script (exit {proc.returncode}):\n{proc.stderr}"
    result = json.loads(lines[-1])
    context = f"{json.dumps(result, indent=2)}\nstderr:\n{proc.stderr}\nserver log:\n{server.output()[-3000:]}"
    assert result["ok"], f"failed at step {result['step']!r}: {result.get('error')}\n{context}"

    assert result["status"] == 200
    assert result["title"] == TITLE and result["heading"] == TITLE
    assert result["ariaLive"] == "polite"
    assert result["focusOnLoad"] == "message", "the message input has focus on load"

    assert "ticket" in result["askSummary"] or "issue" in result["askSummary"], context
    assert result["askPriority"] == "How urgent is it?"
    assert result["userSaw"] == "High", "a button's title is shown as the user's message"
    assert result["focusAfterButton"] == "message", "focus goes back to the input after a button"
    assert result["oldButtonDisabled"], "an answered question's buttons are disabled"
    assert "high priority ticket" in result["askConfirm"], context
    assert result["keyboardFocus"] == "Yes, open it", "the suggested replies are reachable with the keyboard"
    assert re.search(r"\bT-\d{6}\b", result["ticketMessage"]), context

    assert "Reconnecting" in result["reconnecting"], context
    assert not result["statusVisibleAfterRetry"], "the reconnecting banner goes away once a request succeeds"
    ids = result["retryMessageIds"]
    assert len(ids) == 2 and ids[0] == ids[1], f"a retry reuses its message_id: {ids}"

    payloads = [r["message"] for r in result["requests"]]
    assert '/inform{"priority": "high"}' in payloads and "/affirm" in payloads
    assert len({r["sender"] for r in result["requests"]}) == 1, "one conversation"

    assert result["transcriptAfter"] == result["transcriptBefore"], "the transcript survives a reload"
    assert len(result["transcriptAfter"]) >= 10
    assert result["enabledButtonsAfterReload"] == 0
    assert result["consoleErrors"] == [], "no JavaScript errors or CSP violations"
    assert screenshot.is_file() and screenshot.stat().st_size > 10_000
