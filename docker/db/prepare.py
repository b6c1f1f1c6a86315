"""Bring the container's cluster to the code's state before the server serves clients.

First start: initdb into $PGTRADE_HOME (a volume) with pgtrade's settings and $POSTGRES_PASSWORD. Every start:
run a server on the Unix socket only, create $POSTGRES_DB if missing, migrate it (so a rebuilt image brings its new
migrations to an old volume), set the PostgREST login role's password from $PGRST_AUTHENTICATOR_PASSWORD when that
role exists, and stop that server. entrypoint.sh then runs the real server in the foreground.
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

LOGIN_ROLE = "authenticator"


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
            set_login_password(conn)
    finally:
        cluster.stop()


def set_login_password(conn: psycopg.Connection) -> None:
    """PostgREST logs in as ``authenticator`` (a migration creates it); give it its password from the env."""
    exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (LOGIN_ROLE,)).fetchone()
    password = os.environ.get("PGRST_AUTHENTICATOR_PASSWORD")
    if not exists:
        if password:
            say(f"no role {LOGIN_ROLE} yet (a migration creates it): PostgREST cannot log in until it exists")
        return
    if not password:
        say(f"PGRST_AUTHENTICATOR_PASSWORD is not set: role {LOGIN_ROLE} keeps its password")
        return
    conn.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(LOGIN_ROLE), sql.Literal(password)))
    say(f"password of role {LOGIN_ROLE} set from PGRST_AUTHENTICATOR_PASSWORD")


if __name__ == "__main__":
    try:
        main()
    except (PgtradeError, psycopg.Error) as exc:
        say(f"error: {str(exc).strip()}")
        sys.exit(1)
