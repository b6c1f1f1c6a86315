"""plpgsql_check over every PL/pgSQL function, procedure and trigger function in pgtrade's schemas.

PostgreSQL checks a PL/pgSQL body only for syntax when it is created; a misspelt column, a wrong argument type or
an unknown table shows up only when that line first runs. plpgsql_check (Debian package
``postgresql-15-plpgsql-check``, installed by scripts/install-system.sh) plans every statement of every body now.
The extension is created inside the test's transaction and rolled back with it: the database keeps nothing.

Which findings fail the test: ``error`` (the statement cannot run), ``warning`` and ``warning extra`` (dead code,
a missing RETURN, unused or never-read variables and parameters, shadowed names), and ``security`` (dynamic SQL
open to injection, SECURITY DEFINER without a search_path). Not: ``performance`` (hidden casts such as a numeric
local initialised with the integer literal 0, or an EXECUTE that could be static SQL: api.health keeps its
EXECUTE on purpose, cron.* exists only in the database pg_cron serves) and ``compatibility``; both are hints about
speed or old servers, not defects.
"""

from __future__ import annotations

import psycopg
import pytest

SCHEMAS = ("market", "trading", "ops", "api", "internal", "ml", "backtest")
FAILING_LEVELS = ("error", "warning", "warning extra", "security")

# Temporary tables that functions create at run time and then read: the checker plans against the catalog, so
# they are created first in this session the way the application creates them (rolled back with the test).
RUNTIME_TEMP_TABLES = (
    "SELECT market.ingest_begin()",  # pg_temp.bars_staging (market.ingest_*)
    "SELECT market.csv_begin()",  # pg_temp.csv_staging (market.csv_begin, market.ingest_csv)
    "SELECT count(*) FROM trading.replay_positions(NULL)",  # replay_state (trading.replay_positions)
)

TARGETS = """
SELECT p.oid, p.oid::regprocedure::text, p.prorettype = 'trigger'::regtype, t.tgrelid, t.tgrelid::regclass::text,
       t.tgoldtable, t.tgnewtable
FROM pg_proc p
JOIN pg_namespace n ON n.oid = p.pronamespace
JOIN pg_language l ON l.oid = p.prolang
LEFT JOIN pg_trigger t ON t.tgfoid = p.oid AND NOT t.tgisinternal
WHERE l.lanname = 'plpgsql' AND n.nspname = ANY(%s)
ORDER BY 2, 5
"""

CHECK = """
SELECT c.level, c.lineno, c.message, c.detail, c.query
FROM plpgsql_check_function_tb(%s::oid::regprocedure, coalesce(%s::oid::regclass, 0), fatal_errors => false,
                               other_warnings => true, extra_warnings => true, performance_warnings => true,
                               security_warnings => true, oldtable => %s, newtable => %s) c
"""


def findings(conn: psycopg.Connection) -> list[tuple[str, str]]:
    """(text, level) of every finding; a trigger function is checked once per trigger, with its table and
    transition tables (the checker cannot check one no trigger uses, so that is a finding of its own)."""
    out = []
    for oid, fn, is_trigger, rel, rel_name, old, new in conn.execute(TARGETS, (list(SCHEMAS),)).fetchall():
        where = f"{fn} on {rel_name}" if rel_name else fn
        if is_trigger and rel is None:
            out.append((f"{where}: warning: trigger function used by no trigger (cannot be checked)", "warning"))
            continue
        for level, lineno, message, detail, query in conn.execute(CHECK, (oid, rel, old, new)).fetchall():
            text = f"{where} line {lineno}: {level}: {message}" + (f" ({detail})" if detail else "")
            out.append((text + (f"\n    {query}" if query else ""), level))
    return out


@pytest.fixture
def checker(db):
    """The test's connection with plpgsql_check loaded and the run-time temp tables in place."""
    if db.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'plpgsql_check'").fetchone() is None:
        pytest.fail("plpgsql_check is not installed on the server: apt-get install postgresql-15-plpgsql-check")
    db.execute("CREATE EXTENSION IF NOT EXISTS plpgsql_check")
    for stmt in RUNTIME_TEMP_TABLES:
        db.execute(stmt)
    return db


def test_every_plpgsql_function_and_trigger_passes_plpgsql_check(checker):
    functions = {row[1] for row in checker.execute(TARGETS, (list(SCHEMAS),)).fetchall()}
    assert len(functions) >= 30  # the check reaches the project's functions (37 when this test was written)
    bad = [text for text, level in findings(checker) if level in FAILING_LEVELS]
    assert not bad, f"{len(bad)} plpgsql_check finding(s):\n" + "\n".join(bad)


def test_the_check_catches_a_broken_function_and_a_broken_trigger(checker):
    """The same query finds what it must: a misspelt column in a function and in a statement-level trigger
    function with a transition table, and an unused variable (both rolled back with the test)."""
    checker.execute(
        """CREATE FUNCTION ops.zz_check_probe() RETURNS bigint LANGUAGE plpgsql AS $$
           BEGIN RETURN (SELECT count(no_such_column) FROM trading.orders); END $$"""
    )
    checker.execute(
        """CREATE FUNCTION ops.zz_check_probe_unused() RETURNS int LANGUAGE plpgsql AS $$
           DECLARE _unused int; BEGIN RETURN 1; END $$"""
    )
    checker.execute(
        """CREATE FUNCTION trading.zz_check_probe_tg() RETURNS trigger LANGUAGE plpgsql AS $$
           BEGIN PERFORM n.no_such_field FROM zz_new n; RETURN NULL; END $$"""
    )
    checker.execute(
        """CREATE TRIGGER zz_check_probe AFTER INSERT ON trading.events REFERENCING NEW TABLE AS zz_new
           FOR EACH STATEMENT EXECUTE FUNCTION trading.zz_check_probe_tg()"""
    )
    found = [text for text, level in findings(checker) if level in FAILING_LEVELS and "zz_check_probe" in text]
    assert any("ops.zz_check_probe()" in f and "no_such_column" in f and ": error:" in f for f in found), found
    assert any("zz_check_probe_unused()" in f and 'unused variable "_unused"' in f for f in found), found
    assert any("zz_check_probe_tg() on trading.events" in f and "no_such_field" in f for f in found), found
