"""Bring the container's cluster to the code's state before the server serves clients.

First start: initdb into $PGTRADE_HOME (a volume) with pgtrade's settings and $POSTGRES_PASSWORD. Every start:
run a server on the Unix socket only, create $POSTGRES_DB if missing, migrate it (so a rebuilt image brings its new
migrations to an old volume), set the passwords of the login roles other services use when those roles exist
(PostgREST's ``authenticator`` from $PGRST_AUTHENTICATOR_PASSWORD, postgres_exporter's ``pgtrade_monitor`` from
$PGTRADE_MONITOR_PASSWORD), and stop that server. entrypoint.sh then runs the real server in the foreground.
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys

import psycopg
from psycopg import sql

from pgtrade.cluster import default_cluster
from pgtrade.errors import PgtradeError
from pgtrade.migrate import migrate

# login role -> the variable its password comes from (migrate creates the roles; this never does)
LOGIN_ROLES = {"authenticator": "PGRST_AUTHENTICATOR_PASSWORD", "pgtrade_monitor": "PGTRADE_MONITOR_PASSWORD"}


def say(msg: str) -> None:
    print(f"pgtrade-db: {msg}", file=sys.stderr, flush=True)


def main() -> None:
    dbname = os.environ.get("POSTGRES_DB") or "pgtrade"
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,62}", dbname):
        raise PgtradeError(f"POSTGRES_DB must be a plain identifier (letters, digits, _), not {dbname!r}")
    cluster = dataclasses.replace(default_cluster(), dbname=dbname)
    if not cluster.initialized():
        password = os.environ.get("POSTGRES_PASSWORD")
        if not password:
            raise PgtradeError("set POSTGRES_PASSWORD: the first start creates the 'postgres' role with it")
        say(f"creating the cluster in {cluster.data_dir} (listen {cluster.listen}, port {cluster.port})")
        cluster.init(password=password)
    elif os.environ.get("POSTGRES_PASSWORD") and os.environ["POSTGRES_PASSWORD"] != cluster.password():
        say(
            "POSTGRES_PASSWORD differs from the one this volume was created with; the volume's password stays "
            "(change it with ALTER ROLE postgres PASSWORD ...)"
        )
    cluster.start(socket_only=True)
    try:
        cluster.create_database(cluster.socket_url("postgres"))
        with psycopg.connect(cluster.socket_url(), autocommit=True) as conn:
            report = migrate(conn)
            say(
                f"database {dbname}: migrations applied: {', '.join(report.applied) or 'none new'} "
                f"({report.already} already applied); {report.repeatable} repeatable files re-applied"
            )
            for role, variable in LOGIN_ROLES.items():
                set_login_password(conn, role, variable)
    finally:
        cluster.stop()


def set_login_password(conn: psycopg.Connection, role: str, variable: str) -> None:
    """Give the login ``role`` (created by a migration) its password from the environment variable ``variable``."""
    exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
    password = os.environ.get(variable)
    if not exists:
        if password:
            say(f"no role {role} yet (a migration creates it): its service cannot log in until it exists")
        return
    if not password:
        say(f"{variable} is not set: role {role} keeps its password")
        return
    conn.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(role), sql.Literal(password)))
    say(f"password of role {role} set from {variable}")


if __name__ == "__main__":
    try:
        main()
    except (PgtradeError, psycopg.Error) as exc:
        say(f"error: {str(exc).strip()}")
        sys.exit(1)
