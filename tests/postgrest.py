"""What PostgREST (v12) does with the impersonated role's own settings: it reads them (ALTER ROLE ... SET, from
pg_db_role_setting, for this database or all databases; a database-specific one wins) and applies each as a
transaction-scoped setting (set_config(name, value, true)) right after switching to the role. SET ROLE alone
applies none of them. Also how each request's transaction begins (``begin_request``) and the HTTP status PostgREST
answers for an SQLSTATE (``postgrest_status``). The request harnesses of tests/test_api.py, tests/test_privileges.py
and the API load (tests/load_support.py) use this."""

from __future__ import annotations

import json

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


def begin_request(conn: psycopg.Connection, role: str, claims: dict, settings: dict[str, str]) -> None:
    """What PostgREST runs first inside each request's transaction, in one statement: switch to the request's role
    (``set_config('role', ..., true)``, i.e. ``SET LOCAL ROLE``), put the JWT claims in ``request.jwt.claims``, and
    apply the role's own settings (read once with ``role_settings``, as PostgREST reads them with its schema cache)."""
    conn.execute(
        "SELECT set_config('role', %s, true), set_config('request.jwt.claims', %s, true)"
        + ", set_config(%s, %s, true)" * len(settings),
        (role, json.dumps(claims), *[x for kv in settings.items() for x in kv]),
    )


def postgrest_status(sqlstate: str, authenticated: bool) -> int:
    """HTTP status PostgREST answers for an SQLSTATE: the table "HTTP Status Codes" in PostgREST's docs
    (docs/references/errors.rst, https://docs.postgrest.org/en/v12/references/errors.html#http-status-codes),
    checked in order, exact codes before their class."""
    exact = {
        "23503": 409,
        "23505": 409,
        "25006": 405,
        "53400": 500,
        "P0001": 400,
        "42883": 404,
        "42P01": 404,
        "42P17": 500,
    }
    if sqlstate in exact:
        return exact[sqlstate]
    if sqlstate == "42501":
        return 403 if authenticated else 401
    prefix = {
        "08": 503,
        "09": 500,
        "0L": 403,
        "0P": 403,
        "25": 500,
        "28": 403,
        "2D": 500,
        "38": 500,
        "39": 500,
        "3B": 500,
        "40": 500,
        "53": 503,
        "54": 500,
        "55": 500,
        "57": 500,
        "58": 500,
        "F0": 500,
        "HV": 500,
        "P0": 500,
        "XX": 500,
    }
    return prefix.get(sqlstate[:2], 400)
