"""Structured logs: one JSON object per line, each with the context an operator filters on.

A record logged while a turn runs carries the turn's ``session_id``, ``turn_id`` and the
``node`` it is in (``IR``, ``ST``, ``DM``, ``EXEC``), from a context variable the message
processor sets (stamped on the record when it is created), so a warning deep in an action
needs no ids passed down to it. Fields given with ``extra=`` (``tool_name``, ``error_type``,
``outcome``, ``latency_ms``, ...) become keys; a record with an exception gets its
``error_type`` and the traceback. Every line also names
what was loaded, the revisions an incident is tied to a deployment by: ``model_revision``,
``prompt_revision``, ``workflow_revision`` (flows) and ``config_revision`` (all the
assistant's files).

``taiwa run --log-format json|text|auto`` (``TAIWA_LOG_FORMAT``) and ``--log-level``
(``TAIWA_LOG_LEVEL``) choose the format and the level; ``auto`` is text on a terminal and
JSON otherwise (a container, a pipe, systemd).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Mapping
from contextvars import ContextVar, Token
from dataclasses import dataclass
from typing import Any, TextIO

FORMATS = ("auto", "json", "text")
LEVELS = ("debug", "info", "warning", "error")
FORMAT_ENV = "TAIWA_LOG_FORMAT"
LEVEL_ENV = "TAIWA_LOG_LEVEL"

SANIC_LOGGERS = ("sanic.root", "sanic.error", "sanic.server", "sanic.websockets", "sanic.access")

_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}
"""Attributes every LogRecord has; any other attribute came from ``extra=``."""


@dataclass(slots=True)
class TurnContext:
    """The turn a record belongs to (mutable: the processor moves ``node`` along)."""

    session_id: str
    turn_id: str
    node: str | None = None


_turn: ContextVar[TurnContext | None] = ContextVar("taiwa_turn", default=None)


def enter_turn(session_id: str, turn_id: str) -> tuple[TurnContext, Token[TurnContext | None]]:
    """Mark the records logged from here on (in this task) as this turn's; undo with ``leave_turn``."""
    context = TurnContext(session_id, turn_id)
    return context, _turn.set(context)


def leave_turn(token: Token[TurnContext | None]) -> None:
    _turn.reset(token)


def current_turn() -> TurnContext | None:
    return _turn.get()


def revision_fields(model_id: str, revisions: Mapping[str, str]) -> dict[str, str]:
    """The revisions every line carries, from the model id and ``Project.revisions``."""
    fields = {"model_revision": model_id}
    for key, name in (("prompt", "prompt_revision"), ("flows", "workflow_revision"), ("config", "config_revision")):
        if key in revisions:
            fields[name] = revisions[key]
    return fields


_base_factory = logging.getLogRecordFactory()


def _record_with_turn(*args: Any, **kwargs: Any) -> logging.LogRecord:
    record = _base_factory(*args, **kwargs)
    turn = _turn.get()
    if turn is not None:
        # A private name: a caller's own ``extra={"session_id": ...}`` must not collide.
        record._taiwa_turn = (turn.session_id, turn.turn_id, turn.node)
    return record


def stamp_turn_context() -> None:
    """Give every record created during a turn its ``session_id``, ``turn_id`` and ``node``,
    when it is created: a handler that formats it later (a queue, pytest's caplog) sees the
    turn it came from. Idempotent; :func:`configure` calls it."""
    if logging.getLogRecordFactory() is not _record_with_turn:
        logging.setLogRecordFactory(_record_with_turn)


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    """The record's turn context and its ``extra=`` fields."""
    out: dict[str, Any] = {}
    turn: tuple[str, str, str | None] | None = getattr(record, "_taiwa_turn", None)
    if turn is not None:
        out["session_id"], out["turn_id"] = turn[0], turn[1]
        if turn[2] is not None:
            out["node"] = turn[2]
    for key, value in record.__dict__.items():
        if key not in _STANDARD and not key.startswith("_"):
            out[key] = value
    if record.exc_info and record.exc_info[1] is not None:
        out.setdefault("error_type", type(record.exc_info[1]).__name__)
    return out


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ``ts`` (UTC, ISO 8601), ``level``, ``logger``, ``message``,
    ``pid``, the turn context, the ``extra=`` fields, ``exception`` and the revisions."""

    def __init__(self, static: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self.static = dict(static or {})

    _second: tuple[int, str] = (-1, "")
    """The last whole second formatted (records come many per second)."""

    def format(self, record: logging.LogRecord) -> str:
        whole = int(record.created)
        if whole != self._second[0]:
            self._second = (whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)))
        out: dict[str, Any] = {
            "ts": f"{self._second[1]}.{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        out.update(_fields(record))
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        for key, value in self.static.items():
            out.setdefault(key, value)
        return json.dumps(out, ensure_ascii=False, default=str, separators=(",", ":"))


class TextFormatter(logging.Formatter):
    """``time level logger message key=value ...`` for a person at a terminal."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = {k: v for k, v in _fields(record).items() if k != "error_type" or not record.exc_info}
        if not fields:
            return line
        head, sep, trace = line.partition("\n")
        pairs = " ".join(f"{k}={v}" for k, v in fields.items())
        return f"{head} {pairs}{sep}{trace}"


_HANDLER_MARK = "_taiwa_handler"


def configure(
    fmt: str = "auto",
    level: str = "info",
    *,
    static: Mapping[str, Any] | None = None,
    stream: TextIO | None = None,
) -> logging.Handler:
    """Send taiwa's, Sanic's and Python's warnings to ``stream`` (stderr) in ``fmt``.

    ``taiwa.*`` and ``sanic.*`` log at ``level``; other libraries at warning and above.
    Calling it again replaces the handler it installed (nothing is logged twice).
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown log format {fmt!r}; use one of {', '.join(FORMATS)}")
    if level.lower() not in LEVELS:
        raise ValueError(f"unknown log level {level!r}; use one of {', '.join(LEVELS)}")
    out = stream if stream is not None else sys.stderr
    if fmt == "auto":
        fmt = "text" if out.isatty() else "json"
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter(static) if fmt == "json" else TextFormatter())
    setattr(handler, _HANDLER_MARK, True)
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    number = getattr(logging, level.upper())
    logging.getLogger("taiwa").setLevel(number)
    for name in SANIC_LOGGERS:
        # Sanic installs its own handlers (colored text on stdout); its records go through ours.
        sanic_logger = logging.getLogger(name)
        sanic_logger.handlers.clear()
        sanic_logger.propagate = True
        sanic_logger.setLevel(number)
    logging.captureWarnings(True)
    stamp_turn_context()
    # No line shows the caller's file and line: skip the stack walk that finds them on every
    # record (the logging HOWTO's "Optimization" section).
    logging._srcfile = None
    return handler
