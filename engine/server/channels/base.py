"""What every channel is: a Sanic blueprint mounted when its credentials are configured.

A channel module exposes ``NAME`` and ``from_env(env) -> Channel | None`` (None when its
credentials are missing: the channel is then not mounted and ``taiwa run`` says so). Its
webhook handler does four things, in order:

1. **verify** the request came from the platform (signature, token, JWT). A forged or
   unsigned request gets 401/403 and is NOT processed;
2. **parse** the platform's body into :class:`Incoming` messages (a malformed body gets 400;
   events that are not user messages are acknowledged and ignored);
3. **process** each message with ``await ctx.process(incoming)``, which runs one turn and
   returns the bot's messages (:class:`~engine.events.BotUttered`);
4. **reply** through the platform's API with ``ctx.http`` (a shared aiohttp session) via
   :func:`engine.server.outbound.post_json` (timeouts, bounded retries), at a base URL taken
   from the environment so tests can point it at a local fake.

Platforms that want a quick acknowledgement (Slack: 3 s) answer 200 first and process in a
background task with ``ctx.spawn(coro)``; graceful shutdown waits for those tasks.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp
from sanic import Blueprint

from engine.events import BotUttered, JsonValue


@dataclass(frozen=True)
class Incoming:
    """One user message from a channel."""

    channel: str
    sender_id: str
    """The conversation id; channels prefix it with their name (``slack:T1:C1:U1``)."""
    text: str
    message_id: str | None = None
    """The platform's id of the message/event, for de-duplication of retries."""
    metadata: Mapping[str, JsonValue] = field(default_factory=dict)
    client_ip: str | None = None
    """Set by channels whose clients are end users (REST, web chat): rate-limited per IP too."""


@dataclass
class ChannelContext:
    """What the server gives a channel."""

    process: Callable[[Incoming], Awaitable[list[BotUttered]]]
    """Run one turn for the message; the bot's messages (empty while handed over to a person).
    A message whose ``message_id`` was already processed gets the answer it got then (for
    channels whose client reads the answer from the response: REST)."""
    process_new: Callable[[Incoming], Awaitable[list[BotUttered]]]
    """Like ``process``, but a redelivered ``message_id`` gets no messages: for channels that
    push replies to a platform API, which must not send them twice (in any worker)."""
    http: Callable[[], aiohttp.ClientSession]
    """The shared outbound HTTP session (created on first use, closed at shutdown)."""
    spawn: Callable[[Coroutine[Any, Any, None]], None]
    """Run a coroutine in the background; shutdown waits for it."""
    env: Mapping[str, str]
    failed: Callable[[str, str], None] = field(default=lambda channel, stage: None)
    """Count a message the channel accepted (answered 200) and then could not serve:
    ``failed(channel, "process")`` (the turn failed) or ``failed(channel, "reply")`` (the
    platform API refused or never answered the reply). Logged by the channel as well."""


class Channel(Protocol):
    name: str

    def blueprint(self, ctx: ChannelContext) -> Blueprint:
        """The routes of this channel (under ``/webhooks/<name>/``)."""
        ...


RECENT_IDS = 10_000
"""Message ids a channel remembers per process to drop platform redeliveries."""


@dataclass
class RecentIds:
    """The last ``kept`` message ids a channel took in (this process).

    ``process_new`` already gives no replies for a redelivered ``message_id`` in any worker;
    this per-process memory drops a platform's redelivery (Slack's retries, Telegram's and
    LINE's redeliveries) before it reaches the engine, so nothing else about it (an
    acknowledgement such as Telegram's answerCallbackQuery) is sent twice either.
    """

    kept: int = RECENT_IDS
    _ids: OrderedDict[tuple[str, str], None] = field(default_factory=OrderedDict)

    def first(self, message: Incoming) -> bool:
        """True the first time ``message`` (sender, message id) is seen; it is then remembered."""
        if message.message_id is None:
            return True
        key = (message.sender_id, message.message_id)
        if key in self._ids:
            self._ids.move_to_end(key)
            return False
        self._ids[key] = None
        while len(self._ids) > self.kept:
            self._ids.popitem(last=False)
        return True
