"""What PostgREST (v12) does with the impersonated role's own settings: it reads them (ALTER ROLE ... SET, from
pg_db_role_setting, for this database or all databases; a database-specific one wins) and applies each as a
transaction-scoped setting (set_config(name, value, true)) right after switching to the role. SET ROLE alone
applies none of them. The request harnesses of tests/test_api.py and tests/test_privileges.py use this."""

from __future__ import annotations

import psycopg


def role_settings(conn: psycopg.Connection, role: str) -> dict[str, str]:
    rows = conn.execute(
        """SELECT c FROM pg_db_role_setting d JOIN pg_roles r ON r.oid = d.setrole, unnest(d.setconfig) c
           WHERE r.rolname = %s
             AND d.setdatabase IN (0, (SELECT oid FROM pg_database WHERE datname = current_database()))
           ORDER BY d.setdatabase""",
        (role,),
    ).fetchall()
    return dict(c.split("=", 1) for (c,) in rows)


def apply_role_settings(conn: psycopg.Connection, settings: dict[str, str]) -> None:
    for name, value in settings.items():
        conn.execute("SELECT set_config(%s, %s, true)", (name, value))
