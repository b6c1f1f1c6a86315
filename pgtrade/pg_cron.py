"""Make pg_cron's launcher pick up the jobs a migration scheduled.

pg_cron 1.4 keeps the job list in the launcher's memory and reloads it when a relcache invalidation names
``cron.job`` (or on SIGHUP). A migration commits thousands of catalog invalidations at once (TimescaleDB, every
function, the api schema), more than PostgreSQL's shared invalidation queue holds (4096 messages). A launcher that
is not on a CPU while they are committed (a busy machine) falls behind and gets a cache *reset* instead of the
messages, and pg_cron 1.4.2's callback ignores a reset once it knows cron.job's oid: it keeps the job list it
loaded right after ``CREATE EXTENSION pg_cron`` (empty) and never runs the jobs until cron.job changes again or the
server reloads its configuration. Another change to cron.job right after the migration is not enough: a launcher
that has still not run when it commits skips it too (a reset moves the launcher to the end of the queue when the
launcher reads it, not when it happened). A SIGHUP is: pg_cron's handler marks the job list stale in the launcher
itself, and the launcher reloads it from the committed catalog whenever it next runs.
"""

from __future__ import annotations

import psycopg


def reload_jobs(conn: psycopg.Connection) -> str:
    """After a migration has committed: have pg_cron reload its job list (``pg_reload_conf()``, a SIGHUP; the
    settings themselves are unchanged). Only in the database pg_cron serves. Returns ``reloaded`` or ``not here``
    (pg_cron serves another database, or none). ``pgtrade.migrate.migrate`` calls it last, on its superuser
    connection (pg_reload_conf needs one), so every caller of migrate (the CLI, the docker entry point, the tests)
    gets it."""
    serves_here = conn.execute(
        "SELECT to_regclass('cron.job') IS NOT NULL"
        " AND current_setting('cron.database_name', true) = current_database()"
    ).fetchone()[0]
    if not serves_here:
        return "not here"
    conn.execute("SELECT pg_reload_conf()")
    return "reloaded"
