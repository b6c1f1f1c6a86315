"""Apply the database code: the superuser steps, numbered migrations once each, then the repeatable files.

Who runs what (least privilege; the superuser's part is listed in ``db/superuser/`` and nowhere else):

- ``db/superuser/1_*.sql`` run as the connecting superuser first, every time (idempotent): roles and their
  limits, extensions, the database-level rights the owner role needs.
- ``db/schema/NNNN_name.sql``: applied in order, each once, each in its own transaction, recorded in
  ``ops.schema_migrations`` with a SHA-256 checksum. An applied file whose checksum changed is an error naming it.
  Up to ``LAST_SUPERUSER_MIGRATION`` (written before the owner role existed; 0011 hands their objects to it) they
  run as the superuser; every later one as ``pgtrade_owner``.
- Repeatable files (``db/procedures``, ``db/triggers``, ``db/jobs``, ``db/api``): re-applied on every run, all in
  one transaction, in that order and by file name within each folder, as ``pgtrade_owner`` (``db/jobs`` as
  ``pgtrade_jobs``, so that pg_cron runs the jobs as that role). The ``api`` schema is dropped and rebuilt from
  ``db/api`` each time, so it holds exactly what the files define.
- ``db/superuser/2_*.sql`` run as the superuser last (what must follow the migrations, e.g. TimescaleDB's job
  owners); in the same transaction the sources of the ``ml`` package (``ml/*.py`` beside ``db/``) replace the rows
  of ``internal.python_modules``, from which PL/Python imports them (db/superuser/2_3_ml_training.sql: the server
  may not read the checkout); then pg_cron is told to reload its job list (``pgtrade.pg_cron``).

A failing file stops the run with the file name, line and PostgreSQL's message.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

from .errors import MigrationError
from .pg_cron import reload_jobs

DB_DIR = Path(__file__).resolve().parent.parent / "db"
#: the package whose sources migrate copies into internal.python_modules (beside db/)
ML_PACKAGE = "ml"
REPEATABLE_DIRS = ("procedures", "triggers", "jobs", "api")
SUPERUSER_DIR = "superuser"
OWNER = "pgtrade_owner"
JOBS_ROLE = "pgtrade_jobs"
#: numbered migrations up to this one run as the superuser (see the module docstring)
LAST_SUPERUSER_MIGRATION = "0011"
DEADLOCK_RETRIES = 3
_NUMBERED = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


@dataclass(kw_only=True)
class MigrationReport:
    applied: list[str] = field(default_factory=list)
    already: int = 0
    repeatable: int = 0
    dropped: list[str] = field(default_factory=list)
    #: what became of pg_cron's job list (pgtrade.pg_cron.reload_jobs)
    cron: str = ""


def numbered_files(db_dir: Path = DB_DIR) -> list[Path]:
    files = sorted((db_dir / "schema").glob("*.sql"))
    bad = [f.name for f in files if not _NUMBERED.match(f.name)]
    if bad:
        raise MigrationError(f"migration file names must look like 0001_name.sql: {', '.join(bad)}")
    versions = [f.name[:4] for f in files]
    dupes = sorted({v for v in versions if versions.count(v) > 1})
    if dupes:
        raise MigrationError(f"two migration files share a number: {', '.join(dupes)}")
    return files


def repeatable_files(db_dir: Path = DB_DIR) -> list[Path]:
    return [f for d in REPEATABLE_DIRS for f in sorted((db_dir / d).glob("*.sql"))]


def superuser_files(db_dir: Path = DB_DIR, step: int = 1) -> list[Path]:
    return sorted((db_dir / SUPERUSER_DIR).glob(f"{step}_*.sql"))


def checksum(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def migrate(conn: psycopg.Connection, db_dir: Path = DB_DIR) -> MigrationReport:
    """Bring the database to the code's state. ``conn`` must be in autocommit mode."""
    if not conn.autocommit:
        raise MigrationError("migrate needs an autocommit connection (each file runs in its own transaction)")
    _require_extensions(conn)
    _require_superuser(conn)
    report = MigrationReport()
    _run_superuser_step(conn, db_dir, 1)
    _ensure_ledger(conn)
    applied = {
        row[0]: (row[1], row[2]) for row in conn.execute("SELECT version, name, checksum FROM ops.schema_migrations")
    }
    for path in numbered_files(db_dir):
        version, digest = path.name[:4], checksum(path)
        if version in applied:
            name, old = applied[version]
            if name != path.name:
                raise MigrationError(f"migration {version} was applied as {name} but the file is now {path.name}")
            if old != digest:
                raise MigrationError(
                    f"{path.relative_to(db_dir.parent)}: applied migration was edited (checksum {old[:12]} in the "
                    f"database, {digest[:12]} on disk); add a new numbered file instead of editing an applied one"
                )
            report.already += 1
            continue
        for attempt in range(1, DEADLOCK_RETRIES + 1):
            try:
                with conn.transaction():
                    if version > LAST_SUPERUSER_MIGRATION:
                        _set_role(conn, OWNER)
                    _run_file(conn, path, db_dir)
                    conn.execute(
                        "INSERT INTO ops.schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                        (version, path.name, digest),
                    )
                break
            except MigrationError as exc:
                # A migration that takes strong locks can deadlock with a background job (a TimescaleDB refresh
                # policy); the file ran in its own transaction, nothing of it stayed: run it again.
                if not isinstance(exc.__cause__, psycopg.errors.DeadlockDetected) or attempt == DEADLOCK_RETRIES:
                    raise
        report.applied.append(path.name)
    files = repeatable_files(db_dir)
    with conn.transaction():
        # Function bodies may call functions defined in later files (as pg_dump's output does); views and
        # the test suite still check every reference.
        conn.execute("SET LOCAL check_function_bodies = off")
        conn.execute("DROP SCHEMA IF EXISTS api CASCADE")
        conn.execute(sql.SQL("CREATE SCHEMA api AUTHORIZATION {}").format(sql.Identifier(OWNER)))  # 000_schema.sql
        started = conn.execute("SELECT (pg_current_xact_id()::text::bigint % 4294967296)::text").fetchone()[0]
        for path in files:
            _set_role(conn, JOBS_ROLE if path.parent.name == "jobs" else OWNER)
            _run_file(conn, path, db_dir)
        conn.execute("RESET ROLE")  # the files' owners differ (db/jobs: pgtrade_jobs); the superuser drops any
        report.dropped = _drop_stale(conn, started)
        conn.execute("NOTIFY pgrst, 'reload schema'")
    _run_superuser_step(conn, db_dir, 2)
    report.repeatable = len(files)
    report.cron = reload_jobs(conn)  # pg_cron can miss the jobs a migration scheduled (pgtrade/pg_cron.py)
    return report


def _run_superuser_step(conn: psycopg.Connection, db_dir: Path, step: int) -> None:
    """The ``db/superuser/<step>_*.sql`` files, as the connecting superuser, in one transaction."""
    with conn.transaction():
        for path in superuser_files(db_dir, step):
            _run_file(conn, path, db_dir)
        if step == 2:
            _load_python_modules(conn, db_dir.parent / ML_PACKAGE)


def _load_python_modules(conn: psycopg.Connection, package_dir: Path) -> None:
    """Replace the rows of ``internal.python_modules`` by the package's ``*.py`` sources (as the superuser)."""
    if conn.execute("SELECT to_regclass('internal.python_modules')").fetchone()[0] is None:
        return
    conn.execute("DELETE FROM internal.python_modules")
    for path in sorted(package_dir.glob("*.py")):
        source = path.read_text()
        is_package = path.name == "__init__.py"
        name = ML_PACKAGE if is_package else f"{ML_PACKAGE}.{path.stem}"
        conn.execute(
            "INSERT INTO internal.python_modules (name, is_package, source, sha256) VALUES (%s, %s, %s, %s)",
            (name, is_package, source, hashlib.sha256(source.encode()).hexdigest()),
        )


def _set_role(conn: psycopg.Connection, role: str) -> None:
    """Run the rest of this transaction as ``role`` (the session user stays the superuser)."""
    conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(role)))


def _require_superuser(conn: psycopg.Connection) -> None:
    if not conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = session_user").fetchone()[0]:
        raise MigrationError(
            "migrate needs a superuser connection: it creates extensions and roles (db/superuser/) and then does "
            "everything else as pgtrade_owner"
        )


# Functions and triggers the repeatable files define, in the project's schemas. The runner remembers what the last
# run defined (ops.repeatable_objects) and drops what a file no longer defines: a renamed trigger would otherwise
# keep firing, and a function whose signature changed would leave its old overload behind. Objects of numbered
# migrations never enter the list, so they are never dropped here.
_PROJECT_SCHEMAS = ["market", "trading", "internal", "ml", "backtest", "ops"]
_DEFINED_NOW = """
    SELECT 'function', p.oid::regprocedure::text
    FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
    WHERE n.nspname = ANY(%(schemas)s) AND age(p.xmin) <= age(%(started)s::xid)
    UNION ALL
    SELECT 'trigger', format('%%I ON %%s', t.tgname, t.tgrelid::regclass)
    FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE NOT t.tgisinternal AND n.nspname = ANY(%(schemas)s) AND age(t.xmin) <= age(%(started)s::xid)
"""


def _drop_stale(conn: psycopg.Connection, started: str) -> list[str]:
    params = {"schemas": _PROJECT_SCHEMAS, "started": started}
    now = set(conn.execute(_DEFINED_NOW, params).fetchall())
    before = set(conn.execute("SELECT kind, identity FROM ops.repeatable_objects").fetchall())
    dropped = []
    for kind, identity in sorted(before - now, reverse=True):  # triggers before the functions they call
        try:
            with conn.transaction():
                # identity is the server's own quoted text (regprocedure, format('%I ON %s')); kind is ours
                conn.execute(sql.SQL("DROP {} IF EXISTS {}").format(sql.SQL(kind.upper()), sql.SQL(identity)))
        except psycopg.Error as exc:
            raise MigrationError(
                f"cannot drop {kind} {identity}, which no repeatable file defines any more: {exc.diag.message_primary}"
            ) from exc
        dropped.append(f"{kind} {identity}")
    conn.execute("DELETE FROM ops.repeatable_objects")
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO ops.repeatable_objects (kind, identity) VALUES (%s, %s)", sorted(now))
    return dropped


def pending(conn: psycopg.Connection, db_dir: Path = DB_DIR) -> list[str]:
    """Numbered files not applied yet (for status output)."""
    has_ledger = conn.execute("SELECT to_regclass('ops.schema_migrations')").fetchone()[0]
    done = set()
    if has_ledger:
        done = {r[0] for r in conn.execute("SELECT version FROM ops.schema_migrations")}
    return [p.name for p in numbered_files(db_dir) if p.name[:4] not in done]


def _require_extensions(conn: psycopg.Connection) -> None:
    row = conn.execute(
        "SELECT (SELECT default_version FROM pg_available_extensions WHERE name = 'timescaledb'),"
        " current_setting('shared_preload_libraries')"
    ).fetchone()
    available, preload = row
    if available is None:
        raise MigrationError(
            "this PostgreSQL server has no TimescaleDB extension; pgtrade stores market data in TimescaleDB "
            "hypertables (install timescaledb-2-postgresql-15, or run scripts/install-system.sh)"
        )
    if "timescaledb" not in preload:
        raise MigrationError(
            "TimescaleDB is installed but not preloaded; set shared_preload_libraries = 'timescaledb,pg_cron' "
            "and restart the server"
        )


def _ensure_ledger(conn: psycopg.Connection) -> None:
    with conn.transaction():
        conn.execute("CREATE SCHEMA IF NOT EXISTS ops")
        conn.execute(
            """CREATE TABLE IF NOT EXISTS ops.schema_migrations (
                   version    text PRIMARY KEY,
                   name       text NOT NULL,
                   checksum   text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        # what the repeatable files defined last time (_drop_stale)
        conn.execute(
            """CREATE TABLE IF NOT EXISTS ops.repeatable_objects (
                   kind     text NOT NULL,
                   identity text NOT NULL,
                   PRIMARY KEY (kind, identity))"""
        )


def _run_file(conn: psycopg.Connection, path: Path, db_dir: Path) -> None:
    sql = path.read_text()
    try:
        with conn.transaction():  # a savepoint, so the error position refers to this file alone
            conn.execute(sql, prepare=False)
    except psycopg.Error as exc:
        raise MigrationError(_describe(exc, path.relative_to(db_dir.parent), sql)) from exc


def _describe(exc: psycopg.Error, name: Path, sql: str) -> str:
    diag = exc.diag
    line = None
    if diag.statement_position:
        line = sql[: int(diag.statement_position)].count("\n") + 1
    where = f"{name}:{line}" if line else str(name)
    msg = diag.message_primary or str(exc).strip()
    extra = f" ({diag.context.strip().splitlines()[0]})" if diag.context else ""
    return f"{where}: {diag.sqlstate or ''} {msg}{extra}".replace("  ", " ")
