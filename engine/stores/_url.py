"""``open_store(url)``: a tracker store from a URL, with errors that show the valid forms."""

from __future__ import annotations

import re
from urllib.parse import SplitResult, parse_qsl, urlencode, urlsplit, urlunsplit

from engine.stores.base import StoreConfigError, TrackerStore, did_you_mean

SCHEMES = ("memory", "sqlite", "redis", "rediss", "redis+cluster", "rediss+cluster", "postgresql", "postgres")
_REDIS_OPTIONS = ("prefix", "lock_ttl")


def open_store(url: str) -> TrackerStore:
    """Open the tracker store a URL names; network stores connect on first use.

    Forms: ``memory://``, ``sqlite:///absolute/path.db``, ``sqlite://relative/path.db``,
    ``redis://host:port/db?prefix=taiwa:&lock_ttl=30`` (``rediss://`` for TLS;
    ``redis+cluster://host:port`` for any node of a Redis Cluster) and
    ``postgresql://user@host:port/db?table=taiwa_events`` (other query parameters, such as
    ``sslmode``, go to libpq).

    Raises:
        StoreConfigError: the URL is malformed, names an unknown scheme, or the client
            library its store needs is not installed.
    """
    shown = _redact(url)
    if "://" not in url:
        raise StoreConfigError(shown, "a store URL starts with a scheme and '://'", fix=_no_scheme_fix(url))
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise StoreConfigError(shown, f"it does not parse as a URL ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme == "memory":
        return _memory(shown, parts)
    if scheme == "sqlite":
        return _sqlite(shown, parts)
    if scheme in ("redis", "rediss", "redis+cluster", "rediss+cluster"):
        return _redis(shown, parts)
    if scheme in ("postgresql", "postgres"):
        return _postgres(shown, parts)
    raise StoreConfigError(
        shown,
        f"unknown scheme {parts.scheme!r}.{did_you_mean(scheme, SCHEMES)}",
        scheme=parts.scheme,
        fix=f"use one of the schemes {', '.join(s + '://' for s in SCHEMES)}",
    )


def _memory(shown: str, parts: SplitResult) -> TrackerStore:
    if parts.netloc or parts.path or parts.query:
        raise StoreConfigError(
            shown, "memory:// takes no host, path or options", scheme="memory", fix="write memory://"
        )
    from engine.stores.memory import InMemoryTrackerStore

    return InMemoryTrackerStore()


def _sqlite(shown: str, parts: SplitResult) -> TrackerStore:
    # sqlite:///abs/file.db -> /abs/file.db; sqlite://rel/file.db -> rel/file.db (netloc + path).
    path = parts.netloc + parts.path
    if parts.query:
        raise StoreConfigError(shown, "sqlite:// takes no options", scheme="sqlite", fix="remove the '?...' part")
    if not path or path.endswith("/"):
        raise StoreConfigError(
            shown,
            "sqlite:// needs the path of a database file",
            scheme="sqlite",
            fix="write sqlite:///absolute/path/taiwa.db or sqlite://relative/path/taiwa.db",
        )
    from engine.stores.sqlite import SQLiteTrackerStore

    return SQLiteTrackerStore(path)


def _redis(shown: str, parts: SplitResult) -> TrackerStore:
    options = dict(parse_qsl(parts.query, keep_blank_values=True))
    unknown = sorted(set(options) - set(_REDIS_OPTIONS))
    if unknown:
        raise StoreConfigError(
            shown,
            f"unknown option(s) {', '.join(unknown)}.{did_you_mean(unknown[0], _REDIS_OPTIONS)}",
            scheme=parts.scheme,
            fix=f"redis:// accepts {', '.join(_REDIS_OPTIONS)}",
        )
    _check_host(shown, parts)
    if parts.path not in ("", "/") and not re.fullmatch(r"/\d+", parts.path):
        raise StoreConfigError(
            shown, f"the database {parts.path[1:]!r} is not a number", scheme=parts.scheme, fix="write e.g. /0"
        )
    if parts.scheme.lower().endswith("+cluster") and parts.path not in ("", "/", "/0"):
        raise StoreConfigError(
            shown,
            f"a Redis Cluster has only database 0, not {parts.path[1:]}",
            scheme=parts.scheme,
            fix="leave the database out (redis+cluster://host:port), and use ?prefix= to keep deployments apart",
        )
    lock_ttl = _positive(shown, parts.scheme, "lock_ttl", options["lock_ttl"]) if "lock_ttl" in options else None
    try:
        from engine.stores.redis import DEFAULT_LOCK_TTL, DEFAULT_PREFIX, RedisTrackerStore
    except ImportError as exc:
        raise _missing(shown, parts.scheme, "redis>=5", exc) from None
    return RedisTrackerStore(
        urlunsplit(parts._replace(query="")),
        prefix=options.get("prefix", DEFAULT_PREFIX),
        lock_ttl=lock_ttl or DEFAULT_LOCK_TTL,
    )


def _postgres(shown: str, parts: SplitResult) -> TrackerStore:
    options = parse_qsl(parts.query, keep_blank_values=True)
    table = [value for key, value in options if key == "table"]
    libpq = [(key, value) for key, value in options if key != "table"]
    _check_host(shown, parts)
    try:
        from engine.stores.postgres import DEFAULT_TABLE, PostgresTrackerStore, parse_table
    except ImportError as exc:
        raise _missing(shown, parts.scheme, "psycopg[binary,pool]>=3.2", exc) from None
    name = table[-1] if table else DEFAULT_TABLE
    try:
        parse_table(name)
    except ValueError as exc:
        raise StoreConfigError(shown, str(exc), scheme=parts.scheme, fix="e.g. ?table=taiwa_events") from None
    conninfo = urlunsplit(parts._replace(scheme="postgresql", query=urlencode(libpq)))
    return PostgresTrackerStore(conninfo, table=name)


def _check_host(shown: str, parts: SplitResult) -> None:
    try:
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise StoreConfigError(
            shown,
            "the port is not a number from 0 to 65535",
            scheme=parts.scheme,
            fix="write host:port, e.g. 127.0.0.1:6379",
        ) from None
    if not parts.hostname:
        raise StoreConfigError(
            shown, "the URL names no host", scheme=parts.scheme, fix="write e.g. 127.0.0.1 after '://'"
        )


def _positive(shown: str, scheme: str, name: str, value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if not number > 0:
        raise StoreConfigError(shown, f"{name}={value!r} is not a positive number of seconds", scheme=scheme)
    return number


def _missing(shown: str, scheme: str, requirement: str, exc: ImportError) -> StoreConfigError:
    return StoreConfigError(
        shown,
        f"{scheme}:// needs a package that is not installed ({exc})",
        scheme=scheme,
        fix=f"pip install '{requirement}'",
    )


def _no_scheme_fix(url: str) -> str:
    if url.endswith((".db", ".sqlite", ".sqlite3")):
        return f"for a SQLite file write sqlite:///{url.lstrip('/')} (absolute) or sqlite://{url} (relative)"
    return "prefix the URL with its scheme"


def _redact(url: str) -> str:
    """The URL without its password, for messages."""
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)
