"""Register custom actions and tools with ``@action(name, timeout=..., idempotent=...)``.

An action receives a read-only :class:`ActionContext` and returns a list of events; it
never mutates conversation state. The registry is per process and filled by importing the
project's ``actions/`` package (:func:`discover_actions`).
"""

from __future__ import annotations

import importlib.util
import inspect
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from engine.domain import Domain
from engine.events import Event, JsonValue


@dataclass(frozen=True)
class ActionContext:
    """What an action may read about the conversation (a read-only view)."""

    sender_id: str
    """The conversation's id."""
    slots: Mapping[str, JsonValue]
    """Current slot values."""
    latest_message: Mapping[str, Any] = field(default_factory=dict)
    """The last user message: ``text``, ``intent``, ``entities``."""
    active_flow: str | None = None
    """Id of the flow on top of the stack, if any."""
    config: Mapping[str, Any] = field(default_factory=dict)
    """Settings for the action (e.g. data paths), from the environment."""
    events: tuple[Event, ...] = ()
    """The conversation's events so far (sent to a remote action server as the tracker)."""
    domain: Domain | None = None
    """The assistant's domain (sent to a remote action server)."""


ActionFunc = Callable[[ActionContext], Sequence[Event] | Awaitable[Sequence[Event]]]


@dataclass(frozen=True)
class ActionSpec:
    """A registered action: its name, code and run-time contract."""

    name: str
    func: ActionFunc
    timeout: float
    """Seconds before the call is abandoned and classified ``tool_timeout``."""
    idempotent: bool
    """Only idempotent actions are retried after a failure."""
    retries: int
    """Extra attempts for idempotent actions."""
    source: str
    """``module:function`` where it is defined."""
    inline: bool = False
    """A synchronous action that runs on the event loop's thread instead of a worker thread
    (see :func:`action`)."""


_REGISTRY: dict[str, ActionSpec] = {}


class DuplicateActionError(ValueError):
    """Two functions registered the same action name."""


def action(
    name: str, *, timeout: float = 5.0, idempotent: bool = False, retries: int = 1, inline: bool = False
) -> Callable[[ActionFunc], ActionFunc]:
    """Register ``func`` as the custom action or tool ``name``.

    Example::

        @action("kb_search", timeout=2.0, idempotent=True, inline=True)
        def kb_search(ctx: ActionContext) -> list[Event]:
            return [SlotSet("kb_answer", lookup(ctx.slots["question"]))]

    Where it runs: an ``async def`` action runs on the server's event loop; a plain ``def``
    runs on a worker thread, so code that blocks (an HTTP call, a database write that may
    wait for a lock) never stalls the other conversations. ``inline=True`` runs a plain
    ``def`` on the event loop's thread too: for quick code that never waits (computation, an
    in-memory or local read-only lookup). It saves the two hand-overs between threads, which
    under load cost each call milliseconds of waiting for the GIL. An inline action cannot be
    stopped at its ``timeout``: when it returns later, its result is dropped and the call is a
    ``tool_timeout`` as on a thread, and one that holds the loop for longer than
    :data:`engine.actions.runner.INLINE_SLOW` is logged as a warning.
    """
    if timeout <= 0:
        raise ValueError(f"action {name!r}: timeout must be > 0 seconds, got {timeout}")

    def register(func: ActionFunc) -> ActionFunc:
        source = f"{func.__module__}:{getattr(func, '__qualname__', repr(func))}"
        if inline and inspect.iscoroutinefunction(func):
            raise ValueError(
                f"action {name!r} ({source}): inline=True is for plain functions; an async def "
                "action already runs on the event loop. Fix: remove inline=True."
            )
        existing = _REGISTRY.get(name)
        if existing is not None and existing.source != source:
            raise DuplicateActionError(
                f"action {name!r} is registered twice: {existing.source} and {source}. "
                "Fix: give one of them another name."
            )
        _REGISTRY[name] = ActionSpec(
            name, func, timeout, idempotent, retries if idempotent else 0, source, inline=inline
        )
        return func

    return register


def registered_actions() -> Mapping[str, ActionSpec]:
    """All actions registered so far, by name."""
    return MappingProxyType(_REGISTRY)


def discover_actions(project_dir: Path) -> Mapping[str, ActionSpec]:
    """Import the project's ``actions/`` package so its decorators run.

    The package is imported under its own name (``actions``) with the project directory
    put first on ``sys.path``, so actions can import their helper modules normally.
    """
    package_dir = project_dir / "actions"
    init = package_dir / "__init__.py"
    if not init.is_file():
        return registered_actions()
    root = str(project_dir.resolve())
    if root not in sys.path:
        sys.path.insert(0, root)
    module_name = "actions"
    loaded = sys.modules.get(module_name)
    if loaded is not None and Path(getattr(loaded, "__file__", "") or "").resolve() != init.resolve():
        # Another project's actions were imported before: forget them and this package's cache.
        for key in [k for k in sys.modules if k == module_name or k.startswith(module_name + ".")]:
            del sys.modules[key]
        _REGISTRY.clear()
    if module_name not in sys.modules:
        spec = importlib.util.spec_from_file_location(module_name, init, submodule_search_locations=[str(package_dir)])
        if spec is None or spec.loader is None:
            return registered_actions()
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
    return registered_actions()
