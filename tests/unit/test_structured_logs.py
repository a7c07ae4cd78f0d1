"""Structured logs: JSON lines with the turn's context, extras, errors and revisions."""

from __future__ import annotations

import io
import json
import logging
import warnings
from collections.abc import Iterator

import pytest

from engine import structured_logs
from engine.structured_logs import JsonFormatter, TextFormatter, configure, enter_turn, leave_turn


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """configure() changes process-wide logging: put it back after the test."""
    root = logging.getLogger()
    saved_root = (list(root.handlers), root.level)
    taiwa = logging.getLogger("taiwa")
    saved_taiwa = taiwa.level
    sanic = {
        name: (list(logging.getLogger(name).handlers), logging.getLogger(name).propagate, logging.getLogger(name).level)
        for name in structured_logs.SANIC_LOGGERS
    }
    factory = logging.getLogRecordFactory()
    srcfile = logging._srcfile  # type: ignore[attr-defined]
    yield
    logging._srcfile = srcfile  # type: ignore[attr-defined]
    root.handlers[:] = saved_root[0]
    root.setLevel(saved_root[1])
    taiwa.setLevel(saved_taiwa)
    for name, (handlers, propagate, level) in sanic.items():
        lg = logging.getLogger(name)
        lg.handlers[:] = handlers
        lg.propagate = propagate
        lg.setLevel(level)
    logging.setLogRecordFactory(factory)
    logging.captureWarnings(False)


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_turns_records_carry_its_ids_and_node_and_others_do_not(restore_logging: None) -> None:
    out = io.StringIO()
    configure("json", "info", static={"model_revision": "nlu-1", "config_revision": "abc"}, stream=out)
    log = logging.getLogger("taiwa.test")
    context, token = enter_turn("user-7", "t-42")
    context.node = "EXEC"
    log.warning("tool failed", extra={"tool_name": "crm_lookup", "error_type": "tool_timeout", "latency_ms": 12.5})
    leave_turn(token)
    log.info("after the turn")
    first, second = lines(out)
    assert first["session_id"] == "user-7" and first["turn_id"] == "t-42" and first["node"] == "EXEC"
    assert first["tool_name"] == "crm_lookup" and first["error_type"] == "tool_timeout"
    assert first["latency_ms"] == 12.5
    assert first["level"] == "warning" and first["logger"] == "taiwa.test" and first["message"] == "tool failed"
    assert first["model_revision"] == "nlu-1" and first["config_revision"] == "abc"
    assert str(first["ts"]).endswith("Z") and isinstance(first["pid"], int)
    assert "session_id" not in second and "turn_id" not in second
    assert second["message"] == "after the turn"


def test_the_context_is_stamped_when_the_record_is_made_not_when_it_is_written(restore_logging: None) -> None:
    # A handler that formats later (a queue, a buffer) must still see the turn, and the node
    # the turn was in at that moment.
    structured_logs.stamp_turn_context()
    kept: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            kept.append(record)

    log = logging.getLogger("taiwa.kept")
    log.addHandler(keep := Keep())
    log.setLevel(logging.INFO)
    try:
        context, token = enter_turn("s", "t")
        context.node = "IR"
        log.info("reading")
        context.node = "DM"
        leave_turn(token)
    finally:
        log.removeHandler(keep)
    fields = json.loads(JsonFormatter().format(kept[0]))
    assert (fields["session_id"], fields["turn_id"], fields["node"]) == ("s", "t", "IR")


def test_a_callers_own_session_id_neither_collides_nor_is_overwritten(restore_logging: None) -> None:
    out = io.StringIO()
    configure("json", "info", stream=out)
    _, token = enter_turn("from-context", "t")
    # logging refuses an extra= key the record already has: the context must not take the name.
    logging.getLogger("taiwa.x").warning("channel reply failed", extra={"session_id": "from-caller"})
    leave_turn(token)
    assert lines(out)[0]["session_id"] == "from-caller"


def test_an_exception_gives_its_type_and_traceback(restore_logging: None) -> None:
    out = io.StringIO()
    configure("json", "info", stream=out)
    try:
        raise ConnectionResetError("peer went away")
    except ConnectionResetError:
        logging.getLogger("taiwa.x").exception("reply failed")
    (line,) = lines(out)
    assert line["error_type"] == "ConnectionResetError"
    assert "Traceback" in str(line["exception"]) and "peer went away" in str(line["exception"])


def test_values_json_cannot_hold_are_written_as_text(restore_logging: None) -> None:
    out = io.StringIO()
    configure("json", "info", stream=out)
    logging.getLogger("taiwa.x").info("odd", extra={"path": io.StringIO, "names": frozenset({"a"})})
    (line,) = lines(out)
    assert "StringIO" in str(line["path"]) and "a" in str(line["names"])


def test_configure_again_replaces_its_handler_and_routes_sanic_and_warnings(restore_logging: None) -> None:
    first, second = io.StringIO(), io.StringIO()
    configure("json", "info", stream=first)
    logging.getLogger("sanic.server").addHandler(logging.StreamHandler(io.StringIO()))  # as Sanic does
    configure("json", "info", stream=second)
    logging.getLogger("sanic.server").info("Worker ready [1]")
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("an old option", DeprecationWarning, stacklevel=1)
    assert first.getvalue() == ""
    records = lines(second)
    assert [r["logger"] for r in records] == ["sanic.server", "py.warnings"]
    assert "an old option" in str(records[1]["message"])


def test_the_level_filters_taiwas_records(restore_logging: None) -> None:
    out = io.StringIO()
    configure("json", "warning", stream=out)
    logging.getLogger("taiwa.turn").info("turn")
    logging.getLogger("taiwa.turn").warning("slow")
    assert [r["message"] for r in lines(out)] == ["slow"]


def test_auto_is_json_off_a_terminal(restore_logging: None) -> None:
    out = io.StringIO()  # not a TTY, as in a container or under systemd
    configure("auto", "info", stream=out)
    logging.getLogger("taiwa.x").info("hello")
    assert lines(out)[0]["message"] == "hello"


def test_text_format_puts_the_fields_after_the_message(restore_logging: None) -> None:
    record = logging.LogRecord("taiwa.dialogue", logging.INFO, __file__, 1, "tool called", (), None)
    record.tool_name = "kb_search"
    record.outcome = "ok"
    line = TextFormatter().format(record)
    assert line.endswith("INFO    taiwa.dialogue tool called tool_name=kb_search outcome=ok")


@pytest.mark.parametrize(("fmt", "level"), [("yaml", "info"), ("json", "loud")])
def test_unknown_format_or_level_is_refused_with_the_choices(fmt: str, level: str) -> None:
    with pytest.raises(ValueError, match="use one of"):
        configure(fmt, level, stream=io.StringIO())
