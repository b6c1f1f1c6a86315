"""A canary for SQL injection that survives a rollback: the injected text takes a session-level advisory lock.

A check such as ``to_regclass('trading.orders') IS NOT NULL`` after ``'); DROP TABLE trading.orders; --`` proves
nothing when the request ran in a savepoint that was rolled back, or as a role that may not drop the table. A
session-level advisory lock is neither undone by a rollback nor guarded by a privilege: if any of these strings were
ever executed as SQL instead of stored as data, the session would still hold the lock afterwards.
"""

from __future__ import annotations

import psycopg

KEY = 7_041_977  # the advisory lock key the canaries take

# the same call, closing each quoting context a careless format() / concatenation could leave open
CANARIES = [
    f"'); SELECT pg_advisory_lock({KEY}); --",
    f"' || pg_advisory_lock({KEY}) || '",
    f"$$; SELECT pg_advisory_lock({KEY}); $$",
    f'"; SELECT pg_advisory_lock({KEY}); --',
    f"x'; SELECT pg_advisory_lock({KEY}); --",
]


def fired(conn: psycopg.Connection) -> bool:
    """True when this session holds the canary's lock, i.e. an injected string was executed."""
    return conn.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
        " AND objid = %s AND granted)",
        (KEY,),
    ).fetchone()[0]


def release(conn: psycopg.Connection) -> None:
    conn.execute("SELECT pg_advisory_unlock_all()")
