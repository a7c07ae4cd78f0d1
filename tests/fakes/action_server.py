"""A fake Rasa SDK action server: a real aiohttp.web server on 127.0.0.1 speaking rasa_sdk's protocol.

It follows ``rasa_sdk`` 3.21 (``rasa_sdk/endpoint.py`` and ``executor.py``) exactly where taiwa
can observe it:

* ``GET /health`` -> ``200 {"status": "ok"}``; ``GET /actions`` -> ``[{"name": ...}, ...]``.
* ``POST /webhook`` with ``{"next_action", "sender_id", "tracker", "domain", "version"}``:
  ``200 {"events": [...], "responses": [...]}`` (events without an ``"event"`` key are dropped);
  ``400 {"error", "action_name"}`` when the action raises :class:`ActionExecutionRejection`;
  ``404 {"error", "action_name"}`` for an unknown action; ``449`` when the request has no
  ``domain`` and none was cached by an earlier request; ``500 {"error", "request_body"}`` when
  the action raises anything else; ``400 {"error": "Invalid body request"}`` for a body that is
  JSON ``null``; ``200 null`` when ``next_action`` is missing.

Actions are written against the same small API as rasa_sdk (``Action.name()`` / ``Action.run(dispatcher,
tracker, domain)``, :class:`CollectingDispatcher`, :class:`Tracker`, the event helpers), so one action
module can run on this fake and, unchanged, on a real ``python -m rasa_sdk`` (see tests/actions/).

The server can run in the test's event loop (``async with FakeActionServer(...)``) or in a thread
of its own (``with ServerThread(FakeActionServer(...)) as url:``) to outlive one ``asyncio.run``.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import threading
import zlib
from collections.abc import Iterable, Iterator
from typing import Any

from aiohttp import web

# -- the rasa_sdk API, as far as actions need it ------------------------------------------------

ACTION_MISSING_DOMAIN_DEFAULT_MESSAGE = (
    "Missing domain context, assistant will retry the request and include "
    "the domain in the request payload. For more information please see "
    "https://rasa.com/docs/action-server/"
)


class ActionExecutionRejection(Exception):
    """Raised by an action to refuse to run (rasa_sdk.interfaces.ActionExecutionRejection)."""

    def __init__(self, action_name: str, message: str | None = None) -> None:
        self.action_name = action_name
        self.message = message or f"Custom action '{action_name}' rejected execution."
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message


def SlotSet(key: str, value: Any = None, timestamp: float | None = None) -> dict[str, Any]:
    return {"event": "slot", "timestamp": timestamp, "name": key, "value": value}


def Restarted(timestamp: float | None = None) -> dict[str, Any]:
    return {"event": "restart", "timestamp": timestamp}


def AllSlotsReset(timestamp: float | None = None) -> dict[str, Any]:
    return {"event": "reset_slots", "timestamp": timestamp}


def FollowupAction(name: str, timestamp: float | None = None) -> dict[str, Any]:
    return {"event": "followup", "timestamp": timestamp, "name": name}


def BotUttered(
    text: str | None = None,
    data: dict[str, Any] | None = None,
    metadata: dict[str, Any] | None = None,
    timestamp: float | None = None,
) -> dict[str, Any]:
    return {"event": "bot", "timestamp": timestamp, "text": text, "data": data, "metadata": metadata}


class CollectingDispatcher:
    """Collects what the action says (rasa_sdk.executor.CollectingDispatcher, unary part)."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    def utter_message(
        self,
        text: str | None = None,
        image: str | None = None,
        json_message: dict[str, Any] | None = None,
        template: str | None = None,
        response: str | None = None,
        attachment: str | None = None,
        buttons: list[dict[str, Any]] | None = None,
        elements: list[dict[str, Any]] | None = None,
        **kwargs: Any,
    ) -> None:
        if template and not response:
            response = template
        message = {
            "text": text,
            "buttons": buttons or [],
            "elements": elements or [],
            "custom": json_message or {},
            "template": response,
            "response": response,
            "image": image,
            "attachment": attachment,
        }
        message.update(kwargs)
        self.messages.append(message)


class Tracker:
    """The conversation as the action sees it (rasa_sdk.interfaces.Tracker, the read-only part)."""

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> Tracker:
        return cls(
            state["sender_id"],
            state.get("slots", {}),
            state.get("latest_message", {}),
            state.get("events", []),
            state.get("paused", False),
            state.get("followup_action"),
            state.get("active_loop", state.get("active_form", {})),
            state.get("latest_action_name"),
            state.get("stack", []),
        )

    def __init__(
        self,
        sender_id: str,
        slots: dict[str, Any],
        latest_message: dict[str, Any] | None,
        events: list[dict[str, Any]],
        paused: bool,
        followup_action: str | None,
        active_loop: dict[str, Any],
        latest_action_name: str | None,
        stack: list[dict[str, Any]] | None = None,
    ) -> None:
        self.sender_id = sender_id
        self.slots = slots
        self.latest_message = latest_message or {}
        self.events = events
        self._paused = paused
        self.followup_action = followup_action
        self.active_loop = active_loop
        self.latest_action_name = latest_action_name
        self.stack = stack or []

    def get_slot(self, key: str) -> Any:
        return self.slots.get(key)

    def is_paused(self) -> bool:
        return self._paused

    def get_intent_of_latest_message(self, skip_fallback_intent: bool = True) -> str | None:
        """As rasa_sdk reads it: the top of ``intent_ranking`` (not ``intent``), skipping nlu_fallback."""
        ranking = (self.latest_message or {}).get("intent_ranking")
        if not ranking:
            return None
        if ranking[0]["name"] == "nlu_fallback" and skip_fallback_intent:
            return ranking[1]["name"] if len(ranking) >= 2 else None
        return ranking[0]["name"]


class Action:
    """Base class of custom actions (rasa_sdk.Action)."""

    def name(self) -> str:
        raise NotImplementedError

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list[Any]:
        raise NotImplementedError


# -- the server ---------------------------------------------------------------------------------


class FakeActionServer:
    """Runs ``actions`` (Action instances or classes) behind rasa_sdk's HTTP endpoints."""

    def __init__(self, actions: Iterable[Action | type[Action]]) -> None:
        self.actions: dict[str, Action] = {}
        for item in actions:
            action = item() if isinstance(item, type) else item
            self.actions[action.name()] = action
        self.received: list[Any] = []
        """The JSON body of every webhook call, in order."""
        self.domain: dict[str, Any] | None = None
        """The domain cached from the last request that carried one."""
        self._runner: web.AppRunner | None = None
        self._port = 0

    @property
    def url(self) -> str:
        """The base url (``/webhook`` and ``/health`` are below it)."""
        return f"http://127.0.0.1:{self._port}"

    async def start(self) -> FakeActionServer:
        app = web.Application()
        app.router.add_get("/health", self._health)
        app.router.add_get("/actions", self._list)
        app.router.add_post("/webhook", self._webhook)
        self._runner = web.AppRunner(app, handler_cancellation=True, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self._port = int(self._runner.addresses[0][1])
        return self

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeActionServer:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _list(self, request: web.Request) -> web.Response:
        return web.json_response([{"name": name} for name in self.actions])

    async def _webhook(self, request: web.Request) -> web.Response:
        raw = await request.read()
        if request.headers.get("Content-Encoding") == "deflate":
            raw = zlib.decompress(raw)
        try:
            action_call = json.loads(raw) if raw else None
        except ValueError:
            return web.json_response(
                {"description": "Bad Request", "status": 400, "message": "Failed when parsing body as json"}, status=400
            )
        self.received.append(action_call)
        if action_call is None:
            return web.json_response({"error": "Invalid body request"}, status=400)
        name = action_call.get("next_action")
        if not name:
            return web.json_response(None)
        try:
            action = self.actions.get(name)
            if action is None:
                return web.json_response(
                    {"error": f"No registered action found for name '{name}'.", "action_name": name}, status=404
                )
            domain = action_call.get("domain")
            if domain is None and self.domain is None:
                return web.json_response(
                    {"error": ACTION_MISSING_DOMAIN_DEFAULT_MESSAGE, "action_name": name}, status=449
                )
            if domain:
                self.domain = domain
            tracker = Tracker.from_dict(action_call["tracker"])
            dispatcher = CollectingDispatcher()
            events = action.run(dispatcher, tracker, self.domain or {})
            if inspect.isawaitable(events):
                events = await events
            validated = [e for e in events or [] if isinstance(e, dict) and e.get("event")]
            return web.json_response({"events": validated, "responses": dispatcher.messages})
        except Exception as exc:  # noqa: BLE001 - rasa_sdk answers any exception with a 500
            if type(exc).__name__ == "ActionExecutionRejection":  # ours or rasa_sdk's
                rejection: Any = exc
                return web.json_response({"error": rejection.message, "action_name": rejection.action_name}, status=400)
            return web.json_response({"error": str(exc), "request_body": action_call}, status=500)


class ServerThread:
    """Runs an async server (``start()`` / ``close()`` / ``url``) in its own thread and event loop."""

    def __init__(self, server: FakeActionServer) -> None:
        self.server = server
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fake-action-server", daemon=True)

    def __enter__(self) -> str:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self._loop).result(timeout=10)
        return self.server.url

    def __exit__(self, *exc_info: object) -> None:
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self.server.close(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()


@contextlib.contextmanager
def serving(actions: Iterable[Action | type[Action]]) -> Iterator[FakeActionServer]:
    """A :class:`FakeActionServer` running in a thread for the ``with`` block."""
    server = FakeActionServer(actions)
    with ServerThread(server):
        yield server
