"""The ``pgtrade`` command line: thin wrappers over the database's procedures and the loaders."""

from __future__ import annotations

import functools
import json
import logging
import os
import shutil
import sys
from datetime import UTC, datetime

import click
import psycopg
from rich.console import Console
from rich.table import Table

from . import cluster as cluster_mod
from . import logs
from .db import connect, database_url, external_server, redact
from .errors import PgtradeError

# Not on a terminal (a pipe, a log file, CI), rich would wrap tables at 80 columns: use $COLUMNS or 160 there.
_width = None if sys.stdout.isatty() else shutil.get_terminal_size((160, 24)).columns
console = Console(width=_width)
err_console = Console(stderr=True, width=_width)
_log = logging.getLogger("pgtrade.cli")


def user_errors(fn):
    """Turn user-facing failures into one red line and exit status 1 (no traceback)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except PgtradeError as exc:
            if logs.json_enabled():
                logs.event(_log, "error", logging.ERROR, message=str(exc))
            else:
                err_console.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
            sys.exit(1)
        except psycopg.Error as exc:
            diag = exc.diag
            parts = [f"{diag.sqlstate or ''} {diag.message_primary or str(exc).strip()}".strip()]
            if diag.message_detail:
                parts.append(f"detail: {diag.message_detail}")
            if diag.message_hint:
                parts.append(f"hint: {diag.message_hint}")
            if logs.json_enabled():
                logs.event(
                    _log,
                    "database_error",
                    logging.ERROR,
                    sqlstate=diag.sqlstate,
                    message=diag.message_primary or str(exc).strip(),
                    detail=diag.message_detail,
                    hint=diag.message_hint,
                )
            else:
                err_console.print(f"[red]database error:[/red] {'; '.join(parts)}", highlight=False, soft_wrap=True)
            sys.exit(1)

    return wrapper


def emit_json(obj) -> None:
    click.echo(json.dumps(obj, default=str, indent=2))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="pgtrade")
@click.option(
    "--log-json",
    is_flag=True,
    envvar="PGTRADE_LOG_JSON",
    help="Log events (loads, feed sessions, batches, retries, errors) to stderr as one JSON object per line "
    "(level: $PGTRADE_LOG_LEVEL, default INFO). Also set by PGTRADE_LOG_JSON=1.",
)
@click.pass_context
def main(ctx: click.Context, log_json: bool) -> None:
    """pgtrade: an algorithmic trading platform (simulation) whose logic lives in PostgreSQL + TimescaleDB.

    Every command uses $PGTRADE_DATABASE_URL when it is set, else the project-local cluster (pgtrade db up).
    """
    try:
        logs.setup(log_json)
    except PgtradeError as exc:
        raise click.UsageError(str(exc)) from None
    if log_json:
        logs.event(_log, "command", command=ctx.invoked_subcommand, argv=sys.argv[1:])


# ---------------------------------------------------------------------------------------------------- db
@main.group()
def db() -> None:
    """Run and inspect the database (a local PostgreSQL 15 cluster, or $PGTRADE_DATABASE_URL)."""


def _local_cluster() -> cluster_mod.Cluster:
    if external_server():
        raise PgtradeError(
            "PGTRADE_DATABASE_URL is set: pgtrade does not manage that server (unset it to use the local cluster)"
        )
    return cluster_mod.default_cluster()


@db.command("up")
@click.option("--migrate/--no-migrate", default=True, show_default=True, help="Apply migrations after starting.")
@user_errors
def db_up(migrate: bool) -> None:
    """Create (first time) and start the local cluster, create the database, and migrate it."""
    cl = _local_cluster()
    was_running = cl.running()
    created = not cl.initialized()
    cl.init()
    cl.start()
    cl.create_database()
    state = "already running" if was_running else ("created and started" if created else "started")
    console.print(f"database {state}: {redact(cl.url())} (data in {cl.data_dir})", highlight=False)
    if migrate:
        _do_migrate()


@db.command("down")
@user_errors
def db_down() -> None:
    """Stop the local cluster and its read replica, if one runs (data stays)."""
    from .replica import default_replica

    cl = _local_cluster()
    rep = default_replica()
    if rep.running():  # first: a standby left running would retry its primary every few seconds, for ever
        rep.stop()
        console.print("replica stopped")
    if not cl.running():
        console.print("database is not running")
        return
    cl.stop()
    console.print("database stopped")


@db.command("status")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@user_errors
def db_status(as_json: bool) -> None:
    """Report whether the server runs, its versions, extensions and pending migrations."""
    from .migrate import pending

    info: dict = {"url": redact(database_url()), "managed": not external_server()}
    if not external_server():
        cl = cluster_mod.default_cluster()
        info |= {"data_dir": str(cl.data_dir), "initialized": cl.initialized(), "running": cl.running()}
        if not info["running"]:
            if as_json:
                emit_json(info)
            else:
                console.print(
                    f"database not running (data dir {cl.data_dir}); start it: pgtrade db up", highlight=False
                )
            sys.exit(3)
    with connect() as conn:
        info["server_version"] = conn.execute("SHOW server_version").fetchone()[0]
        info["extensions"] = dict(conn.execute("SELECT extname, extversion FROM pg_extension ORDER BY 1").fetchall())
        info["pending_migrations"] = pending(conn)
        info["cron_database"] = conn.execute("SELECT current_setting('cron.database_name', true)").fetchone()[0]
    if as_json:
        emit_json(info)
        return
    table = Table(show_header=False, box=None)
    for key in ("url", "data_dir", "server_version"):
        if key in info:
            table.add_row(key, str(info[key]))
    table.add_row("timescaledb", info["extensions"].get("timescaledb", "not installed"))
    table.add_row("pg_cron", info["extensions"].get("pg_cron", f"not here (runs in {info['cron_database']})"))
    table.add_row("plpython3u", info["extensions"].get("plpython3u", "not installed"))
    table.add_row("pending migrations", ", ".join(info["pending_migrations"]) or "none")
    console.print(table)


@db.command("url")
@user_errors
def db_url() -> None:
    """Print the connection URL (with password) for psql or other clients."""
    click.echo(database_url())


@db.command("psql", context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@user_errors
def db_psql(args: tuple[str, ...]) -> None:
    """Open psql on the pgtrade database (extra arguments go to psql)."""
    os.execvp("psql", ["psql", database_url(), *args])


@db.command("migrate")
@user_errors
def db_migrate() -> None:
    """Apply numbered migrations once each, then re-apply procedures, triggers, jobs and the API."""
    _do_migrate()


def _do_migrate() -> None:
    from .migrate import migrate

    with connect(autocommit=True) as conn:
        report = migrate(conn)
    applied = ", ".join(report.applied) if report.applied else "none new"
    console.print(
        f"migrations applied: {applied} ({report.already} already applied); "
        f"{report.repeatable} repeatable files re-applied",
        highlight=False,
    )
    if report.dropped:
        console.print(f"dropped what no file defines any more: {', '.join(report.dropped)}", highlight=False)


# ---------------------------------------------------------------------------------------------------- load
@main.group()
def load() -> None:
    """Load bars through the ingest path (validated, idempotent; rejects are recorded with their reason)."""


def print_report(report, title: str, as_json: bool) -> None:
    if as_json:
        emit_json(report.as_dict())
        return
    table = Table(title=title)
    for col in ("symbol", "inserted", "updated", "unchanged", "rejected"):
        table.add_column(col, justify="left" if col == "symbol" else "right")
    for sym, c in sorted(report.per_symbol.items(), key=lambda kv: str(kv[0])):
        table.add_row(
            str(sym),
            f"{c.inserted:,}",
            f"{c.updated:,}",
            f"{c.unchanged:,}",
            f"[red]{c.rejected:,}[/red]" if c.rejected else "0",
        )
    t = report.total
    table.add_row("[b]total[/b]", f"{t.inserted:,}", f"{t.updated:,}", f"{t.unchanged:,}", f"{t.rejected:,}")
    console.print(table)
    if t.rejected:
        console.print("rejected rows and reasons: SELECT * FROM market.rejected_bars ORDER BY id DESC")


@load.command("sample")
@click.option("--symbols", help="Comma-separated subset of the bundled series (default: all).")
@click.option("--json", "as_json", is_flag=True)
@user_errors
def load_sample_cmd(symbols: str | None, as_json: bool) -> None:
    """Load the real history bundled in data/ (see data/SOURCES.md)."""
    from loaders.sample import load_sample, manifest

    chosen = [s.strip().upper() for s in symbols.split(",")] if symbols else None
    series = [s for s in manifest() if not chosen or s.symbol in chosen]
    with logs.ingest_run(database_url(), kind="load", source="sample", symbols=[s.symbol for s in series]) as run:
        with connect() as conn:
            with _progress(as_json) as progress:
                task = progress.add_task("sample", total=sum(s.rows for s in series))
                report = load_sample(
                    conn,
                    symbols=chosen,
                    progress=lambda s, part: progress.update(task, advance=s.rows, description=s.symbol),
                )
        logs.record_report(run, report)
    print_report(report, "sample data loaded", as_json)


@load.command("csv")
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--symbol", help="Symbol of the bars (required unless the file has a symbol column).")
@click.option("--interval", required=True, help="Bar interval: 1m, 5m, 15m, 30m, 1h, 4h, 1d.")
@click.option("--tz", default="UTC", show_default=True, help="Time zone of timestamps that carry no offset.")
@click.option(
    "--asset-class",
    default="stock",
    show_default=True,
    type=click.Choice(["stock", "etf", "index", "fx", "crypto"]),
    help="For symbols registered by this load.",
)
@click.option(
    "--auto-register/--no-auto-register",
    default=True,
    show_default=True,
    help="Register unknown symbols (flagged auto_registered) instead of rejecting their bars.",
)
@click.option("--json", "as_json", is_flag=True)
@user_errors
def load_csv_cmd(
    path: str, symbol: str | None, interval: str, tz: str, asset_class: str, auto_register: bool, as_json: bool
) -> None:
    """Load an OHLCV CSV file (plain or .gz; common header spellings and date formats)."""
    from loaders.csv_loader import load_csv

    source = f"csv:{os.path.basename(path)}"
    with connect() as conn:
        conn.execute("SELECT market.interval_step(%s)", (interval,))  # one clear error for an unknown interval
        conn.commit()
        with logs.ingest_run(database_url(), kind="load", source=source, symbols=[symbol] if symbol else []) as run:
            with _progress(as_json) as progress:
                task = progress.add_task(os.path.basename(path), total=None)
                report = load_csv(
                    conn,
                    path,
                    symbol=symbol,
                    interval=interval,
                    tz=tz,
                    source=source,
                    auto_register=auto_register,
                    asset_class=asset_class,
                    on_batch=lambda n: progress.update(task, advance=n),
                )
            logs.record_report(run, report)
    print_report(report, f"{path} loaded", as_json)


class _NoProgress:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def add_task(self, *a, **k):
        return 0

    def update(self, *a, **k):
        pass


def _progress(quiet: bool):
    if quiet or logs.json_enabled() or not sys.stderr.isatty():
        return _NoProgress()
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
    )


# ---------------------------------------------------------------------------------------------------- summary
@main.command("summary")
@click.option("--json", "as_json", is_flag=True)
@user_errors
def summary(as_json: bool) -> None:
    """What market data the database holds: bars per symbol and interval, range, rejects."""
    with connect() as conn:
        rows = conn.execute("SELECT * FROM market.data_summary()").fetchall()
        rejected = conn.execute("SELECT count(*) FROM market.rejected_bars").fetchone()[0]
    if as_json:
        emit_json(
            {
                "series": [
                    dict(zip(("symbol", "interval", "bars", "first_ts", "last_ts", "last_close"), r, strict=True))
                    for r in rows
                ],
                "rejected_bars": rejected,
            }
        )
        return
    table = Table(title="market data")
    for col in ("symbol", "interval", "bars", "first", "last", "last close"):
        table.add_column(col)
    for sym, iv, n, first, last, close in rows:
        table.add_row(sym, iv, f"{n:,}", _fmt_ts(first), _fmt_ts(last), str(close))
    console.print(table)
    console.print(f"rejected bars recorded: {rejected:,}")


def _fmt_ts(ts: datetime | None) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%d %H:%M") if ts else "-"


# Command modules register themselves on the groups above (imported last: they import this module).
from . import (  # noqa: E402,F401
    cli_alerts,
    cli_backtest,
    cli_backtest_lookahead,
    cli_backtest_wf,
    cli_dashboard,
    cli_feeds,
    cli_health,
    cli_ml,
    cli_trading,
    replica,
)

if __name__ == "__main__":  # pragma: no cover
    # `python -m pgtrade.cli`: this file runs as __main__, while the command modules above registered their commands
    # on the group of the module pgtrade.cli (imported by them as a second copy): run that group
    from pgtrade.cli import main as _main

    _main()
