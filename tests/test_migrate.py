"""The migration runner against a real server: from empty, twice, checksum drift, failing files."""

from __future__ import annotations

import shutil
from pathlib import Path

import psycopg
import pytest

from pgtrade.errors import MigrationError
from pgtrade.migrate import DB_DIR, migrate, numbered_files


def _copy_db_dir(tmp_path: Path) -> Path:
    dst = tmp_path / "db"
    shutil.copytree(DB_DIR, dst)
    return dst


def test_migrate_from_empty_then_again_changes_nothing(scratch_db):
    with psycopg.connect(scratch_db, autocommit=True) as conn:
        first = migrate(conn)
        assert first.applied == [p.name for p in numbered_files()]
        objects = conn.execute(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname IN ('market', 'ops', 'api')"
        ).fetchone()[0]
        ledger = conn.execute("SELECT version, checksum, applied_at FROM ops.schema_migrations ORDER BY 1").fetchall()
        second = migrate(conn)
        assert second.applied == []
        assert second.already == len(first.applied)
        assert (
            conn.execute("SELECT version, checksum, applied_at FROM ops.schema_migrations ORDER BY 1").fetchall()
            == ledger
        )
        assert (
            conn.execute(
                "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname IN ('market', 'ops', 'api')"
            ).fetchone()[0]
            == objects
        )
        # the hypertable and its rollups exist
        assert (
            conn.execute(
                "SELECT count(*) FROM timescaledb_information.hypertables "
                "WHERE hypertable_schema = 'market' AND hypertable_name = 'bars'"
            ).fetchone()[0]
            == 1
        )
        assert (
            conn.execute(
                "SELECT count(*) FROM timescaledb_information.continuous_aggregates WHERE view_schema = 'market'"
            ).fetchone()[0]
            == 3
        )


def test_edited_applied_migration_is_an_error_naming_the_file(scratch_db, tmp_path):
    db_dir = _copy_db_dir(tmp_path)
    with psycopg.connect(scratch_db, autocommit=True) as conn:
        migrate(conn, db_dir)
        target = db_dir / "schema" / "0002_market_tables.sql"
        target.write_text(target.read_text() + "\n-- edited\n")
        with pytest.raises(MigrationError, match=r"db/schema/0002_market_tables.sql: applied migration was edited"):
            migrate(conn, db_dir)


def test_failing_file_reports_file_line_and_message_and_rolls_back(scratch_db, tmp_path):
    db_dir = _copy_db_dir(tmp_path)
    (db_dir / "schema" / "9999_broken.sql").write_text(
        "CREATE TABLE ops.broken_probe (id int);\n\nSELECT no_such_column FROM ops.broken_probe;\n"
    )
    with psycopg.connect(scratch_db, autocommit=True) as conn:
        with pytest.raises(MigrationError) as err:
            migrate(conn, db_dir)
        assert "db/schema/9999_broken.sql:3:" in str(err.value)
        assert "no_such_column" in str(err.value)
        # its own transaction: nothing of the failing file stays, the earlier files do
        assert conn.execute("SELECT to_regclass('ops.broken_probe')").fetchone()[0] is None
        assert conn.execute("SELECT count(*) FROM ops.schema_migrations").fetchone()[0] == len(numbered_files())


def test_bad_migration_file_name_is_refused(tmp_path):
    db_dir = _copy_db_dir(tmp_path)
    (db_dir / "schema" / "12_oops.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match="0001_name.sql: 12_oops.sql"):
        numbered_files(db_dir)


def test_server_without_timescaledb_gets_one_clear_error_before_anything_is_created(tmp_path):
    """A real second server that does not load TimescaleDB."""
    import os

    from pgtrade.cluster import Cluster, free_port

    home = Path("/tmp") / f"pgtrade-nots-{os.getpid()}"
    cluster = Cluster(
        home=home, port=free_port(), dbname="nots", overrides=(("shared_preload_libraries", "'pg_cron'"),)
    )
    try:
        cluster.init()
        cluster.start()
        cluster.create_database()
        with psycopg.connect(cluster.url(), autocommit=True) as conn:
            with pytest.raises(MigrationError, match="TimescaleDB is installed but not preloaded"):
                migrate(conn)
            assert conn.execute("SELECT to_regnamespace('market')").fetchone()[0] is None
            assert conn.execute("SELECT count(*) FROM pg_extension WHERE extname = 'timescaledb'").fetchone()[0] == 0
    finally:
        cluster.destroy()


def test_objects_a_repeatable_file_no_longer_defines_are_dropped(scratch_db, tmp_path):
    db_dir = _copy_db_dir(tmp_path)
    extra = db_dir / "procedures" / "zz_probe.sql"
    extra.write_text(
        "CREATE OR REPLACE FUNCTION ops.probe(x int) RETURNS int LANGUAGE sql AS $$ SELECT x $$;\n"
        "CREATE OR REPLACE FUNCTION ops.tg_probe() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NULL; END$$;\n"
        "CREATE OR REPLACE TRIGGER _900_probe AFTER INSERT ON market.instruments\n"
        "  FOR EACH STATEMENT EXECUTE FUNCTION ops.tg_probe();\n"
    )
    with psycopg.connect(scratch_db, autocommit=True) as conn:
        migrate(conn, db_dir)
        assert conn.execute("SELECT to_regprocedure('ops.probe(int)')").fetchone()[0] is not None
        # the signature changes and the trigger is renamed
        extra.write_text(
            "CREATE OR REPLACE FUNCTION ops.probe(x bigint) RETURNS bigint LANGUAGE sql AS $$ SELECT x $$;\n"
            "CREATE OR REPLACE FUNCTION ops.tg_probe() RETURNS trigger LANGUAGE plpgsql\n"
            "  AS $$BEGIN RETURN NULL; END$$;\n"
            "CREATE OR REPLACE TRIGGER _901_probe AFTER INSERT ON market.instruments\n"
            "  FOR EACH STATEMENT EXECUTE FUNCTION ops.tg_probe();\n"
        )
        report = migrate(conn, db_dir)
        assert "function ops.probe(integer)" in report.dropped
        assert "trigger _900_probe ON market.instruments" in report.dropped
        assert conn.execute("SELECT to_regprocedure('ops.probe(int)')").fetchone()[0] is None
        assert conn.execute("SELECT to_regprocedure('ops.probe(bigint)')").fetchone()[0] is not None
        triggers = {
            r[0]
            for r in conn.execute(
                "SELECT tgname FROM pg_trigger WHERE tgrelid = 'market.instruments'::regclass AND NOT tgisinternal"
            )
        }
        assert "_901_probe" in triggers and "_900_probe" not in triggers
        # objects of numbered migrations are never touched
        assert "_100_refuse_delete_with_bars" in triggers
        assert conn.execute("SELECT to_regprocedure('market.is_valid_symbol(text)')").fetchone()[0] is not None
        assert migrate(conn, db_dir).dropped == []


def test_no_jit_compilation_in_the_database_for_any_session(db_url):
    """The database's sessions run without JIT (db/superuser/1_2_database.sql): a plan over market.bars spans its
    chunks and passes the JIT cost thresholds however few rows it reads (anomaly detection over the bundled daily
    history took 14.8 s with JIT, 13.6 s of it compiling). A costly query in a new session, as the owner and as a web
    role, has no JIT; the same query with jit on in the session does (so the check can fail)."""
    query = (
        "EXPLAIN (FORMAT JSON) SELECT count(*) FROM generate_series(1, 1000000) a, generate_series(1, 20) b"
        " WHERE a + b > 0"
    )
    with psycopg.connect(db_url, autocommit=True) as conn:
        assert conn.execute(
            """SELECT 'jit=off' = ANY (setconfig) FROM pg_db_role_setting
               WHERE setrole = 0 AND setdatabase = (SELECT oid FROM pg_database WHERE datname = current_database())"""
        ).fetchone() == (True,)
        optimize_above = float(conn.execute("SHOW jit_optimize_above_cost").fetchone()[0])
        for role in ("pgtrade_owner", "trader", "web_anon"):
            conn.execute(f"SET ROLE {role}")
            assert conn.execute("SHOW jit").fetchone()[0] == "off"
            plan = conn.execute(query).fetchone()[0][0]
            assert plan["Plan"]["Total Cost"] > optimize_above
            assert "JIT" not in plan, role
            conn.execute("RESET ROLE")
        conn.execute("SET jit = on")
        assert "JIT" in conn.execute(query).fetchone()[0][0]
