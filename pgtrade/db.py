"""Which database every command talks to, and connecting to it with one clear error when it cannot."""

from __future__ import annotations

import os

import psycopg

from .cluster import default_cluster
from .errors import DatabaseUnavailable

ENV_URL = "PGTRADE_DATABASE_URL"


def database_url() -> str:
    """``$PGTRADE_DATABASE_URL`` when set (never start a server then), else the local cluster's URL."""
    return os.environ.get(ENV_URL) or default_cluster().url()


def external_server() -> bool:
    return bool(os.environ.get(ENV_URL))


def connect(url: str | None = None, *, autocommit: bool = False, **kwargs) -> psycopg.Connection:
    url = url or database_url()
    try:
        return psycopg.connect(url, autocommit=autocommit, connect_timeout=5, **kwargs)
    except psycopg.OperationalError as exc:
        reason = _connect_failure(str(exc))
        hint = "" if external_server() else " (start it: pgtrade db up)"
        raise DatabaseUnavailable(f"cannot connect to the database at {redact(url)}: {reason}{hint}") from exc


def _connect_failure(message: str) -> str:
    """The reason in libpq's connection error, e.g. 'Connection refused' or 'password authentication failed'."""
    lines = [ln.strip() for ln in message.strip().splitlines() if ln.strip()]
    if not lines:
        return "connection failed"
    first = lines[0]
    return first.rsplit("failed: ", 1)[-1] if "failed: " in first else first


def redact(url: str) -> str:
    """The URL without its password, for messages and logs."""
    try:
        info = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "<unparseable database URL>"
    host = info.get("host", "localhost")
    return f"postgresql://{info.get('user', '')}@{host}:{info.get('port', 5432)}/{info.get('dbname', '')}"
