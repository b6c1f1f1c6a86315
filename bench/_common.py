"""What the benchmarks share: the server to use, a scratch database migrated from db/, machine facts, percentiles."""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from pgtrade.db import database_url  # noqa: E402
from pgtrade.migrate import migrate  # noqa: E402


def with_db(url: str, dbname: str) -> str:
    """The same server and credentials, another database."""
    info = psycopg.conninfo.conninfo_to_dict(url) | {"dbname": dbname}
    return psycopg.conninfo.make_conninfo(**info)


def machine() -> dict:
    with psycopg.connect(database_url()) as conn:
        server = conn.execute("SHOW server_version").fetchone()[0]
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "server": server,
        "loadavg_at_start": os.getloadavg(),
    }


@contextmanager
def scratch_database(name: str, *, keep: bool = False) -> Iterator[str]:
    """A fresh database ``name`` on the server of ``pgtrade db url`` / $PGTRADE_DATABASE_URL (a superuser URL),
    migrated from db/; dropped afterwards unless ``keep``. Yields its URL."""
    admin = database_url()
    drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(drop)
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = with_db(admin, name)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            migrate(conn)
        yield url
    finally:
        if not keep:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(drop)


def pct(values: list[float], p: float) -> float:
    """The p-th percentile (nearest rank on the sorted values)."""
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(p / 100 * (len(s) - 1))))]
