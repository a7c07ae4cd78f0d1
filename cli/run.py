"""``taiwa run``: serve the trained assistant over HTTP (Sanic): channels and the API."""

from __future__ import annotations

import argparse
import gc
import logging
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

from cli._common import add_project_option, check_project_dir, usage_error
from engine import structured_logs
from engine.diagnostics import EngineError, ProjectError


def add_parser(sub: Any) -> None:
    parser = sub.add_parser(
        "run",
        help="serve the assistant over HTTP (channels, API)",
        description=(
            "Serve the trained assistant: the REST channel (Rasa-compatible), every channel whose "
            "credentials are set, and the HTTP API (token in TAIWA_API_TOKEN or JWTs with TAIWA_JWT_SECRET)."
        ),
        epilog=(
            "examples:\n"
            "  taiwa run --project my-bot\n"
            "  TAIWA_API_TOKEN=secret taiwa run --port 5005 --workers 2\n"
            '  curl -s localhost:5005/webhooks/rest/webhook -d \'{"sender": "me", "message": "hi"}\''
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_project_option(parser)
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=5005, help="port (default: 5005)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (default: 1)")
    parser.add_argument("--model", type=Path, help="model folder (default: PROJECT/models, the latest)")
    parser.add_argument("--store", metavar="URL", help="tracker store URL (default: TAIWA_TRACKER_STORE or SQLite)")
    parser.add_argument(
        "--env-file", type=Path, help="read environment variables from this file (default: PROJECT/.env)"
    )
    parser.add_argument(
        "--log-format",
        help="json (one object per line), text, or auto: text on a terminal, else json "
        f"(default: {structured_logs.FORMAT_ENV} or auto)",
    )
    parser.add_argument(
        "--log-level",
        help=f"debug, info (a line per turn and per tool call), warning or error (default: {structured_logs.LEVEL_ENV} or info)",
    )
    parser.set_defaults(run=run)


def load_env_file(path: Path) -> dict[str, str]:
    """``KEY=value`` lines (``#`` comments, optional quotes); the real environment wins."""
    values: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.removeprefix("export ").partition("=")
        if not sep or not key.strip().isidentifier():
            raise ValueError(f"{path}:{number}: expected KEY=value, got {line[:40]!r}")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values


def run(args: argparse.Namespace) -> int:
    bad = check_project_dir(args.project)
    if bad is not None:
        return bad
    if not 0 < args.port < 65536:
        return usage_error(f"--port {args.port} is not a port number", "use 1-65535")
    if args.workers < 1:
        return usage_error("--workers must be at least 1")
    env_file = args.env_file or (args.project / ".env")
    env = dict(os.environ)
    if env_file.is_file():
        try:
            env = {**load_env_file(env_file), **os.environ}
        except ValueError as exc:
            return usage_error(str(exc), "write one KEY=value per line")
    elif args.env_file is not None:
        return usage_error(f"--env-file {args.env_file} does not exist")
    os.environ.update(env)  # workers are separate processes: they read it from here
    log_format = (args.log_format or env.get(structured_logs.FORMAT_ENV) or "auto").lower()
    log_level = (args.log_level or env.get(structured_logs.LEVEL_ENV) or "info").lower()
    try:
        structured_logs.configure(log_format, log_level)
    except ValueError as exc:
        return usage_error(
            str(exc),
            f"pass --log-format {'|'.join(structured_logs.FORMATS)} and --log-level {'|'.join(structured_logs.LEVELS)}",
        )
    args.log_format, args.log_level = log_format, log_level
    metrics_dir = _metrics_dir(args.workers)
    try:
        return _serve(args, env)
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def _serve(args: argparse.Namespace, env: dict[str, str]) -> int:

    from sanic import Sanic

    from engine.loading.project import load_project_or_raise
    from engine.nlu.artifact import load_model
    from engine.policies.config import with_learned_threshold
    from engine.server.app import ServerSettings, create_app

    try:
        project = load_project_or_raise(args.project)
        nlu = load_model(args.model or args.project / "models")
        with_learned_threshold(project.policies, nlu.card, nlu.model_id)  # before any worker starts
    except ProjectError as exc:
        sys.stderr.write(str(exc) + "\nFix: run `taiwa validate` and correct the errors it lists.\n")
        return 1
    except EngineError as exc:
        text = str(exc)
        return usage_error(text.split(" Fix: ")[0], text.split(" Fix: ", 1)[1] if " Fix: " in text else None)

    # The project and model loaded above serve every worker: one worker runs in this process;
    # several are forked from it after the load, so they start at once and share the
    # model's memory (copy-on-write) instead of each importing and loading everything again.
    settings = ServerSettings(
        args.project.resolve(), args.model, args.store, env, loaded=project, nlu=nlu, workers=args.workers
    )
    try:
        # Built here once: one worker serves in this process; several are forked from it and
        # serve this same app (no worker imports or builds anything again).
        app = create_app(settings)
    except ValueError as exc:  # a malformed setting in the environment (TAIWA_RATE_LIMIT, ...)
        return usage_error(str(exc), "correct the variable in the environment or the .env file")
    # Sanic installed its own log handlers when the app was built: route its records through
    # ours again, now with the revisions of what was loaded on every line.
    from engine.dialogue.assistant import loaded_revisions

    static = structured_logs.revision_fields(nlu.model_id, loaded_revisions(project))
    structured_logs.configure(args.log_format, args.log_level, static=static)
    names = ", ".join(app.ctx.channel_names)
    print(f"taiwa {args.project.resolve().name}: http://{args.host}:{args.port} · channels: {names}", flush=True)
    logging.getLogger("taiwa.server").info(
        "serving",
        extra={"host": args.host, "port": args.port, "workers": args.workers, "channels": list(app.ctx.channel_names)},
    )
    options: dict[str, Any] = {"host": args.host, "port": args.port, "motd": False, "access_log": False}
    if args.workers == 1:
        app.prepare(single_process=True, **options)
        Sanic.serve_single(primary=app)
    else:
        Sanic.start_method = "fork"
        app.register_listener(_stop_only_once_workers_are_up, "main_process_ready")
        app.prepare(workers=args.workers, **options)
        # Long-lived objects out of the collector's generations before the fork: a collection
        # in a worker would otherwise touch, and so copy, every page they share.
        gc.collect()
        gc.freeze()
        # Sanic's state-sharing process (a multiprocessing manager, forked first) ignores SIGINT
        # but not SIGTERM: a SIGTERM to the whole process group (systemd's default, a test's
        # killpg) during startup killed it, the workers lost it and Sanic SIGKILLed the group.
        # Started with SIGTERM ignored, it lives until the manager shuts it down; the main
        # process's own handlers are installed by Sanic right after.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        Sanic.serve(primary=app)
    return 0


def _stop_only_once_workers_are_up(app: Any) -> None:
    """Sanic's worker manager, stopped (SIGTERM, Ctrl-C) while it waits for its workers to report
    ready, keeps waiting for reports that never come: 30 s, then exit 1, though a worker may
    already have answered requests. Here such a signal is held until every worker is up, then
    handled as usual (the workers finish their turns in flight and the server exits 0)."""
    manager = app.manager
    held: list[int] = []
    workers_up = False
    wait_for_workers = manager.wait_for_ack
    main_pid = os.getpid()

    def on_signal(signum: int, frame: Any) -> None:
        if os.getpid() != main_pid:
            return  # a worker not yet past its own setup: the main process stops it
        if workers_up:
            manager.shutdown_signal(signum, frame)
        elif not held:
            held.append(signum)
            logging.getLogger("taiwa.server").info("stopping once the workers are up")

    def wait_then_stop_if_asked() -> None:
        nonlocal workers_up
        wait_for_workers()
        workers_up = True
        if held:
            manager.shutdown_signal(held[0], None)

    manager.wait_for_ack = wait_then_stop_if_asked
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)


def _metrics_dir(workers: int) -> Path | None:
    """Several workers answer /metrics in turn: they must count in shared files (prometheus-client's
    multiprocess mode), set up before any worker starts. Returns the folder to remove at exit."""
    if workers < 2 or os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return None
    folder = Path(tempfile.mkdtemp(prefix="taiwa-metrics-"))
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(folder)
    return folder
