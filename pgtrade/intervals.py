"""The bar-interval catalog, read from the database (``market.intervals``) and cached per connection.

Interval codes and steps are defined once, in the database; Python asks for them instead of keeping a copy.
"""

from __future__ import annotations

import weakref
from datetime import timedelta

import psycopg

from .errors import PgtradeError

_CACHE: weakref.WeakKeyDictionary[psycopg.Connection, dict[str, timedelta]] = weakref.WeakKeyDictionary()


def interval_steps(conn: psycopg.Connection) -> dict[str, timedelta]:
    """Every interval code with its step, shortest first (read once per connection)."""
    steps = _CACHE.get(conn)
    if steps is None:
        with conn.cursor() as cur:
            steps = dict(cur.execute("SELECT code, step FROM market.intervals ORDER BY step").fetchall())
        _CACHE[conn] = steps
    return steps


def interval_step(conn: psycopg.Connection, code: str) -> timedelta:
    """The step of an interval code; a clear error naming the known codes for an unknown one."""
    steps = interval_steps(conn)
    if code not in steps:
        raise PgtradeError(f"unknown interval {code!r}; use one of: {', '.join(steps)}")
    return steps[code]
