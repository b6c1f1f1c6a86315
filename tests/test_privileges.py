"""Least privilege, against a real server: the guards of tests/sql/privileges.sql fail when an object breaks them,
web roles get their resource limits once the role is switched the way PostgREST switches it, and a database
migrated before the owner role existed moves to it through migration 0011."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest
from postgrest import apply_role_settings, role_settings
from psycopg import sql

from pgtrade.migrate import migrate

GUARDS = (Path(__file__).parent / "sql" / "privileges.sql").read_text()


def run_guards(conn: psycopg.Connection) -> dict[str, str | None]:
    """Run privileges.sql in a savepoint; return {description: None when it passed, else pgTAP's diagnostics}."""
    lines: list[str] = []
    with conn.transaction(), conn.cursor() as cur:
        cur.execute(GUARDS)
        while True:
            if cur.description:
                lines.extend(str(row[0]) for row in cur.fetchall())
            if not cur.nextset():
                break
        # so the next run in this transaction starts clean (pgTAP keeps its state in temp tables)
        cur.execute("DROP VIEW our_functions, web_roles, our_objects, ours")
        cur.execute("DROP TABLE IF EXISTS __tcache__, __tresults__")
        cur.execute("DROP SEQUENCE IF EXISTS __tcache___id_seq, __tresults___numb_seq")
    results: dict[str, str | None] = {}
    for line in lines:
        first, _, diagnostics = line.partition("\n")
        if first.startswith(("ok ", "not ok ")):
            results[first.split(" - ", 1)[1]] = diagnostics if first.startswith("not ok ") else None
    return results


def failing(conn: psycopg.Connection) -> set[str]:
    return {desc for desc, diag in run_guards(conn).items() if diag is not None}


def test_guards_pass_on_the_migrated_database(db):
    assert failing(db) == set()


BREAKS = [
    (
        "CREATE FUNCTION market.leaky() RETURNS int LANGUAGE sql SECURITY DEFINER AS $$ SELECT 1 $$",
        "every SECURITY DEFINER function pins search_path (pg_catalog first, pg_temp last)",
    ),
    (
        "GRANT SELECT ON trading.orders TO web_anon",
        "web roles hold no privilege on any table, view or chunk of ours outside api",
    ),
    (
        "GRANT USAGE ON SCHEMA trading TO trader",
        "web roles may use no schema but api (and the system's and extensions' public ones)",
    ),
    (
        "GRANT EXECUTE ON FUNCTION trading.cancel_order(bigint, text) TO PUBLIC",
        {
            "PUBLIC executes no function of ours (every grant is explicit)",
            "web roles execute no function of ours outside api",
        },
    ),
    (
        "GRANT EXECUTE ON FUNCTION trading.cancel_order(bigint, text) TO trader",
        "web roles execute no function of ours outside api",
    ),
    (
        "GRANT SELECT ON market.instruments TO PUBLIC",
        {
            "no table, view or sequence of ours grants anything to PUBLIC",
            "web roles hold no privilege on any table, view or chunk of ours outside api",
        },
    ),
    (
        "GRANT trader TO pgtrade_admin",
        "web roles belong to no role and only authenticator may become them; only pgtrade_jobs acts as the owner",
    ),
]


@pytest.mark.parametrize(("statement", "guard"), BREAKS, ids=[b[0][:48] for b in BREAKS])
def test_each_guard_fails_when_an_object_breaks_it(db, statement, guard):
    if statement.startswith("CREATE"):  # created by the owner, as migrate would
        db.execute("SET LOCAL ROLE pgtrade_owner")
    db.execute(statement)
    db.execute("RESET ROLE")
    failed = {desc: diag for desc, diag in run_guards(db).items() if diag is not None}
    assert set(failed) == (guard if isinstance(guard, set) else {guard})
    if "leaky" in statement:
        assert "market.leaky()" in failed[guard]  # the failure names the object


def test_superuser_owned_objects_must_be_listed_and_kept_away_from_the_web(db):
    db.execute("CREATE FUNCTION trading.by_root() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$")  # as the superuser
    db.execute("REVOKE ALL ON FUNCTION trading.by_root() FROM PUBLIC")
    assert failing(db) == {"no object is owned by a superuser unless ops.superuser_objects lists it with its reason"}
    db.execute(
        "INSERT INTO ops.superuser_objects (object, reason) VALUES ('function trading.by_root()', 'test: a reason')"
    )
    assert failing(db) == set()
    db.execute("GRANT EXECUTE ON FUNCTION trading.by_root() TO trader")
    exposed = (
        "a superuser-owned function is neither SECURITY DEFINER nor executable by a web role unless the list says why"
    )
    assert exposed in failing(db)
    db.execute(
        "UPDATE ops.superuser_objects SET exposed_reason = 'test: why' WHERE object = 'function trading.by_root()'"
    )
    assert exposed not in failing(db)


# -- resource limits, applied as PostgREST applies them ------------------------------------------------------------


def impersonate(conn: psycopg.Connection, role: str, claims: dict | None = None) -> dict[str, str]:
    """What PostgREST (v12) does at the start of each request's transaction: switch to the JWT's role, set the claims,
    and apply the impersonated role's own settings (tests/postgrest.py). Returns the settings applied."""
    settings = role_settings(conn, role)
    conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(role)))
    conn.execute("SELECT set_config('request.jwt.claims', %s, true)", (json.dumps(claims or {"role": role}),))
    apply_role_settings(conn, settings)
    return settings


@pytest.mark.parametrize(("role", "timeout"), [("web_anon", "3s"), ("trader", "5s"), ("pgtrade_admin", "30s")])
def test_each_web_role_runs_under_its_statement_timeout(db, role, timeout):
    applied = impersonate(db, role, {"role": role, "account": "default"})
    assert applied["statement_timeout"] == timeout
    assert db.execute("SHOW statement_timeout").fetchone()[0] == timeout


def test_an_anonymous_request_that_runs_too_long_is_cancelled(db_url):
    """The unfiltered-/bars case: a request as web_anon that would run for a minute is cancelled by the role's
    timeout (57014, which PostgREST answers with 500) instead of holding a backend."""
    with psycopg.connect(db_url) as conn:
        impersonate(conn, "web_anon")
        with pytest.raises(psycopg.errors.QueryCanceled):
            conn.execute("SELECT (SELECT count(*) FROM api.bars), pg_sleep(60)")
        conn.rollback()


def test_compose_caps_the_rows_postgrest_returns():
    import yaml

    compose = yaml.safe_load((Path(__file__).resolve().parent.parent / "docker-compose.yml").read_text())
    env = compose["services"]["postgrest"]["environment"]
    assert env["PGRST_DB_MAX_ROWS"].startswith("${PGRST_DB_MAX_ROWS:-")
    default = int(env["PGRST_DB_MAX_ROWS"].split(":-", 1)[1].rstrip("}"))
    assert 0 < default <= 100_000


# -- an existing database moves to the owner role ------------------------------------------------------------------


def test_a_database_migrated_before_the_owner_role_moves_to_it(scratch_db):
    """Build the state a database had before migration 0011 (everything owned by the superuser, pg_cron jobs
    scheduled as the superuser, no 0011 in the ledger), with data in it; migrate; then everything is the owner's,
    the jobs run as pgtrade_jobs, the data is untouched and the guards pass."""
    with psycopg.connect(scratch_db, autocommit=True) as conn:
        migrate(conn)
        acct = conn.execute("SELECT id FROM trading.create_account('legacy', 5000)").fetchone()[0]
        conn.execute("SELECT market.upsert_instrument('LEGACY')")
        before = conn.execute("SELECT cash, initial_cash FROM trading.accounts WHERE id = %s", (acct,)).fetchone()
        conn.execute(
            """DO $$
               DECLARE _o record;
               BEGIN
                 FOR _o IN SELECT n.nspname FROM pg_namespace n WHERE n.nspname IN ('market', 'trading', 'ops', 'api')
                 LOOP EXECUTE format('ALTER SCHEMA %I OWNER TO postgres', _o.nspname); END LOOP;
                 FOR _o IN SELECT p.oid::regprocedure AS fn FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                           WHERE n.nspname IN ('market', 'trading', 'ops', 'api')
                 LOOP EXECUTE format('ALTER ROUTINE %s OWNER TO postgres', _o.fn); END LOOP;
                 ALTER TABLE market.bars OWNER TO postgres;
                 ALTER MATERIALIZED VIEW market.bars_5m OWNER TO postgres;
                 ALTER TABLE trading.orders OWNER TO postgres;
                 ALTER TYPE market.ohlcv OWNER TO postgres;
               END $$"""
        )
        conn.execute("DROP TABLE ops.superuser_objects")
        # later migrations stay applied: a database that predates 0011 has none of them, and they ran as the owner
        conn.execute("DELETE FROM ops.schema_migrations WHERE version = '0011'")
        owners = conn.execute(
            "SELECT DISTINCT pg_get_userbyid(relowner) FROM pg_class WHERE oid IN ('market.bars'::regclass, "
            "'trading.orders'::regclass)"
        ).fetchall()
        assert owners == [("postgres",)]

        report = migrate(conn)
        assert report.applied == ["0011_owner_role.sql"]
        wrong = conn.execute(
            """SELECT c.oid::regclass FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
               WHERE (n.nspname IN ('market', 'trading', 'ops', 'api') OR c.relname LIKE '\\_hyper\\_%'
                      OR c.relname LIKE '\\_materialized\\_%' OR c.relname LIKE '\\_compressed\\_%')
                 AND c.relkind IN ('r', 'p', 'v', 'm') AND pg_get_userbyid(c.relowner) <> 'pgtrade_owner'"""
        ).fetchall()
        assert wrong == []
        assert conn.execute(
            "SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
            "WHERE n.nspname IN ('market', 'trading', 'api') AND pg_get_userbyid(p.proowner) <> 'pgtrade_owner'"
        ).fetchone() == (0,)
        jobs = conn.execute(
            "SELECT DISTINCT owner::text FROM timescaledb_information.jobs WHERE job_id >= 1000"
        ).fetchall()
        assert jobs == [("pgtrade_jobs",)]
        assert (
            conn.execute("SELECT cash, initial_cash FROM trading.accounts WHERE id = %s", (acct,)).fetchone() == before
        )
        conn.execute("CREATE EXTENSION IF NOT EXISTS pgtap")
        with conn.transaction():
            assert failing(conn) == set()
