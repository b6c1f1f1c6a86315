"""``pgtrade dashboard``: the operations dashboard as a file (``--out``), served (``--serve``) or as JSON (``--json``).

The data is ``ops.dashboard()`` (db/procedures/ops_dashboard.sql); pgtrade/dashboard.py renders it. docs/operations.md,
section "Dashboard", says what each panel shows.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from .cli import console, err_console, main, user_errors
from .dashboard import Query, fetch, make_server, write
from .db import connect
from .errors import PgtradeError


@main.command("dashboard")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Write the page to this HTML file.")
@click.option("--serve", is_flag=True, help="Serve the page on 127.0.0.1, refreshing its data while open.")
@click.option("--json", "as_json", is_flag=True, help="Print the dashboard's data (ops.dashboard) as JSON.")
@click.option(
    "--account",
    "accounts",
    multiple=True,
    help="Account name (repeatable; default: the default live account).",
)
@click.option("--all", "all_live", is_flag=True, help="Every live account.")
@click.option("--since", help="Show activity at or after this day (YYYY-MM-DD) or ISO 8601 time (naive = UTC).")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10000), help="Rows per table.")
@click.option("--port", default=8050, show_default=True, type=click.IntRange(0, 65535), help="--serve: port (0: any).")
@click.option("--refresh", default=5, show_default=True, type=click.IntRange(1, 3600), help="--serve: seconds.")
@user_errors
def dashboard_cmd(out, serve, as_json, accounts, all_live, since, limit, port, refresh) -> None:
    """Portfolio value over time, positions, recent orders and fills, signals, anomalies, open alerts and job
    health of an account, on one self-contained HTML page (plotly inlined: no network needed)."""
    from .cli_feeds import _when  # (not at import: cli_feeds imports the cli module that imports this one)

    if sum(map(bool, (out, serve, as_json))) != 1:
        raise click.UsageError("give exactly one of --out FILE.html, --serve or --json")
    if all_live and accounts:
        raise click.UsageError("--all and --account exclude each other")
    query = Query(accounts=None if all_live else (tuple(accounts) or ("default",)), since=_when(since, "since"),
                  max_rows=limit)  # fmt: skip
    if as_json:
        with connect() as conn:
            click.echo(fetch(conn, query))
        return
    if out:
        if not out.parent.is_dir():
            raise PgtradeError(f"--out: no directory {str(out.parent)!r} to write {out.name} in")
        t0 = time.perf_counter()
        with connect() as conn:
            size = write(conn, query, out)
        console.print(f"wrote {out} ({size / 1e6:.1f} MB) in {time.perf_counter() - t0:.2f} s", highlight=False)
        return
    with connect() as conn:  # a bad account or --since fails here, before anything listens
        fetch(conn, query)
    try:
        server = make_server(query, port=port, refresh=refresh)
    except OSError as exc:
        raise PgtradeError(f"--port {port}: cannot listen on 127.0.0.1: {exc.strerror}") from None
    host, bound = server.server_address[:2]
    console.print(
        f"serving http://{host}:{bound}/ (data: /data.json, every {refresh} s; Ctrl-C stops)", highlight=False
    )
    sys.stdout.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        err_console.print("stopped")
    finally:
        server.server_close()
